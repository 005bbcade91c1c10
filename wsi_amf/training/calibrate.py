"""What a bundle records for the per-slide ratio estimators, from its out-of-fold predictions.

(``calibrate`` also records the training patches' digests, by which ``evaluate`` tells in-sample figures.)

``train`` calls :func:`quantification_block` on its own out-of-fold predictions. :func:`calibrate` gives a
bundle trained before the estimators existed (the built-in one among them) the same entry without retraining:
its out-of-fold predictions are rebuilt from the recorded folds (``oof.recorded_oof``) on the dataset it was
trained on, and ``bundle.json`` is rewritten with the entry (atomically; weights untouched).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import BUNDLE_FILE, ModelBundle, load_bundle
from ..datasets import PatchDataset, load_dataset
from ..files import atomic_write_text
from ..quantify import bundle_block, fit_reference
from ..stain import StainRange, patch_stats
from .oof import recorded_oof

log = logging.getLogger(__name__)
SOURCE = "out-of-fold predictions of the bundle's cross-validation (each figure scored by the member that never saw its slide)"


def quantification_block(data: PatchDataset, oof: np.ndarray, folds: np.ndarray, threshold: float) -> dict[str, Any]:
    """Calibration map (by cross-validated log-loss), rates, reference figures and stain range of a training run."""
    ref, losses = fit_reference(oof, data.labels, data.groups, folds, domains=data.domains)
    stain = StainRange.of(patch_stats(data.images)[:, :2], data.groups).to_json()
    log.info("calibration: %s (cross-validated log-loss %s)", ref.calibration.method,
             ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    return bundle_block(ref, threshold=threshold, losses=losses, stain=stain, source=SOURCE)


def calibrate(bundle: str | Path | ModelBundle | None, data: str | Path | PatchDataset, *, format: str | None = None,
              group_column: str | None = None, domain_column: str | None = None, images: str | Path | None = None,
              device: str = "cpu", engine: str = "auto", workers: int = 4, quiet: bool = False,
              out: str | Path | None = None) -> ModelBundle:
    """Add the ``quantification`` entry to ``bundle``'s ``bundle.json`` (or to ``out/bundle.json``, a copy of
    the configuration beside the same weights, when given), from its training data ``data``."""
    b = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
    ds = data if isinstance(data, PatchDataset) else load_dataset(
        data, format=format, group_column=group_column, domain_column=domain_column, images=images,
        patch_size=b.config.patch_size, workers=workers, quiet=quiet,
    )
    oof = recorded_oof(b, ds, device=device, engine=engine)  # checks that ds is the training data (fingerprint)
    provenance = dict(b.config.provenance)
    provenance["data"] = {**(provenance.get("data") or {}), "patch_digests": ds.patch_digests()}  # for evaluate
    config = replace(b.config, provenance=provenance,
                     quantification=quantification_block(ds, oof.p, oof.folds, b.config.threshold))
    target = Path(out) if out is not None else b.path
    atomic_write_text(target / BUNDLE_FILE, json.dumps(config.to_json(), indent=2) + "\n")
    return ModelBundle(path=target, config=config)
