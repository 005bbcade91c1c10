"""Tests for wsi_amf.points: reading candidate points from CSV and QuPath GeoJSON files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsi_amf.errors import OptionError, PointsError
from wsi_amf.points import Points, read_points

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MIDOG25_CSV = SHARED_DATA / "formats" / "MIDOG25_Atypical_Classification_Train_Set.csv"
AMIBR_CSV = SHARED_DATA / "amibr" / "AMI-BR.csv"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def write_json(tmp_path: Path, data: Any, name: str = "points.geojson") -> Path:
    return write(tmp_path, name, json.dumps(data))


def feature(geometry: Any, **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def point(x: float, y: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [x, y]}


def collection(*features: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def read_error(path: Path, **options: Any) -> str:
    with pytest.raises(PointsError) as info:
        read_points(path, **options)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    return message


# ---------------------------------------------------------------- CSV: columns


@pytest.mark.parametrize(
    ("x_name", "y_name"),
    [
        ("x", "y"),
        ("X", "Y"),
        ("coordinateX", "coordinateY"),
        ("COORDINATEX", "coordinatey"),
        ("centroid_x", "centroid_y"),
        ("Centroid_X", "Centroid_Y"),
        ("centroidX", "centroidY"),
        ("cx", "cy"),
        ("CX", "CY"),
        ("x_px", "y_px"),
        ("pos_x", "pos_y"),
        ("center_x", "center_y"),
        ("Center_X", "Center_Y"),
    ],
)
def test_csv_header_spellings(tmp_path: Path, x_name: str, y_name: str) -> None:
    path = write(tmp_path, "det.csv", f"{x_name},{y_name}\n10,20\n30.5,40.25\n")
    points = read_points(path)
    assert isinstance(points, Points)
    assert points.source == path
    assert len(points) == 2
    assert points.xy.dtype == np.float64
    np.testing.assert_array_equal(points.xy, [[10, 20], [30.5, 40.25]])
    assert points.score is None and points.score_name is None
    assert points.columns == {}
    assert points.n_duplicates == 0 and points.n_filtered == 0


def test_csv_coordinate_columns_in_any_position(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "id,cy,label,cx\na,2,m,1\nb,4,n,3\n")
    points = read_points(path)
    np.testing.assert_array_equal(points.xy, [[1, 2], [3, 4]])
    assert points.columns == {"id": ["a", "b"], "label": ["m", "n"]}


def test_csv_x_col_y_col(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "col_a,col_b,x\n1,2,99\n3,4,99\n")
    points = read_points(path, x_col="col_a", y_col="col_b")
    np.testing.assert_array_equal(points.xy, [[1, 2], [3, 4]])
    assert points.columns == {"x": ["99", "99"]}
    # case-insensitive when there is no exact match
    np.testing.assert_array_equal(read_points(path, x_col="COL_A", y_col="Col_B").xy, points.xy)


def test_csv_unknown_x_col_lists_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "col_a,col_b\n1,2\n")
    message = read_error(path, x_col="col_a", y_col="nope")
    assert "'nope' not found" in message
    assert "'col_a', 'col_b'" in message


def test_x_col_without_y_col_is_an_option_error(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "x,y\n1,2\n")
    with pytest.raises(OptionError):
        read_points(path, x_col="x")


def test_csv_no_header_row(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "10,20\n30,40\n"))
    assert "no header row" in message
    assert "--x-col/--y-col" in message


def test_csv_header_not_recognised(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "foo,bar\n10,20\n"))
    assert "no coordinate columns recognised" in message
    assert "'foo', 'bar'" in message
    assert "--x-col/--y-col" in message


# ---------------------------------------------------------------- CSV: dialect and encoding


@pytest.mark.parametrize(
    ("name", "delimiter"), [("det.csv", ";"), ("det.csv", "\t"), ("det.tsv", "\t"), ("det.txt", ",")]
)
def test_csv_delimiters(tmp_path: Path, name: str, delimiter: str) -> None:
    rows = [["id", "x", "y", "score"], ["a", "1", "2", "0.5"], ["b", "3", "4", "0.25"]]
    path = write(tmp_path, name, "".join(delimiter.join(row) + "\n" for row in rows))
    points = read_points(path)
    np.testing.assert_array_equal(points.xy, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(points.score, [0.5, 0.25])
    assert points.columns == {"id": ["a", "b"]}


def test_csv_semicolon_with_decimal_comma(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "x;y;score\n1,5;2,25;0,75\n")
    points = read_points(path)
    np.testing.assert_array_equal(points.xy, [[1.5, 2.25]])
    np.testing.assert_array_equal(points.score, [0.75])


def test_csv_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", b"\xef\xbb\xbfid,x,y\r\n7,1,2\r\n")
    points = read_points(path)
    np.testing.assert_array_equal(points.xy, [[1, 2]])
    assert points.columns == {"id": ["7"]}  # the BOM is not part of the first column's name


def test_csv_quoted_fields_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", 'x,y,note\n\n1,2,"a, b"\n,,\n3,4,"say ""hi"""\n\n')
    points = read_points(path)
    np.testing.assert_array_equal(points.xy, [[1, 2], [3, 4]])
    assert points.columns == {"note": ["a, b", 'say "hi"']}


def test_csv_trailing_empty_fields_are_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "x,y\n1,2,,\n")
    np.testing.assert_array_equal(read_points(path).xy, [[1, 2]])


def test_csv_wrong_number_of_fields(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "x,y,id\n1,2,a\n3,4\n"))
    assert "row 2 (line 3)" in message
    assert "has 2 fields, the header has 3" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "x,y,name\n1,2,caf\xe9\n".encode("latin-1")))
    assert "not UTF-8" in message


# ---------------------------------------------------------------- CSV: score and carried columns


@pytest.mark.parametrize("name", ["score", "Score", "probability", "prob", "confidence", "detection_score", "p"])
def test_csv_score_detection(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, "det.csv", f"x,y,{name}\n1,1,0.9\n2,2,0.4\n3,3,0.5\n")
    points = read_points(path)
    assert points.score_name == name
    np.testing.assert_array_equal(points.score, [0.9, 0.4, 0.5])
    assert points.columns == {}  # the score is not carried twice

    kept = read_points(path, min_score=0.5)
    np.testing.assert_array_equal(kept.xy, [[1, 1], [3, 3]])
    np.testing.assert_array_equal(kept.score, [0.9, 0.5])
    assert kept.n_filtered == 1


def test_csv_score_preference_and_score_col(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "x,y,p,score,my_logit\n1,1,0.1,0.8,-2.5\n")
    assert read_points(path).score_name == "score"
    assert read_points(path).columns == {"p": ["0.1"], "my_logit": ["-2.5"]}
    chosen = read_points(path, score_col="my_logit")
    assert chosen.score_name == "my_logit"
    np.testing.assert_array_equal(chosen.score, [-2.5])
    assert "score" in chosen.columns and "p" in chosen.columns
    assert "'nope' not found" in read_error(path, score_col="nope")


def test_csv_min_score_without_score_column(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "x,y\n1,1\n"), min_score=0.5)
    assert "no score column" in message


def test_csv_non_numeric_score(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "x,y,score\n1,1,0.5\n2,2,high\n"))
    assert "row 2 (line 3)" in message
    assert "'score' is not a number ('high')" in message


def test_csv_missing_scores_are_nan_and_never_pass_min_score(tmp_path: Path, caplog: Any) -> None:
    path = write(tmp_path, "det.csv", "x,y,score\n1,1,0.5\n2,2,\n3,3,NaN\n")
    with caplog.at_level(logging.WARNING, logger="wsi_amf.points"):
        points = read_points(path)
    assert np.isnan(points.score[1:]).all()
    assert "2 points have no 'score' score" in caplog.text
    kept = read_points(path, min_score=0.0)
    assert len(kept) == 1 and kept.n_filtered == 2


def test_csv_carried_columns(tmp_path: Path) -> None:
    # a pandas-written index column has an empty header
    path = write(tmp_path, "det.csv", ",slide,id,x,y,label,id\n0,a.svs,17,1,2,AMF,x\n1,b.svs,018,3,4,NMF,y\n")
    points = read_points(path)
    assert points.columns == {
        "Unnamed: 0": ["0", "1"],
        "slide": ["a.svs", "b.svs"],
        "id": ["17", "018"],  # strings, as written
        "label": ["AMF", "NMF"],
        "id.1": ["x", "y"],
    }


def test_csv_header_only_gives_zero_points(tmp_path: Path) -> None:
    points = read_points(write(tmp_path, "det.csv", "id,x,y,score\n"))
    assert len(points) == 0
    assert points.xy.shape == (0, 2)
    assert points.score is not None and points.score.shape == (0,)
    assert points.columns == {"id": []}
    assert len(read_points(write(tmp_path, "det2.csv", "x,y,score"), min_score=0.1)) == 0  # not even a newline


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    assert "is empty" in read_error(write(tmp_path, "det.csv", content))
    assert "is empty" in read_error(write(tmp_path, "det.geojson", content))


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("abc", "is not a number ('abc')"),
        ("", "is empty"),
        ("  ", "is empty"),
        ("nan", "is not a finite number ('nan')"),
        ("NaN", "is not a finite number ('NaN')"),
        ("inf", "is not a finite number ('inf')"),
        ("-Infinity", "is not a finite number ('-Infinity')"),
        ("1e999", "is not a finite number ('1e999')"),
        ("1_000", "is not a number ('1_000')"),
        ("0x10", "is not a number ('0x10')"),
    ],
)
@pytest.mark.parametrize("column", ["x", "y"])
def test_csv_bad_coordinates(tmp_path: Path, cell: str, problem: str, column: str) -> None:
    row = f"{cell},5" if column == "x" else f"5,{cell}"
    path = write(tmp_path, "det.csv", f"x,y\n1,2\n3,4\n{row}\n")
    assert f"det.csv row 3 (line 4): '{column}' {problem}" in read_error(path)


def test_csv_number_spellings(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "x,y\n 1 ,+2\n1e3,.5\n7.,0\n-0,3\n")
    np.testing.assert_array_equal(read_points(path).xy, [[1, 2], [1000, 0.5], [7, 0], [0, 3]])


def test_csv_control_characters_are_quoted_in_messages(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "x,y\n1,2\x00\n"))
    assert "row 1 (line 2): 'y' is not a number ('2\\x00')" in message


# ---------------------------------------------------------------- CSV: class filter and duplicates


@pytest.mark.parametrize("column", ["class", "Classification", "label"])
def test_csv_class_filter(tmp_path: Path, column: str) -> None:
    path = write(tmp_path, "det.csv", f"x,y,{column}\n1,1,AMF\n2,2,NMF\n3,3,amf\n4,4,AMF\n")
    points = read_points(path, class_name="AMF")
    np.testing.assert_array_equal(points.xy, [[1, 1], [4, 4]])  # exact and case-sensitive
    assert points.columns[column] == ["AMF", "AMF"]
    assert points.n_filtered == 2


def test_csv_class_filter_without_class_column(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "det.csv", "x,y,majority\n1,1,AMF\n"), class_name="AMF")
    assert "no class column" in message
    assert "'majority'" in message


def test_csv_class_filter_matching_nothing_warns(tmp_path: Path, caplog: Any) -> None:
    path = write(tmp_path, "det.csv", "x,y,label\n1,1,AMF\n")
    with caplog.at_level(logging.WARNING, logger="wsi_amf.points"):
        points = read_points(path, class_name="mitotic figure")
    assert len(points) == 0 and points.n_filtered == 1
    assert "no point has class 'mitotic figure'" in caplog.text


def test_duplicates_are_merged(tmp_path: Path, caplog: Any) -> None:
    path = write(tmp_path, "det.csv", "id,x,y,score\na,1,2,0.1\nb,3,4,0.2\nc,1,2,0.3\nd,1.0,2.0,0.4\ne,2,1,0.5\n")
    with caplog.at_level(logging.WARNING, logger="wsi_amf.points"):
        points = read_points(path)
    np.testing.assert_array_equal(points.xy, [[1, 2], [3, 4], [2, 1]])
    assert points.columns == {"id": ["a", "b", "e"]}  # the first occurrence is kept
    np.testing.assert_array_equal(points.score, [0.1, 0.2, 0.5])
    assert points.n_duplicates == 2
    assert "2 exact duplicate positions merged" in caplog.text


def test_filter_runs_before_merging_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "id,x,y,score\na,1,2,0.1\nb,1,2,0.9\n")
    points = read_points(path, min_score=0.5)
    assert points.columns == {"id": ["b"]}
    assert points.n_filtered == 1 and points.n_duplicates == 0


# ---------------------------------------------------------------- paths and formats


def test_missing_path(tmp_path: Path) -> None:
    assert "does not exist" in read_error(tmp_path / "nope.csv")


def test_directory_as_path(tmp_path: Path) -> None:
    directory = tmp_path / "points.csv"
    directory.mkdir()
    assert "is a directory" in read_error(directory)


def test_format_detection_by_content(tmp_path: Path) -> None:
    as_json = write_json(tmp_path, collection(feature(point(1, 2))), name="points.dat")
    np.testing.assert_array_equal(read_points(as_json).xy, [[1, 2]])
    as_csv = write(tmp_path, "points.out", "x,y\n3,4\n")
    np.testing.assert_array_equal(read_points(as_csv).xy, [[3, 4]])


def test_fmt_overrides_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "points.json", "x,y\n3,4\n")
    np.testing.assert_array_equal(read_points(path, fmt="csv").xy, [[3, 4]])
    assert "not valid JSON" in read_error(path)
    with pytest.raises(OptionError):
        read_points(path, fmt="xlsx")


def test_x_col_with_geojson_is_an_option_error(tmp_path: Path) -> None:
    path = write_json(tmp_path, collection(feature(point(1, 2))))
    with pytest.raises(OptionError):
        read_points(path, x_col="x", y_col="y")


# ---------------------------------------------------------------- GeoJSON: containers and geometries


def test_geojson_containers(tmp_path: Path) -> None:
    features = [feature(point(1, 2)), feature(point(3, 4))]
    for i, data in enumerate([collection(*features), features]):
        np.testing.assert_array_equal(read_points(write_json(tmp_path, data, f"{i}.geojson")).xy, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(read_points(write_json(tmp_path, features[0], "f.json")).xy, [[1, 2]])
    np.testing.assert_array_equal(read_points(write_json(tmp_path, point(5, 6), "g.geojson")).xy, [[5, 6]])
    np.testing.assert_array_equal(read_points(write_json(tmp_path, [point(5, 6)], "h.geojson")).xy, [[5, 6]])


def test_geojson_empty_collection_gives_zero_points(tmp_path: Path) -> None:
    points = read_points(write_json(tmp_path, collection()))
    assert len(points) == 0 and points.xy.shape == (0, 2)
    assert points.columns == {"id": [], "classification": []}
    assert len(read_points(write_json(tmp_path, [], "list.geojson"))) == 0


def test_geojson_point_with_z_and_integer_coordinates(tmp_path: Path) -> None:
    path = write_json(tmp_path, collection(feature({"type": "Point", "coordinates": [10, 20, 0]})))
    points = read_points(path)
    assert points.xy.dtype == np.float64
    np.testing.assert_array_equal(points.xy, [[10, 20]])


def test_geojson_multipoint_expands(tmp_path: Path) -> None:
    multi = {"type": "MultiPoint", "coordinates": [[1, 1], [2, 2], [3, 3]]}
    data = collection(
        {**feature(multi, name="roi", measurements={"score": 0.7}), "id": "u1"},
        {**feature(point(9, 9)), "id": "u2"},
    )
    points = read_points(write_json(tmp_path, data))
    np.testing.assert_array_equal(points.xy, [[1, 1], [2, 2], [3, 3], [9, 9]])
    assert points.columns["id"] == ["u1", "u1", "u1", "u2"]
    assert points.columns["name"] == ["roi", "roi", "roi", ""]
    np.testing.assert_array_equal(points.score[:3], [0.7] * 3)
    assert np.isnan(points.score[3])


def square(x0: float, y0: float, size: float) -> list[list[float]]:
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


def test_geojson_polygon_centroids(tmp_path: Path) -> None:
    # L-shape: the square 0..10 without its 5x5 corner at x > 5, y > 5. By hand: a 10x5 strip (area 50,
    # centre (5, 2.5)) plus a 5x5 square (area 25, centre (2.5, 7.5)) -> (312.5 / 75, 312.5 / 75) = (25/6, 25/6).
    l_shape = [[0, 0], [10, 0], [10, 5], [5, 5], [5, 10], [0, 10], [0, 0]]
    # a square 0..10 with a 2x2 hole at 6..8: (100 * 5 - 4 * 7) / 96 = 472 / 96
    holed = [square(0, 0, 10), square(6, 6, 2)]
    # two squares: 0..2 (area 4, centre (1, 1)) and 10..14 (area 16, centre (12, 12)) -> (196/20, 196/20)
    multi = {"type": "MultiPolygon", "coordinates": [[square(0, 0, 2)], [square(10, 10, 4)]]}
    data = collection(
        feature({"type": "Polygon", "coordinates": [square(0, 0, 10)]}),
        feature({"type": "Polygon", "coordinates": [l_shape]}),
        feature({"type": "Polygon", "coordinates": holed}),
        feature(multi),
        feature({"type": "Polygon", "coordinates": [square(0, 0, 10)[:-1]]}),  # an unclosed ring is closed
    )
    points = read_points(write_json(tmp_path, data))
    expected = [[5, 5], [25 / 6, 25 / 6], [472 / 96, 472 / 96], [9.8, 9.8]]
    np.testing.assert_allclose(points.xy[:4], expected, rtol=1e-12)
    # the last polygon equals the first: merged as an exact duplicate
    assert len(points) == 4 and points.n_duplicates == 1


def test_geojson_nucleus_geometry_is_used(tmp_path: Path) -> None:
    cell = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [square(0, 0, 100)]},
        "nucleusGeometry": {"type": "Polygon", "coordinates": [square(10, 20, 4)]},
        "properties": {"objectType": "cell"},
    }
    points = read_points(write_json(tmp_path, collection(cell)))
    np.testing.assert_allclose(points.xy, [[12, 22]])
    assert points.columns["object_type"] == ["cell"]


def test_geojson_unusable_geometries_are_skipped(tmp_path: Path, caplog: Any) -> None:
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    data = collection(
        feature(point(1, 2)),
        feature(line),
        feature(None),
        {"type": "Feature", "properties": {}},
        feature({"type": "Point", "coordinates": []}),
        feature({"type": "GeometryCollection", "geometries": []}),
    )
    with caplog.at_level(logging.WARNING, logger="wsi_amf.points"):
        points = read_points(write_json(tmp_path, data))
    np.testing.assert_array_equal(points.xy, [[1, 2]])
    assert "skipped 5 objects" in caplog.text
    assert "LineString" in caplog.text


def test_geojson_nothing_usable_is_an_error(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    message = read_error(write_json(tmp_path, collection(feature(line), feature(None))))
    assert "none of its 2 objects" in message
    assert "1 LineString" in message and "1 null geometry" in message


# ---------------------------------------------------------------- GeoJSON: properties


def test_geojson_classification_forms_and_filter(tmp_path: Path) -> None:
    data = collection(
        feature(point(1, 1), classification={"name": "Atypical", "color": [255, 0, 0]}),
        feature(point(2, 2), classification={"names": ["Tumor", "Atypical"], "color": [0, 0, 0]}),
        feature(point(3, 3), classification="Atypical"),
        feature(point(4, 4)),
        feature(point(5, 5), classification={"name": "atypical", "colorRGB": -65536}),
        {"type": "Feature", "geometry": point(6, 6)},  # no properties at all
    )
    path = write_json(tmp_path, data)
    points = read_points(path)
    assert points.columns["classification"] == ["Atypical", "Tumor: Atypical", "Atypical", "", "atypical", ""]
    kept = read_points(path, class_name="Atypical")
    np.testing.assert_array_equal(kept.xy, [[1, 1], [3, 3]])
    assert kept.n_filtered == 4
    np.testing.assert_array_equal(read_points(path, class_name="Tumor: Atypical").xy, [[2, 2]])


def test_geojson_id_name_and_object_type(tmp_path: Path) -> None:
    data = collection(
        {**feature(point(1, 1), name="first", objectType="detection"), "id": "3f2a-uuid"},
        {**feature(point(2, 2), object_type="annotation"), "id": 7},
        feature(point(3, 3)),
    )
    points = read_points(write_json(tmp_path, data))
    assert points.columns == {
        "id": ["3f2a-uuid", "7", ""],
        "classification": ["", "", ""],
        "name": ["first", "", ""],
        "object_type": ["detection", "annotation", ""],
    }


def test_geojson_measurement_scores(tmp_path: Path) -> None:
    data = collection(
        feature(point(1, 1), measurements={"Area": 3.0, "Probability": 0.9}),
        feature(point(2, 2), measurements=[{"name": "Probability", "value": 0.2}, {"name": "Area", "value": 1}]),
        feature(point(3, 3), measurements={"probability": 0.6}),
    )
    path = write_json(tmp_path, data)
    points = read_points(path)
    assert points.score_name == "Probability"
    np.testing.assert_array_equal(points.score, [0.9, 0.2, 0.6])
    kept = read_points(path, min_score=0.5)
    np.testing.assert_array_equal(kept.xy, [[1, 1], [3, 3]])
    assert kept.n_filtered == 1
    area = read_points(path, score_col="Area")
    assert area.score_name == "Area"
    np.testing.assert_array_equal(area.score[:2], [3.0, 1.0])
    assert np.isnan(area.score[2])
    assert "no measurement named 'Volume'" in read_error(path, score_col="Volume")


def test_geojson_without_measurements_has_no_score(tmp_path: Path) -> None:
    path = write_json(tmp_path, collection(feature(point(1, 1), measurements={"Area": 2})))
    assert read_points(path).score is None
    assert "no score column" in read_error(path, min_score=0.5)


def test_negative_coordinates_are_kept(tmp_path: Path) -> None:
    # left of or above the slide: screening reports them as outside the slide, like those beyond its width
    csv_path = write(tmp_path, "det.csv", "x,y\n1,2\n-0.4,5\n3,-3\n")
    np.testing.assert_array_equal(read_points(csv_path).xy, [[1, 2], [-0.4, 5], [3, -3]])
    geojson_path = write_json(tmp_path, collection(feature(point(1, 1)), feature(point(-1, 1))))
    np.testing.assert_array_equal(read_points(geojson_path).xy, [[1, 1], [-1, 1]])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (3, "the top level is a number"),
        ("abc", "the top level is a string"),
        (None, "the top level is null"),
        ({"type": "Topology"}, "the top level has type 'Topology'"),
        ({"type": "FeatureCollection"}, "'features' is null"),
        ({"type": "FeatureCollection", "features": 3}, "'features' is a number"),
        ({"type": "FeatureCollection", "features": {"a": 1}}, "'features' is an object"),
        ([3], "feature 1 is a number"),
        ([{"type": "Banana"}], "feature 1 has type 'Banana'"),
        ([feature(5)], "the geometry is a number"),
        ([feature({"coordinates": [1, 2]})], "the geometry has no 'type'"),
        ([feature({"type": "Point", "coordinates": ["a", 1]})], "coordinates are not [x, y] numbers"),
        ([feature({"type": "Point", "coordinates": [True, 1]})], "coordinates are not [x, y] numbers"),
        ([feature({"type": "Point", "coordinates": [1]})], "coordinates are not [x, y] numbers"),
        ([feature({"type": "Point", "coordinates": 5})], "coordinates are not [x, y] numbers"),
        ([feature({"type": "MultiPoint", "coordinates": 5})], "MultiPoint coordinates is a number"),
        ([feature({"type": "Polygon", "coordinates": [1, 2]})], "a ring is a number"),
        ([feature({"type": "Polygon", "coordinates": [[1, 2]]})], "coordinates are not [x, y] numbers"),
        ({"type": ["Feature"]}, "the top level's 'type' is a list"),
        ([{"type": ["Feature"]}], "feature 1 has type"),
        ([feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]})], "malformed Polygon"),
        ([{"type": "Feature", "geometry": point(1, 1), "properties": [1]}], "'properties' is a list"),
        ([feature(point(1, 1), classification=5)], "'classification' is a number"),
        ([feature(point(1, 1), classification={"names": "a"})], "'classification.names' is a string"),
        ([feature(point(1, 1), classification={"names": [1]})], "other than strings"),
        ([feature(point(1, 1), name=["a"])], "'name' is a list"),
        ([{**feature(point(1, 1)), "id": {"a": 1}}], "'id' is an object"),
        ([feature(point(1, 1), measurements="x")], "'measurements' is a string"),
        ([feature(point(1, 1), measurements=[{"value": 1}])], "not a {name, value} object"),
        ([feature(point(1, 1), measurements={"score": "high"})], "measurement 'score' is a string"),
        ([feature(point(1, 1), measurements={"score": True})], "measurement 'score' is a boolean"),
        ({"type": "Multiple points", "points": []}, "grand-challenge 'Multiple points'"),
    ],
)
def test_geojson_wrong_types(tmp_path: Path, data: Any, problem: str) -> None:
    assert problem in read_error(write_json(tmp_path, data))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"type": "FeatureCollection", "features": [', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("[" + "9" * 5000 + "]", "not valid JSON"),  # past Python's integer-string limit
        ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 1]}}]', "not finite"),
        ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1e999, 1]}}]', "not finite"),
        ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},'
         ' "properties": {"measurements": {"score": Infinity}}}]', "measurement 'score' is not finite"),
    ],
)
def test_geojson_bad_text(tmp_path: Path, text: str, problem: str) -> None:
    assert problem in read_error(write(tmp_path, "det.geojson", text))


# ---------------------------------------------------------------- Points


def test_points_subset_and_immutability(tmp_path: Path) -> None:
    path = write(tmp_path, "det.csv", "id,x,y,score\na,1,1,0.1\nb,2,2,0.2\nc,3,3,0.3\n")
    points = read_points(path)
    by_mask = points.subset(np.array([True, False, True]))
    by_index = points.subset([2, 0])
    assert by_mask.columns == {"id": ["a", "c"]}
    assert by_index.columns == {"id": ["c", "a"]}
    np.testing.assert_array_equal(by_index.score, [0.3, 0.1])
    assert len(points.subset([])) == 0 and points.subset([]).xy.shape == (0, 2)
    assert by_mask.source == path and by_mask.score_name == "score"
    with pytest.raises(ValueError):
        points.subset(np.array([True, False]))
    with pytest.raises(ValueError):
        points.xy[0, 0] = 5.0
    with pytest.raises(AttributeError):
        points.xy = np.zeros((0, 2))  # type: ignore[misc]
    assert "n=3" in repr(points)


def test_points_constructor_checks_shapes() -> None:
    assert len(Points(Path("p.csv"), np.zeros((0, 2)))) == 0
    with pytest.raises(ValueError):
        Points(Path("p.csv"), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        Points(Path("p.csv"), np.zeros((3, 2)), score=np.zeros(2))
    with pytest.raises(ValueError):
        Points(Path("p.csv"), np.zeros((3, 2)), columns={"id": ["a"]})


# ---------------------------------------------------------------- real files from ../shared/data


def test_midog25_training_table() -> None:
    if not MIDOG25_CSV.is_file():
        pytest.skip(f"{MIDOG25_CSV} is absent")
    # The table has 11,937 rows, and row 4222 (4222.png on 305.tiff) gives coordinateX = -2: a figure
    # centred just outside its image. It is read like the others (screening reports it as outside the slide);
    # two exact duplicate positions (below) are merged.
    points = read_points(MIDOG25_CSV)
    assert len(points) == 11_935 and points.n_duplicates == 2
    row = points.columns["image_id"].index("4222.png")
    assert points.xy[row].tolist() == [-2, 2416]


def test_midog25_training_table_without_the_negative_row(tmp_path: Path) -> None:
    if not MIDOG25_CSV.is_file():
        pytest.skip(f"{MIDOG25_CSV} is absent")
    lines = MIDOG25_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("4222.png,")]
    assert len(kept) == len(lines) - 1 == 11_937
    points = read_points(write(tmp_path, "midog25.csv", "".join(kept)))
    # 11,936 rows, but its points lie on many different images: two positions repeat exactly on another
    # image ((2628, 3775) on 421.tiff and 520.tiff, (529, 885) on 024.tiff and 149.tiff), and read_points
    # merges exact duplicates without looking at the `filename` column.
    assert len(points) == 11_934
    assert points.n_duplicates == 2
    assert points.score is None
    assert list(points.columns) == [
        "image_id", "filename", "Tumor", "Scanner", "Origin", "Species", "expert1", "expert2", "expert3", "majority",
    ]
    assert points.columns["majority"].count("AMF") == 1_748  # the dropped row and both duplicates are NMF
    assert "6242.png" in points.columns["image_id"] and "7400.png" not in points.columns["image_id"]


def test_amibr_table() -> None:
    if not AMIBR_CSV.is_file():
        pytest.skip(f"{AMIBR_CSV} is absent")
    points = read_points(AMIBR_CSV)
    assert len(points) + points.n_duplicates == 2_679
    assert "Unnamed: 0" in points.columns  # the pandas index column has an empty header
    assert "majority_atypical" in points.columns


# ---------------------------------------------------------------- properties: never another exception

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_points_error(path: Path) -> None:
    try:
        points = read_points(path)
    except PointsError as err:
        assert "\n" not in str(err)
    else:
        assert points.xy.shape == (len(points), 2)
        assert np.isfinite(points.xy).all() and (points.xy >= 0).all()


@FUZZ
@given(content=st.binary(max_size=300))
def test_fuzz_csv_bytes(tmp_path: Path, content: bytes) -> None:
    read_or_points_error(write(tmp_path, "fuzz.csv", content))


@FUZZ
@given(content=st.binary(max_size=300))
def test_fuzz_geojson_bytes(tmp_path: Path, content: bytes) -> None:
    read_or_points_error(write(tmp_path, "fuzz.geojson", content))


CSV_CELL = st.one_of(
    st.sampled_from(["", "1", "-1", "2.5", "nan", "inf", "1e999", "abc", '"', '"a,b"', " ", "0,5", "\r"]),
    st.text(max_size=6),
)


@FUZZ
@given(
    header=st.sampled_from(["x,y", "x;y;score", "id\tcx\tcy\tprob", "coordinateX,coordinateY,label", "a,b"]),
    rows=st.lists(st.lists(CSV_CELL, max_size=5), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_fuzz_csv_rows(tmp_path: Path, header: str, rows: list[list[str]], delimiter: str) -> None:
    text = header + "\n" + "".join(delimiter.join(row) + "\n" for row in rows)
    read_or_points_error(write(tmp_path, "fuzz.csv", text))


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**20), st.floats(allow_nan=True), st.text(max_size=4),
    st.sampled_from(["Feature", "FeatureCollection", "Point", "MultiPoint", "Polygon", "MultiPolygon"]),
)
JSON_KEYS = st.sampled_from(
    ["type", "features", "geometry", "nucleusGeometry", "coordinates", "properties", "classification",
     "name", "names", "measurements", "value", "id", "objectType", "score"]
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(JSON_KEYS, children, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(data=JSON_VALUES)
def test_fuzz_geojson_structure(tmp_path: Path, data: Any) -> None:
    read_or_points_error(write_json(tmp_path, data, name="fuzz.geojson"))


COORDINATE = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@FUZZ
@given(xy=st.lists(st.tuples(COORDINATE, COORDINATE), max_size=20))
def test_csv_round_trip(tmp_path: Path, xy: list[tuple[float, float]]) -> None:
    path = write(tmp_path, "round.csv", "x,y\n" + "".join(f"{x!r},{y!r}\n" for x, y in xy))
    points = read_points(path)
    distinct = list(dict.fromkeys((x + 0.0, y + 0.0) for x, y in xy))
    np.testing.assert_array_equal(points.xy.reshape(-1, 2), np.array(distinct, dtype=np.float64).reshape(-1, 2))
    assert points.n_duplicates == len(xy) - len(distinct)
