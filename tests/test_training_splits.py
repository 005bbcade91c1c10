"""Grouped, stratified folds never leak a group and keep each fold's share of atypical figures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsi_amf.errors import DatasetError
from wsi_amf.training.splits import leave_one_domain_out, stratified_group_folds

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def check_partition(labels: np.ndarray, groups: np.ndarray, folds: list) -> None:
    seen = np.concatenate([f.val for f in folds])
    assert sorted(seen.tolist()) == list(range(labels.size))  # each patch validated exactly once
    for f in folds:
        assert np.intersect1d(f.train, f.val).size == 0
        assert f.train.size + f.val.size == labels.size
        assert not set(groups[f.train].tolist()) & set(groups[f.val].tolist())  # no group on both sides


def synthetic(n_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, n_groups)
    groups = np.repeat([f"slide{i}" for i in range(n_groups)], sizes)
    rate = rng.uniform(0.05, 0.4, n_groups)  # slides differ in how atypical they are
    labels = (rng.random(groups.size) < np.repeat(rate, sizes)).astype(np.int64)
    return labels, groups


def test_grouped_folds_are_stratified() -> None:
    labels, groups = synthetic(150, 1)
    folds = stratified_group_folds(labels, groups, 5, seed=0)
    check_partition(labels, groups, folds)
    overall = labels.mean()
    for f in folds:
        assert abs(labels[f.val].mean() - overall) < 0.03
        assert abs(f.val.size - labels.size / 5) < 0.1 * labels.size / 5


def test_folds_are_deterministic_per_seed() -> None:
    labels, groups = synthetic(40, 2)
    a = stratified_group_folds(labels, groups, 4, seed=7)
    b = stratified_group_folds(labels, groups, 4, seed=7)
    assert all(np.array_equal(x.val, y.val) for x, y in zip(a, b))


def test_too_few_groups() -> None:
    with pytest.raises(DatasetError, match="only 3 groups"):
        stratified_group_folds(np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "c"]), 5)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1)), min_size=6, max_size=80),
    st.integers(2, 5),
    st.integers(0, 1000),
)
@example([(0, 0), (0, 0), (1, 0), (2, 0), (3, 1), (4, 1)], 5, 0)  # fewer figures of each class than folds
def test_never_leaks_a_group(items: list[tuple[int, int]], k: int, seed: int) -> None:
    groups = np.array([f"g{g}" for g, _ in items])
    labels = np.array([y for _, y in items])
    if np.unique(groups).size < k:
        with pytest.raises(DatasetError):
            stratified_group_folds(labels, groups, k, seed=seed)
        return
    check_partition(labels, groups, stratified_group_folds(labels, groups, k, seed=seed))


def test_leave_one_domain_out() -> None:
    d = np.array(["b", "a", "b", "c"])
    splits = leave_one_domain_out(d)
    assert [s[0] for s in splits] == ["a", "b", "c"]
    assert splits[1][1].tolist() == [1, 3] and splits[1][2].tolist() == [0, 2]
    with pytest.raises(DatasetError, match="at least 2 domains"):
        leave_one_domain_out(np.array(["x", "x"]))


@pytest.mark.skipif(not (SHARED / "amibr" / "AMI-BR.csv").is_file(), reason="shared AMi-Br data absent")
def test_real_amibr_slides_never_leak() -> None:
    with (SHARED / "amibr" / "AMI-BR.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups = np.array([f"{r['dataset']}/{r['slide']}" for r in rows])
    labels = np.array([r["majority_atypical"] == "True" for r in rows], dtype=np.int64)
    folds = stratified_group_folds(labels, groups, 5, seed=42)
    check_partition(labels, groups, folds)
    for f in folds:
        assert abs(labels[f.val].mean() - labels.mean()) < 0.03
