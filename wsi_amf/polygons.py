"""GeoJSON Polygon and MultiPolygon coordinates read into rings of (x, y) positions: the one parser of the ROI
reader (``roi``) and of the GeoJSON points reader (``points.geojson_format``), each naming problems in its
own words and raising its own error."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from .errors import WsiAmfError
from .files import json_type

Ring = list[tuple[float, float]]


@dataclass(frozen=True)
class Wording:
    """How a reader words a polygon's problems: each message follows ``"{where}: "``; ``{type}`` is what
    was found instead of a list."""

    error: type[WsiAmfError]
    #: geometry type -> the message when its coordinates are not a list
    coordinates: Mapping[str, str]
    #: a polygon (a list of rings) that is not a list
    polygon: str
    #: a ring (a list of positions) that is not a list
    ring: str
    #: one position: ``position(where, value)`` -> (x, y), raising the reader's error
    position: Callable[[str, Any], tuple[float, float]]
    #: a ring needs this many distinct positions (0: any number), else ``too_few``
    min_distinct: int = 0
    too_few: str = ""


def polygon_rings(where: str, kind: str, coordinates: Any, wording: Wording) -> Iterator[list[Ring]]:
    """The polygons of a ``Polygon`` (one) or a ``MultiPolygon`` (each member), one at a time, each as its
    list of rings (an empty list for a polygon without rings)."""
    _check_list(where, coordinates, wording.coordinates[kind], wording)
    for rings in coordinates if kind == "MultiPolygon" else [coordinates]:
        _check_list(where, rings, wording.polygon, wording)
        yield [_ring(where, ring, wording) for ring in rings]


def _ring(where: str, ring: Any, wording: Wording) -> Ring:
    _check_list(where, ring, wording.ring, wording)
    positions = [wording.position(where, p) for p in ring]
    if len(set(positions)) < wording.min_distinct:
        raise wording.error(f"{where}: {wording.too_few}")
    return positions


def _check_list(where: str, value: Any, message: str, wording: Wording) -> None:
    if not isinstance(value, list):
        raise wording.error(f"{where}: {message.format(type=json_type(value))}")
