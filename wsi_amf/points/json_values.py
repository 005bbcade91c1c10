"""Checking values of the JSON formats (QuPath GeoJSON, grand-challenge points, MIDOG++): every helper
raises `PointsError` whose message starts with `where` (the file and the place in it)."""

from __future__ import annotations

import math
from typing import Any

from wsi_amf.errors import PointsError
from wsi_amf.files import is_number, json_float, json_snippet, json_type, json_xy


def list_of(where: str, what: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise PointsError(f"{where}: {what} is {json_type(value)}, expected a list")
    return value


def object_of(where: str, what: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PointsError(f"{where}: {what} is {json_type(value)}, expected an object")
    return value


def text_field(where: str, what: str, value: Any) -> str:
    """A string-like field as text ('' when absent); numbers are written out, anything else is an error."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if is_number(value):
        return str(value)
    raise PointsError(f"{where}: {what} is {json_type(value)}, expected a string")


def optional_score(where: str, what: str, value: Any) -> float:
    """A detector score: NaN when absent (null or NaN), a finite number otherwise."""
    if value is None:
        return math.nan
    if not is_number(value):
        raise PointsError(f"{where}: {what} is {json_type(value)}, expected a number")
    number = json_float(value)
    if math.isinf(number):
        raise PointsError(f"{where}: {what} is not finite")
    return number


def position(where: str, value: Any) -> tuple[float, float]:
    """[x, y] (a third coordinate, z, is ignored): finite numbers. A negative one is kept: it lies left of or
    above the slide, and screening reports it as outside the slide, like one beyond the slide's width."""
    xy = json_xy(value)
    if xy is None:
        raise PointsError(f"{where}: coordinates are not [x, y] numbers ({json_snippet(value)})")
    x, y = xy
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointsError(f"{where}: coordinates are not finite ({json_snippet(value)})")
    return x, y


def identifier(where: str, what: str, value: Any) -> int | str:
    """An id (a number or a string) usable as a key."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PointsError(f"{where}: {what} is {json_type(value)}, expected a number or a string")
