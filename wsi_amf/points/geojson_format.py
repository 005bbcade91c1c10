"""QuPath GeoJSON points files: a FeatureCollection (or a list of Features, or one Feature) whose
Point, MultiPoint or Polygon geometries (a polygon counts as its centroid) are the points."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.errors import ShapelyError

from wsi_amf.errors import PointsError

from .model import SCORE_COLUMNS, Table, logger, one_line, quote, quoted_list, warn_missing_scores

_GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)


def read_table(path: Path, text: str, *, score_col: str | None) -> Table:
    """The points in GeoJSON `text`: one per Point, per MultiPoint member, per Polygon (its centroid)."""
    features = _features(path, _load_json(path, text))
    xy: list[tuple[float, float]] = []
    # one row per usable feature: (feature number, number of points, columns, measurements)
    rows: list[tuple[int, int, dict[str, str], dict[str, Any]]] = []
    skipped: Counter[str] = Counter()
    for number, feature in enumerate(features, start=1):
        where = f"points file {path} feature {number}"
        if not isinstance(feature, dict):
            raise PointsError(f"{where} is {_json_type(feature)}, expected an object")
        kind = feature.get("type", "Feature")
        if isinstance(kind, str) and kind in _GEOMETRY_TYPES:
            feature = {"type": "Feature", "geometry": feature}
        elif kind != "Feature":
            raise PointsError(f"{where} has type {quote(str(kind))}, expected 'Feature'")
        geometry = feature.get("nucleusGeometry")
        points, why = _geometry_points(where, geometry if geometry is not None else feature.get("geometry"))
        if why is not None:
            skipped[why] += 1
            continue
        properties = feature.get("properties")
        if properties is None:
            properties = {}
        elif not isinstance(properties, dict):
            raise PointsError(f"{where}: 'properties' is {_json_type(properties)}, expected an object")
        object_type = properties.get("objectType", properties.get("object_type", feature.get("objectType")))
        columns = {
            "id": _text_field(where, "'id'", feature.get("id")),
            "classification": _classification(where, properties.get("classification")),
            "name": _text_field(where, "'name'", properties.get("name")),
            "object_type": _text_field(where, "'objectType'", object_type),
        }
        xy.extend(points)
        rows.append((number, len(points), columns, _measurements(where, properties.get("measurements"))))

    if skipped:
        summary = ", ".join(f"{count} {why}" for why, count in skipped.most_common())
        if not rows:
            raise PointsError(
                f"points file {path}: none of its {len(features)} objects has a Point, MultiPoint or "
                f"Polygon geometry (found: {summary})"
            )
        logger.warning("points file %s: skipped %d objects without a usable geometry (%s)",
                       path, sum(skipped.values()), summary)

    score_name = _score_name(path, [m for _, _, _, m in rows], score_col)
    score = None
    if score_name is not None:
        per_feature = [_score_value(f"points file {path} feature {n}", score_name, m) for n, _, _, m in rows]
        score = np.repeat(np.array(per_feature, dtype=np.float64), [count for _, count, _, _ in rows])
        warn_missing_scores(path, score, score_name)
    columns: dict[str, list[str]] = {}
    for name in ("id", "classification", "name", "object_type"):
        values = [c[name] for _, count, c, _ in rows for _ in range(count)]
        if name in ("id", "classification") or any(values):
            columns[name] = values
    return Table(
        xy=np.array(xy, dtype=np.float64).reshape(-1, 2),
        score=score,
        score_name=score_name,
        columns=columns,
        class_column="classification",
    )


# ---------------------------------------------------------------- JSON values


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _load_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PointsError(
            f"points file {path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    except (ValueError, RecursionError) as err:
        raise PointsError(f"points file {path}: not valid JSON ({one_line(str(err))})") from None


def _features(path: Path, data: Any) -> list[Any]:
    expected = "expected a FeatureCollection, a list of Features or a Feature"
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise PointsError(f"points file {path}: the top level is {_json_type(data)}; {expected}")
    kind = data.get("type")
    if not isinstance(kind, (str, type(None))):
        raise PointsError(f"points file {path}: the top level's 'type' is {_json_type(kind)}, expected a string")
    if kind == "FeatureCollection" or (kind is None and "features" in data):
        features = data.get("features")
        if not isinstance(features, list):
            raise PointsError(f"points file {path}: 'features' is {_json_type(features)}, expected a list")
        return features
    if kind == "Feature" or kind in _GEOMETRY_TYPES:
        return [data]
    if kind in ("Multiple points", "Mulitple points"):
        raise PointsError(
            f"points file {path} is a grand-challenge 'Multiple points' file (millimetre coordinates), "
            "not QuPath GeoJSON"
        )
    raise PointsError(f"points file {path}: the top level has type {quote(str(kind))}; {expected}")


# ---------------------------------------------------------------- geometries


def _position(where: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) < 2 or not all(_is_number(c) for c in value[:2]):
        raise PointsError(f"{where}: coordinates are not [x, y] numbers ({one_line(json.dumps(value), 40)})")
    try:
        x, y = float(value[0]), float(value[1])
    except OverflowError:
        x = y = math.inf
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointsError(f"{where}: coordinates are not finite ({one_line(json.dumps(value), 40)})")
    if x < 0 or y < 0:
        raise PointsError(
            f"{where}: coordinates are negative ({x:g}, {y:g}); they are level-0 pixels from the top-left"
        )
    return x, y


def _list_of(where: str, what: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise PointsError(f"{where}: {what} is {_json_type(value)}, expected a list")
    return value


def _rings(where: str, value: Any) -> list[list[tuple[float, float]]]:
    rings = _list_of(where, "a polygon", value)
    return [[_position(where, c) for c in _list_of(where, "a ring", ring)] for ring in rings]


def _geometry_points(where: str, geometry: Any) -> tuple[list[tuple[float, float]], str | None]:
    """The points a geometry gives, or ([], why it was skipped)."""
    if geometry is None:
        return [], "null geometry"
    if not isinstance(geometry, dict):
        raise PointsError(f"{where}: the geometry is {_json_type(geometry)}, expected an object")
    kind = geometry.get("type")
    if not isinstance(kind, str):
        raise PointsError(f"{where}: the geometry has no 'type'")
    coordinates = geometry.get("coordinates")
    if kind == "Point":
        return ([], "empty Point") if coordinates in (None, []) else ([_position(where, coordinates)], None)
    if kind == "MultiPoint":
        coordinates = [] if coordinates is None else coordinates
        points = [_position(where, c) for c in _list_of(where, "MultiPoint coordinates", coordinates)]
        return (points, None) if points else ([], "empty MultiPoint")
    if kind in ("Polygon", "MultiPolygon"):
        coordinates = [] if coordinates is None else coordinates
        if kind == "Polygon":
            polygons = [_rings(where, coordinates)]
        else:
            polygons = [_rings(where, p) for p in _list_of(where, "MultiPolygon coordinates", coordinates)]
        polygons = [rings for rings in polygons if rings and rings[0]]
        if not polygons:
            return [], f"empty {kind}"
        try:
            shape = shapely.MultiPolygon([(rings[0], rings[1:]) for rings in polygons])
            centroid = shape.centroid
        except (ShapelyError, ValueError, TypeError) as err:
            raise PointsError(f"{where}: malformed {kind} ({one_line(str(err))})") from None
        if centroid.is_empty:
            return [], f"empty {kind}"
        return [_position(where, [centroid.x, centroid.y])], None
    return [], kind


# ---------------------------------------------------------------- properties and scores


def _text_field(where: str, what: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)
    raise PointsError(f"{where}: {what} is {_json_type(value)}, expected a string")


def _classification(where: str, value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, dict):
        raise PointsError(f"{where}: 'classification' is {_json_type(value)}, expected an object or a string")
    names = value.get("names")
    if names is not None:
        names = _list_of(where, "'classification.names'", names)
        if not all(isinstance(name, str) for name in names):
            raise PointsError(f"{where}: 'classification.names' holds something other than strings")
        return ": ".join(names)
    return _text_field(where, "'classification.name'", value.get("name"))


def _measurements(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if not isinstance(value, list):
        raise PointsError(f"{where}: 'measurements' is {_json_type(value)}, expected an object or a list")
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
    if value is None:
        return math.nan
    if not _is_number(value):
        raise PointsError(f"{where}: measurement {quote(name)} is {_json_type(value)}, expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isinf(number):
        raise PointsError(f"{where}: measurement {quote(name)} is not finite")
    return number


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
