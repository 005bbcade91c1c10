"""The built-in model's recorded cross-validation figures are reproduced from the weights that ship.

Each member is fold k's model: run on fold k's held-out slides (the grouped folds rebuilt from the recorded
split seed), the members' out-of-fold predictions must give the ROC AUC and balanced accuracy written in
``bundle.json`` and the README. The members ship in fp16 (training evaluated them in fp32), hence the small
tolerance. Skipped when the shared AMi-Br data or the built-in model is absent.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import shared_file
from wsi_amf.bundle import default_bundle_path, load_bundle
from wsi_amf.ensemble import Ensemble
from wsi_amf.training.datasets import load_dataset
from wsi_amf.stats import binary_metrics, roc_auc
from wsi_amf.training.splits import stratified_group_folds


@pytest.fixture(scope="module")
def default_bundle():
    if not (default_bundle_path() / "bundle.json").exists():
        pytest.skip("the built-in model is not shipped in this checkout")
    return load_bundle(None)


def test_recorded_cross_validation_is_reproduced_from_the_shipped_weights(default_bundle):
    data = load_dataset(shared_file("amibr"))
    cfg = default_bundle.config
    recorded = cfg.metrics["cv_oof"]
    prov = cfg.provenance
    assert prov["data"]["fingerprint"] == data.fingerprint(), "the shared AMi-Br subset is not the one it was trained on"
    folds = stratified_group_folds(data.labels, data.groups, len(cfg.members), seed=prov["seeds"]["split"])
    oof = np.full(len(data), np.nan)
    for fold in folds:
        member = dataclasses.replace(cfg, members=(cfg.members[fold.index],))
        ens = Ensemble(dataclasses.replace(default_bundle, config=member), device="cpu")
        oof[fold.val] = np.concatenate([ens.predict(data.images[fold.val[i:i + 256]]) for i in range(0, len(fold.val), 256)])
    assert not np.isnan(oof).any(), "the folds must cover every figure exactly once"
    # No slide in two folds: each member never saw the figures it is scored on.
    for fold in folds:
        assert not set(data.groups[fold.val]) & set(data.groups[fold.train])
    assert roc_auc(data.labels, oof) == pytest.approx(recorded["roc_auc"], abs=0.005)
    at_threshold = binary_metrics(data.labels, oof, cfg.threshold)
    assert at_threshold["balanced_accuracy"] == pytest.approx(recorded["balanced_accuracy"], abs=0.01)
    assert recorded["n"] == len(data) == 2679
