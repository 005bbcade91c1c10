"""Labelled patch dataset tables: format detection and parsing into paths, labels, groups and domains.

Formats (detected, or named with ``format=``):

- ``midog25``: the MIDOG 2025 track 2 table (``image_id, filename, ..., Tumor, Scanner, Species, majority``
  with ``AMF`` / ``NMF``) beside a folder of the patch images named by ``image_id``; group = ``filename``
  (the source image), domains = ``Tumor``, ``Scanner``, ``Species``. Tables with only
  ``image_id, filename, majority`` (OMG-Octo) read the same way.
- ``amibr``: AMi-Br, ``AMI-BR.csv`` + ``patches/{atypical,normal}/<dataset>_<uid>.png``; label =
  ``majority_atypical``, group = ``dataset`` + ``slide``, domain = ``dataset``.
- ``folder``: one sub-folder per class (``atypical`` / ``normal``, or ``AMF`` / ``NMF``); no source-slide
  information, so every image is its own group.
- ``csv``: a generic table ``path,label[,group][,domain]`` (paths relative to the table).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..choices import DATASET_FORMATS
from ..errors import DatasetError, OptionError, one_line
from .images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

FORMATS = DATASET_FORMATS
CLASS_DIRS = {"atypical": 1, "amf": 1, "normal": 0, "nmf": 0}
MIDOG_DOMAINS = ("Tumor", "Scanner", "Species")
_POSITIVE = {"1", "amf", "atypical", "true", "yes", "positive"}
_NEGATIVE = {"0", "nmf", "normal", "false", "no", "negative"}


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return [c.strip() for c in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"dataset {path}: cannot be read ({one_line(exc)})") from None


def _table_format(header: Sequence[str]) -> str | None:
    cols = set(header)
    if {"image_id", "majority"} <= cols:
        return "midog25"
    if {"majority_atypical", "uid", "dataset"} <= cols:
        return "amibr"
    if {"path", "label"} <= cols:
        return "csv"
    return None


def _class_dirs(root: Path) -> dict[Path, int]:
    return {p: CLASS_DIRS[p.name.lower()] for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() in CLASS_DIRS}


def detect_format(path: str | Path) -> tuple[str, Path]:
    """The format of ``path`` and the table (or folder) to read it from."""
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"dataset {root}: no such file or directory")
    if root.is_file():
        fmt = _table_format(_read_header(root))
        if fmt is None:
            raise DatasetError(
                f"dataset {root}: unknown table (expected MIDOG 2025 image_id/majority, AMi-Br majority_atypical, "
                "or path,label columns); pass --format"
            )
        return fmt, root
    if (root / "AMI-BR.csv").is_file():
        return "amibr", root / "AMI-BR.csv"
    tables = [(p, _table_format(_read_header(p))) for p in sorted(root.glob("*.csv"))]
    tables = [(p, f) for p, f in tables if f is not None]
    if len(tables) == 1:
        return tables[0][1], tables[0][0]  # type: ignore[return-value]
    if len(tables) > 1:
        names = ", ".join(p.name for p, _ in tables)
        raise DatasetError(f"dataset {root}: several label tables ({names}); pass the table itself")
    classes = _class_dirs(root)
    if set(classes.values()) == {0, 1}:
        return "folder", root
    raise DatasetError(
        f"dataset {root}: no label table (AMI-BR.csv, a MIDOG 2025 table, path,label CSV) and no "
        "atypical/normal (or AMF/NMF) sub-folders"
    )


@dataclass(frozen=True)
class Rows:
    paths: list[Path]
    labels: list[int]
    groups: list[str]
    domains: dict[str, list[str]]
    table: list[dict[str, str]] = field(default_factory=list)
    group_by: str = ""


def _parse_label(value: str, *, where: str) -> int:
    v = value.strip().lower()
    if v in _POSITIVE:
        return 1
    if v in _NEGATIVE:
        return 0
    raise DatasetError(f"{where}: label {value!r} is neither atypical (AMF/1/True) nor normal (NMF/0/False)")


def _read_table(path: Path) -> list[dict[str, str]]:
    """The rows as dicts of stripped strings; a row with more (non-empty) fields than the header is an error."""
    extra = "\0extra"
    rows = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, restkey=extra)
            for row in reader:
                if any(cell.strip() for cell in row.pop(extra, [])):
                    raise DatasetError(
                        f"dataset {path} line {reader.line_num}: has more fields than the header's {len(reader.fieldnames or [])}"
                    )
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"dataset {path}: cannot be read ({one_line(exc)})") from None
    return rows


def _need(path: Path, rows: list[dict[str, str]], columns: Iterable[str | None]) -> None:
    if not rows:
        raise DatasetError(f"dataset {path}: the table has no rows")
    missing = [c for c in columns if c and c not in rows[0]]
    if missing:
        raise DatasetError(f"dataset {path}: column {missing[0]!r} is missing (columns: {', '.join(rows[0])})")


def _midog_image_dir(table: Path, first: str, images: Path | None) -> Path:
    if images is not None:
        return images
    base = table.parent
    candidates = [base, *sorted(p for p in base.iterdir() if p.is_dir())]
    candidates += [q for p in candidates[1:] for q in sorted(p.iterdir()) if q.is_dir()]
    for cand in candidates:
        if (cand / first).is_file():
            return cand
    raise DatasetError(
        f"dataset {table}: image {first} (first row) is not beside the table nor in a sub-folder; "
        "put the images next to it or pass --images DIR"
    )


def _parse_midog25(table: Path, group_column: str | None, images: Path | None) -> Rows:
    rows = _read_table(table)
    group_col = group_column or ("filename" if rows and "filename" in rows[0] else None)
    _need(table, rows, ("image_id", "majority", group_col))
    img_dir = _midog_image_dir(table, rows[0]["image_id"], images)
    domains = {c: [r[c] for r in rows] for c in MIDOG_DOMAINS if c in rows[0]}
    return Rows(
        paths=[img_dir / r["image_id"] for r in rows],
        labels=[_parse_label(r["majority"], where=f"dataset {table} row {i + 2}") for i, r in enumerate(rows)],
        groups=[r[group_col] if group_col else r["image_id"] for r in rows],
        domains=domains,
        table=rows,
        group_by=group_col or "image_id (no source-image column)",
    )


def _parse_amibr(table: Path, group_column: str | None) -> Rows:
    rows = _read_table(table)
    _need(table, rows, ("dataset", "slide", "uid", "majority_atypical", group_column))
    patches = table.parent / "patches"
    labels = [_parse_label(r["majority_atypical"], where=f"dataset {table} row {i + 2}") for i, r in enumerate(rows)]
    paths = []
    for row, label in zip(rows, labels):
        name = f"{row['dataset']}_{row['uid']}.png"
        paths.append(patches / ("atypical" if label else "normal") / name)
    groups = [r[group_column] if group_column else f"{r['dataset']}/{r['slide']}" for r in rows]
    return Rows(paths, labels, groups, {"dataset": [r["dataset"] for r in rows]}, rows, group_column or "dataset/slide")


def _parse_csv(table: Path, group_column: str | None) -> Rows:
    rows = _read_table(table)
    group_col = group_column or ("group" if rows and "group" in rows[0] else None)
    _need(table, rows, ("path", "label", group_col))
    domains = {"domain": [r["domain"] for r in rows]} if "domain" in rows[0] else {}
    paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else table.parent / r["path"] for r in rows]
    return Rows(
        paths=paths,
        labels=[_parse_label(r["label"], where=f"dataset {table} row {i + 2}") for i, r in enumerate(rows)],
        groups=[r[group_col] if group_col else str(p) for r, p in zip(rows, paths)],
        domains=domains,
        table=rows,
        group_by=group_col or "path (no group column)",
    )


def _parse_folder(root: Path, group_column: str | None) -> Rows:
    if group_column:
        raise OptionError(f"--group-column {group_column}: a class-folder dataset ({root}) has no columns")
    paths: list[Path] = []
    labels: list[int] = []
    for folder, label in _class_dirs(root).items():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DatasetError(f"dataset {root}: the class folders hold no images")
    log.warning("dataset %s: class folders carry no slide information; each image is its own CV group", root)
    return Rows(paths, labels, [str(p.relative_to(root).with_suffix("")) for p in paths], {}, [], "file (no slide information)")


def find_table(path: Path, format: str | None) -> tuple[str, Path]:
    """The format of ``path`` (detected, or ``format`` checked against it) and the table or folder to read."""
    if format is not None and format not in FORMATS:
        raise OptionError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if format is None:
        return detect_format(path)
    if not path.exists():
        raise DatasetError(f"dataset {path}: no such file or directory")
    if path.is_file() and format == "folder":
        raise DatasetError(f"dataset {path}: --format folder needs a directory of class sub-folders")
    if path.is_file() or format == "folder":
        return format, path
    tables = {"amibr": [path / "AMI-BR.csv"]}.get(format) or sorted(path.glob("*.csv"))
    hits = [t for t in tables if t.is_file() and _table_format(_read_header(t)) == format]
    if len(hits) != 1:
        raise DatasetError(f"dataset {path}: no single {format} table found in the folder; pass the table itself")
    return format, hits[0]


def parse_rows(fmt: str, table: Path, group_column: str | None, images: Path | None) -> Rows:
    """The rows of ``table`` (a folder for ``folder``) in format ``fmt``."""
    if fmt == "midog25":
        return _parse_midog25(table, group_column, images)
    if fmt == "amibr":
        return _parse_amibr(table, group_column)
    if fmt == "csv":
        return _parse_csv(table, group_column)
    return _parse_folder(table, group_column)


def add_domain_column(rows: Rows, column: str, source: Path) -> None:
    """Read the table column ``column`` into ``rows.domains`` (OptionError when the table has none)."""
    if column in rows.domains:
        return
    if not rows.table or column not in rows.table[0]:
        have = ", ".join(rows.table[0]) if rows.table else "none: class folders"
        raise OptionError(f"--domain-column {column}: dataset {source} has no such column (columns: {have})")
    rows.domains[column] = [r[column] for r in rows.table]
