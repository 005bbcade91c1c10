"""The demo: a synthetic slide with candidate points, screened end to end (with the built-in model when shipped)."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from wsi_amf.bundle import default_bundle_path, load_bundle
from wsi_amf.cli import main
from wsi_amf.demo import make_demo_slide
from wsi_amf.slide import Slide


def test_demo_slide_is_a_readable_pyramid_with_points_inside(tmp_path):
    slide, points = make_demo_slide(tmp_path, n_figures=12)
    rows = list(csv.DictReader(points.open()))
    assert len(rows) == 12 and {r["drawn_as"] for r in rows} <= {"metaphase", "multipolar"}
    with Slide(slide) as sl:
        assert sl.mpp == pytest.approx(0.25) and len(sl.level_downsamples) == 3
        for r in rows:
            x, y = float(r["x"]), float(r["y"])
            assert 0 <= x < sl.dimensions[0] and 0 <= y < sl.dimensions[1]
            patch = sl.read_patch(x, y, size=64, target_mpp=0.25)
            centre = patch[16:48, 16:48].astype(int).sum(axis=-1)  # +-4 um: a plate or the arms of a multipolar figure
            assert centre.min() < 300  # condensed chromatin: far darker than the pink background (~660)


def test_demo_command_runs_with_any_bundle(tmp_path, tiny_bundle):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--model", str(tiny_bundle.path)])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output and "QuPath" in res.output
    summary = json.loads((tmp_path / "demo" / "results" / "demo_slide.summary.json").read_text())
    assert summary["n_candidates"] == summary["n_classified"] == 40
    report = tmp_path / "demo" / "results" / "demo_slide.report.html"
    assert f"open {report}" in res.output and report.read_text().count('class="marker-') == 2 * 40  # thumbnail + hotspot


def test_demo_with_the_built_in_model(tmp_path):
    if not (default_bundle_path() / "bundle.json").exists():
        pytest.skip("the built-in model is not shipped in this checkout")
    bundle = load_bundle()
    assert sum(p.stat().st_size for p in bundle.member_paths()) < 26e6
    res = CliRunner().invoke(main, ["-q", "demo", "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "demo" / "results" / "demo_slide.geojson").exists()
    summary = json.loads((tmp_path / "demo" / "results" / "demo_slide.summary.json").read_text())
    for key in ("domain_warning", "ratio_warning"):  # what screen shows, the demo shows (even with -q)
        if summary[key]:
            assert f"warning: {summary[key]}" in res.output
