"""How the slide reader shares the CPU with the model: the cold pipeline with two reading policies, paired.

    python benchmarks/reader_policy.py [--rounds 10] [--points 1000] [--slide PATH [--mpp MPP]]

`wsi_amf.screen` reads a chunk of missing patches with a pool of `--workers` threads while the model waits for
patches, and with one background thread at nice 19 while chunks are already queued for the model
(`wsi_amf.slide.PatchReader`). The baseline is the pool for every chunk, as before. Each round times the
model alone on the same patches, then the cold pipeline (fresh cache) under one policy, then again under the
other (the order alternates between rounds). The machine's speed drifts, so the figure to read is the median
over rounds of pipeline / model, each pipeline run paired with the model run just before it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import screen_throughput as st


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None)
    ap.add_argument("--mpp", type=float, default=None, help="the slide's resolution when its file lacks it")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--arch", default="convnextv2_atto")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    from bundles import random_bundle  # tests/bundles.py

    import wsi_amf.slide as slide_module
    from wsi_amf import Slide, screen
    from wsi_amf.ensemble import Ensemble
    from wsi_amf.options import ScreenOptions

    default_read = slide_module.PatchReader.read

    def pool_read(self, xy, *, size, target_mpp):
        return self.slide.read_patches(xy, size=size, target_mpp=target_mpp, executor=self._pool)

    policies = {"pool always (baseline)": pool_read, "pool / one nice-19 thread (default)": default_read}
    workdir = Path(tempfile.mkdtemp(prefix="wsi-amf-reader-"))
    try:
        slide_path = args.slide or (st.DEFAULT_SLIDE if st.DEFAULT_SLIDE.exists() else st.synthetic_slide(workdir))
        with Slide(slide_path, mpp=args.mpp) as sl:
            xy = st.random_points(sl.dimensions, args.points)
        pts = st.make_points(xy)
        bundle = random_bundle(workdir / "bundle", architecture=args.arch, members=1)
        ens = Ensemble(bundle, device="cpu")
        cfg = bundle.config
        patches, _, _, _ = st.bench_read_tile_order(Path(slide_path), xy, cfg.patch_size, cfg.mpp, args.mpp)
        ens.predict(patches[: args.batch_size])  # warm-up
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in policies}
        names = list(policies)
        for rnd in range(args.rounds):
            for name in names if rnd % 2 == 0 else names[::-1]:
                slide_module.PatchReader.read = policies[name]
                _, t_model = st.timed(st.predict_all, ens, patches, args.batch_size)
                shutil.rmtree(workdir / "cache", ignore_errors=True)
                c0 = st.cpu_seconds()
                _, t_cold = st.timed(screen, slide_path, pts, ScreenOptions(cache_dir=workdir / "cache", mpp=args.mpp,
                                     batch_size=args.batch_size), model=ens, progress=False)
                runs[name].append((t_model, t_cold, st.cpu_seconds() - c0))
            st.log(f"round {rnd + 1}/{args.rounds}: " + ", ".join(
                f"{name}: {v[-1][0] / v[-1][1]:.2f}" for name, v in runs.items()))
    finally:
        slide_module.PatchReader.read = default_read
        shutil.rmtree(workdir, ignore_errors=True)

    n = len(xy)
    print(f"\nreader policy: {Path(slide_path).name}, {n:,} points, {args.arch} x1 ({ens.engine}), batch {args.batch_size}, "
          f"{args.rounds} rounds, {os.cpu_count()} CPU(s), load average at end {os.getloadavg()[0]:.2f}")
    print(f"{'policy':<38} {'pipeline/model':>14} {'cold patches/s':>15} {'CPU s':>6}   (medians; best pipeline/model)")
    medians = {}
    for name, v in runs.items():
        medians[name] = statistics.median(m / c for m, c, _ in v)
        best = min(m for m, _, _ in v) / min(c for _, c, _ in v)
        print(f"{name:<38} {medians[name]:>13.2f}x {n / statistics.median(c for _, c, _ in v):>15.0f} "
              f"{statistics.median(u for _, _, u in v):>6.2f}   ({best:.2f}x)")
    base, new = medians[names[0]], medians[names[1]]
    print(f"default / baseline, median pipeline/model: {new / base:.2f}x")
    return 0


if __name__ == "__main__":
    t = time.perf_counter()
    code = main()
    st.log(f"done in {time.perf_counter() - t:.0f} s")
    sys.exit(code)
