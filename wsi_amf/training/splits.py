"""Cross-validation splits: stratified and grouped k-fold, and leave-one-domain-out.

A group (source slide or image) never appears in both the training and the validation part of a fold,
and each fold's share of atypical figures stays close to the whole dataset's (scikit-learn's
``StratifiedGroupKFold``, shuffled with the seed). A bundle records the fold of every group
(``BundleConfig.fold_groups``), so that its out-of-fold predictions can be rebuilt without re-deriving the
split: :func:`folds_from_groups`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """One split: indices (into the dataset the split was made on) to train on and to validate on."""

    index: int
    train: np.ndarray
    val: np.ndarray


def stratified_group_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int, *, seed: int = 0) -> list[Fold]:
    """``n_folds`` folds, stratified by label and grouped by ``groups`` (deterministic for a seed)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    y = np.asarray(labels).astype(np.int64)
    g = np.asarray(groups)
    if y.size != g.size:
        raise ValueError("labels and groups differ in length")
    if n_folds < 2:
        raise DatasetError(f"cross-validation needs at least 2 folds (got {n_folds})")
    n_groups = np.unique(g).size
    if n_groups < n_folds:
        raise DatasetError(
            f"only {n_groups} groups (source slides/images) for {n_folds} folds: lower --folds or check --group-column"
        )
    splitter: GroupKFold | StratifiedGroupKFold = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    if np.bincount(y, minlength=2).max() < n_folds:  # too few figures of either class to stratify (scikit-learn refuses)
        log.warning("only %d figures for %d folds: the folds are grouped but not stratified", y.size, n_folds)
        splitter = GroupKFold(n_splits=n_folds)
    fold_of = np.empty(y.size, dtype=np.int64)
    with warnings.catch_warnings():  # "the least populated class has fewer members than n_splits": logged below
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, val) in enumerate(splitter.split(np.zeros(y.size), y, g)):
            fold_of[val] = k
    n_pos = int(y.sum())
    if 0 < n_pos < n_folds:
        log.warning("only %d atypical figures for %d folds: some folds validate without any", n_pos, n_folds)
    return _folds(fold_of, n_folds)


def _folds(fold_of: np.ndarray, n_folds: int) -> list[Fold]:
    folds = []
    for k in range(n_folds):
        val = np.flatnonzero(fold_of == k)
        if val.size == 0:
            raise DatasetError(f"fold {k + 1} of {n_folds} is empty: lower --folds")
        folds.append(Fold(k, np.flatnonzero(fold_of != k), val))
    return folds


def group_folds(folds: list[Fold], groups: np.ndarray) -> dict[str, int]:
    """The 0-based fold of each group, as a bundle records it."""
    g = np.asarray(groups).astype(str)
    return {str(group): fold.index for fold in folds for group in sorted(set(g[fold.val].tolist()))}


def folds_from_groups(groups: np.ndarray, fold_groups: Mapping[str, int], *, source: str = "dataset") -> list[Fold]:
    """The folds a recorded group -> fold assignment gives ``groups`` (DatasetError for a group it lacks)."""
    g = np.asarray(groups).astype(str)
    missing = sorted(set(g.tolist()) - set(fold_groups))
    if missing:
        raise DatasetError(f"{source}: group {missing[0]!r} has no recorded fold ({len(missing)} groups lack one)")
    fold_of = np.array([fold_groups[v] for v in g.tolist()], dtype=np.int64)
    return _folds(fold_of, max(fold_groups.values()) + 1)


def leave_one_domain_out(domains: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(domain, train indices, held-out indices)`` for each distinct value of ``domains`` (sorted)."""
    d = np.asarray(domains).astype(str)
    values = sorted(set(d.tolist()))
    if len(values) < 2:
        raise DatasetError(f"leave-one-domain-out needs at least 2 domains (found {len(values)})")
    return [(v, np.flatnonzero(d != v), np.flatnonzero(d == v)) for v in values]
