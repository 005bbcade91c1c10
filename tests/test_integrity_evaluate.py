"""Numbers that are not what they seem: evaluate on the model's own training figures, candidates on glass."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import report_values, shared_file, write_points_csv
from PIL import Image

from wsi_amf.bundle import BUNDLE_FILE, default_bundle_path
from wsi_amf.cli import main


@pytest.fixture(scope="module")
def amibr_subset(tmp_path_factory):
    """20 atypical and 20 normal AMi-Br patches (the built-in model's training data) as class folders, and the
    same patches mirrored (figures the model never saw as such)."""
    if not (default_bundle_path() / BUNDLE_FILE).exists():
        pytest.skip("the built-in model is not shipped in this checkout")
    src = shared_file("amibr", "patches")
    root = tmp_path_factory.mktemp("amibr")
    for cls in ("atypical", "normal"):
        for kind in ("seen", "mirrored"):
            (root / kind / cls).mkdir(parents=True)
        for p in sorted((src / cls).glob("*.png"))[:20]:
            shutil.copy(p, root / "seen" / cls / p.name)
            Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "mirrored" / cls / p.name)
    return root


def test_evaluate_on_training_figures_says_so(amibr_subset, tmp_path):
    res = CliRunner().invoke(main, ["evaluate", str(amibr_subset / "seen"), "--out", str(tmp_path / "ev"),
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "40 of the 40 patches" in res.output and "in-sample" in res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["training_overlap"]["n_in_training"] == 40 and "in-sample" in m["training_overlap"]["warning"]
    assert report_values(tmp_path / "ev" / "report.html")["training_overlap"].startswith("40 of the 40 patches")
    assert "IN-SAMPLE" in (tmp_path / "ev" / "report.html").read_text()
    res = CliRunner().invoke(main, ["evaluate", str(amibr_subset / "mirrored"), "--out", str(tmp_path / "ev2"),
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "in-sample" not in res.output
    m = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert m["training_overlap"] == {"n_in_training": 0, "n": 40, "warning": None}


def test_candidates_on_glass_get_status_background(tmp_path, tiny_bundle):
    import openslide

    slide = shared_file("slides", "CMU-1-Small-Region.svs")
    rng = np.random.default_rng(0)
    xy = np.c_[rng.integers(0, 2220, 200), rng.integers(0, 2967, 200)].astype(float)
    pts = write_points_csv(tmp_path / "det.csv", xy)
    res = CliRunner().invoke(main, ["-q", "screen", str(slide), "--points", str(pts), "--model", str(tiny_bundle.path),
                                    "--out", str(tmp_path / "out"), "--threshold", "0.0"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "out" / "CMU-1-Small-Region.summary.json").read_text())
    with open(tmp_path / "out" / "CMU-1-Small-Region.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    glass = [r for r in rows if r["status"] == "background"]
    assert 80 <= len(glass) <= 140 and s["n_skipped_background"] == len(glass)  # about half the field is glass
    assert s["n_classified"] == 200 - len(glass) == s["n_atypical"]  # threshold 0: every classified one called
    assert all(r["p_atypical"] == "" and r["label"] == "" for r in glass)
    assert sorted(map(tuple, s["background_px"])) == sorted((float(r["x"]), float(r["y"])) for r in glass)
    # Independently: the slide is near white at every background candidate.
    with openslide.OpenSlide(str(slide)) as osl:
        for r in glass:
            px = np.asarray(osl.read_region((int(float(r["x"])), int(float(r["y"]))), 0, (1, 1)).convert("RGB"))[0, 0]
            assert px.min() > 200, (r, px)
    features = json.loads((tmp_path / "out" / "CMU-1-Small-Region.geojson").read_text())["features"]
    assert len(features) == s["n_classified"]
