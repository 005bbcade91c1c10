"""Property-based tests of every points parser (CSV, QuPath GeoJSON, grand-challenge JSON, SlideRunner SQLite,
MIDOG++ JSON, and the gzip / zip containers): whatever the input, the result is a well-formed `Points` or a
one-line `PointsError` naming the file, never another exception."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from points_files import SLIDERUNNER_SCHEMA, box, gc_point, gc_points, midogpp

from wsi_amf.errors import PointsError
from wsi_amf.points import SlideContext, read_points

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLIDES = [None, SlideContext(name="001.tiff", mpp=0.25, dimensions=(4000, 3000)), SlideContext(name="a.svs")]
SLIDE = st.sampled_from(SLIDES)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` three times in four, else `other` (so that both the readers' results and errors are reached)."""
    return st.one_of(valid, valid, valid, other)


def check(path: Path, *, slide: SlideContext | None = None, **options: Any) -> None:
    """Read `path`: a well-formed Points (finite coordinates; negative ones are kept: they lie outside the
    slide), or a one-line PointsError naming the file."""
    try:
        points = read_points(path, slide=slide, **options)
    except PointsError as err:
        message = str(err)
        assert "\n" not in message and "\r" not in message
        assert path.name in message
        event("PointsError")
        return
    event("points" if len(points) else "no points")
    assert points.xy.shape == (len(points), 2) and np.isfinite(points.xy).all()
    if points.score is not None:
        assert points.score.shape == (len(points),) and not np.isinf(points.score).any()
    assert all(len(values) == len(points) and all(isinstance(v, str) for v in values)
               for values in points.columns.values())


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def dump(data: Any) -> bytes:
    return json.dumps(data, allow_nan=True).encode()


# ---------------------------------------------------------------- bytes, any extension

SUFFIXES = st.sampled_from([".csv", ".geojson", ".json", ".sqlite", ".db", ".gz", ".geojson.gz", ".zip", ".dat"])
PREFIXES = st.sampled_from([b"", b"SQLite format 3\x00", b"\x1f\x8b\x08\x00", b"PK\x03\x04", b"PK\x05\x06", b"{", b"["])


@FUZZ
@given(suffix=SUFFIXES, prefix=PREFIXES, content=st.binary(max_size=300), slide=SLIDE)
def test_any_bytes(tmp_path: Path, suffix: str, prefix: bytes, content: bytes, slide: SlideContext | None) -> None:
    check(write(tmp_path, "fuzz" + suffix, prefix + content), slide=slide)


# ---------------------------------------------------------------- grand-challenge "Multiple points"

JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=True), st.text(max_size=4),
    st.sampled_from(["Multiple points", "Mulitple points", "mitotic figure", "non-mitotic figure", "Point"]),
)


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        JSON_SCALAR,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(keys), children, max_size=5),
        max_leaves=30,
    )


GC_KEYS = ["type", "points", "name", "point", "probability", "version", "major", "minor"]
COORDINATE = st.one_of(st.floats(min_value=-1, max_value=1e4), st.integers(-1, 10**6), st.floats(allow_nan=True))
MILLIMETRES = mostly(st.floats(min_value=0, max_value=2), COORDINATE)
GC_ENTRY = mostly(
    st.builds(gc_point, MILLIMETRES, MILLIMETRES, mostly(st.floats(0, 1), st.none() | st.floats(allow_nan=True)),
              st.sampled_from(["mitotic figure", "non-mitotic figure", "Non-Mitotic Figure", ""])),
    json_values(GC_KEYS),
)


@FUZZ
@given(data=json_values(GC_KEYS), slide=SLIDE, fmt=st.sampled_from([None, "gc-json"]))
def test_gc_json_structure(tmp_path: Path, data: Any, slide: SlideContext | None, fmt: str | None) -> None:
    check(write(tmp_path, "fuzz.json", dump(data)), slide=slide, fmt=fmt)


@FUZZ
@given(entries=st.lists(GC_ENTRY, max_size=6), kind=st.sampled_from(["Multiple points", "Mulitple points"]),
       slide=mostly(st.just(SLIDES[1]), SLIDE), min_score=st.none() | st.floats(0, 1))
def test_gc_json_entries(tmp_path: Path, entries: list[Any], kind: str, slide: SlideContext | None,
                         min_score: float | None) -> None:
    check(write(tmp_path, "fuzz.json", dump(gc_points(entries, kind=kind))), slide=slide, min_score=min_score)


# ---------------------------------------------------------------- MIDOG++

MIDOG_KEYS = ["images", "annotations", "categories", "id", "file_name", "image_id", "category_id", "bbox",
              "width", "height", "score", "name", "labels"]
NUMBER = st.one_of(st.integers(-10, 10**20), st.floats(allow_nan=True), st.sampled_from([True, None, "1", [1]]))


@FUZZ
@given(data=json_values(MIDOG_KEYS), slide=SLIDE)
def test_midogpp_structure(tmp_path: Path, data: Any, slide: SlideContext | None) -> None:
    if isinstance(data, dict):
        data.setdefault("images", [])
        data.setdefault("annotations", [])
    check(write(tmp_path, "fuzz.json", dump(data)), slide=slide)


@FUZZ
@given(
    images=st.lists(st.tuples(mostly(st.sampled_from([1, 2, "1"]), st.sampled_from([True, 2.0, None])),
                              st.sampled_from(["001.tiff", "a.svs", "A.SVS", ""]), NUMBER, NUMBER),
                    min_size=1, max_size=3),
    annotations=st.lists(st.tuples(mostly(st.sampled_from([1, 2, "1"]), NUMBER), mostly(st.sampled_from([1, 2]), NUMBER),
                                   mostly(st.builds(box, st.floats(0, 1e4), st.floats(0, 1e4)),
                                          st.builds(box, COORDINATE, COORDINATE) | st.lists(NUMBER, max_size=5) | NUMBER)),
                         max_size=5),
    slide=SLIDE,
    db_slide=st.none() | st.sampled_from(["001.tiff", "1", "b.svs"]),
)
def test_midogpp_fields(tmp_path: Path, images: list[Any], annotations: list[Any], slide: SlideContext | None,
                        db_slide: str | None) -> None:
    check(write(tmp_path, "fuzz.json", dump(midogpp(images, annotations))), slide=slide, db_slide=db_slide)


# ---------------------------------------------------------------- SlideRunner / EXACT SQLite

SQL_VALUE = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), st.text(max_size=5), st.binary(max_size=4),
)
COLUMNS = {
    "Slides": ["uid", "filename", "width", "height"],
    "Annotations": ["uid", "slide", "guid", "deleted", "type", "agreedClass"],
    "Annotations_coordinates": ["coordinateX", "coordinateY", "annoId", "orderIdx", "uid"],
    "Classes": ["uid", "name"],
}


@st.composite
def databases(draw: st.DrawFn) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Tables with some of SlideRunner's columns (untyped: values keep their type), rows of any values."""
    tables = {}
    for table, columns in COLUMNS.items():
        if draw(st.integers(0, 9)) == 0:
            continue  # the table is missing
        kept = [c for c in columns if draw(st.integers(0, 7)) > 0]
        small = st.one_of(st.integers(0, 3), st.sampled_from(["001.tiff", "a.svs", "x"]), SQL_VALUE)
        rows = draw(st.lists(st.tuples(*[small for _ in kept]), max_size=6))
        tables[table] = (kept, rows)
    return tables


@FUZZ
@given(tables=databases(), slide=SLIDE, db_slide=st.none() | st.sampled_from(["001.tiff", "1", "b.svs"]))
def test_sliderunner_any_tables(tmp_path: Path, tables: dict[str, Any], slide: SlideContext | None,
                                db_slide: str | None) -> None:
    path = tmp_path / "fuzz.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS Log (uid INTEGER)")  # never an empty (0-byte) database
        for table, (columns, rows) in tables.items():
            db.execute(f"CREATE TABLE {table} ({', '.join(columns) or 'unused'})")
            if columns:
                db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
    db.close()
    check(path, slide=slide, db_slide=db_slide)


@FUZZ
@given(
    rows=st.lists(st.tuples(mostly(st.just(1), st.integers(0, 3)), mostly(st.just(0), SQL_VALUE),
                            mostly(st.integers(1, 5), SQL_VALUE), mostly(st.integers(0, 3), SQL_VALUE),
                            mostly(st.integers(0, 5000) | st.floats(0, 5000), SQL_VALUE),
                            mostly(st.integers(0, 5000), SQL_VALUE), mostly(st.integers(0, 3), SQL_VALUE)),
                  min_size=1, max_size=8),
    slide=SLIDE,
    class_name=st.none() | st.just("mitotic figure"),
)
def test_sliderunner_schema_with_any_values(tmp_path: Path, rows: list[tuple[Any, ...]],
                                            slide: SlideContext | None, class_name: str | None) -> None:
    """SlideRunner's own schema (typed columns) holding any values: (slide, deleted, type, class, x, y, order)."""
    path = tmp_path / "fuzz.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.executescript(SLIDERUNNER_SCHEMA)
        db.executemany("INSERT INTO Slides (filename) VALUES (?)", [("001.tiff",), ("002.tiff",)])
        db.executemany("INSERT INTO Classes (name) VALUES (?)", [("mitotic figure",), ("not mitotic figure",)])
        for number, (slide_uid, deleted, kind, agreed, x, y, order) in enumerate(rows, start=1):
            db.execute("INSERT INTO Annotations (uid, slide, deleted, type, agreedClass) VALUES (?, ?, ?, ?, ?)",
                       (number, slide_uid, deleted, kind, agreed))
            db.execute("INSERT INTO Annotations_coordinates (coordinateX, coordinateY, annoId, orderIdx) "
                       "VALUES (?, ?, ?, ?)", (x, y, number, order))
    db.close()
    check(path, slide=slide, db_slide=None if slide is not None else "001.tiff", class_name=class_name)


# ---------------------------------------------------------------- containers around valid documents


def geojson_document() -> bytes:
    features = [{"type": "Feature", "id": "PathCellObject",
                 "geometry": {"type": "Point", "coordinates": [10 * i, 5 * i]},
                 "properties": {"object_type": "cell", "classification": {"name": "Mitosis", "colorRGB": -65536},
                                "measurements": [{"name": "score", "value": 0.1 * i}]}} for i in range(5)]
    return dump({"type": "FeatureCollection", "features": features})


@FUZZ
@given(container=st.sampled_from(["gz", "zip"]), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                                 max_size=3), cut=st.none() | st.integers(0, 400))
@example(container="zip", flips=[(191823, 0)], cut=None)  # a member name zeroed: ZipInfo.is_dir raised IndexError
def test_damaged_containers(tmp_path: Path, container: str, flips: list[tuple[int, int]], cut: int | None) -> None:
    document = geojson_document()
    if container == "gz":
        data = bytearray(gzip.compress(document))
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("objects.geojson", document)
        data = bytearray(buffer.getvalue())
    for offset, value in flips:
        data[offset % len(data)] = value
    if cut is not None:
        data = data[:cut]
    check(write(tmp_path, "objects.geojson." + container if container == "gz" else "objects.zip", bytes(data)))


# ---------------------------------------------------------------- QuPath GeoJSON of every version

QUPATH_KEYS = ["type", "features", "geometry", "nucleusGeometry", "coordinates", "properties", "classification",
               "name", "names", "colorRGB", "color", "measurements", "value", "id", "objectType", "object_type",
               "isLocked"]
QUPATH_SCALAR = st.sampled_from(["Feature", "FeatureCollection", "Point", "Polygon", "MultiPoint", "PathCellObject",
                                 "PathAnnotationObject", "cell", "detection", "score"])


@FUZZ
@given(data=st.recursive(
    st.one_of(JSON_SCALAR, QUPATH_SCALAR),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(QUPATH_KEYS), children,
                                                                       max_size=5),
    max_leaves=30,
))
def test_qupath_geojson_structure(tmp_path: Path, data: Any) -> None:
    check(write(tmp_path, "fuzz.geojson", dump(data)), fmt="geojson")


ANY = json_values(QUPATH_KEYS)
POSITION = st.lists(COORDINATE, min_size=2, max_size=3)
GEOMETRY = st.one_of(
    st.fixed_dictionaries({"type": st.just("Point"), "coordinates": POSITION}),
    st.fixed_dictionaries({"type": st.just("MultiPoint"), "coordinates": st.lists(POSITION, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.lists(st.lists(POSITION, max_size=5), max_size=2)}),
    ANY,
)
QUPATH_FEATURE = st.fixed_dictionaries(
    {"type": st.just("Feature"), "geometry": GEOMETRY},
    optional={
        "id": st.sampled_from(["PathCellObject", "PathDetectionObject", "4b9d8f0e-3c7a-4a55-9f1e-8f0a5d2c1b7e"]) | ANY,
        "nucleusGeometry": GEOMETRY,
        "properties": st.fixed_dictionaries({}, optional={
            "objectType": st.sampled_from(["cell", "detection"]) | ANY,
            "object_type": st.sampled_from(["cell", "annotation"]) | ANY,
            "classification": st.fixed_dictionaries({"name": st.text(max_size=4) | ANY},
                                                    optional={"colorRGB": st.integers(-2**31, 2**31)}) | ANY,
            "measurements": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["score", "p"]),
                                                            "value": NUMBER})) |
                            st.dictionaries(st.sampled_from(["score", "prob"]), NUMBER) | ANY,
        }) | ANY,
    },
)


@FUZZ
@given(features=st.lists(QUPATH_FEATURE, max_size=5), container=st.sampled_from(["list", "collection"]),
       score=st.none() | st.just(0.5))
def test_qupath_features(tmp_path: Path, features: list[Any], container: str, score: float | None) -> None:
    data = features if container == "list" else {"type": "FeatureCollection", "features": features}
    check(write(tmp_path, "fuzz.geojson", dump(data)), min_score=score)


# ---------------------------------------------------------------- CSV

CSV_CELL = mostly(st.integers(0, 10**6).map(str) | st.floats(0, 1e6).map(repr),
                  st.sampled_from(["", "-1", "nan", "inf", "1e999", "abc", '"', '"a,b"', " ", "0,5", "\r", "\n"]))


@FUZZ
@given(header=st.sampled_from(["x,y", "x;y;score", "id\tcx\tcy\tprob", "coordinateX,coordinateY,label", "a,b", ""]),
       rows=st.lists(st.lists(CSV_CELL, min_size=2, max_size=4), max_size=6),
       delimiter=mostly(st.just(","), st.sampled_from([";", "\t"])), min_score=st.none() | st.just(0.5),
       suffix=st.sampled_from([".csv", ".csv.gz"]))
def test_csv_rows(tmp_path: Path, header: str, rows: list[list[str]], delimiter: str, min_score: float | None,
                  suffix: str) -> None:
    data = (header + "\n" + "".join(delimiter.join(row) + "\n" for row in rows)).encode()
    check(write(tmp_path, "fuzz" + suffix, gzip.compress(data) if suffix.endswith(".gz") else data),
          min_score=min_score)


# ---------------------------------------------------------------- valid files: exact results against an oracle


def distinct(xy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return list(dict.fromkeys((x + 0.0, y + 0.0) for x, y in xy))


@FUZZ
@given(entries=st.lists(st.tuples(st.floats(0, 2), st.floats(0, 1.5), st.none() | st.floats(0, 1), st.booleans()),
                        max_size=20))
def test_gc_json_valid_files_convert_exactly(tmp_path: Path, entries: list[tuple[float, float, Any, bool]]) -> None:
    slide = SLIDES[1]  # 0.25 um/px, 1 x 0.75 mm: 2 x 1.5 mm is the limit of plausible millimetres
    points = [gc_point(x, y, p, "non-mitotic figure" if flagged else "mitotic figure") for x, y, p, flagged in entries]
    read = read_points(write(tmp_path, "det.json", dump(gc_points(points))), slide=slide)
    expected = distinct([(x * 1000 / 0.25, y * 1000 / 0.25) for x, y, _, _ in entries])
    np.testing.assert_allclose(read.xy.reshape(-1, 2), np.array(expected).reshape(-1, 2), rtol=1e-12)
    firsts = {}
    for x, y, p, flagged in entries:
        firsts.setdefault((x * 4000 + 0.0, y * 4000 + 0.0), (p, flagged))
    assert read.columns["below_detector_threshold"] == ["yes" if f else "no" for _, f in firsts.values()]
    if any(p is not None for _, _, p, _ in entries):
        np.testing.assert_array_equal(read.score, [np.nan if p is None else p for p, _ in firsts.values()])


@FUZZ
@given(annotations=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 1), st.integers(1, 2), st.integers(0, 5000),
                                      st.integers(0, 5000)), max_size=25),
       slide=st.sampled_from(["s1.svs", "s2.svs", "s3.svs"]), class_name=st.none() | st.just("mitotic figure"))
def test_sliderunner_valid_databases_count_exactly(tmp_path: Path, annotations: list[tuple[int, ...]], slide: str,
                                                   class_name: str | None) -> None:
    from points_files import Annotation, write_sliderunner

    path = tmp_path / "db.sqlite"
    path.unlink(missing_ok=True)
    write_sliderunner(path, [("s1.svs", None, None), ("s2.svs", None, None), ("s3.svs", None, None)],
                      ["mitotic figure", "not mitotic figure"],
                      [Annotation(s, [(x, y)], agreed_class=c, deleted=d) for s, d, c, x, y in annotations])
    points = read_points(path, slide=SlideContext(name=slide), class_name=class_name)
    wanted = int(slide[1])
    expected = distinct([(x, y) for s, d, c, x, y in annotations
                         if s == wanted and not d and (class_name is None or c == 1)])
    np.testing.assert_array_equal(points.xy.reshape(-1, 2), np.array(expected, dtype=float).reshape(-1, 2))


@FUZZ
@given(annotations=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 2), st.floats(0, 1e5), st.floats(0, 1e5)),
                            max_size=25),
       slide=st.sampled_from(["001.tiff", "002.tiff", "003.tiff"]))
def test_midogpp_valid_files_count_exactly(tmp_path: Path, annotations: list[tuple[int, int, float, float]],
                                           slide: str) -> None:
    images = [(i, f"{i:03d}.tiff", 100_000, 100_000) for i in (1, 2, 3)]
    data = midogpp(images, [(image, cat, [x, y, x + 50, y + 50]) for image, cat, x, y in annotations])
    points = read_points(write(tmp_path, "MIDOG++.json", dump(data)), slide=SlideContext(name=slide))
    wanted = int(slide[:3])
    expected = distinct([(x + 25, y + 25) for image, _, x, y in annotations if image == wanted])
    np.testing.assert_allclose(points.xy.reshape(-1, 2), np.array(expected).reshape(-1, 2), rtol=1e-12)
