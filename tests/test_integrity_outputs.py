"""Output sets and cohort tables under faults, through the real CLI: kill -9 between the renames of one slide's
files, a batch re-run over a finished folder, two batches into one --out."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_points_csv

from wsi_amf.cli import main
from wsi_amf.outputs import check_output_set
from wsi_amf.synthetic import write_slide_with_points

ROOT = Path(__file__).resolve().parents[1]


def _grid(n: int) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    g = np.linspace(100, 1900, side)
    return np.array([(x, y) for y in g for x in g][:n])


def _screen_argv(slide, pts, bundle, out, threshold):
    return ["-q", "screen", str(slide), "--points", str(pts), "--model", str(bundle), "--out", str(out),
            "--threshold", str(threshold)]


def _labels(csv_path: Path) -> list[str]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return [r["label"] for r in csv.DictReader(fh)]


def test_kill_between_renames_never_leaves_a_mixed_set(tmp_path, slide025, tiny_bundle):
    pts = write_points_csv(tmp_path / "det.csv", _grid(100))
    out = tmp_path / "out"
    stem = slide025.path.stem
    res = CliRunner().invoke(main, _screen_argv(slide025.path, pts, tiny_bundle.path, out, 0.5))
    assert res.exit_code == 0, res.output
    assert check_output_set(out / f"{stem}.summary.json") is None
    old_csv = (out / f"{stem}.csv").read_text()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSI_AMF_TEST_KILL_AFTER_RENAMES": "1"}
    done = subprocess.run([sys.executable, "-m", "wsi_amf", *_screen_argv(slide025.path, pts, tiny_bundle.path, out, 0.0)],
                          env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL  # killed after the first of the new files was renamed into place
    # The new GeoJSON is in place, the old CSV too, but no summary: the folder holds no set to be taken for one.
    assert not (out / f"{stem}.summary.json").exists()
    assert (out / f"{stem}.csv").read_text() == old_csv
    leftovers = list(out.glob(".*.tmp"))
    assert leftovers  # the killed run's staged files
    res = CliRunner().invoke(main, ["report", str(out)])
    assert res.exit_code == 1 and "nothing to report" in res.output  # no set to report on
    # The next run removes them and writes a whole set.
    res = CliRunner().invoke(main, _screen_argv(slide025.path, pts, tiny_bundle.path, out, 0.0))
    assert res.exit_code == 0, res.output
    assert not list(out.glob(".*.tmp"))
    summary = json.loads((out / f"{stem}.summary.json").read_text())
    assert check_output_set(out / f"{stem}.summary.json") is None
    assert summary["n_atypical"] == _labels(out / f"{stem}.csv").count("atypical") == 100  # threshold 0
    features = json.loads((out / f"{stem}.geojson").read_text())["features"]
    assert len(features) == 100


def test_a_hand_mixed_set_is_refused_by_the_report(tmp_path, slide025, tiny_bundle):
    pts = write_points_csv(tmp_path / "det.csv", _grid(30))
    stem = slide025.path.stem
    for out, thr in ((tmp_path / "a", 1.0), (tmp_path / "b", 0.0)):  # every call differs
        assert CliRunner().invoke(main, _screen_argv(slide025.path, pts, tiny_bundle.path, out, thr)).exit_code == 0
    (tmp_path / "b" / f"{stem}.geojson").write_bytes((tmp_path / "a" / f"{stem}.geojson").read_bytes())
    assert "not the one summary" in check_output_set(tmp_path / "b" / f"{stem}.summary.json")
    res = CliRunner().invoke(main, ["report", str(tmp_path / "b")])
    assert res.exit_code == 1 and "not one run's set" in res.output


@pytest.fixture()
def cohort(tmp_path):
    slides = tmp_path / "slides"
    for k in range(3):
        write_slide_with_points(slides / f"s{k}.tif", slides / f"s{k}.csv", width_um=400.0, height_um=400.0,
                                n_figures=60, n_nuclei=20, seed=30 + k)
    return slides


def _batch(slides, out, bundle, *extra):
    return CliRunner().invoke(main, ["-q", "batch", str(slides), "--out", str(out), "--model", str(bundle),
                                     "--threshold", "0.5", *extra])


def test_rerun_over_a_finished_folder_keeps_rows_and_the_pooled_ratio(tmp_path, cohort, tiny_bundle):
    out = tmp_path / "out"
    assert _batch(cohort, out, tiny_bundle.path, "--report").exit_code == 0
    first = json.loads((out / "cohort.json").read_text())
    for _ in range(2):
        res = _batch(cohort, out, tiny_bundle.path, "--report")
        assert res.exit_code == 0, res.output
        assert "3 ok (3 reused)" in res.output
    again = json.loads((out / "cohort.json").read_text())
    assert all(r["status"] == "ok" and r["reused"] for r in again["slides"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "reused"} for r in rows]  # noqa: E731
    assert strip(again["slides"]) == strip(first["slides"])
    assert again["pooled"] == first["pooled"] and again["pooled"]["n_slides"] == 3
    assert again["pooled"]["n_classified"] == sum(r["n_classified"] for r in first["slides"])
    html = (out / "cohort.html").read_text()
    assert html.count('href="s') >= 3  # every slide in the plot and the table, not only the freshly screened


def test_two_thresholds_into_one_folder_keep_the_table_true(tmp_path, cohort, tiny_bundle):
    out = tmp_path / "out"
    assert _batch(cohort, out, tiny_bundle.path).exit_code == 0
    res = CliRunner().invoke(main, ["-q", "batch", str(cohort), "--out", str(out), "--model", str(tiny_bundle.path),
                                    "--threshold", "0.0"])
    assert res.exit_code == 0, res.output
    table = json.loads((out / "cohort.json").read_text())
    for row in table["slides"]:
        summary = json.loads((out / row["summary"]).read_text())
        assert row["n_atypical"] == summary["n_atypical"] == _labels(out / row["csv"]).count("atypical")


def test_a_second_batch_into_the_same_folder_refuses_in_one_line(tmp_path, cohort, tiny_bundle):
    out = tmp_path / "out"
    slow = tmp_path / "slow"
    for k in range(4):
        write_slide_with_points(slow / f"t{k}.tif", slow / f"t{k}.csv", width_um=512.0, height_um=512.0,
                                n_figures=300, n_nuclei=60, seed=50 + k)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "wsi_amf", "-q", "batch", str(slow), "--out", str(out), "--model",
                             str(tiny_bundle.path), "--batch-size", "8", "--workers", "1", "--cache", str(tmp_path / "c")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".batch" / "lock").exists() or not (out / ".batch" / "lock").read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        res = _batch(cohort, out, tiny_bundle.path)
        assert res.exit_code == 1
        lines = [ln for ln in res.output.splitlines() if ln]
        assert lines == [f"Error: --out {out}: another batch (pid {proc.pid}) is writing into it; wait for it to "
                         "finish or choose another --out"]
        assert not (out / "s0.csv").exists()
    finally:
        proc.kill()
        proc.wait()
    assert _batch(cohort, out, tiny_bundle.path).exit_code == 0  # the lock went with the process
