"""Labelled patch datasets for training and evaluation: detection, parsing and image loading.

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

Every image is loaded into ``uint8 [N, S, S, 3]`` (S = 128 by default; other sizes are resized, and a log
line says so).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..choices import DATASET_FORMATS
from ..errors import DatasetError, OptionError, one_line

log = logging.getLogger(__name__)

FORMATS = DATASET_FORMATS
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CLASS_DIRS = {"atypical": 1, "amf": 1, "normal": 0, "nmf": 0}
MIDOG_DOMAINS = ("Tumor", "Scanner", "Species")
_POSITIVE = {"1", "amf", "atypical", "true", "yes", "positive"}
_NEGATIVE = {"0", "nmf", "normal", "false", "no", "negative"}


@dataclass(frozen=True)
class PatchDataset:
    """Patches, labels (1 = atypical), source groups and domain columns of a labelled dataset."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int64 [N]
    groups: np.ndarray  # str [N]
    paths: tuple[str, ...]
    domains: Mapping[str, np.ndarray] = field(default_factory=dict)  # column -> str [N]
    format: str = "csv"
    source: str = ""
    group_by: str = ""  # what ``groups`` are, e.g. "filename" or "dataset/slide"

    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def n_atypical(self) -> int:
        return int(self.labels.sum())

    def subset(self, index: np.ndarray) -> PatchDataset:
        idx = np.asarray(index, dtype=np.int64)
        return PatchDataset(
            images=self.images[idx],
            labels=self.labels[idx],
            groups=self.groups[idx],
            paths=tuple(self.paths[i] for i in idx),
            domains={k: v[idx] for k, v in self.domains.items()},
            format=self.format,
            source=self.source,
            group_by=self.group_by,
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for provenance."""
        return {
            "source": self.source,
            "format": self.format,
            "n": len(self),
            "n_atypical": self.n_atypical,
            "n_normal": len(self) - self.n_atypical,
            "n_groups": int(np.unique(self.groups).size),
            "grouped_by": self.group_by,
            "patch_size": int(self.images.shape[1]) if self.images.ndim == 4 else None,
            "domains": {k: sorted({str(x) for x in v}) for k, v in self.domains.items()},
            "fingerprint": self.fingerprint(),
            "patch_digests": self.patch_digests(),
        }

    def patch_digests(self) -> str:
        """An 8-byte BLAKE2b digest of each patch's pixels, concatenated and base64-encoded (a bundle records its
        training patches' so that ``evaluate`` can tell in-sample figures)."""
        return base64.b64encode(b"".join(patch_digest(im) for im in self.images)).decode("ascii")

    def fingerprint(self) -> str:
        """A hash of the pixels, labels and groups (changes when the data does)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.ascontiguousarray(self.images).data)
        h.update(self.labels.astype(np.int64).tobytes())
        h.update("\n".join(map(str, self.groups)).encode())
        return h.hexdigest()


def patch_digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=8).digest()


def training_overlap(provenance: Mapping[str, Any], data: PatchDataset) -> int | None:
    """How many patches of ``data`` the bundle with this ``provenance`` was trained on (None: not recorded)."""
    recorded = (provenance.get("data") or {}).get("patch_digests")
    if not recorded:
        return None
    raw = base64.b64decode(recorded)
    trained = {raw[i:i + 8] for i in range(0, len(raw), 8)}
    return sum(patch_digest(im) in trained for im in data.images)


# ----------------------------------------------------------------------------------------- detection


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


# ------------------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class _Rows:
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


def _parse_midog25(table: Path, group_column: str | None, images: Path | None) -> _Rows:
    rows = _read_table(table)
    group_col = group_column or ("filename" if rows and "filename" in rows[0] else None)
    _need(table, rows, ("image_id", "majority", group_col))
    img_dir = _midog_image_dir(table, rows[0]["image_id"], images)
    domains = {c: [r[c] for r in rows] for c in MIDOG_DOMAINS if c in rows[0]}
    return _Rows(
        paths=[img_dir / r["image_id"] for r in rows],
        labels=[_parse_label(r["majority"], where=f"dataset {table} row {i + 2}") for i, r in enumerate(rows)],
        groups=[r[group_col] if group_col else r["image_id"] for r in rows],
        domains=domains,
        table=rows,
        group_by=group_col or "image_id (no source-image column)",
    )


def _parse_amibr(table: Path, group_column: str | None) -> _Rows:
    rows = _read_table(table)
    _need(table, rows, ("dataset", "slide", "uid", "majority_atypical", group_column))
    patches = table.parent / "patches"
    labels = [_parse_label(r["majority_atypical"], where=f"dataset {table} row {i + 2}") for i, r in enumerate(rows)]
    paths = []
    for row, label in zip(rows, labels):
        name = f"{row['dataset']}_{row['uid']}.png"
        paths.append(patches / ("atypical" if label else "normal") / name)
    groups = [r[group_column] if group_column else f"{r['dataset']}/{r['slide']}" for r in rows]
    return _Rows(paths, labels, groups, {"dataset": [r["dataset"] for r in rows]}, rows, group_column or "dataset/slide")


def _parse_csv(table: Path, group_column: str | None) -> _Rows:
    rows = _read_table(table)
    group_col = group_column or ("group" if rows and "group" in rows[0] else None)
    _need(table, rows, ("path", "label", group_col))
    domains = {"domain": [r["domain"] for r in rows]} if "domain" in rows[0] else {}
    paths = [Path(r["path"]) if Path(r["path"]).is_absolute() else table.parent / r["path"] for r in rows]
    return _Rows(
        paths=paths,
        labels=[_parse_label(r["label"], where=f"dataset {table} row {i + 2}") for i, r in enumerate(rows)],
        groups=[r[group_col] if group_col else str(p) for r, p in zip(rows, paths)],
        domains=domains,
        table=rows,
        group_by=group_col or "path (no group column)",
    )


def _parse_folder(root: Path, group_column: str | None) -> _Rows:
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
    return _Rows(paths, labels, [str(p.relative_to(root).with_suffix("")) for p in paths], {}, [], "file (no slide information)")


# ------------------------------------------------------------------------------------------ images


def _load_one(path: Path, size: int, page: int | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
    from PIL import Image, UnidentifiedImageError

    where = f"image {path}" + (f" page {page + 1}" if page is not None else "")
    try:
        with Image.open(path) as im:
            if page is not None:
                im.seek(page)
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"{where}: no such file") from None
    except (OSError, EOFError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"{where}: cannot be decoded ({exc})") from None
    if rgb.size == (size, size):
        return np.asarray(rgb, dtype=np.uint8), None
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8), rgb.size


def load_images(
    paths: Sequence[str | Path],
    *,
    pages: Sequence[int | None] | None = None,
    size: int = 128,
    workers: int = 4,
    quiet: bool = True,
) -> np.ndarray:
    """Decode images (``pages[i]``: a page of a multi-page TIFF) into ``uint8 [N, size, size, 3]``.

    Runs in ``workers`` threads; other sizes are resized (bilinear) and one log line per size says so.
    """
    from tqdm.auto import tqdm

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"image {missing[0]}: no such file ({len(missing)} of {len(paths)} listed images are missing)")
    page_list = list(pages) if pages is not None else [None] * len(paths)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    resized: dict[tuple[int, int], int] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda item: _load_one(Path(item[0]), size, item[1]), zip(paths, page_list))
        bar = tqdm(results, total=len(paths), desc="loading images", disable=quiet, unit="img", leave=False)
        for i, (arr, was) in enumerate(bar):
            out[i] = arr
            if was is not None:
                resized[was] = resized.get(was, 0) + 1
    for (w, h), count in sorted(resized.items()):
        log.warning("resized %d images from %dx%d to %dx%d pixels", count, w, h, size, size)
    return out


# --------------------------------------------------------------------------------------------- API


def load_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    group_column: str | None = None,
    domain_column: str | None = None,
    images: str | Path | None = None,
    patch_size: int = 128,
    workers: int = 4,
    quiet: bool = True,
) -> PatchDataset:
    """Detect (or take) the format of ``path``, parse labels, groups and domains, and load the images.

    ``group_column`` names the table column that identifies the source slide / image (default per format);
    ``domain_column`` adds a table column to the format's domain columns (``Tumor`` ... are read anyway).
    ``images`` is the MIDOG 2025 image folder when it is not beside the table (or one level below).
    """
    if format is not None and format not in FORMATS:
        raise OptionError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    root = Path(path)
    if format is None:
        fmt, table = detect_format(root)
    else:
        fmt = format
        if not root.exists():
            raise DatasetError(f"dataset {root}: no such file or directory")
        table = root
        if root.is_dir() and fmt != "folder":
            tables = {"amibr": [root / "AMI-BR.csv"]}.get(fmt) or sorted(root.glob("*.csv"))
            hits = [t for t in tables if t.is_file() and _table_format(_read_header(t)) == fmt]
            if len(hits) != 1:
                raise DatasetError(f"dataset {root}: no single {fmt} table found in the folder; pass the table itself")
            table = hits[0]
        elif root.is_file() and fmt == "folder":
            raise DatasetError(f"dataset {root}: --format folder needs a directory of class sub-folders")
    if fmt == "midog25":
        rows = _parse_midog25(table, group_column, Path(images) if images else None)
    elif fmt == "amibr":
        rows = _parse_amibr(table, group_column)
    elif fmt == "csv":
        rows = _parse_csv(table, group_column)
    else:
        rows = _parse_folder(table, group_column)
    if domain_column and domain_column not in rows.domains:
        if not rows.table or domain_column not in rows.table[0]:
            have = ", ".join(rows.table[0]) if rows.table else "none: class folders"
            raise OptionError(f"--domain-column {domain_column}: dataset {root} has no such column (columns: {have})")
        rows.domains[domain_column] = [r[domain_column] for r in rows.table]
    log.info("dataset %s: format %s, %d patches (%d atypical)", root, fmt, len(rows.labels), sum(rows.labels))
    pixels = load_images(rows.paths, size=patch_size, workers=workers, quiet=quiet)
    return PatchDataset(
        images=pixels,
        labels=np.asarray(rows.labels, dtype=np.int64),
        groups=np.asarray(rows.groups, dtype=str),
        paths=tuple(str(p) for p in rows.paths),
        domains={k: np.asarray(v, dtype=str) for k, v in rows.domains.items()},
        format=fmt,
        source=str(root),
        group_by=rows.group_by,
    )
