"""A real two-node Ray cluster on this machine, on 127.0.0.1 only (``ray.cluster_utils.Cluster``: a head and a
second node of 1 CPU each, separate raylets and object stores; both stopped at the end, also on failure).

``wsi-amf batch --executor ray --ray-address HEAD`` runs as a separate process, as a user runs it. Its slides
are screened on both nodes, and its cohort table and every per-slide output equal a local run's byte for byte
(timings, node and worker aside). A worker process killed with SIGKILL mid-slide, the second node stopped while
it holds slides, and a slide whose read hangs are all survived. Marked ``cluster``: these run last (conftest)
and ``-m "not cluster"`` leaves them out.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wsi_amf import screen_batch
from wsi_amf.cache import open_cache
from wsi_amf.options import ScreenOptions
from wsi_amf.slide import Slide
from wsi_amf.synthetic import write_slide_with_points

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.cluster

N_SLIDES = 6
VOLATILE_COLUMNS = ("seconds", "node", "worker")
TITLE = b"ray::RaySlideWorker.run"  # the process title of an actor while it screens a slide


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cluster_cohort")
    for k in range(N_SLIDES):
        write_slide_with_points(root / "slides" / f"s{k}.tif", root / "points" / f"s{k}.csv", width_um=384.0,
                                height_um=384.0, n_figures=80, n_nuclei=60, seed=100 + k)
    return root / "slides", root / "points"


@pytest.fixture(scope="module")
def local_out(cohort, tiny_bundle, tmp_path_factory) -> Path:
    """The same cohort screened here, without Ray (the reference)."""
    slides, points = cohort
    out = tmp_path_factory.mktemp("local") / "out"
    result = screen_batch(slides, points_dir=points, out=out, model=tiny_bundle.path, progress=False,
                          options=ScreenOptions(cache_dir=out.parent / "cache"))
    assert result.n_ok == N_SLIDES
    return out


@pytest.fixture
def cluster():
    """A head and a second node, 1 CPU each, every process on 127.0.0.1."""
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        second = c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c, second
    finally:
        c.shutdown()


def start_batch(cluster: Cluster, cohort, bundle, out: Path, *extra: str) -> subprocess.Popen:
    slides, points = cohort
    argv = [sys.executable, "-m", "wsi_amf", "-q", "batch", str(slides), "--points-dir", str(points), "--out", str(out),
            "--model", str(bundle.path), "--cache", str(out.parent / f"{out.name}-cache"), "--executor", "ray",
            "--ray-address", cluster.address, *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the batch did not finish in {timeout} s:\n{err[-3000:]}")
    return proc.returncode, err


def table(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "cohort.csv").read_text())))


def summary_of(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("timings_s", None)
    data.pop("cache")  # each run has its own cache folder, and prefetching decides which patches it served
    return data


def assert_same_as_local(out: Path, local: Path, stems=None, *, rerun: bool = False) -> None:
    """cohort.csv and every per-slide output as the local run wrote them (timings, node and worker aside; and
    after a ``rerun``, which rows were reused)."""
    ours, theirs = table(out), table(local)
    stems = stems or [r["stem"] for r in theirs]
    assert [r["stem"] for r in ours] == [r["stem"] for r in theirs]
    volatile = (*VOLATILE_COLUMNS, *(("reused",) if rerun else ()))
    drop = lambda r: {k: v for k, v in r.items() if k not in volatile}  # noqa: E731
    assert [drop(r) for r in ours if r["stem"] in stems] == [drop(r) for r in theirs if r["stem"] in stems]
    for stem in stems:
        for suffix in (".geojson", ".csv"):
            assert (out / f"{stem}{suffix}").read_bytes() == (local / f"{stem}{suffix}").read_bytes(), stem + suffix
        ours_s, theirs_s = summary_of(out / f"{stem}.summary.json"), summary_of(local / f"{stem}.summary.json")
        ours_s.pop("outputs_sha256", None), theirs_s.pop("outputs_sha256", None)
        assert ours_s == theirs_s, stem


def node_ids(c: Cluster) -> set[str]:
    return {n.node_id for n in c.list_all_nodes()}


def screening_pids(under: int | None = None) -> list[int]:
    """Actor processes screening a slide now (``under``: only those below that process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(TITLE):
                continue
        except OSError:
            continue
        pid = int(entry.name)
        if under is None or under in ancestors(pid):
            found.append(pid)
    return found


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        chain.append(pid)
    return chain


def wait_for(find, proc: subprocess.Popen, timeout: float = 120):
    """Poll ``find()`` until it gives something (the batch must still run)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = find()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the batch ended before the event: {proc.stderr.read()[-3000:] if proc.stderr else ''}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no worker was seen screening a slide")


def test_two_nodes_give_the_local_outputs(cluster, cohort, tiny_bundle, local_out, tmp_path):
    c, _ = cluster
    out = tmp_path / "out"
    rc, err = finish(start_batch(c, cohort, tiny_bundle, out))
    assert rc == 0, err
    rows = table(out)
    assert [r["status"] for r in rows] == ["ok"] * N_SLIDES
    assert {r["node"] for r in rows} == node_ids(c)  # both nodes screened slides
    assert len({r["worker"] for r in rows}) >= 2 and all(r["worker"] for r in rows)
    assert_same_as_local(out, local_out)
    cohort_json = json.loads((out / "cohort.json").read_text())
    assert cohort_json["options"]["executor"] == "ray" and cohort_json["options"]["ray_retries"] == 2


def batch_killing_a_worker(c: Cluster, cohort, bundle, out: Path, *extra: str) -> tuple[int, str]:
    """The batch, with the first worker process seen screening a slide killed with SIGKILL."""
    proc = start_batch(c, cohort, bundle, out, *extra)
    try:
        os.kill(wait_for(screening_pids, proc)[0], signal.SIGKILL)
        return finish(proc)
    finally:
        proc.kill()


def test_a_killed_worker_is_replaced_and_its_slide_retried(cluster, cohort, tiny_bundle, local_out, tmp_path):
    c, _ = cluster
    out = tmp_path / "out"
    rc, err = batch_killing_a_worker(c, cohort, tiny_bundle, out)
    assert rc == 0, err
    assert "the Ray worker died" in err and "trying again on another worker (retry 1 of 2)" in err
    assert [r["status"] for r in table(out)] == ["ok"] * N_SLIDES
    assert_same_as_local(out, local_out)

    # with no retries the slide is recorded failed, the others are screened, and the exit code says so
    out0 = tmp_path / "out0"
    rc, err = batch_killing_a_worker(c, cohort, tiny_bundle, out0, "--ray-retries", "0")
    assert rc == 1
    rows = table(out0)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "the Ray worker died" in failed[0]["error"] and failed[0]["node"]
    assert not (out0 / f"{failed[0]['stem']}.geojson").exists()
    assert_same_as_local(out0, local_out, stems=[r["stem"] for r in rows if r["status"] == "ok"])


def test_a_lost_node_leaves_its_slides_to_the_head(cluster, cohort, tiny_bundle, local_out, tmp_path):
    c, second = cluster
    raylet = second.all_processes["raylet"][0].process.pid
    out = tmp_path / "out"
    proc = start_batch(c, cohort, tiny_bundle, out)
    try:
        wait_for(lambda: screening_pids(under=raylet), proc)
        c.remove_node(second)  # the second node stops while its worker screens a slide
        rc, err = finish(proc)
    finally:
        proc.kill()
    assert rc == 0, err
    assert "trying again on another worker" in err
    rows = table(out)
    assert [r["status"] for r in rows] == ["ok"] * N_SLIDES
    head = c.head_node.node_id
    assert head in {r["node"] for r in rows}
    assert_same_as_local(out, local_out)


def hold_cache_lock(slide: Path, bundle, cache_dir: Path):
    """The slide's patch cache, opened (and so locked) by this process: a screening of it waits, as behind a
    hung file system, until the lock is released."""
    cfg = bundle.config
    with Slide(slide) as sl:
        identity = sl.identity()
    return open_cache(cache_dir, slide, identity, size=cfg.patch_size, mpp=cfg.mpp)


def test_a_slide_past_its_timeout_fails_and_its_worker_is_replaced(cluster, cohort, tiny_bundle, local_out, tmp_path):
    c, _ = cluster
    slides, _ = cohort
    out = tmp_path / "out"
    hung = slides / "s1.tif"
    with hold_cache_lock(hung, tiny_bundle, tmp_path / "out-cache"):
        t0 = time.monotonic()
        rc, err = finish(start_batch(c, cohort, tiny_bundle, out, "--slide-timeout", "20"))
        took = time.monotonic() - t0
    assert rc == 1, err
    rows = {r["stem"]: r for r in table(out)}
    assert rows["s1"]["status"] == "failed"
    assert rows["s1"]["error"] == f"slide {hung}: did not finish within 20 s (--slide-timeout); its Ray worker was replaced"
    assert not (out / "s1.geojson").exists() and not (out / ".batch" / "s1.json").exists()
    others = [s for s in rows if s != "s1"]
    assert all(rows[s]["status"] == "ok" for s in others)
    assert_same_as_local(out, local_out, stems=others)
    assert took < 200
    # released, a re-run screens just that slide
    rc, err = finish(start_batch(c, cohort, tiny_bundle, out, "--slide-timeout", "20"))
    assert rc == 0, err
    assert [r["stem"] for r in table(out) if r["reused"] != "True"] == ["s1"]
    assert_same_as_local(out, local_out, rerun=True)


def test_a_slide_past_its_timeout_is_abandoned_locally(cohort, tiny_bundle, local_out, tmp_path):
    slides, points = cohort
    out, cache = tmp_path / "out", tmp_path / "cache"
    hung = slides / "s2.tif"
    opts = ScreenOptions(cache_dir=cache)
    lock = hold_cache_lock(hung, tiny_bundle, cache)
    lock.__enter__()
    try:
        result = screen_batch(slides, points_dir=points, out=out, model=tiny_bundle.path, progress=False, options=opts,
                              slide_timeout=15)
        rows = {r["stem"]: r for r in result.rows}
        assert rows["s2"]["status"] == "failed" and rows["s2"]["node"] is None
        assert rows["s2"]["error"] == f"slide {hung}: did not finish within 15 s (--slide-timeout); abandoned"
        assert result.n_ok == N_SLIDES - 1
    finally:
        lock.__exit__(None, None, None)
    for thread in threading.enumerate():  # the abandoned slide now gets its cache: it must write nothing
        if thread.name == "wsi-amf-slide-s2":
            thread.join(120)
    assert not (out / "s2.geojson").exists() and not (out / ".batch" / "s2.json").exists()
    assert_same_as_local(out, local_out, stems=[s for s in rows if s != "s2"])
    again = screen_batch(slides, points_dir=points, out=out, model=tiny_bundle.path, progress=False, options=opts,
                         slide_timeout=15)
    assert again.n_ok == N_SLIDES and again.n_reused == N_SLIDES - 1
    assert_same_as_local(out, local_out, rerun=True)
