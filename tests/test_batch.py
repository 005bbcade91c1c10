"""Batch screening of a folder of synthetic slides: the cohort table, failure isolation, resume (also after a
kill -9), prefetching, manifests, and the Ray executor against a local Ray instance."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wsi_amf import screen, screen_batch
from wsi_amf.batch import find_slides, folder_jobs, manifest_jobs
from wsi_amf.batch.cohort import CSV_COLUMNS, ROW_KEYS
from wsi_amf.batch.jobs import unique_stems
from wsi_amf.batch.ray_executor import actor_plan
from wsi_amf.batch.worker import SlideWorker
from wsi_amf.cli import main
from wsi_amf.ensemble import Ensemble
from wsi_amf.errors import ManifestError, OptionError
from wsi_amf.options import ScreenOptions
from wsi_amf.screen import fill_cache
from wsi_amf.stats import wilson_interval
from wsi_amf.synthetic import write_slide_with_points

ROOT = Path(__file__).resolve().parents[1]
GOOD = ("a", "b", "sub__a")
COHORT_KEYS = {"version", "created", "model", "options", "n_slides", "n_ok", "n_failed", "n_skipped", "pooled", "slides"}
VOLATILE = ("reused", "seconds")  # what differs between a resumed run and a clean one


def make_cohort(root: Path, *, n_figures: int = 10, size_um: float = 256.0) -> tuple[Path, Path]:
    """slides/{a,b,badpts,nopts}.tif, slides/sub/a.tif (a stem collision), slides/corrupt.svs (a truncated
    TIFF), files that are not slides; points/<parent>/<stem>.csv for all but nopts (badpts' has a bad row)."""
    slides, points = root / "slides", root / "points"
    for k, name in enumerate(["a", "b", "sub/a", "badpts", "nopts"]):
        write_slide_with_points(slides / f"{name}.tif", points / f"{name}.csv", width_um=size_um, height_um=size_um,
                                n_figures=n_figures, n_nuclei=40, seed=k)
    (points / "nopts.csv").unlink()
    (points / "badpts.csv").write_text("x,y\n10,20\n12,abc\n")
    data = (slides / "b.tif").read_bytes()
    (slides / "corrupt.svs").write_bytes(data[: len(data) // 3])
    shutil.copy(points / "b.csv", points / "corrupt.csv")
    (slides / "notes.txt").write_text("not a slide")
    (slides / ".hidden.tif").write_bytes(data)
    return slides, points


def rows_by_stem(rows) -> dict[str, dict]:
    return {r["stem"]: r for r in rows}


def stable(rows) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def ensemble(tiny_bundle) -> Ensemble:
    return Ensemble(tiny_bundle, device="cpu")


@pytest.fixture(scope="module")
def threshold(cohort, ensemble, tmp_path_factory) -> float:
    """The median P(atypical) of slide a: counts that are neither all atypical nor all normal."""
    slides, points = cohort
    r = screen(slides / "a.tif", points / "a.csv", ScreenOptions(cache_dir=tmp_path_factory.mktemp("c")),
               model=ensemble, progress=False)
    return float(np.median(r.p_atypical))


@pytest.fixture(scope="module")
def cli_run(cohort, tiny_bundle, threshold, tmp_path_factory):
    """``wsi-amf batch`` on the cohort folder (local executor), once for the tests that read its outputs."""
    slides, points = cohort
    out = tmp_path_factory.mktemp("run") / "out"
    argv = ["batch", str(slides), "--points-dir", str(points), "--points-pattern", "{parent}/{stem}.csv", "--recursive",
            "--out", str(out), "--model", str(tiny_bundle.path), "--cache", str(out.parent / "cache"),
            "--threshold", repr(threshold), "--batch-size", "4"]
    res = CliRunner().invoke(main, argv)
    return res, out


def test_cohort_table_is_right_for_the_test_folder(cli_run, cohort, ensemble, threshold, tmp_path):
    res, out = cli_run
    slides, points = cohort
    assert res.exit_code == 1, res.output  # two slides failed
    assert res.stdout.strip().splitlines()[-1] == f"6 slides: 3 ok, 2 failed, 1 skipped; cohort table {out / 'cohort.csv'}"
    data = json.loads((out / "cohort.json").read_text())
    assert set(data) == COHORT_KEYS and data["version"] == 1
    assert (data["n_slides"], data["n_ok"], data["n_failed"], data["n_skipped"]) == (6, 3, 2, 1)
    assert data["model"]["architecture"] == "resnet10t" and data["options"]["threshold"] == threshold
    assert [r["stem"] for r in data["slides"]] == ["a", "b", "badpts", "corrupt", "nopts", "sub__a"]
    rows = rows_by_stem(data["slides"])
    assert all(set(r) == set(ROW_KEYS) for r in data["slides"])

    for stem in GOOD:  # every count equals a direct screen() of the slide
        row = rows[stem]
        slide = Path(row["slide"])
        assert row["status"] == "ok" and row["error"] is None and row["seconds"] > 0
        direct = screen(slide, row["points"], ScreenOptions(threshold=threshold, cache_dir=tmp_path / "c"),
                        model=ensemble, out=tmp_path / stem, stem=stem,
                        progress=False)
        s = direct.summary()
        if stem == "a":
            assert 0 < s["n_atypical"] < s["n_classified"] == 10
        for key in ("n_candidates", "n_classified", "n_atypical", "n_normal", "amf_ratio", "atypical_to_normal_ratio"):
            assert row[key] == s[key], (stem, key)
        assert row["amf_ratio_ci95"] == pytest.approx(list(wilson_interval(s["n_atypical"], s["n_classified"])), abs=1e-6)
        assert (row["summary"], row["geojson"], row["csv"], row["report"]) == (
            f"{stem}.summary.json", f"{stem}.geojson", f"{stem}.csv", None)
        for kind in ("geojson", "csv"):  # the batch wrote exactly what screen writes
            assert (out / row[kind]).read_text() == direct.outputs[kind].read_text()
    assert rows["sub__a"]["slide"] == str(slides / "sub" / "a.tif") and rows["a"]["slide"] == str(slides / "a.tif")

    bad, corrupt, nopts = rows["badpts"], rows["corrupt"], rows["nopts"]
    assert bad["status"] == "failed" and "badpts.csv" in bad["error"] and "abc" in bad["error"]
    assert corrupt["status"] == "failed" and "corrupt.svs" in corrupt["error"]
    assert nopts["status"] == "skipped" and "no points file" in nopts["error"] and nopts["points"] is None
    for r in (bad, corrupt, nopts):
        assert "\n" not in r["error"] and r["n_candidates"] is None and r["summary"] is None
    assert not (out / "badpts.summary.json").exists() and not (out / "corrupt.geojson").exists()
    assert "corrupt.svs" in res.stderr and "badpts.csv" in res.stderr and "Traceback" not in res.output

    with open(out / "cohort.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_COLUMNS and [t["stem"] for t in table] == [r["stem"] for r in data["slides"]]
    for t, r in zip(table, data["slides"]):
        assert t["status"] == r["status"] and t["n_atypical"] == ("" if r["n_atypical"] is None else str(r["n_atypical"]))
        if r["amf_ratio_ci95"]:
            assert float(t["amf_ratio_ci95_low"]) == r["amf_ratio_ci95"][0]
            assert float(t["amf_ratio_ci95_high"]) == r["amf_ratio_ci95"][1]


def test_resume_skips_up_to_date_slides_and_redoes_changed_ones(cohort, ensemble, threshold, tmp_path):
    src_slides, src_points = cohort
    shutil.copytree(src_slides.parent, tmp_path / "cohort")
    slides, points = tmp_path / "cohort" / "slides", tmp_path / "cohort" / "points"
    out = tmp_path / "out"

    def run(force=False, **kw):
        options = ScreenOptions(**{"threshold": threshold, "cache_dir": tmp_path / "cache", **kw})
        return rows_by_stem(screen_batch(slides, options=options, points_dir=points, points_patterns=["{parent}/{stem}.csv"],
                                         recursive=True, out=out, model=ensemble, force=force, progress=False).rows)

    first = run()
    assert [s for s in first if first[s]["status"] == "ok"] == ["a", "b", "sub__a"]
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.*") if not p.name.startswith("cohort")}

    again = run(cache_dir=tmp_path / "fresh-cache")
    assert {s: r["status"] for s, r in again.items()} == {s: r["status"] for s, r in first.items()}
    assert {s for s, r in again.items() if r["reused"]} == set(GOOD) and not any(r["reused"] for r in first.values())
    for s in GOOD:  # a finished slide's row is kept as it was: counts, ratios, status, time
        assert {k: v for k, v in again[s].items() if k != "reused"} == {k: v for k, v in first[s].items() if k != "reused"}
    assert not (tmp_path / "fresh-cache").exists()  # nothing was screened: no slide was read
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert again["badpts"]["status"] == again["corrupt"]["status"] == "failed"  # failures are retried

    with open(points / "b.csv", "a") as fh:  # a new candidate for b: only b is redone
        fh.write("extra,100.0,100.0,metaphase\n")
    changed = run()
    assert {s for s in GOOD if not changed[s]["reused"]} == {"b"}
    assert changed["b"]["n_candidates"] == first["b"]["n_candidates"] + 1

    def redone(rows: dict) -> set[str]:
        return {s for s in GOOD if rows[s]["status"] == "ok" and not rows[s]["reused"]}

    (out / "a.geojson").unlink()  # an output gone: a is redone
    assert redone(run()) == {"a"}
    other = run(threshold=0.0)  # another option: every slide is redone
    assert redone(other) == set(GOOD) and all(other[s]["n_atypical"] == other[s]["n_classified"] for s in GOOD)
    assert redone(run(threshold=0.0)) == set()
    assert redone(run(threshold=0.0, force=True)) == set(GOOD)


def test_killed_batch_rerun_finishes_only_what_is_missing(tmp_path, tiny_bundle, ensemble):
    slides = tmp_path / "slides"
    for k in range(5):
        write_slide_with_points(slides / f"s{k}.tif", slides / f"s{k}.csv", width_um=512.0, height_um=512.0,
                                n_figures=300, n_nuclei=60, seed=10 + k)
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "wsi_amf", "-q", "batch", str(slides), "--out", str(out), "--model",
                             str(tiny_bundle.path), "--cache", str(cache), "--batch-size", "8", "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not list((out / ".batch").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = sorted(p.stem for p in (out / ".batch").glob("*.json"))
    assert 1 <= len(finished) < 5, finished  # killed after the first slide, before the last
    killed = json.loads((out / "cohort.json").read_text())  # a whole, valid table (of what was finished, or less)
    assert {r["stem"] for r in killed["slides"] if r["status"] == "ok"} <= set(finished)
    mtimes = {s: (out / f"{s}.geojson").stat().st_mtime_ns for s in finished}

    resumed = screen_batch(slides, options=ScreenOptions(cache_dir=cache), out=out, model=ensemble, progress=False)
    assert {r["stem"] for r in resumed.rows if r["reused"]} == set(finished)
    assert all(r["status"] == "ok" for r in resumed.rows)
    assert {s: (out / f"{s}.geojson").stat().st_mtime_ns for s in finished} == mtimes

    clean = screen_batch(slides, options=ScreenOptions(cache_dir=tmp_path / "clean-cache"), out=tmp_path / "clean",
                         model=ensemble, progress=False)
    assert clean.n_ok == 5 and stable(resumed.rows) == stable(clean.rows)
    for k in range(5):
        assert (out / f"s{k}.csv").read_text() == (tmp_path / "clean" / f"s{k}.csv").read_text()


def test_prefetch_fills_the_cache_so_screen_reads_nothing(cohort, ensemble, tiny_bundle, tmp_path):
    slides, points = cohort
    cfg = tiny_bundle.config
    n = fill_cache(slides / "b.tif", points / "b.csv", ScreenOptions(cache_dir=tmp_path / "c"),
                   patch_size=cfg.patch_size, patch_mpp=cfg.mpp)
    assert n == 10
    assert fill_cache(slides / "b.tif", points / "b.csv", ScreenOptions(cache_dir=tmp_path / "c"),
                      patch_size=cfg.patch_size, patch_mpp=cfg.mpp) == 0
    warm = screen(slides / "b.tif", points / "b.csv", ScreenOptions(cache_dir=tmp_path / "c"), model=ensemble,
                  progress=False)
    cold = screen(slides / "b.tif", points / "b.csv", ScreenOptions(cache_dir=tmp_path / "c2"), model=ensemble,
                  progress=False)
    assert warm.n_read == 0 and warm.n_cached == 10 and cold.n_read == 10
    np.testing.assert_array_equal(warm.p_atypical, cold.p_atypical)

    jobs = {j.stem: j for j in folder_jobs(slides, points_dir=points)}
    worker = SlideWorker(ensemble, out=tmp_path / "out", options=ScreenOptions(cache_dir=tmp_path / "c3"))
    try:
        first = worker.run(jobs["a"], "fp-a", next_job=jobs["nopts"])  # a prefetch that fails is left to screen
        assert first["status"] == "ok"
        worker.run(jobs["a"], "fp-a", next_job=jobs["b"])
        row = worker.run(jobs["b"], "fp-b")
    finally:
        worker.close()
    summary = json.loads((tmp_path / "out" / row["summary"]).read_text())
    assert summary["cache"]["patches_read_from_slide"] == 0 and summary["cache"]["patches_from_cache"] == 10


def test_finding_slides_and_output_stems(tmp_path):
    root = tmp_path / "slides"
    for rel in ["x.svs", "y.NDPI", "z.mrxs", "sub/x.tif", "sub/deeper/x.tiff", "dicom/s1/a.dcm", "dicom/s1/b.dcm",
                "out/x.tif", ".cache/q.tif", "notes.csv", "img.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    assert [p.name for p in find_slides(root)] == ["x.svs", "y.NDPI", "z.mrxs"]
    found = find_slides(root, recursive=True, exclude=[root / "out"])
    assert [p.relative_to(root).as_posix() for p in found] == [
        "dicom/s1/a.dcm", "sub/deeper/x.tiff", "sub/x.tif", "x.svs", "y.NDPI", "z.mrxs"]
    (root / "sub" / "x.geojson").write_text("{}")
    jobs = folder_jobs(root, recursive=True, exclude=[root / "out"], patterns=["{parent}/{stem}.geojson"])
    assert [j.stem for j in jobs] == ["s1", "sub__deeper__x", "sub__x", "x", "y", "z"]
    assert [j.points is not None for j in jobs] == [False, False, True, False, False, False]
    assert "deeper/x.geojson" in jobs[1].missing_points
    assert unique_stems([("a", Path("a.tif")), ("a", Path("a.tif")), ("a-2", Path("a-2.tif"))]) == ["a", "a-3", "a-2"]
    with pytest.raises(OptionError, match="points-pattern"):
        folder_jobs(root, patterns=["{slide}.csv"])
    with pytest.raises(OptionError, match="no such directory"):
        find_slides(tmp_path / "missing")


def test_manifest_rows_with_points_and_roi(tmp_path):
    (tmp_path / "m").mkdir()
    manifest = tmp_path / "m" / "cohort.csv"
    manifest.write_text("Slide,points,ROI,comment\n"
                        "s/a.svs,p/a.csv,r/a.geojson,first\n"
                        f"{tmp_path}/other/a.svs,p/a2.csv,,\n"
                        ",,,\n"
                        "b.ndpi,,,no detections run\n")
    jobs = manifest_jobs(manifest)
    assert [j.stem for j in jobs] == ["m__s__a", "other__a", "b"]
    assert jobs[0].slide == tmp_path / "m" / "s" / "a.svs" and jobs[0].points == tmp_path / "m" / "p" / "a.csv"
    assert jobs[0].roi == tmp_path / "m" / "r" / "a.geojson" and jobs[1].roi is None
    assert jobs[1].slide == tmp_path / "other" / "a.svs"
    assert jobs[2].points is None and "manifest" in jobs[2].missing_points
    for text, message in [("slide,roi\na.svs,r.geojson\n", "needs the columns slide and points"),
                          ("slide,points\na.svs,a.csv\n,b.csv\n", "row 3: the slide cell is empty"),
                          ("slide,points\n", "lists no slide")]:
        manifest.write_text(text)
        with pytest.raises(ManifestError, match=message):
            manifest_jobs(manifest)
    with pytest.raises(ManifestError, match="no such file"):
        manifest_jobs(tmp_path / "missing.csv")


def test_cli_manifest_and_option_errors(cohort, tiny_bundle, tmp_path):
    slides, points = cohort
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"slide,points\n{slides / 'a.tif'},{points / 'a.csv'}\n{slides / 'b.tif'},{points / 'b.csv'}\n")
    base = ["--model", str(tiny_bundle.path), "--cache", str(tmp_path / "c")]
    res = CliRunner().invoke(main, ["-q", "batch", "--manifest", str(manifest), "--out", str(tmp_path / "out"), *base])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1].startswith("2 slides: 2 ok, 0 failed, 0 skipped")
    assert json.loads((tmp_path / "out" / "cohort.json").read_text())["n_ok"] == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, code, message in [
        (["batch", "--out", str(tmp_path / "o1")], 2, "slides folder or --manifest"),
        (["batch", str(slides), "--manifest", str(manifest), "--out", str(tmp_path / "o1")], 2, "one of them"),
        (["batch", str(empty), "--out", str(tmp_path / "o1")], 1, "no slide found"),
        (["batch", str(slides), "--points-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o1")], 2, "--points-dir"),
        (["batch", str(slides), "--out", str(tmp_path / "o1"), "--mpp", "-1"], 2, "--mpp -1"),
        (["batch", str(slides), "--out", str(tmp_path / "o1"), "--executor", "dask"], 2, "--executor"),
        (["batch", str(slides), "--out", str(tmp_path / "o1"), "--slide-timeout", "0"], 2, "--slide-timeout"),
        (["batch", str(slides), "--out", str(tmp_path / "o1"), "--ray-retries", "-1"], 2, "--ray-retries"),
        (["batch", str(slides), "--out", str(tmp_path / "o1"), "--model", str(empty)], 1, "bundle.json is missing"),
    ]:
        res = CliRunner().invoke(main, argv + (base if "--model" not in argv else ["--cache", str(tmp_path / "c")]))
        assert res.exit_code == code and message in res.output, (argv, res.output)
        assert "Traceback" not in res.output
    assert not (tmp_path / "o1").exists()  # nothing written for a batch that could not start


def test_ray_actor_plan():
    gpu_nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 16.0, "GPU": 4.0}, {"CPU": 64.0}]
    assert actor_plan(None, "auto", gpu_nodes) == (8, {"num_gpus": 1.0, "num_cpus": 1})
    assert actor_plan(16, "auto", gpu_nodes) == (16, {"num_gpus": 0.5, "num_cpus": 1})
    assert actor_plan(None, "cpu", gpu_nodes) == (24, {"num_cpus": 4.0})
    assert actor_plan(None, "auto", [{"CPU": 2.0}]) == (1, {"num_cpus": 2.0})
    assert actor_plan(3, "auto", [{"CPU": 2.0}]) == (3, {"num_cpus": pytest.approx(2 / 3)})
    with pytest.raises(OptionError, match="no GPU"):
        actor_plan(None, "cuda", [{"CPU": 8.0}])


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_executor_gives_the_local_cohort_table(local_ray, cli_run, cohort, tiny_bundle, threshold, tmp_path):
    _, local_out = cli_run
    slides, points = cohort
    result = screen_batch(slides, options=ScreenOptions(threshold=threshold, batch_size=4, cache_dir=tmp_path / "cache"),
                          points_dir=points, points_patterns=["{parent}/{stem}.csv"], recursive=True, out=tmp_path / "out",
                          model=tiny_bundle.path, executor="ray", ray_actors=2, progress=False)
    local = json.loads((local_out / "cohort.json").read_text())
    distributed = json.loads((tmp_path / "out" / "cohort.json").read_text())
    drop = ("seconds", "node", "worker")
    assert [{k: v for k, v in r.items() if k not in drop} for r in distributed["slides"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in local["slides"]]
    node = local_ray.get_runtime_context().get_node_id()
    assert {r["node"] for r in distributed["slides"] if r["status"] == "ok"} == {node}
    assert len({r["worker"] for r in distributed["slides"] if r["status"] == "ok"}) in (1, 2)  # actor ids
    assert all(r["node"] is None and r["worker"] is None for r in local["slides"])
    assert distributed["options"]["executor"] == "ray" and result.n_ok == 3 and result.n_failed == 2
    for stem in GOOD:
        assert (tmp_path / "out" / f"{stem}.csv").read_text() == (local_out / f"{stem}.csv").read_text()
    assert local_ray.is_initialized()  # an instance the caller started is left running


def test_manifest_roi_and_reports_end_to_end(cohort, tiny_bundle, threshold, tmp_path):
    """A manifest's roi cell restricts its slide's candidates (the others are untouched); --report writes every
    slide report and cohort.html, linked from the cohort table."""
    from wsi_amf.points import read_points
    from wsi_amf.slide import Slide

    slides, points = cohort
    with Slide(slides / "a.tif") as sl:
        width, height = sl.dimensions
    half = width / 2
    roi = tmp_path / "left.geojson"
    roi.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[0, 0], [half, 0], [half, height], [0, height], [0, 0]]]}, "properties": {"objectType": "annotation"}}))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"slide,points,roi\n{slides / 'a.tif'},{points / 'a.csv'},{roi}\n{slides / 'b.tif'},{points / 'b.csv'},\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["-q", "batch", "--manifest", str(manifest), "--out", str(out), "--report",
                                    "--model", str(tiny_bundle.path), "--cache", str(tmp_path / "c"),
                                    "--threshold", repr(threshold)])
    assert res.exit_code == 0, res.output
    rows = rows_by_stem(json.loads((out / "cohort.json").read_text())["slides"])
    xy_a = read_points(points / "a.csv").xy
    inside = int((xy_a[:, 0] <= half).sum())
    assert 0 < inside < len(xy_a)
    assert rows["a"]["roi"] == str(roi) and rows["a"]["n_candidates"] == len(xy_a) and rows["a"]["n_classified"] == inside
    summary_a = json.loads((out / "a.summary.json").read_text())
    assert summary_a["n_skipped_outside_roi"] == len(xy_a) - inside and summary_a["roi"]["n_mf"] == inside
    assert rows["b"]["roi"] is None and rows["b"]["n_classified"] == len(read_points(points / "b.csv").xy)
    for stem in ("a", "b"):
        assert rows[stem]["report"] == f"{stem}.report.html" and (out / f"{stem}.report.html").stat().st_size > 0
    cohort_html = (out / "cohort.html").read_text()
    assert 'href="a.report.html"' in cohort_html and 'href="b.report.html"' in cohort_html
