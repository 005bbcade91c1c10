"""SlideRunner / EXACT SQLite annotation databases: one database holds the annotations of many slides.

Tables used: `Slides(uid, filename, width, height)`, `Annotations(uid, slide, guid, deleted, type,
agreedClass)`, `Annotations_coordinates(coordinateX, coordinateY, annoId, orderIdx)`, `Classes(uid, name)`.
The slide is found by its file name (or `db_slide`); deleted annotations are skipped. Coordinates are level-0
pixels (a figure cut by the image's edge may lie just outside it, even at a negative coordinate: it is kept,
and screening reports it as outside the slide). A spot is its (first) coordinate, a polygon its centroid, a
rectangle or circle the centre of its coordinates' bounding box. Columns carried: `class` (the agreed class's
name), `annotation_uid`, `guid`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import shapely
from shapely.errors import ShapelyError

from wsi_amf.errors import PointsError

from .matching import choose_slide
from .model import SlideContext, Table, logger, one_line, quote

# SlideRunner's annotation types
SPOT, AREA, POLYGON, SPECIAL_SPOT, CIRCLE = 1, 2, 3, 4, 5

_REQUIRED = {
    "Slides": ("uid", "filename"),
    "Annotations": ("uid", "slide"),
    "Annotations_coordinates": ("coordinateX", "coordinateY", "annoId"),
}
_OPTIONAL = {
    "Slides": ("width", "height"),
    "Annotations": ("guid", "deleted", "type", "agreedClass"),
    "Annotations_coordinates": ("orderIdx", "uid"),
}


def read_table(path: Path, *, slide: SlideContext | None, db_slide: str | None) -> Table:
    """The points of one slide of the database at `path`."""
    where = f"points file {path}"
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except (sqlite3.Error, ValueError) as err:
        raise PointsError(f"{where}: cannot open the database ({one_line(str(err))})") from None
    try:
        with contextlib.closing(connection):
            return _read(path, connection, slide=slide, db_slide=db_slide)
    except sqlite3.Error as err:
        raise PointsError(f"{where}: cannot read it as a SlideRunner/EXACT database ({one_line(str(err))})") from None
    except (OverflowError, MemoryError) as err:
        raise PointsError(f"{where}: cannot read the database ({type(err).__name__})") from None


def _read(path: Path, connection: sqlite3.Connection, *, slide: SlideContext | None, db_slide: str | None) -> Table:
    where = f"points file {path}"
    columns = {table: _columns(where, connection, table) for table in _REQUIRED}
    slides = [
        (uid, _text(filename)) for uid, filename in
        connection.execute('SELECT "uid", "filename" FROM "Slides" ORDER BY "uid"')
    ]
    if not slides:
        raise PointsError(f"{where}: the database holds no slides")
    key, name = choose_slide(path, slides, slide=slide, db_slide=db_slide)
    _check_size(path, connection, columns["Slides"], key, name, slide)
    classes = _classes(connection)

    a, c = columns["Annotations"], columns["Annotations_coordinates"]
    query = (
        f'SELECT a."uid", {_or_null("a", "guid", a)}, {_or_null("a", "deleted", a)}, {_or_null("a", "type", a)}, '
        f'{_or_null("a", "agreedClass", a)}, c."coordinateX", c."coordinateY" '
        'FROM "Annotations" AS a LEFT JOIN "Annotations_coordinates" AS c ON c."annoId" = a."uid" '
        f'WHERE a."slide" = ? ORDER BY a."uid", {_or_null("c", "orderIdx", c)}, {_or_null("c", "uid", c)}'
    )
    xy: list[tuple[float, float]] = []
    carried: dict[str, list[str]] = {"class": [], "annotation_uid": [], "guid": []}
    n_deleted = n_empty = 0
    for uid, group in itertools.groupby(connection.execute(query, (key,)), key=lambda row: row[0]):
        rows = list(group)
        _, guid, deleted, kind, agreed, _, _ = rows[0]
        if deleted not in (None, 0):
            n_deleted += 1
            continue
        at = f"{where} annotation {uid}"
        coordinates = [(_number(at, "coordinateX", x), _number(at, "coordinateY", y))
                       for *_, x, y in rows if x is not None or y is not None]
        if not coordinates:
            n_empty += 1
            continue
        centre = _centre(at, kind, coordinates)
        if not (math.isfinite(centre[0]) and math.isfinite(centre[1])):
            raise PointsError(f"{at}: position ({centre[0]:g}, {centre[1]:g}) is not finite")
        xy.append(centre)
        carried["class"].append(classes.get(agreed, _text(agreed)))
        carried["annotation_uid"].append(_text(uid))
        carried["guid"].append(_text(guid))
    if n_deleted or n_empty:
        logger.info("points file %s slide %r: skipped %d deleted annotations and %d without coordinates",
                    path, name, n_deleted, n_empty)
    if not xy:
        logger.warning("points file %s: no annotations for slide %r", path, name)
    return Table.of(path, xy, columns=carried, class_column="class")


# ---------------------------------------------------------------- schema


def _columns(where: str, connection: sqlite3.Connection, table: str) -> set[str]:
    """The columns of `table`; PointsError if it or a required column is missing."""
    found = {row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')}
    if not found:
        raise PointsError(f"{where}: not a SlideRunner/EXACT database (no table {quote(table)})")
    missing = [name for name in _REQUIRED[table] if name not in found]
    if missing:
        raise PointsError(f"{where}: not a SlideRunner/EXACT database (table {quote(table)} has no "
                          f"column {quote(missing[0])})")
    return found


def _or_null(alias: str, column: str, present: Iterable[str]) -> str:
    return f'{alias}."{column}"' if column in present else "NULL"


def _classes(connection: sqlite3.Connection) -> dict[Any, str]:
    """Class uid -> name; the agreed class's number as text when the database has no `Classes` table."""
    columns = {row[1] for row in connection.execute('PRAGMA table_info("Classes")')}
    if not {"uid", "name"} <= columns:
        return {}
    return {uid: _text(name) for uid, name in connection.execute('SELECT "uid", "name" FROM "Classes"')}


def _check_size(path: Path, connection: sqlite3.Connection, columns: set[str], key: Any, name: str,
                slide: SlideContext | None) -> None:
    """Warn when the database records another size for the slide (perhaps another scan of it)."""
    if slide is None or slide.dimensions is None or not {"width", "height"} <= columns:
        return
    row = connection.execute('SELECT "width", "height" FROM "Slides" WHERE "uid" = ?', (key,)).fetchone()
    if row and all(isinstance(v, int) and v > 0 for v in row) and tuple(row) != tuple(slide.dimensions):
        logger.warning("points file %s: the database gives slide %r as %d x %d px, but the slide is %d x %d px",
                       path, name, row[0], row[1], *slide.dimensions)


# ---------------------------------------------------------------- values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _number(at: str, column: str, value: Any) -> float:
    if isinstance(value, (int, float)):
        number = float(value)
        if math.isfinite(number):
            return number
    shown = quote(_text(value)) if value is not None else "empty"
    raise PointsError(f"{at}: {column} is {shown}, expected a finite number")


def _centre(at: str, kind: Any, coordinates: list[tuple[float, float]]) -> tuple[float, float]:
    """The point an annotation stands for (see the module's docstring)."""
    if kind in (SPOT, SPECIAL_SPOT):
        return coordinates[0]
    if kind == POLYGON and len(coordinates) >= 3:
        try:
            centroid = shapely.Polygon(coordinates).centroid
        except (ShapelyError, ValueError, TypeError) as err:
            raise PointsError(f"{at}: malformed polygon ({one_line(str(err))})") from None
        if not centroid.is_empty and math.isfinite(centroid.x) and math.isfinite(centroid.y):
            return float(centroid.x), float(centroid.y)
    xs, ys = zip(*coordinates)
    return (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
