"""`read_points`: check the options and the file, detect its format, hand it to that format's
reader, then apply the class and score filters and merge duplicate positions."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..choices import POINTS_FORMATS
from ..errors import OptionError, PointsError
from ..files import load_json
from . import csv_format, files, gc_json, geojson_format, midogpp, sliderunner
from .model import (
    CLASS_COLUMNS,
    SCORE_COLUMNS,
    Points,
    SlideContext,
    Table,
    first_occurrences,
    logger,
    quoted_list,
)

#: The formats `fmt` / --points-format names, and how messages call them.
FORMATS = POINTS_FORMATS
_CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
_JSON_SUFFIXES = frozenset({".geojson", ".json"})
_SQLITE_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db"})
_TEXT_SUFFIXES = _CSV_SUFFIXES | _JSON_SUFFIXES


def read_points(
    path: str | Path,
    *,
    fmt: str | None = None,
    x_col: str | None = None,
    y_col: str | None = None,
    score_col: str | None = None,
    min_score: float | None = None,
    class_name: str | None = None,
    db_slide: str | None = None,
    slide: SlideContext | None = None,
) -> Points:
    """Read candidate points (level-0 pixels) from a points file.

    fmt: one of `FORMATS` ("csv", "geojson", "gc-json", "sliderunner", "midogpp"); None detects it: an SQLite
        database is SlideRunner/EXACT; `.csv` / `.tsv` / `.txt` is CSV; JSON (by extension or first character)
        is grand-challenge "Multiple points" when its type says so, MIDOG++ when it has `images` and
        `annotations`, QuPath GeoJSON otherwise; a `.zip` is QuPath GeoJSON; `.gz` files are decompressed.
    path: the file; `-` reads standard input. Standard input, pipes and FIFOs are read once, into memory
        (an SQLite database cannot come that way); without an extension their content tells the format.
    x_col / y_col: CSV coordinate columns (both or neither); None detects a known pair (`COORDINATE_COLUMNS`).
    score_col: the score column (CSV), measurement (GeoJSON) or key (gc-json `probability`, MIDOG++ `score`);
        None detects one.
    min_score: keep points whose score is >= min_score (the file must have a score).
    class_name: keep points of this class only (exact, case-sensitive): GeoJSON `classification`, CSV column
        `class`, `classification` or `label`, the `class` of the other formats.
    db_slide: the slide's name (or number) in a SlideRunner database or MIDOG++ file holding many slides;
        None matches the slide's file name.
    slide: the slide the points belong to (name, mpp, size): gc-json needs its mpp; the databases its name.
    Exact duplicate positions are merged (the first kept). Raises PointsError for any problem with the file.
    """
    path = Path(path)
    if fmt is not None and fmt.lower() not in FORMATS:
        raise OptionError(f"--points-format {fmt!r}: use one of {', '.join(FORMATS)}")
    if (x_col is None) != (y_col is None):
        raise OptionError("--x-col and --y-col must be given together")
    if min_score is not None and not math.isfinite(min_score):
        raise OptionError(f"--min-score {min_score!r}: must be a finite number")
    kind, table = _read_table(path, None if fmt is None else fmt.lower(), x_col=x_col, y_col=y_col,
                              score_col=score_col, db_slide=db_slide, slide=slide)
    logger.debug("points file %s read as %s: %d points", path, FORMATS[kind], len(table.xy))
    return _finish(path, table, min_score=min_score, class_name=class_name)


@dataclass(frozen=True)
class PointsOptions:
    """How to read a points file (the CLI's points options); ``read`` applies them to one file."""

    fmt: str | None = None
    x_col: str | None = None
    y_col: str | None = None
    score_col: str | None = None
    min_score: float | None = None
    class_name: str | None = None
    db_slide: str | None = None

    def read(self, path: str | Path, *, slide: SlideContext | None = None) -> Points:
        return read_points(path, **dataclasses.asdict(self), slide=slide)


def _read_table(path: Path, fmt: str | None, *, x_col: str | None, y_col: str | None, score_col: str | None,
                db_slide: str | None, slide: SlideContext | None) -> tuple[str, Table]:
    """The format's name and what its reader found. When only the content told the format (no extension
    names it: `-`, `/dev/fd/N`, `det`), a reading error says so and points to --points-format."""
    content = files.load(path)
    kind = _detect(path, content, fmt)
    by_content = fmt is None and kind in ("csv", "json") and Path(content.name).suffix.lower() not in _TEXT_SUFFIXES
    try:
        return _parse(path, content, kind, x_col=x_col, y_col=y_col, score_col=score_col, db_slide=db_slide,
                      slide=slide)
    except PointsError as exc:
        if not by_content:
            raise
        detected = "CSV" if kind == "csv" else "JSON"
        raise PointsError(f"{exc} (read as {detected}, the format its content suggests: name the format with "
                          "--points-format if it is another)") from None


def _parse(path: Path, content: files.Content, kind: str, *, x_col: str | None, y_col: str | None,
           score_col: str | None, db_slide: str | None, slide: SlideContext | None) -> tuple[str, Table]:
    """The points of `content` read as `kind` ("json": one of the JSON formats, told from the document)."""
    documents: list[tuple[str, Any]] = []
    if kind in ("json", "geojson", "gc-json", "midogpp"):
        documents = [(where, load_json(text, where=where, error=PointsError)) for where, text in content.texts]
        if kind == "json":
            data = documents[0][1]
            kind = "gc-json" if gc_json.is_gc_json(data) else "midogpp" if midogpp.is_midogpp(data) else "geojson"
    if x_col is not None and kind != "csv":
        raise OptionError(f"--x-col/--y-col apply to CSV files only, and {path} is {FORMATS[kind]}")
    if db_slide is not None and kind not in ("sliderunner", "midogpp"):
        raise OptionError(f"--db-slide applies to SlideRunner databases and MIDOG++ JSON only, and {path} is "
                          f"{FORMATS[kind]}")
    if kind == "sliderunner":
        return kind, sliderunner.read_table(path, slide=slide, db_slide=db_slide)
    if kind == "csv":
        (_, text), = content.texts
        return kind, csv_format.read_table(path, text, x_col=x_col, y_col=y_col, score_col=score_col)
    if kind == "gc-json":
        return kind, gc_json.read_table(path, documents[0][1], slide=slide, score_col=score_col)
    if kind == "midogpp":
        return kind, midogpp.read_table(path, documents[0][1], slide=slide, db_slide=db_slide, score_col=score_col)
    return kind, geojson_format.read_table(path, documents, score_col=score_col)


def _detect(path: Path, content: files.Content, fmt: str | None) -> str:
    """The format: `fmt` when given (checked against what the file is), else from the file; "json" when
    the file is JSON of a kind still to be told from its content."""
    if content.sqlite:
        if fmt not in (None, "sliderunner"):
            raise PointsError(f"points file {path} is an SQLite database, not {FORMATS[fmt]}; "
                              "leave out --points-format or use sliderunner")
        return "sliderunner"
    if fmt == "sliderunner" or (fmt is None and path.suffix.lower() in _SQLITE_SUFFIXES):
        raise PointsError(f"points file {path} is not an SQLite database (it lacks the SQLite header), so not "
                          f"{FORMATS['sliderunner']}")
    if content.archive:
        if fmt not in (None, "geojson"):
            raise PointsError(f"points file {path} is a zip archive: only QuPath GeoJSON is read from one")
        return "geojson"
    if fmt is not None:
        return fmt
    suffix = Path(content.name).suffix.lower()
    if suffix in _CSV_SUFFIXES:
        return "csv"
    if suffix in _JSON_SUFFIXES:
        return "json"
    (_, text), = content.texts
    return "json" if text.lstrip()[:1] in ("{", "[") else "csv"


def _finish(path: Path, table: Table, *, min_score: float | None, class_name: str | None) -> Points:
    """Apply the class and score filters, then merge exact duplicate positions (the first kept)."""
    n = len(table.xy)
    keep = np.ones(n, dtype=bool)
    if class_name is not None:
        if table.class_column is None:
            raise PointsError(
                f"points file {path}: cannot keep class {class_name!r}: no class column "
                f"({', '.join(CLASS_COLUMNS)}); columns: {quoted_list(table.columns)}"
            )
        labels = table.columns[table.class_column]
        keep &= np.array([label == class_name for label in labels], dtype=bool).reshape(n)
        if n and not keep.any():
            logger.warning(
                "points file %s: no point has class %r (classes present: %s)",
                path, class_name, quoted_list(sorted(set(labels))),
            )
    if min_score is not None:
        if table.score is None:
            raise PointsError(
                f"points file {path} has no score column, so a minimum score cannot be applied "
                f"(looked for {', '.join(SCORE_COLUMNS)}; name one with --score-col)"
            )
        keep &= table.score >= min_score  # a missing (NaN) score never passes
    points = Points(
        source=path,
        xy=table.xy,
        score=table.score,
        columns=table.columns,
        score_name=table.score_name,
        n_filtered=int(n - np.count_nonzero(keep)),
    ).subset(keep)
    first = first_occurrences(points.xy)
    n_duplicates = len(points) - len(first)
    if not n_duplicates:
        return points
    logger.warning("points file %s: %d exact duplicate positions merged", path, n_duplicates)
    return dataclasses.replace(points.subset(first), n_duplicates=n_duplicates)
