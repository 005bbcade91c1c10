"""Regions of interest: QuPath annotation GeoJSON polygons in level-0 pixels, read with shapely.

``read_roi(path)`` returns a :class:`Roi`, the union of every Polygon / MultiPolygon of the file (holes kept,
self-intersecting rings repaired with ``make_valid``, overlapping annotations counted once). QuPath writes a
FeatureCollection; a Feature, a list of Features and a bare geometry read the same way. Points and lines are
skipped with a warning; a file without any polygon is an error. ``Roi.on_slide`` clips the region to the slide
(and refuses one that misses it, or whose coordinates look like millimetres); ``roi_summary`` gives the
screening summary's ``roi`` entry: area in mm² and mitotic-figure densities per mm² and per 2 mm² (the unit
of breast mitotic counts).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RoiError, one_line
from .files import geojson_features, json_snippet, json_type, json_xy, load_json, read_text
from .polygons import Ring, Wording, polygon_rings

log = logging.getLogger(__name__)
BREAST_COUNT_AREA_MM2 = 2.0  # breast mitotic counts are reported per 2 mm²
_POLYGONAL = ("Polygon", "MultiPolygon")
_OTHER_GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString")
_MAX_NESTING = 16  # GeometryCollections inside GeometryCollections


@dataclass(frozen=True)
class Roi:
    """A region in level-0 pixel coordinates: ``geometry`` is a shapely (Multi)Polygon of positive area."""

    source: Path
    geometry: Any
    n_polygons: int

    @property
    def area_px(self) -> float:
        """Area in square level-0 pixels."""
        return float(self.geometry.area)

    def area_mm2(self, mpp: float) -> float:
        return self.area_px * (mpp / 1000.0) ** 2

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Per point (``[N, 2]`` level-0 pixels): inside the region or on its boundary."""
        import shapely

        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if len(xy) == 0:
            return np.zeros(0, dtype=bool)
        shapely.prepare(self.geometry)
        return np.asarray(shapely.intersects_xy(self.geometry, xy[:, 0], xy[:, 1]), dtype=bool)

    def on_slide(self, width: int, height: int, mpp: float) -> Roi:
        """The part of the region on a ``width`` x ``height`` slide; RoiError when less than a pixel is left."""
        import shapely

        clipped = self.geometry.intersection(shapely.box(0, 0, width, height))
        if clipped.area >= 1.0:
            return Roi(source=self.source, geometry=clipped, n_polygons=self.n_polygons)
        x0, y0, x1, y1 = self.geometry.bounds
        w_mm, h_mm = width * mpp / 1000.0, height * mpp / 1000.0
        if x0 >= 0 and y0 >= 0 and x1 <= w_mm and y1 <= h_mm:
            raise RoiError(
                f"ROI file {self.source}: its polygons lie within {x1:g} x {y1:g}, the slide's size in millimetres "
                f"({w_mm:g} x {h_mm:g}); ROI coordinates must be level-0 pixels, not millimetres"
            )
        raise RoiError(
            f"ROI file {self.source}: its polygons (x {x0:g}..{x1:g}, y {y0:g}..{y1:g}) do not overlap the slide "
            f"({width} x {height} pixels); is it the ROI of another slide?"
        )


def roi_summary(roi: Roi, *, mpp: float, n_mf: int, n_amf: int) -> dict[str, Any]:
    """The summary's ``roi`` entry: area and densities of all mitotic figures (MF) and atypical ones (AMF)."""
    area = roi.area_mm2(mpp)
    return {
        "path": str(roi.source),
        "n_polygons": roi.n_polygons,
        "area_px": roi.area_px,
        "area_mm2": area,
        "n_mf": n_mf,
        "n_amf": n_amf,
        "mf_per_mm2": n_mf / area,
        "amf_per_mm2": n_amf / area,
        "mf_per_2mm2": n_mf / area * BREAST_COUNT_AREA_MM2,
        "amf_per_2mm2": n_amf / area * BREAST_COUNT_AREA_MM2,
    }


def read_roi(path: str | Path) -> Roi:
    """The union of the polygons of a QuPath annotation GeoJSON file (level-0 pixels). Raises RoiError."""
    import shapely
    from shapely.errors import ShapelyError

    path = Path(path)
    data = load_json(read_text(path, what="ROI file", error=RoiError), where=f"ROI file {path}", error=RoiError)
    polygons: list[Any] = []
    skipped: Counter[str] = Counter()
    objects = _objects(path, data)
    for number, obj in enumerate(objects, start=1):
        where = f"ROI file {path} object {number}"
        if not isinstance(obj, dict):
            raise RoiError(f"{where} is {json_type(obj)}, expected a GeoJSON Feature")
        is_feature = obj.get("type") == "Feature" or ("geometry" in obj and "coordinates" not in obj)
        geometry = obj.get("geometry") if is_feature else obj
        if geometry is None:
            skipped["without geometry"] += 1
            continue
        _collect(where, geometry, polygons, skipped, depth=0)
    if skipped:
        found = ", ".join(f"{count} {kind}" for kind, count in skipped.most_common())
        if not polygons:
            raise RoiError(f"ROI file {path}: no Polygon or MultiPolygon with an area among its {len(objects)} objects (found: {found})")
        log.warning("ROI file %s: skipped objects that are not polygons (%s)", path, found)
    if not polygons:
        raise RoiError(f"ROI file {path}: no Polygon or MultiPolygon (the file holds no objects)")
    try:
        geometry = shapely.union_all(polygons)
        area = float(geometry.area)
    except (ShapelyError, ValueError) as exc:
        raise RoiError(f"ROI file {path}: the polygons cannot be combined ({one_line(exc)})") from None
    if not (math.isfinite(area) and area > 0):
        raise RoiError(f"ROI file {path}: its polygons enclose no finite area")
    return Roi(source=path, geometry=geometry, n_polygons=len(polygons))


# ------------------------------------------------------------------------------------------ reading


def _objects(path: Path, data: Any) -> list[Any]:
    return geojson_features(data, where=f"ROI file {path}", error=RoiError,
                            expected="expected a FeatureCollection, a list of Features, a Feature or a geometry")


def _collect(where: str, geometry: Any, polygons: list[Any], skipped: Counter[str], *, depth: int) -> None:
    """Append the shapely polygons of a GeoJSON geometry; count what is not polygonal."""
    if not isinstance(geometry, dict):
        raise RoiError(f"{where}: the geometry is {json_type(geometry)}, expected an object")
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list):
            raise RoiError(f"{where}: 'geometries' is {json_type(parts)}, expected a list")
        if depth >= _MAX_NESTING:
            raise RoiError(f"{where}: GeometryCollections nested more than {_MAX_NESTING} deep")
        for part in parts:
            _collect(where, part, polygons, skipped, depth=depth + 1)
        return
    if kind in _OTHER_GEOMETRIES:
        skipped[str(kind)] += 1
        return
    if kind not in _POLYGONAL:
        raise RoiError(f"{where}: geometry type {json_snippet(kind)} is not a GeoJSON geometry")
    for rings in polygon_rings(where, kind, geometry.get("coordinates"), _WORDING):
        polygon = _polygon(where, rings)
        if polygon is None:
            skipped[f"{kind} without area"] += 1
        else:
            polygons.append(polygon)


def _polygon(where: str, rings: list[Ring]) -> Any:
    """A valid shapely polygon (or multipolygon, once repaired) from its rings; None when empty."""
    import shapely
    from shapely.errors import ShapelyError

    if not rings:
        return None
    try:
        polygon = shapely.Polygon(rings[0], rings[1:])
        if not polygon.is_valid:
            polygon = shapely.make_valid(polygon)
            polygon = shapely.union_all([p for p in shapely.get_parts(polygon) if p.geom_type in _POLYGONAL])
    except (ShapelyError, ValueError) as exc:
        raise RoiError(f"{where}: malformed polygon ({one_line(exc)})") from None
    return None if polygon.is_empty else polygon


def _position(where: str, value: Any) -> tuple[float, float]:
    xy = json_xy(value)
    if xy is None:
        raise RoiError(f"{where}: a position is not [x, y] numbers ({json_snippet(value)})")
    if not (math.isfinite(xy[0]) and math.isfinite(xy[1])):
        raise RoiError(f"{where}: a position is not finite ({json_snippet(value)})")
    return xy


_WORDING = Wording(
    error=RoiError,
    coordinates={kind: f"the {kind}'s coordinates are {{type}}, expected a list" for kind in _POLYGONAL},
    polygon="a polygon is {type}, expected a list of rings",
    ring="a polygon ring is {type}, expected a list of [x, y] positions",
    position=_position,
    min_distinct=3,
    too_few="a polygon ring has fewer than 3 distinct positions",
)
