"""Do the built-in model's members differ in scale, or do their folds' figures differ? (label-free)

Every figure of AMi-Br was seen in training by all members but the one of its fold. On a fold's figures this
prints how the members that saw them differ (the median logit difference of the two, with three members; with
more, each one's median offset from their mean: a member bias shows here), and the median logit of every
member on them (the held-out member against those that saw them).

    python benchmarks/member_agreement.py [../shared/data/amibr] [--model BUNDLE]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from wsi_amf.bundle import load_bundle
from wsi_amf.datasets import load_dataset
from wsi_amf.ensemble import Ensemble
from wsi_amf.training.splits import folds_from_groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/amibr")
    ap.add_argument("--model", default=None, help="a bundle with recorded folds (default: the built-in model)")
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    cfg = bundle.config
    data = load_dataset(args.data)
    folds = folds_from_groups(data.groups, cfg.fold_groups)
    logits = []
    for k in range(len(cfg.members)):
        one = dataclasses.replace(bundle, config=dataclasses.replace(cfg, members=(cfg.members[k],)))
        ens = Ensemble(one, device="cpu")
        p = np.clip(np.concatenate([ens.predict(data.images[i:i + 256]) for i in range(0, len(data), 256)]), 1e-6, 1 - 1e-6)
        logits.append(np.log(p / (1 - p)))
    print(f"{bundle.name}: {len(cfg.members)} members, {len(data)} figures")
    for fold in folds:
        seen = [k for k in range(len(cfg.members)) if k != fold.index]
        medians = "  ".join(f"member {k}{' (held out)' if k == fold.index else ''} {np.median(logits[k][fold.val]):+.3f}"
                            for k in range(len(cfg.members)))
        if len(seen) == 2:
            pair = f"members {seen[0]} - {seen[1]}: {np.median(logits[seen[0]][fold.val] - logits[seen[1]][fold.val]):+.3f}"
        else:  # each member that saw the fold against the mean of those that saw it
            mean = np.mean([logits[k][fold.val] for k in seen], axis=0)
            offsets = [float(np.median(logits[k][fold.val] - mean)) for k in seen]
            pair = f"members that saw it against their mean: {min(offsets):+.3f} to {max(offsets):+.3f}"
        print(f"fold {fold.index} ({len(fold.val)} figures): median logit {medians}; {pair}")


if __name__ == "__main__":
    main()
