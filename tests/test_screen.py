"""End-to-end screening: outputs, QuPath GeoJSON rules, counts and ratios, engines, the CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MITOSES_UM, shared_file, write_points_csv

from wsi_amf import screen
from wsi_amf.cli import main
from wsi_amf.ensemble import Ensemble
from wsi_amf.options import ScreenOptions
from wsi_amf.outputs import AMF_CLASS, NMF_CLASS
from wsi_amf.stats import wilson_interval

ROOT = Path(__file__).resolve().parents[1]


def assert_qupath_geojson(path: Path, n_expected: int) -> list[dict]:
    """The rules of ../shared/FORMATS.md for a file QuPath imports as detections."""
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == n_expected
    for f in data["features"]:
        assert f["type"] == "Feature"
        assert str(uuid.UUID(f["id"])) == f["id"]  # a real UUID, else QuPath drops it
        assert f["geometry"]["type"] == "Point" and len(f["geometry"]["coordinates"]) == 2
        assert "objectType" not in f  # must sit inside properties
        props = f["properties"]
        assert props["objectType"] == "detection"
        cls = props["classification"]
        assert isinstance(cls, dict) and cls["name"] in (AMF_CLASS, NMF_CLASS)
        assert len(cls["color"]) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in cls["color"])
        assert isinstance(props["measurements"], dict)
        assert all(isinstance(v, float) and math.isfinite(v) for v in props["measurements"].values())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.get("metadata", {}).items())
    return data["features"]


def test_screen_writes_consistent_outputs(tmp_path, slide025, tiny_bundle):
    xy = [slide025.px(x, y) for x, y in MITOSES_UM] + [(5000.0, 10.0), (10.0, 2048.0)]  # two outside the slide
    pts = write_points_csv(tmp_path / "det.csv", xy, {"id": list(range(len(xy))), "score": [0.9] * len(xy)})
    r = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, out=tmp_path / "out",
               progress=False)
    assert set(r.outputs) == {"geojson", "csv", "summary"}
    summary = json.loads(r.outputs["summary"].read_text())
    assert summary["n_candidates"] == 10 and summary["n_classified"] == 8 and summary["n_skipped"] == 2
    assert summary["n_atypical"] + summary["n_normal"] == 8
    assert summary["amf_ratio"] == pytest.approx(summary["n_atypical"] / 8)
    assert summary["amf_ratio_ci95"] == pytest.approx(list(wilson_interval(summary["n_atypical"], 8)), abs=1e-6)
    assert summary["mpp"] == pytest.approx(0.25) and summary["threshold"] == 0.5

    rows = list(csv.DictReader(r.outputs["csv"].open()))
    assert [row["id"] for row in rows] == [str(i) for i in range(10)]
    assert [row["status"] for row in rows[-2:]] == ["outside_slide"] * 2 and rows[-1]["label"] == ""
    for row in rows[:8]:
        p = float(row["p_atypical"])
        assert row["label"] == ("atypical" if p >= 0.5 else "normal") and row["score"] == "0.9"

    features = assert_qupath_geojson(r.outputs["geojson"], 8)
    for f, row in zip(features, rows):
        assert f["geometry"]["coordinates"] == [float(row["x"]), float(row["y"])]
        assert f["properties"]["measurements"]["AMF probability"] == pytest.approx(float(row["p_atypical"]), abs=1e-6)
        assert f["properties"]["measurements"]["Detector score"] == 0.9
        assert (f["properties"]["classification"]["name"] == AMF_CLASS) == (row["label"] == "atypical")
        assert f["properties"]["metadata"] == {"id": row["id"]}  # the input's id column, carried through


def test_wilson_interval_hand_computed():
    lo, hi = wilson_interval(3, 10)  # textbook value: 0.1078 - 0.6032
    assert lo == pytest.approx(0.1078, abs=1e-4) and hi == pytest.approx(0.6032, abs=1e-4)
    assert wilson_interval(0, 0) is None and wilson_interval(0, 5)[0] == 0.0


def test_threshold_and_tta(tmp_path, slide025, mitosis_points, tiny_bundle):
    base = screen(slide025.path, mitosis_points, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle,
                  progress=False)
    cut = float(np.median(base.p_atypical))
    r = screen(slide025.path, mitosis_points, ScreenOptions(cache_dir=tmp_path / "c", threshold=cut),
               model=tiny_bundle, progress=False)
    assert r.n_atypical == int((base.p_atypical >= cut).sum()) and r.threshold == cut
    tta = screen(slide025.path, mitosis_points, ScreenOptions(cache_dir=tmp_path / "c", tta=True), model=tiny_bundle,
                 progress=False)
    assert tta.engine["tta"] and not np.allclose(tta.p_atypical, base.p_atypical, atol=1e-7)


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_cpu_runtime_matches_eager_torch(tiny_bundle, engine):
    if engine == "openvino":
        pytest.importorskip("openvino")
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, size=(37, 128, 128, 3), dtype=np.uint8)
    fast = Ensemble(tiny_bundle, device="cpu", engine=engine)
    eager = Ensemble(tiny_bundle, device="cpu", engine="torch")
    assert fast.info.engine == engine and eager.info.engine == "torch"
    np.testing.assert_allclose(fast.predict(patches), eager.predict(patches), atol=1e-3)
    np.testing.assert_allclose(fast.predict(patches[:5]), fast.predict(patches)[:5], atol=1e-6)  # batch-independent


def test_onnx_graphs_are_exported_once_and_reused(tiny_bundle, tmp_path, monkeypatch):
    from wsi_amf import onnx_graphs

    monkeypatch.setenv("WSI_AMF_CACHE", str(tmp_path / "cache"))
    patches = np.random.default_rng(2).integers(0, 256, size=(9, 128, 128, 3), dtype=np.uint8)
    first = Ensemble(tiny_bundle, device="cpu", engine="onnx").predict(patches)
    graphs = sorted((tmp_path / "cache" / "graphs").glob("*.onnx"))
    assert len(graphs) == len(tiny_bundle.config.members)
    stamps = [g.stat().st_mtime_ns for g in graphs]
    monkeypatch.setattr(onnx_graphs, "export", lambda *a, **k: pytest.fail("exported again"))
    for engine in ("onnx", "openvino") if importlib.util.find_spec("openvino") else ("onnx",):
        np.testing.assert_allclose(Ensemble(tiny_bundle, device="cpu", engine=engine).predict(patches), first, atol=1e-6)
    assert [g.stat().st_mtime_ns for g in graphs] == stamps


def test_unwritable_graph_cache_keeps_graphs_in_memory(tiny_bundle, tmp_path, monkeypatch):
    (tmp_path / "not-a-dir").write_text("a file where the cache folder should be")
    monkeypatch.setenv("WSI_AMF_CACHE", str(tmp_path / "not-a-dir"))
    patches = np.random.default_rng(3).integers(0, 256, size=(4, 128, 128, 3), dtype=np.uint8)
    fast = Ensemble(tiny_bundle, device="cpu")
    assert fast.info.engine in ("openvino", "onnx")
    np.testing.assert_allclose(fast.predict(patches), Ensemble(tiny_bundle, device="cpu", engine="torch").predict(patches),
                               atol=1e-3)


def test_auto_engine_on_cpu_prefers_openvino_then_onnx(tiny_bundle):
    expected = "openvino" if importlib.util.find_spec("openvino") else "onnx"
    assert Ensemble(tiny_bundle, device="cpu").info.engine == expected


def test_empty_detection_gives_zero_counts(tmp_path, slide025, tiny_bundle):
    pts = tmp_path / "none.csv"
    pts.write_text("x,y,score\n")
    r = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, out=tmp_path / "out",
               progress=False)
    s = json.loads(r.outputs["summary"].read_text())
    assert s["n_candidates"] == 0 and s["n_atypical"] == 0 and s["amf_ratio"] is None and s["amf_ratio_ci95"] is None
    assert_qupath_geojson(r.outputs["geojson"], 0)


def test_failed_output_leaves_nothing_half_written(tmp_path, slide025, mitosis_points, tiny_bundle, monkeypatch):
    import wsi_amf.results as results

    def boom(result):
        raise RuntimeError("disk full")

    monkeypatch.setattr(results, "_summary", boom)
    with pytest.raises(RuntimeError):
        screen(slide025.path, mitosis_points, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle,
               out=tmp_path / "out", progress=False)
    assert not any((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_cli_screen(tmp_path, slide025, mitosis_points, tiny_bundle):
    res = CliRunner().invoke(main, ["screen", str(slide025.path), "--points", str(mitosis_points), "--model",
                                    str(tiny_bundle.path), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
                                    "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    assert "8 of 8 candidates classified" in res.output and "scene_0.25.geojson" in res.output
    assert (tmp_path / "out" / "scene_0.25.summary.json").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["screen", "{slide}", "--points", "{missing}", "--model", "{bundle}"], 1, "does not exist"),
        (["screen", "{dir}", "--points", "{points}", "--model", "{bundle}"], 1, "is a directory"),
        (["screen", "{slide}", "--points", "{points}", "--model", "{dir}"], 1, "bundle.json is missing"),
        (["screen", "{slide}", "--points", "{points}", "--model", "{bundle}", "--mpp", "0"], 2, "--mpp 0"),
        (["screen", "{slide}", "--points", "{points}", "--model", "{bundle}", "--threshold", "2"], 2, "--threshold"),
        (["screen", "{slide}", "--model", "{bundle}"], 2, "--points"),
        (["screen", "{slide}", "--points", "{points}", "--model", "{bundle}", "--device", "tpu"], 2, "--device"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, slide025, mitosis_points, tiny_bundle, args, code, message):
    subs = {"{slide}": str(slide025.path), "{points}": str(mitosis_points), "{bundle}": str(tiny_bundle.path),
            "{missing}": str(tmp_path / "missing.csv"), "{dir}": str(tmp_path)}
    argv = [subs.get(a, a) for a in args] + ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_entry_points_run_from_a_checkout():
    for cmd in ([sys.executable, "-m", "wsi_amf", "--help"], [sys.executable, str(ROOT / "cli.py"), "screen", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0 and "Usage:" in out.stdout


def test_real_slide_cmu1_end_to_end(tmp_path, tiny_bundle):
    slide = shared_file("slides", "CMU-1-Small-Region.svs")
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.uniform(0, [2220, 2967], size=(60, 2)), [[2219, 2966], [3000, 10]]])
    pts = write_points_csv(tmp_path / "det.csv", xy)
    r = screen(slide, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, out=tmp_path / "out",
               progress=False)
    background = int((r.status == "background").sum())  # random points: about half of this field is glass
    assert r.n_classified + background == 61 and 10 < background < 50
    assert (r.status == "outside_slide").sum() == 1 and r.slide_mpp == pytest.approx(0.499)
    assert_qupath_geojson(r.outputs["geojson"], r.n_classified)


def test_real_jpeg2000_slide_with_mpp_option(tmp_path, tiny_bundle):
    slide = shared_file("slides", "TCGA-CR-7395-01A-01-TS1.svs")
    pts = write_points_csv(tmp_path / "det.csv", [(1000, 1000), (2500, 2000), (4400, 3500)])
    res = CliRunner().invoke(main, ["screen", str(slide), "--points", str(pts), "--model", str(tiny_bundle.path),
                                    "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")])
    assert res.exit_code == 1 and "pass --mpp" in res.output and "Traceback" not in res.output
    r = screen(slide, pts, ScreenOptions(mpp=0.25, cache_dir=tmp_path / "c"), model=tiny_bundle, progress=False)
    assert r.mpp_source == "option" and list(r.status) == ["ok", "ok", "background"]  # the last one is on glass
