"""The built-in model's recorded cross-validation figures are reproduced from the weights that ship.

Each member is fold k's model: run on fold k's held-out slides (the folds recorded in ``bundle.json``,
``fold_groups``), the members' out-of-fold predictions must give the ROC AUC and balanced accuracy written in
``bundle.json`` and the README. The members ship in fp16 (training evaluated them in fp32), hence the small
tolerance. Skipped when the shared AMi-Br data or the built-in model is absent.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import shared_file

from wsi_amf.bundle import default_bundle_path, load_bundle
from wsi_amf.datasets import load_dataset
from wsi_amf.ensemble import Ensemble
from wsi_amf.stats import binary_metrics, roc_auc
from wsi_amf.training.oof import recorded_oof
from wsi_amf.training.splits import folds_from_groups


@pytest.fixture(scope="module")
def default_bundle():
    if not (default_bundle_path() / "bundle.json").exists():
        pytest.skip("the built-in model is not shipped in this checkout")
    return load_bundle(None)


@pytest.fixture(scope="module")
def amibr():
    return load_dataset(shared_file("amibr"))


def test_recorded_cross_validation_is_reproduced_from_the_shipped_weights(default_bundle, amibr):
    data = amibr
    cfg = default_bundle.config
    recorded = cfg.metrics["cv_oof"]
    prov = cfg.provenance
    assert prov["data"]["fingerprint"] == data.fingerprint(), "the shared AMi-Br subset is not the one it was trained on"
    assert cfg.fold_group_by == prov["cv"]["grouped_by"] == data.group_by
    folds = folds_from_groups(data.groups, cfg.fold_groups)
    assert len(folds) == len(cfg.members) == prov["cv"]["folds"]
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


def test_recorded_oof_scores_each_slide_with_its_own_fold(default_bundle, amibr):
    """``recorded_oof`` (what ``calibrate`` and ``combine`` use) follows the recorded fold of every slide."""
    oof = recorded_oof(default_bundle, amibr)
    assert not np.isnan(oof.p).any() and set(oof.folds.tolist()) == set(range(1, len(default_bundle.config.members) + 1))
    for group, fold in default_bundle.config.fold_groups.items():
        assert set(oof.folds[amibr.groups == group].tolist()) == {fold + 1}
    assert roc_auc(amibr.labels, oof.p) == pytest.approx(default_bundle.config.metrics["cv_oof"]["roc_auc"], abs=0.005)


def test_the_example_script_trains_the_shipped_recipe(default_bundle) -> None:
    """``examples/train_default_model.py`` (how the README says the model was trained) sets what it recorded."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "train_default_model.py"
    spec = importlib.util.spec_from_file_location("train_default_model", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    recorded = default_bundle.config.provenance["hyperparameters"]
    changes = {f.name: getattr(example.CHANGES, f.name) for f in dataclasses.fields(example.CHANGES)}
    set_here = {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items() if v is not None}
    assert set_here and {k: recorded[k] for k in set_here} == set_here
    assert default_bundle.config.provenance["name"] == example.NAME
    assert default_bundle.config.provenance["card"] == example.CARD
