"""How well the per-slide AMF ratio estimators recover the true share of atypical figures, and how often their
95 % intervals cover it.

Slides are simulated from a bundle's out-of-fold predictions (``bundle.json``'s quantification entry: each
figure scored by the member that never saw its slide), so nothing here needs images or a model run:

- **in-domain**: for each cross-validation fold k, the reference (calibration map, rates, prior, shift) is
  refitted on the other folds' figures and slides are drawn from fold k's figures;
- **across sources**: for each value of the domain column (AMi-Br: MIDOG21, TUPAC16 - other scanners and
  labs), the reference is fitted on the other value's figures and slides are drawn from this one's: a stand-in
  for a new site.

A slide has n candidates (100 to 2,000) and a true share s (0.02 to 0.50): round(s n) atypical figures and the
rest normal, drawn with replacement. Each estimator of ``wsi_amf.quantify`` gives an estimate and an interval;
the table prints, per estimator, the mean absolute error, the bias and the coverage of the interval, beside
classify-and-count (``cc``: today's share of calls).

    python benchmarks/ratio_accuracy.py                  # the built-in model, 3 slides per (n, s) and fold
    python benchmarks/ratio_accuracy.py --model BUNDLE --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from wsi_amf.bundle import load_bundle
from wsi_amf.quantify import ESTIMATORS, Reference, ScoreHistogram, estimate_all, fit_reference

SIZES = (100, 300, 1000, 2000)
SHARES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
TARGETS = {"in-domain": (0.02, 0.93, 0.97), "across sources": (0.04, 0.90, 1.0)}


def simulate(ref_all: Reference, train: np.ndarray, threshold: float, rng: np.random.Generator, repeats: int,
             folds_for_fit: np.ndarray) -> list[tuple[str, int, float, float, float, float]]:
    """Rows (estimator, n, truth, estimate, low, high) for slides drawn from the figures outside ``train``."""
    domains = {k: v[train] for k, v in ref_all.domains.items()}
    ref, _ = fit_reference(ref_all.score[train], ref_all.labels[train], ref_all.groups[train], folds_for_fit[train],
                           domains=domains, estimator=ref_all.estimator)
    test = ~train
    pos = np.flatnonzero(test & (ref_all.labels == 1))
    neg = np.flatnonzero(test & (ref_all.labels == 0))
    rows = []
    for n in SIZES:
        for share in SHARES:
            for _ in range(repeats):
                k = int(round(share * n))
                idx = np.r_[rng.choice(pos, k), rng.choice(neg, n - k)]
                for m, e in estimate_all(ScoreHistogram.of(ref_all.score[idx], threshold), ref).items():
                    rows.append((m, n, k / n, e.share, e.ci95[0], e.ci95[1]))
    return rows


def table(title: str, rows: list, default: str) -> None:
    mae_goal, lo_goal, hi_goal = TARGETS[title]
    print(f"\n{title}: {len(rows) // len(ESTIMATORS)} simulated slides per estimator "
          f"(goal: mean |error| <= {mae_goal}, coverage {lo_goal:.0%}-{hi_goal:.0%})")
    head = f"{'estimator':10s} {'MAE':>7s} {'bias':>8s} {'coverage':>9s} {'width':>7s}" + "".join(
        f" {'MAE n=' + str(n):>10s} {'cov':>5s}" for n in SIZES)
    print(head)
    for m in ESTIMATORS:
        a = np.array([r[1:] for r in rows if r[0] == m], dtype=np.float64)
        err = a[:, 2] - a[:, 1]
        cov = (a[:, 3] <= a[:, 1] + 1e-12) & (a[:, 1] <= a[:, 4] + 1e-12)
        line = f"{m + (' *' if m == default else ''):10s} {np.abs(err).mean():7.4f} {err.mean():+8.4f} {cov.mean():9.3f} " \
               f"{(a[:, 4] - a[:, 3]).mean():7.3f}"
        for n in SIZES:
            sel = a[:, 0] == n
            line += f" {np.abs(err[sel]).mean():10.4f} {cov[sel].mean():5.2f}"
        if m == default:
            ok_mae = np.abs(err).mean() <= mae_goal
            ok_cov = lo_goal <= cov.mean() <= hi_goal
            line += f"   MAE {'PASS' if ok_mae else 'MISS'}, coverage {'PASS' if ok_cov else 'MISS'}"
        print(line)
    print("(* the bundle's default estimator; cc is the uncorrected share of calls)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="bundle directory (default: the built-in model)")
    ap.add_argument("--repeats", type=int, default=3, help="slides per (size, share) and fold / source")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain", default=None, help="domain column for the across-sources rows (default: the only one)")
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    block = bundle.config.quantification
    if not block:
        raise SystemExit(f"model bundle {bundle.path} records no quantification entry: run `wsi-amf calibrate` first")
    ref = Reference.from_json(block)
    if ref.folds is None:
        raise SystemExit(f"model bundle {bundle.path}: the reference figures carry no folds")
    threshold = bundle.config.threshold
    rng = np.random.default_rng(args.seed)
    print(f"{bundle.name}: {ref.score.size} out-of-fold figures ({int(ref.labels.sum())} atypical) from "
          f"{np.unique(ref.groups).size} slides; calibration {ref.calibration.method}; threshold {threshold:.4f}; "
          f"shift sd {ref.shift_sd:.3f} (site), {ref.slide_shift_sd:.3f} (slide)")
    t0 = time.perf_counter()
    rows: list = []
    for k in np.unique(ref.folds):
        rows += simulate(ref, ref.folds != k, threshold, rng, args.repeats, ref.folds)
    table("in-domain", rows, ref.estimator)
    column = args.domain or (next(iter(ref.domains)) if len(ref.domains) == 1 else None)
    if column is not None:
        rows = []
        values = ref.domains[column]
        for v in np.unique(values):
            # No folds inside one source: calibration is chosen over 5 random folds of its slides.
            _, codes = np.unique(ref.groups, return_inverse=True)
            pseudo = np.random.default_rng(args.seed).integers(0, 5, codes.max() + 1)[codes] + 1
            sub = dataclasses.replace(ref, domains={})
            rows += simulate(sub, values != v, threshold, rng, args.repeats, pseudo)
        table("across sources", rows, ref.estimator)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
