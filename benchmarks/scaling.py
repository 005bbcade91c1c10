#!/usr/bin/env python
"""How screening scales with the number of candidates: 2,000, 20,000 and 200,000 on one synthetic slide.

Each size runs in a fresh subprocess (so its peak memory is its own): ``wsi_amf.screen`` end to end with a
fresh patch cache, every output file (GeoJSON, CSV, gc-json export, summary) and the HTML report, with a
small, fast random model (``test_resnet``, one member) so that the model does not hide the rest. The
candidates are uniform over the slide: a dense, flat field, the hardest case for the hotspot search.

Printed per size: seconds per 1,000 candidates for each stage that ``screen`` times (``ScreenResult.timings``:
reading points, preparing, reading patches, the model, the summary with the hotspot search, rendering each
output file, writing the set, the report), the end-to-end wall time, and the peak resident memory.

Goals (PASS/FAIL, reported, not enforced):
  * every stage's cost per candidate at the largest size within 1.3x of its cost at the smallest
    (stages that take under 1 % of the wall at the largest size are reported but not judged);
  * everything outside reading patches and the model <= 10 % of the wall time at the largest size;
  * peak memory at the largest size within 1.2x of the smallest.

    python benchmarks/scaling.py                        # 2,000 / 20,000 / 200,000 candidates
    python benchmarks/scaling.py --sizes 1000 10000     # a quicker run
    python benchmarks/scaling.py --json scaling.json

The exit status is 1 when a run fails or its outputs are not the full set; the goals are reported only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):  # run from a checkout without installing; tests/bundles.py
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SEED = 0
ARCHITECTURE = "test_resnet"
#: stages in the order screen() runs them (keys of ScreenResult.timings); "classify" is the overlapping
#: wall time of "read" and "model" and is shown only as their wall
STAGES = ("points", "prepare", "read", "model", "summary", "geojson", "csv", "gc-json", "write", "report")
STAGE_NAMES = {"points": "reading points", "prepare": "model + cache index", "read": "reading patches",
               "model": "the model", "summary": "summary (hotspot incl.)", "geojson": "GeoJSON", "csv": "CSV table",
               "gc-json": "gc-json export", "write": "summary file + renames", "report": "HTML report"}
OUTSIDE = ("points", "prepare", "summary", "geojson", "csv", "gc-json", "write", "report")


def log(msg: str) -> None:
    print(f"[scaling] {msg}", file=sys.stderr, flush=True)


def make_inputs(work: Path, slide_mm: float) -> tuple[Path, Path]:
    """A synthetic slide (``slide_mm`` square at 0.25 um/px) and a random bundle."""
    from bundles import random_bundle  # tests/bundles.py

    from wsi_amf.synthetic import random_scene, write_pyramidal_tiff

    slide = work / "slide.tiff"
    um = slide_mm * 1000.0
    t = time.perf_counter()
    scene = random_scene(um, um, n_nuclei=int(2000 * slide_mm * slide_mm), seed=SEED)
    write_pyramidal_tiff(slide, scene.render(0.25), mpp=0.25, downsamples=(1, 4, 16))
    log(f"slide {slide_mm:g} x {slide_mm:g} mm written in {time.perf_counter() - t:.0f} s")
    bundle = work / "bundle"
    random_bundle(bundle, architecture=ARCHITECTURE, members=1, seed=SEED)
    return slide, bundle


def write_points(path: Path, n: int, extent_px: int) -> None:
    rng = np.random.default_rng(SEED + n)
    xy = rng.uniform(64, extent_px - 64, (n, 2))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("id,x,y,score\n")
        fh.writelines(f"c{i},{x:.1f},{y:.1f},{s:.3f}\n" for i, ((x, y), s) in enumerate(zip(xy, rng.random(n))))


def peak_memory_mb() -> float:
    """This process's resident high-water mark (VmHWM: its own address space's, unlike ru_maxrss, which after
    fork + exec may still hold the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args: argparse.Namespace) -> None:
    """One size: screen end to end, print the timings and the peak memory as JSON."""
    import logging

    from wsi_amf import screen
    from wsi_amf.options import ScreenOptions

    logging.getLogger("wsi_amf").setLevel(logging.ERROR)
    work = Path(args.work)
    t = time.perf_counter()
    result = screen(work / "slide.tiff", work / f"points-{args.child}.csv",
                    ScreenOptions(cache_dir=work / f"cache-{args.child}", report=True,
                                  export=["gc-json"]), model=work / "bundle",
                    out=work / f"out-{args.child}", progress=False)
    wall = time.perf_counter() - t
    peak_mb = peak_memory_mb()
    from wsi_amf.outputs import check_output_set

    problem = check_output_set(result.outputs["summary"])
    sizes = {k: p.stat().st_size for k, p in result.outputs.items()}
    print(json.dumps({"n": args.child, "n_classified": result.n_classified, "wall": wall, "peak_mb": peak_mb,
                      "timings": result.timings, "sizes": sizes, "problem": problem}))


def run_size(work: Path, n: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--work", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"size {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(runs: list[dict]) -> tuple[list[str], bool]:
    small, large = runs[0], runs[-1]
    sizes = [r["n"] for r in runs]
    lines = ["stage (s per 1,000 candidates)".ljust(28) + "".join(f"{n:>12,}" for n in sizes) + "   large/small"]
    verdicts = []
    for key in STAGES:
        if not all(key in r["timings"] for r in runs):
            continue
        per = [1000.0 * r["timings"][key] / r["n"] for r in runs]
        ratio = per[-1] / per[0] if per[0] > 0 else float("inf")
        judged = large["timings"][key] >= 0.01 * large["wall"]
        ok = ratio <= 1.3 or not judged
        verdicts.append(ok)
        mark = ("PASS" if ok else "FAIL") if judged else "(<1 % of wall)"
        lines.append(f"{STAGE_NAMES[key]:<28}" + "".join(f"{v:>12.4f}" for v in per) + f"   {ratio:5.2f}x {mark}")
    lines.append(f"{'end to end (wall)':<28}" + "".join(f"{1000.0 * r['wall'] / r['n']:>12.4f}" for r in runs))
    lines.append(f"{'peak memory (MB)':<28}" + "".join(f"{r['peak_mb']:>12.0f}" for r in runs)
                 + f"   {large['peak_mb'] / small['peak_mb']:5.2f}x "
                 + ("PASS" if large["peak_mb"] <= 1.2 * small["peak_mb"] else "FAIL") + " (goal <= 1.2x)")
    verdicts.append(large["peak_mb"] <= 1.2 * small["peak_mb"])
    outside = sum(large["timings"].get(k, 0.0) for k in OUTSIDE)
    share = outside / large["wall"]
    verdicts.append(share <= 0.10)
    lines.append(f"outside reading and the model at {large['n']:,}: {outside:.1f} s of {large['wall']:.1f} s = "
                 f"{100 * share:.1f} % " + ("PASS" if share <= 0.10 else "FAIL") + " (goal <= 10 %)")
    lines.append("file sizes at the largest size (MB): " + ", ".join(
        f"{k} {v / 1e6:.1f}" for k, v in large["sizes"].items()))
    return lines, all(verdicts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    ap.add_argument("--slide-mm", type=float, default=3.0, help="side of the synthetic slide (default 3 mm)")
    ap.add_argument("--json", type=Path, help="write the measurements here")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="wsi-amf-scaling-") as tmp:
        work = Path(tmp)
        slide, _ = make_inputs(work, args.slide_mm)
        extent = int(round(args.slide_mm * 1000 / 0.25))
        runs = []
        for n in sorted(args.sizes):
            write_points(work / f"points-{n}.csv", n, extent)
            log(f"{n:,} candidates ...")
            runs.append(run_size(work, n))
            log(f"  {runs[-1]['wall']:.1f} s, peak {runs[-1]['peak_mb']:.0f} MB")
            if runs[-1]["problem"]:
                raise SystemExit(f"size {n}: {runs[-1]['problem']}")
    lines, ok = report(runs)
    print(f"wsi-amf scaling: one synthetic {args.slide_mm:g} mm slide, random {ARCHITECTURE}, cpu {os.cpu_count()} cores")
    print("\n".join(lines))
    print("all goals met" if ok else "some goals missed")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "lines": lines}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
