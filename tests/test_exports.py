"""``--export gc-json``: grand-challenge "Multiple points" JSON in millimetres, P(atypical) as probability."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MITOSES_UM, write_points_csv

from wsi_amf import screen
from wsi_amf.cli import main
from wsi_amf.errors import OptionError
from wsi_amf.exports import GC_ATYPICAL, GC_NORMAL
from wsi_amf.options import ScreenOptions


def assert_gc_multiple_points(path) -> list[dict]:
    """The rules of ../shared/FORMATS.md for a grand-challenge "Multiple points" document."""
    doc = json.loads(path.read_text())
    assert doc["type"] == "Multiple points" and doc["name"] == "Points of interest"
    assert doc["version"] == {"major": 1, "minor": 0}
    for p in doc["points"]:
        assert set(p) == {"name", "point", "probability"} and p["name"] in (GC_ATYPICAL, GC_NORMAL)
        assert len(p["point"]) == 3 and p["point"][2] == 0 and all(isinstance(v, (int, float)) for v in p["point"])
        assert isinstance(p["probability"], float) and 0.0 <= p["probability"] <= 1.0
    return doc["points"]


@pytest.mark.parametrize("mpp", [0.125, 0.25, 0.5])
def test_gc_json_round_trips_millimetres(tmp_path, slides, tiny_bundle, mpp):
    sl = slides[mpp]
    xy = [sl.px(x, y) for x, y in MITOSES_UM] + [(1e6, 5.0)]  # the last one outside the slide: not exported
    pts = write_points_csv(tmp_path / "det.csv", xy)
    r = screen(sl.path, pts, ScreenOptions(cache_dir=tmp_path / "c", export=["gc-json"]), model=tiny_bundle,
               out=tmp_path / "out", progress=False)
    assert r.outputs["gc-json"] == tmp_path / "out" / f"{sl.path.stem}.gc.json"
    points = assert_gc_multiple_points(r.outputs["gc-json"])
    rows = [row for row in csv.DictReader(r.outputs["csv"].open()) if row["status"] == "ok"]
    assert len(points) == len(rows) == len(MITOSES_UM)
    for p, row, (x_um, y_um) in zip(points, rows, MITOSES_UM):
        x_mm, y_mm, _ = p["point"]
        assert x_mm * 1000 / mpp == pytest.approx(float(row["x"]), abs=1e-9)  # back to level-0 pixels
        assert y_mm * 1000 / mpp == pytest.approx(float(row["y"]), abs=1e-9)
        assert (x_mm, y_mm) == pytest.approx((x_um / 1000, y_um / 1000), abs=1e-12)  # the same tissue at any mpp
        assert p["probability"] == pytest.approx(float(row["p_atypical"]), abs=1e-6)
        assert (p["name"] == GC_ATYPICAL) == (row["label"] == "atypical") == (p["probability"] >= r.threshold)
    np.testing.assert_array_equal([p["probability"] for p in points], r.p_atypical[r.classified])


def test_cli_export_and_unknown_names(tmp_path, slide025, mitosis_points, tiny_bundle):
    base = ["screen", str(slide025.path), "--points", str(mitosis_points), "--model", str(tiny_bundle.path),
            "--cache", str(tmp_path / "c"), "--engine", "torch"]
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "out"), "--export", "gc-json"])
    assert res.exit_code == 0, res.output
    assert len(assert_gc_multiple_points(tmp_path / "out" / "scene_0.25.gc.json")) == len(MITOSES_UM)
    res = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "out2"), "--export", "xml"])
    assert res.exit_code == 2 and "--export" in res.output and not (tmp_path / "out2").exists()
    with pytest.raises(OptionError, match="--export 'xml'"):
        screen(slide025.path, mitosis_points, ScreenOptions(export=["xml"]), model=tiny_bundle, progress=False)


def test_gc_json_export_screens_back_in(tmp_path, slide025, tiny_bundle):
    """Our grand-challenge export is a valid points file for the next screening: same positions, and the
    exported P(atypical) becomes the detector score that --min-score filters."""
    xy = [slide025.px(x, y) for x, y in MITOSES_UM]
    first = screen(slide025.path, write_points_csv(tmp_path / "det.csv", xy),
                   ScreenOptions(cache_dir=tmp_path / "c", export=["gc-json"]), model=tiny_bundle, out=tmp_path / "one",
                   progress=False)
    again = screen(slide025.path, first.outputs["gc-json"], ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle,
                   progress=False)
    np.testing.assert_allclose(again.points.xy, first.points.xy, atol=1e-6)
    np.testing.assert_allclose(again.points.score, first.p_atypical, atol=1e-12)
    np.testing.assert_allclose(again.p_atypical, first.p_atypical, atol=1e-9)
    assert again.n_read == 0  # the same patches, straight from the cache
