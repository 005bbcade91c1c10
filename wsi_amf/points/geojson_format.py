"""QuPath GeoJSON points files (QuPath 0.2 to 0.7): a FeatureCollection (or a list of Features, or one
Feature) whose Point, MultiPoint or Polygon geometries (a polygon counts as its centroid, a cell as its
nucleus' centroid) are the points. Old spellings are read too: the object type in `object_type` (0.3) or
in a class-name `id` (0.2), measurements as a list of `{name, value}`, classifications with `colorRGB`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.errors import ShapelyError

from wsi_amf.errors import PointsError
from wsi_amf.files import geojson_features, json_type
from wsi_amf.polygons import Wording, polygon_rings

from . import gc_json
from .json_values import list_of, optional_score, position, text_field
from .model import SCORE_COLUMNS, Table, logger, one_line, quote, quoted_list

_GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)
_WORDING = Wording(
    error=PointsError,
    coordinates={"Polygon": "a polygon is {type}, expected a list",
                 "MultiPolygon": "MultiPolygon coordinates is {type}, expected a list"},
    polygon="a polygon is {type}, expected a list",
    ring="a ring is {type}, expected a list",
    position=position,
)
#: QuPath 0.2 wrote the object's class name as the Feature's `id`.
_LEGACY_TYPE_IDS = {
    "PathAnnotationObject": "annotation", "PathDetectionObject": "detection", "PathCellObject": "cell",
    "PathTileObject": "tile", "TMACoreObject": "tmaCore", "PathRootObject": "root",
}


def read_table(path: Path, documents: Sequence[tuple[str, Any]], *, score_col: str | None) -> Table:
    """The points in parsed GeoJSON `documents`, each `(where, data)` (`where` names the file, or the
    member of a zip archive, in messages): one per Point, per MultiPoint member, per Polygon (its centroid)."""
    xy: list[tuple[float, float]] = []
    # one row per usable feature: (where, number of points, columns, measurements)
    rows: list[tuple[str, int, dict[str, str], dict[str, Any]]] = []
    skipped: Counter[str] = Counter()
    n_features = 0
    for prefix, data in documents:
        features = _features(prefix, data)
        n_features += len(features)
        for number, feature in enumerate(features, start=1):
            where = f"{prefix} feature {number}"
            found = _feature(where, feature)
            if isinstance(found, str):
                skipped[found] += 1
                continue
            points, carried, measurements = found
            xy.extend(points)
            rows.append((where, len(points), carried, measurements))

    if skipped:
        summary = ", ".join(f"{count} {why}" for why, count in skipped.most_common())
        if not rows:
            raise PointsError(
                f"points file {path}: none of its {n_features} objects has a Point, MultiPoint or "
                f"Polygon geometry (found: {summary})"
            )
        logger.warning("points file %s: skipped %d objects without a usable geometry (%s)",
                       path, sum(skipped.values()), summary)

    score_name = _score_name(path, [m for _, _, _, m in rows], score_col)
    score = None
    if score_name is not None:
        per_feature = [_score_value(where, score_name, m) for where, _, _, m in rows]
        score = np.repeat(np.array(per_feature, dtype=np.float64), [count for _, count, _, _ in rows])
    columns: dict[str, list[str]] = {}
    for name in ("id", "classification", "name", "object_type"):
        values = [c[name] for _, count, c, _ in rows for _ in range(count)]
        if name in ("id", "classification") or any(values):
            columns[name] = values
    return Table.of(path, xy, columns=columns, class_column="classification", score=score, score_name=score_name)


def _feature(where: str, feature: Any) -> tuple[list[tuple[float, float]], dict[str, str], dict[str, Any]] | str:
    """A feature's points, carried columns and measurements; or why it has no usable geometry."""
    if not isinstance(feature, dict):
        raise PointsError(f"{where} is {json_type(feature)}, expected an object")
    kind = feature.get("type", "Feature")
    if isinstance(kind, str) and kind in _GEOMETRY_TYPES:
        feature = {"type": "Feature", "geometry": feature}
    elif kind != "Feature":
        raise PointsError(f"{where} has type {quote(str(kind))}, expected 'Feature'")
    nucleus = feature.get("nucleusGeometry")
    points, why = _geometry_points(where, nucleus if nucleus is not None else feature.get("geometry"))
    if why is not None:
        return why
    properties = feature.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise PointsError(f"{where}: 'properties' is {json_type(properties)}, expected an object")
    feature_id = text_field(where, "'id'", feature.get("id"))
    legacy_type = _LEGACY_TYPE_IDS.get(feature_id)
    object_type = next(
        (value for value in (properties.get("objectType"), properties.get("object_type"), properties.get("type"),
                             feature.get("objectType"), legacy_type) if value is not None),
        None,
    )
    columns = {
        "id": "" if legacy_type is not None else feature_id,
        "classification": _classification(where, properties.get("classification")),
        "name": text_field(where, "'name'", properties.get("name")),
        "object_type": text_field(where, "'objectType'", object_type),
    }
    return points, columns, _measurements(where, properties.get("measurements"))


# ---------------------------------------------------------------- containers and geometries


def _features(where: str, data: Any) -> list[Any]:
    expected = "expected a FeatureCollection, a list of Features or a Feature"
    kind = data.get("type") if isinstance(data, dict) else None
    if gc_json.is_gc_json(data):
        raise PointsError(
            f"{where} is a grand-challenge 'Multiple points' file (millimetre coordinates), not QuPath GeoJSON; "
            "read it as --points-format gc-json"
        )
    if isinstance(kind, str) and kind not in ("FeatureCollection", "Feature") and kind not in _GEOMETRY_TYPES:
        raise PointsError(f"{where}: the top level has type {quote(kind)}; {expected}")
    return geojson_features(data, where=where, error=PointsError, expected=expected)


def _geometry_points(where: str, geometry: Any) -> tuple[list[tuple[float, float]], str | None]:
    """The points a geometry gives, or ([], why it was skipped)."""
    if geometry is None:
        return [], "null geometry"
    if not isinstance(geometry, dict):
        raise PointsError(f"{where}: the geometry is {json_type(geometry)}, expected an object")
    kind = geometry.get("type")
    if not isinstance(kind, str):
        raise PointsError(f"{where}: the geometry has no 'type'")
    coordinates = geometry.get("coordinates")
    if kind == "Point":
        return ([], "empty Point") if coordinates in (None, []) else ([position(where, coordinates)], None)
    if kind == "MultiPoint":
        coordinates = [] if coordinates is None else coordinates
        points = [position(where, c) for c in list_of(where, "MultiPoint coordinates", coordinates)]
        return (points, None) if points else ([], "empty MultiPoint")
    if kind in ("Polygon", "MultiPolygon"):
        coordinates = [] if coordinates is None else coordinates
        polygons = [rings for rings in polygon_rings(where, kind, coordinates, _WORDING) if rings and rings[0]]
        if not polygons:
            return [], f"empty {kind}"
        try:
            shape = shapely.MultiPolygon([(rings[0], rings[1:]) for rings in polygons])
            centroid = shape.centroid
        except (ShapelyError, ValueError, TypeError) as err:
            raise PointsError(f"{where}: malformed {kind} ({one_line(str(err))})") from None
        if centroid.is_empty:
            return [], f"empty {kind}"
        return [position(where, [centroid.x, centroid.y])], None
    return [], kind


# ---------------------------------------------------------------- properties and scores


def _classification(where: str, value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, dict):
        raise PointsError(f"{where}: 'classification' is {json_type(value)}, expected an object or a string")
    names = value.get("names")
    if names is not None:
        names = list_of(where, "'classification.names'", names)
        if not all(isinstance(name, str) for name in names):
            raise PointsError(f"{where}: 'classification.names' holds something other than strings")
        return ": ".join(names)
    return text_field(where, "'classification.name'", value.get("name"))


def _measurements(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise PointsError(f"{where}: 'measurements' is {json_type(value)}, expected an object or a list")
    found: dict[str, Any] = {}
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise PointsError(f"{where}: a 'measurements' entry is not a {{name, value}} object")
        found[item["name"]] = item.get("value")
    return found


def _score_value(where: str, name: str, measurements: dict[str, Any]) -> float:
    value = measurements.get(name)
    if value is None:
        lowered = [v for k, v in measurements.items() if k.lower() == name.lower()]
        value = lowered[0] if lowered else None
    return optional_score(where, f"measurement {quote(name)}", value)


def _score_name(path: Path, measurements: list[dict[str, Any]], score_col: str | None) -> str | None:
    names = list(dict.fromkeys(name for m in measurements for name in m))
    if score_col is not None and score_col in names:
        return score_col
    for wanted in (score_col,) if score_col is not None else SCORE_COLUMNS:
        matches = [name for name in names if name.lower() == wanted.lower()]
        if matches:
            return matches[0]  # the first spelling in file order
    if score_col is not None:
        raise PointsError(
            f"points file {path}: no measurement named {quote(score_col)} (measurements: {quoted_list(names)})"
        )
    return None
