"""Regions of interest: the QuPath annotation reader, and ROI counts and densities on synthetic slides."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MITOSES_UM, write_points_csv

from wsi_amf import screen
from wsi_amf.cli import main
from wsi_amf.errors import RoiError
from wsi_amf.options import ScreenOptions
from wsi_amf.roi import read_roi


def square(cx: float, cy: float, half: float) -> list[list[float]]:
    return [[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half], [cx - half, cy - half]]


def feature(geometry: dict, name: str = "Tumor") -> dict:
    return {"type": "Feature", "id": "5b1d5a0e-8f43-4a39-9a52-2e5f3f0d1c11", "geometry": geometry,
            "properties": {"objectType": "annotation", "classification": {"name": name, "color": [200, 0, 0]}}}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# The ROI of the screening tests, in micrometres: the left strip x 0-250 um with a hole around the figure at
# (100, 100), plus a square around the figure at (400, 300). Area 250*512 - 40*40 + 40*40 um^2 = 0.128 mm^2.
ROI_AREA_MM2 = 0.128
INSIDE = [(150.0, 420.0), (60.0, 300.0), (400.0, 300.0)]


def roi_file(path: Path, mpp: float) -> Path:
    px = lambda ring: [[x / mpp, y / mpp] for x, y in ring]  # noqa: E731
    strip = {"type": "Polygon", "coordinates": [px([[0, 0], [250, 0], [250, 512], [0, 512], [0, 0]]), px(square(100, 100, 20))]}
    box = {"type": "MultiPolygon", "coordinates": [[px(square(400, 300, 20))]]}
    return write_json(path, {"type": "FeatureCollection", "features": [feature(strip), feature(box, "Hotspot")]})


def test_reader_unions_polygons_keeps_holes_and_repairs_bowties(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bowtie = [[0, 0], [20, 20], [20, 0], [0, 20], [0, 0]]  # self-intersecting: two triangles of 100 px^2
    data = {"type": "FeatureCollection", "features": [
        feature({"type": "Polygon", "coordinates": [square(100, 100, 50), square(100, 100, 10)]}),  # 10000 - 400
        feature({"type": "Polygon", "coordinates": [square(150, 100, 10)]}),  # half over the first: +200
        feature({"type": "Polygon", "coordinates": [bowtie]}),
        feature({"type": "Point", "coordinates": [5, 5]}),
    ]}
    with caplog.at_level(logging.WARNING, logger="wsi_amf.roi"):
        roi = read_roi(write_json(tmp_path / "a.geojson", data))
    assert roi.n_polygons == 3 and roi.area_px == pytest.approx(10000 - 400 + 200 + 200)
    assert "1 Point" in caplog.text
    inside = roi.contains(np.array([[100.0, 100.0], [60.0, 60.0], [155.0, 100.0], [5.0, 10.0], [15.0, 10.0], [10.0, 5.0],
                                    [50.0, 100.0]]))
    assert inside.tolist() == [False, True, True, True, True, False, True]  # hole; body; overlap; bowtie; boundary
    assert roi.area_mm2(0.25) == pytest.approx(roi.area_px * 0.25e-3**2)


@pytest.mark.parametrize("wrap", ["collection", "feature", "list", "geometry", "geometry-collection"])
def test_reader_containers(tmp_path: Path, wrap: str) -> None:
    geometry = {"type": "Polygon", "coordinates": [square(50, 50, 10)]}
    data = {
        "collection": {"type": "FeatureCollection", "features": [feature(geometry)]},
        "feature": feature(geometry),
        "list": [feature(geometry)],
        "geometry": geometry,
        "geometry-collection": {"type": "GeometryCollection", "geometries": [geometry, {"type": "Point", "coordinates": [1, 1]}]},
    }[wrap]
    assert read_roi(write_json(tmp_path / "r.json", data)).area_px == pytest.approx(400)


@pytest.mark.parametrize("mpp", [0.125, 0.25, 0.5])
def test_roi_counts_and_densities_on_synthetic_slides(tmp_path: Path, slides, tiny_bundle, mpp: float) -> None:
    sl = slides[mpp]
    xy = [sl.px(x, y) for x, y in MITOSES_UM] + [(1e5, 10.0)]  # the last one outside the slide
    pts = write_points_csv(tmp_path / "det.csv", xy, {"id": [f"m{i}" for i in range(len(xy))]})
    roi = roi_file(tmp_path / "roi.geojson", mpp)
    cache = tmp_path / "cache"
    full = screen(sl.path, pts, ScreenOptions(cache_dir=cache), model=tiny_bundle, progress=False)
    r = screen(sl.path, pts, ScreenOptions(cache_dir=cache, roi=roi), model=tiny_bundle, out=tmp_path / "out",
               progress=False)

    expected_inside = [tuple(MITOSES_UM).index(p) for p in INSIDE]
    status = r.status.tolist()
    assert [i for i, s in enumerate(status) if s == "ok"] == sorted(expected_inside)
    assert status[-1] == "outside_slide" and status.count("outside_roi") == len(MITOSES_UM) - len(INSIDE)
    ok = r.status == "ok"
    np.testing.assert_allclose(r.p_atypical[ok], full.p_atypical[ok])  # the same patches, the same model
    assert np.isnan(r.p_atypical[~ok]).all()

    s = json.loads(r.outputs["summary"].read_text())
    n_amf = int((full.p_atypical[ok] >= full.threshold).sum())
    assert s["n_classified"] == 3 and s["n_skipped_outside_roi"] == 5 and s["n_skipped_outside_slide"] == 1
    roi_s = s["roi"]
    assert roi_s["path"] == str(roi) and roi_s["n_polygons"] == 2
    assert roi_s["area_mm2"] == pytest.approx(ROI_AREA_MM2, rel=1e-9)
    assert roi_s["area_px"] == pytest.approx(ROI_AREA_MM2 / (mpp / 1000) ** 2)
    assert roi_s["n_mf"] == 3 and roi_s["n_amf"] == n_amf == s["n_atypical"]
    assert roi_s["mf_per_mm2"] == pytest.approx(3 / 0.128) and roi_s["mf_per_2mm2"] == pytest.approx(6 / 0.128)
    assert roi_s["amf_per_mm2"] == pytest.approx(n_amf / 0.128) and roi_s["amf_per_2mm2"] == pytest.approx(2 * n_amf / 0.128)

    rows = list(csv.DictReader(r.outputs["csv"].open()))
    assert [row["status"] for row in rows] == status
    assert all(row["p_atypical"] == "" and row["label"] == "" for row in rows if row["status"] != "ok")


def test_roi_reaching_past_the_slide_is_clipped(tmp_path: Path, slide025, tiny_bundle) -> None:
    w = 512 / 0.25  # the slide is 2048 px wide
    roi = write_json(tmp_path / "roi.geojson", feature({"type": "Polygon", "coordinates": [
        [[w - 300, -300], [w + 900, -300], [w + 900, 400], [w - 300, 400], [w - 300, -300]]]}))
    pts = write_points_csv(tmp_path / "det.csv", [slide025.px(450.0, 80.0), slide025.px(60.0, 300.0)])
    r = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c", roi=roi), model=tiny_bundle, progress=False)
    s = r.summary()["roi"]
    assert s["area_px"] == pytest.approx(300 * 400)  # only the part on the slide counts
    assert r.status.tolist() == ["ok", "outside_roi"] and s["n_mf"] == 1
    assert s["mf_per_mm2"] == pytest.approx(1 / (300 * 400 * 0.25e-3**2))


def test_roi_without_candidates_gives_zero_densities(tmp_path: Path, slide025, tiny_bundle) -> None:
    roi = write_json(tmp_path / "roi.geojson", feature({"type": "Polygon", "coordinates": [square(1000, 1800, 100)]}))
    pts = write_points_csv(tmp_path / "det.csv", [slide025.px(x, y) for x, y in MITOSES_UM])
    s = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c", roi=roi), model=tiny_bundle,
               progress=False).summary()
    assert s["n_classified"] == 0 and s["amf_ratio"] is None
    assert s["roi"]["n_mf"] == 0 and s["roi"]["mf_per_mm2"] == 0.0 and s["roi"]["area_px"] == pytest.approx(40000)


def test_cli_roi_line(tmp_path: Path, slide025, mitosis_points, tiny_bundle) -> None:
    roi = roi_file(tmp_path / "roi.geojson", 0.25)
    res = CliRunner().invoke(main, ["screen", str(slide025.path), "--points", str(mitosis_points), "--roi", str(roi),
                                    "--model", str(tiny_bundle.path), "--out", str(tmp_path / "out"),
                                    "--cache", str(tmp_path / "c"), "--engine", "torch"])
    assert res.exit_code == 0, res.output
    assert "ROI 0.128 mm2: 3 mitotic figures (46.9 per 2 mm2)" in res.output and "5 candidates outside the ROI" in res.output


@pytest.mark.parametrize("data, problem", [
    ({"type": "FeatureCollection", "features": []}, "no Polygon or MultiPolygon"),
    (feature({"type": "Point", "coordinates": [1, 2]}), "(found: 1 Point)"),
    (feature({"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [1, 1], [0, 0]]]}), "is not [x, y] numbers"),
    (feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}), "fewer than 3 distinct"),
    (feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}), "(found: 1 Polygon without area)"),
    (feature({"type": "Polygon", "coordinates": "abc"}), "expected a list"),
    (feature({"type": "Circle", "coordinates": []}), '"Circle" is not a GeoJSON geometry'),
    ([1, 2], "object 1 is a number"),
    ("text", "the top level is a string"),
])
def test_reader_errors_are_one_line(tmp_path: Path, data: object, problem: str) -> None:
    path = write_json(tmp_path / "roi.geojson", data)
    with pytest.raises(RoiError) as err:
        read_roi(path)
    assert problem in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
