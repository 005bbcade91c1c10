"""The fold of every training group, recorded in bundle.json: round trip, checks on load, and its use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wsi_amf.bundle import BundleConfig, ModelBundle
from wsi_amf.datasets import PatchDataset
from wsi_amf.errors import BundleError, DatasetError
from wsi_amf.training.oof import recorded_folds
from wsi_amf.training.splits import folds_from_groups, group_folds, stratified_group_folds

MEMBERS = ("member-0.safetensors", "member-1.safetensors")
FOLDS = {"slide-a": 0, "slide-b": 1, "slide-c": 0}


def config(**given) -> BundleConfig:
    return BundleConfig(architecture="resnet10t", members=MEMBERS, **given)


def test_round_trip_and_left_out_when_empty(tmp_path: Path) -> None:
    cfg = config(fold_groups=FOLDS, fold_group_by="group")
    data = json.loads(json.dumps(cfg.to_json()))
    assert data["fold_groups"] == FOLDS and data["fold_group_by"] == "group"
    assert BundleConfig.from_json(data, source=tmp_path) == cfg
    plain = config().to_json()
    assert "fold_groups" not in plain and "fold_group_by" not in plain
    assert BundleConfig.from_json(plain, source=tmp_path).fold_groups == {}


@pytest.mark.parametrize(("change", "message"), [
    ({"fold_groups": {"slide-a": "first"}}, "bad value"),
    ({"fold_groups": {"slide-a": True, "slide-b": 1}}, "bad value"),
    ({"fold_groups": [0, 1]}, "bad value"),
    ({"fold_groups": {"slide-a": -1, "slide-b": 1}}, "0-based fold numbers"),
    ({"fold_groups": {"slide-a": 0, "slide-b": 2}}, "fold_groups gives folds [0, 2], the members are of folds [0, 1]"),
    ({"fold_group_by": ""}, "fold_groups without fold_group_by"),
    ({"fold_group_by": 3}, "bad value"),
])
def test_bad_folds_are_one_line_bundle_errors(tmp_path: Path, change: dict, message: str) -> None:
    data = {**config(fold_groups=FOLDS, fold_group_by="group").to_json(), **change}
    with pytest.raises(BundleError) as info:
        BundleConfig.from_json(data, source=tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def dataset() -> PatchDataset:
    groups = np.array(["slide-a", "slide-a", "slide-b", "slide-c", "slide-b"])
    return PatchDataset(images=np.zeros((5, 8, 8, 3), np.uint8), labels=np.array([0, 1, 0, 1, 1]), groups=groups,
                        paths=tuple(f"p{i}" for i in range(5)), group_by="group")


def test_recorded_folds_follow_the_assignment(tmp_path: Path) -> None:
    ds = dataset()
    prov = {"data": {"fingerprint": ds.fingerprint()}}
    bundle = ModelBundle(tmp_path, config(fold_groups=FOLDS, fold_group_by="group", provenance=prov))
    folds = recorded_folds(bundle, ds)
    assert [f.val.tolist() for f in folds] == [[0, 1, 3], [2, 4]]
    assert [f.train.tolist() for f in folds] == [[2, 4], [0, 1, 3]]
    with pytest.raises(BundleError, match="records no folds"):
        recorded_folds(ModelBundle(tmp_path, config(provenance=prov)), ds)
    with pytest.raises(DatasetError, match="fingerprint"):
        recorded_folds(ModelBundle(tmp_path, config(fold_groups=FOLDS, fold_group_by="group")), ds)
    with pytest.raises(DatasetError, match="group 'slide-c' has no recorded fold"):
        folds_from_groups(ds.groups, {"slide-a": 0, "slide-b": 1})


def test_group_folds_round_trip() -> None:
    rng = np.random.default_rng(3)
    groups = np.array([f"s{g}" for g in rng.integers(0, 30, 400)])
    labels = rng.integers(0, 2, 400)
    folds = stratified_group_folds(labels, groups, 5, seed=11)
    again = folds_from_groups(groups, group_folds(folds, groups))
    assert all(np.array_equal(a.val, b.val) and np.array_equal(a.train, b.train) for a, b in zip(folds, again))
