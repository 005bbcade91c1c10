"""Mixed ensembles: bundles of different architectures trained on the same folds combined into one, whose
members keep their own architecture and preprocessing and whose out-of-fold scores average each fold's members."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from test_training_train import make_data_csv

from wsi_amf import load_bundle
from wsi_amf.cli import main
from wsi_amf.datasets import load_dataset
from wsi_amf.ensemble import Ensemble
from wsi_amf.errors import OptionError
from wsi_amf.training import RecipeChanges, train
from wsi_amf.training.combine import combine
from wsi_amf.training.oof import recorded_oof


def tiny(**changes: Any) -> dict[str, Any]:
    """Train a tiny model: one epoch, two folds, 32 px."""
    given = {"img_size": 32, "epochs": 1, "folds": 2, "batch_size": 8, **changes}
    return {"changes": RecipeChanges(**given), "device": "cpu", "quiet": True}


@pytest.fixture(scope="module")
def two_bundles(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("combine")
    data = make_data_csv(root / "data")
    a = train(data, root / "a", **tiny(arch="resnet10t")).bundle
    b = train(data, root / "b", **tiny(arch="convnextv2_atto", img_size=48, crop=0.8)).bundle
    yield data, a, b, root
    torch.set_num_threads(threads)


def test_a_combined_bundle_averages_its_members_with_their_own_preprocessing(two_bundles) -> None:
    data, a, b, root = two_bundles
    mixed = combine([a.path, b.path], data, out=root / "mixed", quiet=True)
    cfg = load_bundle(mixed.path).config
    assert cfg.architectures == ("resnet10t", "convnextv2_atto") and len(cfg.members) == 4
    assert cfg.member(2).architecture == "convnextv2_atto" and cfg.member(2).input_size == 48
    assert cfg.member(2).crop_fraction == 0.8 and cfg.member(0).input_size == 32
    assert [cfg.fold_of(k) for k in range(4)] == [0, 1, 0, 1]
    patches = np.random.default_rng(0).integers(0, 256, (6, 128, 128, 3), dtype=np.uint8)
    for engine in ("torch", "auto"):
        both = Ensemble(load_bundle(mixed.path), device="cpu", engine=engine).predict(patches)
        pa = Ensemble(a, device="cpu", engine=engine).predict(patches)
        pb = Ensemble(b, device="cpu", engine=engine).predict(patches)
        np.testing.assert_allclose(both, (pa + pb) / 2, atol=1e-6)
    ds = load_dataset(data, quiet=True)
    oof = recorded_oof(load_bundle(mixed.path), ds, engine="torch")
    expected = (recorded_oof(a, ds, engine="torch").p + recorded_oof(b, ds, engine="torch").p) / 2
    np.testing.assert_allclose(oof.p, expected, atol=1e-6)  # a figure: the mean of its fold's members
    assert cfg.quantification["estimator"] and 0.0 <= cfg.threshold <= 1.0
    assert [s["architecture"] for s in cfg.provenance["combined_from"]] == ["resnet10t", "convnextv2_atto"]
    metrics = json.loads((mixed.path / "metrics.json").read_text())
    assert metrics["roc_auc"] == pytest.approx(cfg.metrics["cv_oof"]["roc_auc"])
    rows = (mixed.path / "oof_predictions.csv").read_text().splitlines()
    assert len(rows) == 17 and "fold" in rows[0]


def test_bundles_of_other_folds_or_data_are_refused(two_bundles, tmp_path: Path) -> None:
    data, a, _, root = two_bundles
    three = train(data, tmp_path / "three", **tiny(arch="resnet10t", folds=3)).bundle
    with pytest.raises(OptionError, match="cannot be combined: not cross-validated on the same folds"):
        combine([a.path, three.path], data, out=tmp_path / "x", quiet=True)
    result = CliRunner().invoke(main, ["combine", str(a.path), "--data", str(data), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "at least two bundles" in result.output


def test_recorded_folds_rebuild_the_out_of_fold_predictions_of_training(two_bundles) -> None:
    data, a, _, _ = two_bundles
    rows = list(csv.DictReader((a.path / "oof_predictions.csv").open(newline="")))
    oof = recorded_oof(a, load_dataset(data, quiet=True), engine="torch")
    np.testing.assert_allclose(oof.p, [float(r["p_atypical"]) for r in rows], atol=5e-6)
    assert oof.folds.tolist() == [int(r["fold"]) for r in rows]
