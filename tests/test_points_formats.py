"""Point imports beyond CSV: grand-challenge "Multiple points" (mm), SlideRunner / EXACT SQLite, MIDOG++ JSON,
QuPath GeoJSON of 0.2 / 0.3 / 0.4+ and compressed (.gz, .zip); the real files' counts against a plain oracle."""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MITOSES_UM, shared_file
from points_files import (
    Annotation,
    box,
    gc_point,
    gc_points,
    midogpp,
    write_json,
    write_sliderunner,
)

from wsi_amf.cli import main
from wsi_amf.errors import OptionError, PointsError
from wsi_amf.points import SlideContext, read_points

SLIDE = SlideContext(name="slide.svs", mpp=0.25, dimensions=(40_000, 30_000))  # 10 x 7.5 mm


def read_error(path: Path, **options: Any) -> str:
    with pytest.raises(PointsError) as info:
        read_points(path, **options)
    message = str(info.value)
    assert "\n" not in message and path.name in message
    return message


# ---------------------------------------------------------------- grand-challenge "Multiple points"


def test_gc_json_millimetres_become_level0_pixels(tmp_path: Path, caplog: Any) -> None:
    path = write_json(tmp_path / "det.json", gc_points([
        gc_point(1.0, 2.0, 0.9),
        gc_point(0.5, 0.25, 0.4, name="non-mitotic figure"),
        gc_point(9.99, 7.49, 0.7),
    ]))
    with caplog.at_level(logging.WARNING, logger="wsi_amf.points"):
        points = read_points(path, slide=SLIDE)
    np.testing.assert_allclose(points.xy, [[4000, 8000], [2000, 1000], [39_960, 29_960]], rtol=1e-12)
    assert points.score_name == "probability"
    np.testing.assert_array_equal(points.score, [0.9, 0.4, 0.7])
    assert points.columns["class"] == ["mitotic figure", "non-mitotic figure", "mitotic figure"]
    assert points.columns["below_detector_threshold"] == ["no", "yes", "no"]
    assert "1 of 3 points are named 'non-mitotic figure'" in caplog.text


def test_gc_json_filters(tmp_path: Path) -> None:
    path = write_json(tmp_path / "det.json", gc_points([
        gc_point(1.0, 1.0, 0.9), gc_point(2.0, 2.0, 0.3, name="non-mitotic figure"), gc_point(3.0, 3.0, 0.6),
    ]))
    kept = read_points(path, slide=SLIDE, min_score=0.5)
    np.testing.assert_allclose(kept.xy, [[4000, 4000], [12_000, 12_000]])
    assert kept.n_filtered == 1
    assert len(read_points(path, slide=SLIDE, class_name="mitotic figure")) == 2
    assert len(read_points(path, slide=SLIDE, class_name="non-mitotic figure")) == 1


def test_gc_json_negative_millimetres_are_kept(tmp_path: Path) -> None:
    # just left of the slide: screening reports it as outside the slide, like a point beyond its width
    path = write_json(tmp_path / "det.json", gc_points([gc_point(1.0, 1.0, 0.9), gc_point(-0.1, 1.0, 0.8)]))
    np.testing.assert_allclose(read_points(path, slide=SLIDE).xy, [[4000, 4000], [-400, 4000]])


def test_gc_json_misspelt_type_and_2d_points(tmp_path: Path) -> None:
    data = gc_points([{"name": "mitotic figure", "point": [0.1, 0.2]}], kind="Mulitple points")
    path = write_json(tmp_path / "det.json", data)
    points = read_points(path, slide=SLIDE)
    np.testing.assert_allclose(points.xy, [[400, 800]])
    assert points.score is None  # no probability in the file


def test_gc_json_is_detected_in_any_json_file_and_forced_formats_are_checked(tmp_path: Path) -> None:
    path = write_json(tmp_path / "det.geojson", gc_points([gc_point(1, 1, 0.5)]))
    np.testing.assert_allclose(read_points(path, slide=SLIDE).xy, [[4000, 4000]])
    assert "read it as --points-format gc-json" in read_error(path, fmt="geojson", slide=SLIDE)
    feature_collection = write_json(tmp_path / "qupath.json", {"type": "FeatureCollection", "features": []})
    assert "expected 'Multiple points'" in read_error(feature_collection, fmt="gc-json", slide=SLIDE)


def test_gc_json_with_pixel_values_is_a_clear_error(tmp_path: Path) -> None:
    path = write_json(tmp_path / "det.json", gc_points([gc_point(1.5, 2.0, 0.9), gc_point(4361, 371, 0.8)]))
    message = read_error(path, slide=SLIDE)
    assert "point 2: (4361, 371) lies far beyond the slide (10.00 x 7.50 mm)" in message
    assert "look like pixels" in message
    # without the slide's size: beyond any glass slide
    message = read_error(path, slide=SlideContext(name="slide.svs", mpp=0.25))
    assert "point 2" in message and "look like pixels" in message


def test_gc_json_needs_the_slide_resolution(tmp_path: Path) -> None:
    path = write_json(tmp_path / "det.json", gc_points([gc_point(1, 1, 0.5)]))
    assert "needs the slide's resolution" in read_error(path)
    assert "needs the slide's resolution" in read_error(path, slide=SlideContext(name="slide.svs"))


def test_gc_json_score_col_names_another_key(tmp_path: Path) -> None:
    path = write_json(tmp_path / "det.json", gc_points([{**gc_point(1, 1, 0.5), "confidence": 0.25}]))
    points = read_points(path, slide=SLIDE, score_col="confidence")
    assert points.score_name == "confidence" and points.score.tolist() == [0.25]
    assert "no point has a 'certainty' value" in read_error(path, slide=SLIDE, score_col="certainty")


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        ([3], "point 1: the entry is a number, expected an object"),
        ([{"name": "mitotic figure"}], "point 1 has no 'point'"),
        ([gc_point(1, 1), {"point": ["a", 1]}], "point 2: coordinates are not [x, y] numbers"),
        ([{"point": [1, 1], "probability": "high"}], "point 1: 'probability' is a string, expected a number"),
        ([{"point": [1, 1], "name": ["a"]}], "point 1: 'name' is a list"),
    ],
)
def test_gc_json_bad_entries(tmp_path: Path, points: list[Any], problem: str) -> None:
    assert problem in read_error(write_json(tmp_path / "det.json", gc_points(points)), slide=SLIDE)


def test_gc_json_points_not_a_list(tmp_path: Path) -> None:
    path = write_json(tmp_path / "det.json", {"type": "Multiple points", "points": {"a": 1}})
    assert "'points' is an object, expected a list" in read_error(path, slide=SLIDE)


def test_gc_json_built_from_a_real_slide_round_trips(tmp_path: Path) -> None:
    """A detector's output for MIDOG++ slide 004 (every figure, in mm at the scanner's 0.2273 um/px)."""
    data = json.loads(shared_file("formats", "MIDOG++.json").read_text())
    image = next(i for i in data["images"] if i["file_name"] == "004.tiff")
    boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == image["id"]]
    centres = np.array([[(x1 + x2) / 2, (y1 + y2) / 2] for x1, y1, x2, y2 in boxes])
    mpp = 0.2273
    entries = [gc_point(x * mpp / 1000, y * mpp / 1000, 0.5 + 0.01 * (i % 50)) for i, (x, y) in enumerate(centres)]
    path = write_json(tmp_path / "004.json", gc_points(entries))
    points = read_points(path, slide=SlideContext(name="004.tiff", mpp=mpp, dimensions=(image["width"], image["height"])))
    assert len(centres) > 10
    np.testing.assert_allclose(points.xy, centres, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- SlideRunner / EXACT SQLite


def two_slide_db(tmp_path: Path) -> Path:
    return write_sliderunner(
        tmp_path / "annotations.sqlite",
        slides=[("A-1.svs", 4000, 3000), ("B-2.tiff", None, None)],
        classes=["mitotic figure", "not mitotic figure"],
        annotations=[
            Annotation(1, [(100, 200)], agreed_class=1),
            Annotation(1, [(300, 400)], agreed_class=2),
            Annotation(1, [(500, 600)], agreed_class=1, deleted=1),
            Annotation(2, [(700, 800)], agreed_class=1),
            Annotation(1, [(10.5, 20.5)], agreed_class=2),
            Annotation(1, [(0, 0), (100, 50)], type=2),  # rectangle: the centre
            Annotation(1, [(200, 200), (220, 240)], type=5),  # circle (its bounding box): the centre
            Annotation(1, [(0, 0), (60, 0), (60, 30), (0, 30)], type=3),  # polygon: the centroid
        ],
    )


def test_sliderunner_points_of_the_slide(tmp_path: Path) -> None:
    db = two_slide_db(tmp_path)
    points = read_points(db, slide=SlideContext(name="A-1.svs", mpp=0.25, dimensions=(4000, 3000)))
    np.testing.assert_array_equal(
        points.xy, [[100, 200], [300, 400], [10.5, 20.5], [50, 25], [210, 220], [30, 15]]
    )
    assert points.columns["class"] == ["mitotic figure", "not mitotic figure", "not mitotic figure"] + [
        "mitotic figure"] * 3
    assert points.columns["annotation_uid"] == ["1", "2", "5", "6", "7", "8"]  # uid 3 is deleted
    assert points.columns["guid"][0] == "00000000-0000-4000-8000-000000000001"
    assert points.score is None
    assert len(read_points(db, slide=SlideContext(name="A-1.svs"), class_name="mitotic figure")) == 4


@pytest.mark.parametrize(
    ("slide_name", "db_slide", "expected"),
    [
        ("B-2.tiff", None, [[700, 800]]),  # exact file name
        ("b-2.TIFF", None, [[700, 800]]),  # case
        ("B-2.svs", None, [[700, 800]]),  # another scan format of the same slide: its stem
        ("/data/slides/B-2.tiff", None, [[700, 800]]),
        ("other.svs", "B-2.tiff", [[700, 800]]),  # --db-slide
        ("other.svs", "2", [[700, 800]]),  # --db-slide by uid
    ],
)
def test_sliderunner_slide_matching(tmp_path: Path, slide_name: str, db_slide: str | None, expected: Any) -> None:
    db = two_slide_db(tmp_path)
    points = read_points(db, slide=SlideContext(name=slide_name), db_slide=db_slide)
    np.testing.assert_array_equal(points.xy, expected)


def test_sliderunner_slide_not_found_or_not_given(tmp_path: Path) -> None:
    db = two_slide_db(tmp_path)
    message = read_error(db, slide=SlideContext(name="C-3.svs"))
    assert "no slide named 'C-3.svs' (slides: 'A-1.svs', 'B-2.tiff')" in message and "--db-slide" in message
    assert "holds the points of 2 slides" in read_error(db)
    assert "no slide named 'Z.svs'" in read_error(db, db_slide="Z.svs")


def test_sliderunner_single_slide_needs_no_name(tmp_path: Path) -> None:
    db = write_sliderunner(tmp_path / "one.db", [("x.svs", None, None)], ["mitotic figure"],
                           [Annotation(1, [(5, 6)])])
    np.testing.assert_array_equal(read_points(db).xy, [[5, 6]])


def test_sliderunner_ambiguous_stem(tmp_path: Path) -> None:
    db = write_sliderunner(tmp_path / "two.sqlite", [("s.svs", None, None), ("s.tiff", None, None)], ["a"], [])
    assert "2 slides match 's.ndpi'" in read_error(db, slide=SlideContext(name="s.ndpi"))


def test_sliderunner_size_mismatch_warns(tmp_path: Path, caplog: Any) -> None:
    db = two_slide_db(tmp_path)
    with caplog.at_level(logging.WARNING, logger="wsi_amf.points"):
        read_points(db, slide=SlideContext(name="A-1.svs", dimensions=(8000, 6000)))
    assert "gives slide 'A-1.svs' as 4000 x 3000 px, but the slide is 8000 x 6000 px" in caplog.text


def test_sliderunner_annotation_without_coordinates_is_skipped(tmp_path: Path) -> None:
    db = write_sliderunner(tmp_path / "a.sqlite", [("x.svs", None, None)], ["a"],
                           [Annotation(1, []), Annotation(1, [(1, 2)])])
    np.testing.assert_array_equal(read_points(db).xy, [[1, 2]])


def test_sliderunner_unknown_class_uid_is_carried_as_its_number(tmp_path: Path) -> None:
    db = write_sliderunner(tmp_path / "a.sqlite", [("x.svs", None, None)], ["a"],
                           [Annotation(1, [(1, 2)], agreed_class=7), Annotation(1, [(3, 4)], agreed_class=None)])
    assert read_points(db).columns["class"] == ["7", ""]


@pytest.mark.parametrize(
    ("x", "problem"),
    [("abc", "annotation 1: coordinateX is 'abc', expected a finite number"),
     (float("inf"), "coordinateX is 'inf'"),
     (b"\x00", "coordinateX is")],
)
def test_sliderunner_bad_coordinates(tmp_path: Path, x: Any, problem: str) -> None:
    db = write_sliderunner(tmp_path / "a.sqlite", [("x.svs", None, None)], ["a"], [Annotation(1, [(x, 2)])])
    assert problem in read_error(db)


def test_sliderunner_not_a_sliderunner_database(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (a INTEGER)")
    db.close()
    assert "not a SlideRunner/EXACT database (no table 'Slides')" in read_error(path)
    path2 = tmp_path / "partial.sqlite"
    with sqlite3.connect(path2) as db:
        db.executescript("CREATE TABLE Slides (uid INTEGER, name TEXT); CREATE TABLE Annotations (uid INTEGER);")
    db.close()
    assert "table 'Slides' has no column 'filename'" in read_error(path2)


def test_sliderunner_format_checks(tmp_path: Path) -> None:
    db = two_slide_db(tmp_path)
    assert "is an SQLite database, not CSV" in read_error(db, fmt="csv")
    csv = tmp_path / "pts.csv"
    csv.write_text("x,y\n1,2\n")
    assert "is not an SQLite database" in read_error(csv, fmt="sliderunner")
    text = tmp_path / "notes.db"
    text.write_text("x,y\n1,2\n")
    assert "is not an SQLite database (it lacks the SQLite header)" in read_error(text)
    truncated = tmp_path / "broken.sqlite"
    truncated.write_bytes(db.read_bytes()[:200])
    assert "cannot read it as a SlideRunner/EXACT database" in read_error(truncated, slide=SLIDE)
    with pytest.raises(OptionError, match="--db-slide applies to"):
        read_points(csv, db_slide="A-1.svs")
    with pytest.raises(OptionError, match="--x-col/--y-col apply to CSV files only"):
        read_points(db, x_col="x", y_col="y", db_slide="A-1.svs")


def test_real_sliderunner_database_counts_per_slide_and_class() -> None:
    """MIDOG21.sqlite: every slide's points and classes against a direct SQL count."""
    path = shared_file("formats", "MIDOG21.sqlite")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        oracle = Counter({
            (filename, cls): n for filename, cls, n in db.execute(
                "SELECT s.filename, c.name, COUNT(*) FROM Annotations a JOIN Slides s ON s.uid = a.slide "
                "JOIN Classes c ON c.uid = a.agreedClass WHERE a.deleted = 0 GROUP BY s.filename, c.name")
        })
        filenames = [row[0] for row in db.execute("SELECT filename FROM Slides")]
    db.close()
    found: Counter[tuple[str, str]] = Counter()
    for filename in filenames:
        points = read_points(path, slide=SlideContext(name=filename))
        found.update((filename, cls) for cls in points.columns["class"])
        assert points.n_duplicates == 0
    assert found == oracle
    # the file's documented figures (MIDOG 2021 training set): 4,435 points on 150 of its 200 slides
    assert sum(oracle.values()) == 4_435 and len({f for f, _ in oracle}) == 150 and len(filenames) == 200
    assert sum(n for (_, cls), n in oracle.items() if cls == "mitotic figure") == 1_721
    assert sum(n for (_, cls), n in oracle.items() if cls == "not mitotic figure") == 2_714


# ---------------------------------------------------------------- MIDOG++ JSON


def test_midogpp_centres_classes_and_matching(tmp_path: Path) -> None:
    data = midogpp([(1, "001.tiff", 7215, 5412), (2, "002.tiff", 7215, 5412)],
                   [(1, 2, box(4361, 371)), (2, 1, box(100, 100)), (1, 1, [10, 20, 60, 71])])
    path = write_json(tmp_path / "MIDOG++.json", data)
    points = read_points(path, slide=SlideContext(name="001.tiff", mpp=0.25, dimensions=(7215, 5412)))
    np.testing.assert_array_equal(points.xy, [[4361, 371], [35, 45.5]])
    assert points.columns == {"class": ["not mitotic figure", "mitotic figure"], "annotation_id": ["1", "3"]}
    assert len(read_points(path, db_slide="001.tiff", class_name="mitotic figure")) == 1
    assert "holds the points of 2 slides" in read_error(path)
    assert "no slide named '003.tiff'" in read_error(path, slide=SlideContext(name="003.tiff"))


def test_midogpp_coco_xywh_boxes_are_refused(tmp_path: Path) -> None:
    data = midogpp([(1, "a.tiff", 100, 100)], [(1, 1, [50, 50, 20, 20])])  # [x, y, w, h]
    message = read_error(write_json(tmp_path / "m.json", data))
    assert "annotation 1: 'bbox' [50, 50, 20, 20]" in message and "not COCO's [x, y, width, height]" in message


def test_midogpp_detector_scores(tmp_path: Path) -> None:
    data = midogpp([(1, "a.tiff", 100, 100)], [(1, 1, box(30, 30)), (1, 1, box(60, 60))])
    data["annotations"][0]["score"] = 0.8
    points = read_points(write_json(tmp_path / "m.json", data), min_score=0.5)
    np.testing.assert_array_equal(points.xy, [[30, 30]])  # the second has no score: never passes


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotation 1: 'bbox' is not four numbers"),
        (lambda d: d["annotations"][0].update(bbox=None), "annotation 1: 'bbox' is not four numbers"),
        (lambda d: d["annotations"].append(5), "annotation 2: the entry is a number"),
        (lambda d: d["images"].append({"id": 1, "file_name": "b.tiff"}), "image 2: id '1' is used by an earlier"),
        (lambda d: d["images"][0].update(id=[1]), "image 1: 'id' is a list"),
        (lambda d: d.update(categories=3), "'categories' is a number, expected a list"),
        (lambda d: d.update(images=[]), "'images' is empty"),
        (lambda d: d.update(annotations={}), "'annotations' is an object, expected a list"),
    ],
)
def test_midogpp_bad_content(tmp_path: Path, change: Any, problem: str) -> None:
    data = midogpp([(1, "a.tiff", 100, 100)], [(1, 1, box(30, 30))])
    change(data)
    assert problem in read_error(write_json(tmp_path / "m.json", data))


def test_midogpp_image_ids_compare_by_type(tmp_path: Path) -> None:
    data = midogpp([(1, "a.tiff", 100, 100)], [(1, 1, box(30, 30))])
    data["annotations"].append({**data["annotations"][0], "image_id": True, "id": 9})
    data["annotations"].append({**data["annotations"][0], "image_id": "1", "id": 10})
    assert read_points(write_json(tmp_path / "m.json", data)).columns["annotation_id"] == ["1"]


def test_real_midogpp_counts_per_slide_and_class() -> None:
    """MIDOG++.json: every image's points and classes against a plain walk of the JSON."""
    from wsi_amf.points import midogpp as reader

    path = shared_file("formats", "MIDOG++.json")
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {i["id"]: i["file_name"] for i in data["images"]}
    oracle = Counter((files[a["image_id"]], names[a["category_id"]]) for a in data["annotations"])
    found: Counter[tuple[str, str]] = Counter()
    for image in data["images"]:  # the parsed file, read once: reading it 553 times would take minutes
        table = reader.read_table(path, data, slide=SlideContext(name=image["file_name"]), db_slide=None,
                                  score_col=None)
        found.update((image["file_name"], cls) for cls in table.columns["class"])
    assert found == oracle
    assert sum(oracle.values()) == 26_286 and len(files) == 553
    assert sum(n for (_, cls), n in oracle.items() if cls == "mitotic figure") == 11_937
    assert sum(n for (_, cls), n in oracle.items() if cls == "not mitotic figure") == 14_349
    # end to end, from the file: a slide whose edge figure has a negative centre is read whole
    points = read_points(path, slide=SlideContext(name="305.tiff", mpp=0.2273, dimensions=(6447, 4835)))
    assert len(points) == sum(n for (f, _), n in oracle.items() if f == "305.tiff")
    assert (points.xy[:, 0] < 0).sum() == 1


def test_real_midogpp_and_sliderunner_agree_on_the_shared_slides() -> None:
    """MIDOG++ includes the MIDOG 2021 slides: the same figures at the same positions (box centre = spot)."""
    db = shared_file("formats", "MIDOG21.sqlite")
    coco = shared_file("formats", "MIDOG++.json")
    for name in ("001.tiff", "034.tiff", "094.tiff"):
        a = read_points(db, slide=SlideContext(name=name))
        b = read_points(coco, slide=SlideContext(name=name))
        order_a, order_b = np.lexsort(a.xy.T[::-1]), np.lexsort(b.xy.T[::-1])
        np.testing.assert_allclose(a.xy[order_a], b.xy[order_b])
        assert [a.columns["class"][i] for i in order_a] == [b.columns["class"][i] for i in order_b]


# ---------------------------------------------------------------- QuPath GeoJSON versions and containers


def qupath_cell(version: str, x: float, y: float, nucleus_x: float, nucleus_y: float) -> dict[str, Any]:
    """One cell as QuPath `version` exports it (outline at (x, y), nucleus at (nucleus_x, nucleus_y))."""

    def square(cx: float, cy: float) -> dict[str, Any]:
        ring = [[cx - 2, cy - 2], [cx + 2, cy - 2], [cx + 2, cy + 2], [cx - 2, cy + 2], [cx - 2, cy - 2]]
        return {"type": "Polygon", "coordinates": [ring]}

    feature: dict[str, Any] = {"type": "Feature", "geometry": square(x, y), "nucleusGeometry": square(nucleus_x, nucleus_y)}
    if version == "0.2":
        feature["id"] = "PathCellObject"
        feature["properties"] = {"classification": {"name": "Mitosis", "colorRGB": -3670016}, "isLocked": False,
                                 "measurements": [{"name": "score", "value": 0.7}]}
    elif version == "0.3":
        feature["id"] = "PathCellObject"
        feature["properties"] = {"object_type": "cell", "classification": {"name": "Mitosis", "colorRGB": -3670016},
                                 "isLocked": False, "measurements": [{"name": "score", "value": 0.7}]}
    else:
        feature["id"] = "4b9d8f0e-3c7a-4a55-9f1e-8f0a5d2c1b7e"
        feature["properties"] = {"objectType": "cell", "classification": {"name": "Mitosis", "color": [200, 0, 0]},
                                 "measurements": {"score": 0.7}}
    return feature


@pytest.mark.parametrize("version", ["0.2", "0.3", "0.4"])
def test_qupath_versions(tmp_path: Path, version: str) -> None:
    data = {"type": "FeatureCollection", "features": [qupath_cell(version, 100, 100, 103, 97)]}
    points = read_points(write_json(tmp_path / "cells.geojson", data))
    np.testing.assert_allclose(points.xy, [[103, 97]])  # the nucleus' centroid
    assert points.columns["object_type"] == ["cell"]
    assert points.columns["classification"] == ["Mitosis"]
    assert points.columns["id"] == ([""] if version != "0.4" else ["4b9d8f0e-3c7a-4a55-9f1e-8f0a5d2c1b7e"])
    assert points.score.tolist() == [0.7]


def test_qupath_02_array_of_features(tmp_path: Path) -> None:
    """QuPath 0.2 exported objects as a plain JSON array."""
    data = [qupath_cell("0.2", 10, 10, 11, 12), qupath_cell("0.2", 50, 50, 52, 49)]
    points = read_points(write_json(tmp_path / "cells.json", data), class_name="Mitosis")
    np.testing.assert_allclose(points.xy, [[11, 12], [52, 49]])


def test_geojson_gz(tmp_path: Path) -> None:
    data = {"type": "FeatureCollection", "features": [qupath_cell("0.4", 10, 10, 12, 13)]}
    path = tmp_path / "cells.geojson.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    np.testing.assert_allclose(read_points(path).xy, [[12, 13]])
    csv_gz = tmp_path / "det.csv.gz"
    csv_gz.write_bytes(gzip.compress(b"x,y\n1,2\n"))
    np.testing.assert_array_equal(read_points(csv_gz).xy, [[1, 2]])
    broken = tmp_path / "broken.geojson.gz"
    broken.write_bytes(gzip.compress(b"{}")[:-6])
    assert "not a valid gzip file" in read_error(broken)


def test_geojson_zip_with_several_members(tmp_path: Path) -> None:
    path = tmp_path / "objects.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("b.geojson", json.dumps({"type": "FeatureCollection",
                                                  "features": [qupath_cell("0.4", 30, 30, 31, 32)]}))
        archive.writestr("a.json", json.dumps([qupath_cell("0.3", 10, 10, 11, 12)]))
        archive.writestr("readme.txt", "not objects")
        archive.writestr("__MACOSX/._a.json", "junk")
    points = read_points(path)
    np.testing.assert_allclose(points.xy, [[11, 12], [31, 32]])  # members in name order


def test_geojson_zip_problems_name_the_member(tmp_path: Path) -> None:
    path = tmp_path / "objects.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.geojson", json.dumps([qupath_cell("0.4", 10, 10, 11, 12)]))
        archive.writestr("b.geojson", '[{"type": "Feature", "geometry": {"type": "Point", "coordinates": ["1", 2]}}]')
    assert "member 'b.geojson' feature 1: coordinates are not [x, y] numbers" in read_error(path)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("notes.txt", "x")
    assert "holds no .geojson or .json file (files: 'notes.txt')" in read_error(empty)
    assert "only QuPath GeoJSON is read from one" in read_error(path, fmt="csv")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert "cannot read the zip archive" in read_error(tmp_path / "bad.zip")


# ---------------------------------------------------------------- the CLI on a synthetic slide


def screen_cli(tmp_path: Path, slide: Path, points: Path, bundle: Path, *options: str) -> list[dict[str, str]]:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["screen", str(slide), "--points", str(points), "--model", str(bundle),
                                    "--out", str(out), "--cache", str(tmp_path / "cache"), *options])
    assert res.exit_code == 0, res.output
    import csv

    with open(out / f"{slide.stem}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_screen_with_gc_json_in_millimetres(tmp_path: Path, slide025: Any, tiny_bundle: Any) -> None:
    entries = [gc_point(x / 1000, y / 1000, 0.95 - 0.1 * i) for i, (x, y) in enumerate(MITOSES_UM)]
    entries[1]["name"] = "non-mitotic figure"
    path = write_json(tmp_path / "track1.json", gc_points(entries))
    rows = screen_cli(tmp_path, slide025.path, path, tiny_bundle.path, "--min-score", "0.5")
    expected = [slide025.px(x, y) for x, y in MITOSES_UM[:5]]  # scores 0.95 ... 0.55
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in rows], expected, rtol=1e-9)
    assert [r["status"] for r in rows] == ["ok"] * 5
    assert [r["below_detector_threshold"] for r in rows] == ["no", "yes", "no", "no", "no"]
    assert rows[0]["class"] == "mitotic figure" and rows[0]["score"] == "0.95"


def test_cli_screen_with_a_sliderunner_database(tmp_path: Path, slide025: Any, tiny_bundle: Any) -> None:
    xy = [slide025.px(x, y) for x, y in MITOSES_UM]
    annotations = [Annotation(2, [xy[i]], agreed_class=1 + i % 2) for i in range(len(xy))]
    annotations += [Annotation(1, [(5, 5)]), Annotation(2, [(7, 7)], deleted=1)]
    db = write_sliderunner(tmp_path / "MIDOG.sqlite", [("other.svs", None, None), (slide025.path.name, 2048, 2048)],
                           ["mitotic figure", "not mitotic figure"], annotations)
    rows = screen_cli(tmp_path, slide025.path, db, tiny_bundle.path, "--class", "mitotic figure")
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in rows], xy[::2])
    assert {r["class"] for r in rows} == {"mitotic figure"} and len(rows) == 4
    # --db-slide picks another entry: its point (5, 5) lies on the slide
    rows = screen_cli(tmp_path, slide025.path, db, tiny_bundle.path, "--db-slide", "other.svs")
    assert [(r["x"], r["y"]) for r in rows] == [("5", "5")]


def test_cli_db_slide_on_a_csv_is_a_usage_error(tmp_path: Path, slide025: Any, tiny_bundle: Any) -> None:
    path = tmp_path / "det.csv"
    path.write_text("x,y\n10,10\n")
    res = CliRunner().invoke(main, ["screen", str(slide025.path), "--points", str(path), "--model",
                                    str(tiny_bundle.path), "--out", str(tmp_path / "out"), "--db-slide", "a.svs"])
    assert res.exit_code == 2 and "--db-slide applies to" in res.output and "Traceback" not in res.output


def test_cli_gc_json_in_pixels_is_a_one_line_error(tmp_path: Path, slide025: Any, tiny_bundle: Any) -> None:
    entries = [gc_point(*slide025.px(x, y), 0.9) for x, y in MITOSES_UM]  # pixels written as if mm
    path = write_json(tmp_path / "track1.json", gc_points(entries))
    res = CliRunner().invoke(main, ["screen", str(slide025.path), "--points", str(path), "--model",
                                    str(tiny_bundle.path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "look like pixels" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
