"""`read_points`: check the options and the file, detect its format, hand it to that format's
reader, then apply the class and score filters and merge duplicate positions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import math
from pathlib import Path

import numpy as np

from wsi_amf.errors import OptionError, PointsError

from . import csv_format, geojson_format
from .model import (CLASS_COLUMNS, SCORE_COLUMNS, Points, SlideContext, Table, first_occurrences, logger, one_line,
                    quoted_list)

_FORMATS = ("csv", "geojson")
_CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
_GEOJSON_SUFFIXES = frozenset({".geojson", ".json"})


def read_points(
    path: str | Path,
    *,
    fmt: str | None = None,
    x_col: str | None = None,
    y_col: str | None = None,
    score_col: str | None = None,
    min_score: float | None = None,
    class_name: str | None = None,
    slide: SlideContext | None = None,
) -> Points:
    """Read candidate points from a CSV or QuPath GeoJSON file.

    fmt: "csv" or "geojson"; None detects it from the extension, else from the first non-space character.
    x_col / y_col: CSV coordinate columns (both or neither); None detects a known pair (`COORDINATE_COLUMNS`).
    score_col: the score column (CSV) or measurement (GeoJSON); None detects one of `SCORE_COLUMNS`.
    min_score: keep points whose score is >= min_score (the file must have a score).
    class_name: keep points of this class only (exact, case-sensitive): GeoJSON `classification`,
        CSV column `class`, `classification` or `label`.
    slide: the slide the points belong to (name, mpp, size), for formats that need it.
    Exact duplicate positions are merged (the first kept). Raises PointsError for any problem with the file.
    """
    path = Path(path)
    if fmt is not None and fmt.lower() not in _FORMATS:
        raise OptionError(f"--points-format {fmt!r}: use 'csv' or 'geojson'")
    if (x_col is None) != (y_col is None):
        raise OptionError("--x-col and --y-col must be given together")
    if min_score is not None and not math.isfinite(min_score):
        raise OptionError(f"--min-score {min_score!r}: must be a finite number")
    text = _read_text(path)
    kind = fmt.lower() if fmt is not None else _detect_format(path, text)
    if kind == "csv":
        table = csv_format.read_table(path, text, x_col=x_col, y_col=y_col, score_col=score_col)
    else:
        if x_col is not None:
            raise OptionError(f"--x-col/--y-col apply to CSV files only, and {path} is GeoJSON")
        table = geojson_format.read_table(path, text, score_col=score_col)
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

    def read(self, path: str | Path, *, slide: SlideContext | None = None) -> Points:
        return read_points(path, **dataclasses.asdict(self), slide=slide)


def _read_text(path: Path) -> str:
    """The file's text (UTF-8, a BOM dropped); PointsError if it is missing, unreadable, not text or empty."""
    try:
        if path.is_dir():
            raise PointsError(f"points file {path} is a directory, not a file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise PointsError(f"points file {path} does not exist") from None
    except PermissionError:
        raise PointsError(f"points file {path} cannot be read (permission denied)") from None
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise PointsError(f"points file {path} cannot be read ({one_line(reason)})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PointsError(
            f"points file {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    if not text.strip():
        raise PointsError(f"points file {path} is empty")
    return text


def _detect_format(path: Path, text: str) -> str:
    """'csv' or 'geojson', from the extension, else from the first non-space character."""
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        return "csv"
    if suffix in _GEOJSON_SUFFIXES:
        return "geojson"
    return "geojson" if text.lstrip()[:1] in ("{", "[") else "csv"


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
