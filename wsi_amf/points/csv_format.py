"""CSV (also semicolon- or tab-separated) points files: one row per point, a header naming the columns.
Coordinates are level-0 pixels from the top-left; a negative one (left of or above the slide) is kept, and
screening reports it as outside the slide."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsi_amf.errors import PointsError

from .model import CLASS_COLUMNS, SCORE_COLUMNS, Table, one_line, quote, quoted_list, warn_missing_scores

#: Coordinate column pairs recognised in a CSV header (case-insensitive), in order of preference.
COORDINATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("x", "y"),
    ("coordinateX", "coordinateY"),
    ("centroid_x", "centroid_y"),
    ("centroidX", "centroidY"),
    ("cx", "cy"),
    ("x_px", "y_px"),
    ("pos_x", "pos_y"),
    ("center_x", "center_y"),
)

_DELIMITERS = (",", ";", "\t")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+(?:[eE][+-]?\d+)?")
_NON_FINITE = frozenset({"nan", "inf", "infinity"})


@dataclass(frozen=True)
class _Layout:
    """Where a CSV file's values are: its header, the columns of x, y and the score, the carried columns."""

    header: list[str]
    x: int
    y: int
    score: int | None
    carried: list[int]
    decimal_comma: bool


@dataclass
class _Columns:
    """The values read so far, column by column."""

    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    cells: list[list[str]] = field(default_factory=list)


def read_table(
    path: Path, text: str, *, x_col: str | None, y_col: str | None, score_col: str | None
) -> Table:
    """The points in CSV `text`: delimiter and columns detected (or named), every row checked."""
    delimiter = _choose_delimiter(path, text, x_col, y_col)
    layout = _layout(path, text, delimiter, x_col, y_col, score_col)
    return _table(path, layout, _read_rows(path, text, delimiter, layout))


def _layout(path: Path, text: str, delimiter: str, x_col: str | None, y_col: str | None,
            score_col: str | None) -> _Layout:
    """The header and the columns of the values; PointsError when the coordinates (or the named score) are missing."""
    header = _header_names(_first_row(path, text, delimiter))
    found = _coordinate_columns(header, x_col, y_col)
    if found is None:
        raise PointsError(_no_coordinates_message(path, header, x_col, y_col))
    x_index, y_index = found
    score_index = _score_column(path, header, score_col)
    carried = [i for i in range(len(header)) if i not in (x_index, y_index, score_index)]
    return _Layout(header, x_index, y_index, score_index, carried, decimal_comma=delimiter != ",")


def _read_rows(path: Path, text: str, delimiter: str, layout: _Layout) -> _Columns:
    """Every data row's values (blank rows skipped); PointsError naming the row for a bad one."""
    columns = _Columns(cells=[[] for _ in layout.carried])
    reader = _csv_reader(text, delimiter)
    row_number = -1  # the header is row 0
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            row_number += 1
            if row_number > 0:
                _add_row(f"points file {path} row {row_number} (line {reader.line_num})", row, layout, columns)
    except csv.Error as err:
        raise PointsError(
            f"points file {path} line {reader.line_num}: not valid CSV ({one_line(str(err))})"
        ) from None
    return columns


def _add_row(where: str, row: list[str], layout: _Layout, columns: _Columns) -> None:
    """One row's values appended to ``columns`` (empty cells beyond the header's width dropped)."""
    width = len(layout.header)
    if len(row) > width and not any(cell.strip() for cell in row[width:]):
        row = row[:width]
    if len(row) != width:
        raise PointsError(f"{where}: has {len(row)} fields, the header has {width}")
    column = layout.x
    try:
        x = _to_float(row[layout.x], decimal_comma=layout.decimal_comma)
        column = layout.y
        y = _to_float(row[layout.y], decimal_comma=layout.decimal_comma)
        if layout.score is not None:
            column = layout.score
            columns.scores.append(_to_score(row[layout.score], decimal_comma=layout.decimal_comma))
    except ValueError as err:
        raise PointsError(f"{where}: {quote(layout.header[column])} {err}") from None
    columns.xs.append(x)
    columns.ys.append(y)
    for values, i in zip(columns.cells, layout.carried):
        values.append(row[i])


def _table(path: Path, layout: _Layout, columns: _Columns) -> Table:
    """The values read as a Table: the score (warned about when some are missing) and the carried columns."""
    score = np.array(columns.scores, dtype=np.float64) if layout.score is not None else None
    score_name = layout.header[layout.score] if layout.score is not None else None
    warn_missing_scores(path, score, score_name)
    carried_names = [layout.header[i] for i in layout.carried]
    class_column = next(
        (name for wanted in CLASS_COLUMNS for name in carried_names if name.lower() == wanted), None
    )
    return Table(
        xy=np.column_stack([np.array(columns.xs, dtype=np.float64), np.array(columns.ys, dtype=np.float64)]),
        score=score,
        score_name=score_name,
        columns={name: values for name, values in zip(carried_names, columns.cells)},
        class_column=class_column,
    )


def _no_coordinates_message(path: Path, header: list[str], x_col: str | None, y_col: str | None) -> str:
    if x_col is not None and y_col is not None:
        missing = [name for name in (x_col, y_col) if _find_column(header, name) is None]
        what = f"column {quote(missing[0])}" if missing else f"columns {quote(x_col)} / {quote(y_col)}"
        return f"points file {path}: {what} not found in the header (columns: {quoted_list(header)})"
    known = ", ".join(f"{x}/{y}" for x, y in COORDINATE_COLUMNS)
    if header and all(_NUMBER.fullmatch(cell.strip()) for cell in header if cell.strip()):
        return (
            f"points file {path} has no header row (the first row is numbers); add a header naming "
            f"the coordinate columns ({known}), or one with your own names and pass --x-col/--y-col"
        )
    return (
        f"points file {path}: no coordinate columns recognised in the header (columns: {quoted_list(header)}); "
        f"pass --x-col/--y-col to name them (known pairs: {known})"
    )


def _score_column(path: Path, header: list[str], score_col: str | None) -> int | None:
    if score_col is not None:
        index = _find_column(header, score_col)
        if index is None:
            raise PointsError(
                f"points file {path}: score column {quote(score_col)} not found (columns: {quoted_list(header)})"
            )
        return index
    return next((i for name in SCORE_COLUMNS if (i := _find_column(header, name)) is not None), None)


# ---------------------------------------------------------------- cell values


def _to_float(text: str, *, decimal_comma: bool = False) -> float:
    """Parse one number; ValueError says what is wrong with it."""
    value = text.strip()
    if not value:
        raise ValueError("is empty")
    if value.lstrip("+-").lower() in _NON_FINITE:
        raise ValueError(f"is not a finite number ({quote(text)})")
    if decimal_comma and _DECIMAL_COMMA.fullmatch(value):
        value = value.replace(",", ".")
    if not _NUMBER.fullmatch(value):
        raise ValueError(f"is not a number ({quote(text)})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"is not a finite number ({quote(text)})")
    return number


def _to_score(text: str, *, decimal_comma: bool = False) -> float:
    """A score cell; empty or 'nan' means the file gives no score for that point (NaN)."""
    if text.strip().lower() in ("", "nan"):
        return math.nan
    return _to_float(text, decimal_comma=decimal_comma)


# ---------------------------------------------------------------- header and delimiter


def _find_column(header: list[str], name: str) -> int | None:
    """Index of `name` in the header: an exact match, else the one case-insensitive match."""
    if name in header:
        return header.index(name)
    matches = [i for i, column in enumerate(header) if column.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _coordinate_columns(header: list[str], x_col: str | None, y_col: str | None) -> tuple[int, int] | None:
    pairs = [(x_col, y_col)] if x_col is not None and y_col is not None else COORDINATE_COLUMNS
    for x_name, y_name in pairs:
        x_index, y_index = _find_column(header, x_name), _find_column(header, y_name)
        if x_index is not None and y_index is not None and x_index != y_index:
            return x_index, y_index
    return None


def _csv_reader(text: str, delimiter: str) -> Any:
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def _first_row(path: Path, text: str, delimiter: str) -> list[str]:
    try:
        for row in _csv_reader(text, delimiter):
            if any(cell.strip() for cell in row):
                return row
    except csv.Error as err:
        raise PointsError(f"points file {path}: cannot read the header ({one_line(str(err))})") from None
    return []


def _header_names(row: list[str]) -> list[str]:
    """Header cells, stripped; an empty one becomes 'Unnamed: <i>', a repeat '<name>.<k>' (as in pandas)."""
    names: list[str] = []
    for i, cell in enumerate(row):
        name = cell.strip() or f"Unnamed: {i}"
        base, k = name, 0
        while name in names:
            k += 1
            name = f"{base}.{k}"
        names.append(name)
    return names


def _choose_delimiter(path: Path, text: str, x_col: str | None, y_col: str | None) -> str:
    """The delimiter whose header holds the coordinate columns, else the one giving the most columns."""
    widths: dict[str, int] = {}
    for delimiter in _DELIMITERS:
        header = _header_names(_first_row(path, text, delimiter))
        if _coordinate_columns(header, x_col, y_col) is not None:
            return delimiter
        widths[delimiter] = len(header)
    return max(_DELIMITERS, key=lambda d: widths[d])  # max() keeps the first of equals: ','
