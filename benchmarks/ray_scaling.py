#!/usr/bin/env python
"""Ray scaling: one cohort screened by ``wsi-amf batch`` locally, on a one-node and on a two-node Ray cluster.

Every row runs the command line in a fresh subprocess with its own fresh patch cache, on the same synthetic
slides, points and model, in one run of this script. Each row is held to its CPUs by affinity (inherited by
every process it starts: the CLI, the Ray nodes and their workers), with one intra-op thread per process:

  local, 1 CPU        ``wsi-amf batch DIR`` on CPU 0
  Ray, 1 node         a Ray cluster of one 1-CPU node (the head) on CPU 0; ``--executor ray --ray-address``
  Ray, 2 nodes        a head and a second node, 1 CPU each, on CPUs 0 and 1

The clusters are ``ray.cluster_utils.Cluster`` on 127.0.0.1 (separate raylets and object stores per node, as on
two machines; started before the clock, as a user's cluster is). Printed: seconds, slides/min and patches/s per
row; the speed-up of two nodes over one (goal >= 1.7x) and Ray's overhead over the local run at equal resources
(goal <= 15 %). Every row's cohort table (timings, node and worker aside) and per-slide CSV and GeoJSON must equal
the local run's byte for byte (exit status 1 if not).

    python benchmarks/ray_scaling.py                        # 12 slides x 300 points, the built-in model
    python benchmarks/ray_scaling.py --slides 6 --points 100
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every Ray process on 127.0.0.1 (read when Ray is imported)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["OMP_NUM_THREADS"] = "1"

from batch_throughput import log, make_slides, workspace  # noqa: E402

VOLATILE = ("seconds", "node", "worker")


def batch(slides: Path, out: Path, cpus: set[int], *extra: str) -> float:
    """``python -m wsi_amf batch`` on ``cpus``; its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    argv = [sys.executable, "-m", "wsi_amf", "-q", "batch", str(slides), "--out", str(out), "--cache",
            str(out.parent / f"{out.name}-cache"), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wsi-amf batch failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed


def on_ray(slides: Path, out: Path, nodes: int, *extra: str) -> tuple[float, set[str]]:
    """The batch on a fresh cluster of ``nodes`` 1-CPU nodes (CPUs 0 .. nodes-1); seconds and the nodes used."""
    from ray.cluster_utils import Cluster

    cpus = set(range(nodes))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # the cluster's processes inherit it
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            seconds = batch(slides, out, cpus, *extra, "--executor", "ray", "--ray-address", cluster.address)
        finally:
            cluster.shutdown()
    finally:
        os.sched_setaffinity(0, before)
    return seconds, {r["node"] for r in rows(out)}


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "cohort.csv").read_text())))


def same_outputs(out: Path, ref: Path) -> bool:
    strip = lambda table: [{k: v for k, v in r.items() if k not in VOLATILE} for r in table]  # noqa: E731
    if strip(rows(out)) != strip(rows(ref)):
        return False
    return all((out / f"{r['stem']}{suffix}").read_bytes() == (ref / f"{r['stem']}{suffix}").read_bytes()
               for r in rows(ref) for suffix in (".csv", ".geojson"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=12, help="number of synthetic slides (default 12)")
    ap.add_argument("--points", type=int, default=300, help="candidates per slide (default 300)")
    ap.add_argument("--model", default=None, help="a bundle directory (default: the built-in model)")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; default: a temporary folder, deleted")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("ray_scaling.py needs 2 CPUs")

    work, load0 = workspace(args.workdir, "wsi-amf-ray-bench-")
    try:
        slides = work / "slides"
        log(f"writing {args.slides} synthetic slides with {args.points} candidates each ...")
        make_slides(slides, args.slides, args.points)
        model = ["--model", args.model] if args.model else []
        log("local, 1 CPU ...")
        t_local = batch(slides, work / "local", {0}, *model)
        log("Ray, 1 node ...")
        t_one, nodes_one = on_ray(slides, work / "ray1", 1, *model)
        log("Ray, 2 nodes ...")
        t_two, nodes_two = on_ray(slides, work / "ray2", 2, *model)
        same = {name: same_outputs(work / name, work / "local") for name in ("ray1", "ray2")}
        load1 = os.getloadavg()
        n_patches = args.slides * args.points
        table = {"local, 1 CPU": t_local, "Ray, 1 node (1 CPU)": t_one, "Ray, 2 nodes (1 CPU each)": t_two}
        print(f"\n{args.slides} slides x {args.points} candidates, model: {args.model or 'built-in'}, CPU")
        print(f"{'row':28s} {'seconds':>9s} {'slides/min':>11s} {'patches/s':>10s}")
        for name, t in table.items():
            print(f"{name:28s} {t:9.1f} {60 * args.slides / t:11.2f} {n_patches / t:10.1f}")
        speedup, overhead = t_one / t_two, t_one / t_local - 1
        print(f"\ntwo nodes / one node: {speedup:.2f}x the throughput (goal >= 1.7x); slides on {len(nodes_two)} nodes")
        print(f"Ray overhead over the local run (1 CPU each): {100 * overhead:+.1f} % (goal <= 15 %)")
        print(f"outputs identical to the local run: Ray 1 node {'yes' if same['ray1'] else 'NO'}, "
              f"Ray 2 nodes {'yes' if same['ray2'] else 'NO'}")
        print(f"load average: start {load0[0]:.2f}, end {load1[0]:.2f} ({os.cpu_count()} CPUs)")
        if args.json:
            args.json.write_text(json.dumps({"slides": args.slides, "points": args.points, "seconds": table,
                                             "speedup_two_nodes": speedup, "ray_overhead": overhead, "identical": same,
                                             "nodes_used": [len(nodes_one), len(nodes_two)],
                                             "load": [load0[0], load1[0]]}, indent=2) + "\n")
        return 0 if all(same.values()) else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
