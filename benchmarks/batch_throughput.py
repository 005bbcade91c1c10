#!/usr/bin/env python
"""Batch throughput: N slides screened by ONE ``wsi-amf batch`` call versus N separate ``wsi-amf screen`` calls.

Every row runs the command line in a fresh subprocess with its own fresh patch cache, on the same synthetic
slides, points and model, in one run of this script:

  separate screen calls   ``wsi-amf screen SLIDE --points P`` once per slide (the model loaded N times)
  batch                   ``wsi-amf batch DIR`` (the model loaded once, the next slide read while one is classified)
  batch, no prefetch      the same with ``--no-prefetch`` (how much the read/classify overlap brings)

Printed: seconds, slides/min and patches/s per row, and the ratios batch / separate calls and batch /
batch without prefetch. The per-candidate CSV tables of every row must be identical (exit status 1 if not).

    python benchmarks/batch_throughput.py                         # 6 slides x 300 points, the built-in model
    python benchmarks/batch_throughput.py --slides 10 --points 500
    python benchmarks/batch_throughput.py --arch convnextv2_atto  # a random bundle of that architecture instead
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):  # run from a checkout without installing; tests/bundles.py
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def workspace(workdir: Path | None, prefix: str) -> tuple[Path, tuple[float, float, float]]:
    """The working folder (``workdir``, or a new temporary one) and the load average at the start (logged)."""
    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    log(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    return work, load


def make_slides(directory: Path, n: int, points: int) -> list[tuple[Path, Path]]:
    from wsi_amf.synthetic import write_slide_with_points

    side = max(512.0, 40.0 * points ** 0.5)  # about one figure per 40 x 40 um
    return [write_slide_with_points(directory / f"slide{k:02d}.tif", directory / f"slide{k:02d}.csv", width_um=side,
                                    height_um=side, n_figures=points, n_nuclei=int(points * 2), seed=100 + k)
            for k in range(n)]


def cli(*args: str) -> float:
    """Run ``python -m wsi_amf ARGS`` (from this checkout); its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wsi_amf", "-q", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"wsi-amf {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=6, help="number of synthetic slides (default 6)")
    ap.add_argument("--points", type=int, default=300, help="candidates per slide (default 300)")
    ap.add_argument("--arch", default=None, help="a random bundle of this timm architecture instead of the built-in model")
    ap.add_argument("--members", type=int, default=1, help="members of the random bundle (default 1)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; default: a temporary folder, deleted")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    work, load0 = workspace(args.workdir, "wsi-amf-batch-bench-")
    try:
        slides_dir = work / "slides"
        log(f"writing {args.slides} synthetic slides with {args.points} candidates each ...")
        pairs = make_slides(slides_dir, args.slides, args.points)
        model: list[str] = []
        if args.arch:
            from bundles import random_bundle  # tests/bundles.py

            bundle = random_bundle(work / "bundle", architecture=args.arch, members=args.members)
            model = ["--model", str(bundle.path)]
        common = [*model, "--batch-size", str(args.batch_size), "--device", args.device]
        n_patches = args.slides * args.points

        log("separate screen calls ...")
        t_sep = sum(cli("screen", str(slide), "--points", str(pts), "--out", str(work / "out-separate"),
                        "--cache", str(work / "cache-separate"), *common) for slide, pts in pairs)
        log("batch ...")
        t_batch = cli("batch", str(slides_dir), "--out", str(work / "out-batch"), "--cache", str(work / "cache-batch"),
                      *common)
        log("batch, no prefetch ...")
        t_nopf = cli("batch", str(slides_dir), "--out", str(work / "out-noprefetch"), "--no-prefetch",
                     "--cache", str(work / "cache-noprefetch"), *common)

        same = all((work / "out-separate" / f"{s.stem}.csv").read_text() == (work / o / f"{s.stem}.csv").read_text()
                   for s, _ in pairs for o in ("out-batch", "out-noprefetch"))
        load1 = os.getloadavg()
        rows = {"separate screen calls": t_sep, "batch": t_batch, "batch, no prefetch": t_nopf}
        print(f"\n{args.slides} slides x {args.points} candidates, model: {args.arch or 'built-in'}, "
              f"device {args.device}, batch size {args.batch_size}")
        print(f"{'row':26s} {'seconds':>9s} {'slides/min':>11s} {'patches/s':>10s}")
        for name, t in rows.items():
            print(f"{name:26s} {t:9.1f} {60 * args.slides / t:11.2f} {n_patches / t:10.1f}")
        print(f"\nbatch / separate screen calls: {t_sep / t_batch:.2f}x the throughput")
        print(f"batch / batch without prefetch: {t_nopf / t_batch:.2f}x the throughput")
        print(f"outputs identical across rows: {'yes' if same else 'NO'}")
        print(f"load average: start {load0[0]:.2f}, end {load1[0]:.2f} ({os.cpu_count()} CPUs; other processes change "
              "every row)")
        if args.json:
            args.json.write_text(json.dumps({"slides": args.slides, "points": args.points, "arch": args.arch,
                                             "seconds": rows, "ratio_batch_vs_separate": t_sep / t_batch,
                                             "ratio_prefetch": t_nopf / t_batch, "identical": same,
                                             "load": [load0[0], load1[0]]}, indent=2) + "\n")
        return 0 if same else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
