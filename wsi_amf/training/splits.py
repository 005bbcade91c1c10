"""Cross-validation splits: stratified and grouped k-fold, and leave-one-domain-out.

A group (source slide or image) never appears in both the training and the validation part of a fold,
and each fold's share of atypical figures stays close to the whole dataset's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
    """``n_folds`` folds, stratified by label and grouped by ``groups`` (deterministic for a seed).

    Groups are visited from the largest (after a seeded shuffle that breaks ties) and each goes to the
    fold whose per-class counts, relative to the class totals, stay most even; ties go to the smaller fold.
    """
    y = np.asarray(labels).astype(np.int64)
    g = np.asarray(groups)
    if y.size != g.size:
        raise ValueError("labels and groups differ in length")
    if n_folds < 2:
        raise DatasetError(f"cross-validation needs at least 2 folds (got {n_folds})")
    uniq, inverse = np.unique(g, return_inverse=True)
    if uniq.size < n_folds:
        raise DatasetError(
            f"only {uniq.size} groups (source slides/images) for {n_folds} folds: lower --folds or check --group-column"
        )
    counts = np.zeros((uniq.size, 2), dtype=np.int64)
    np.add.at(counts, (inverse, y), 1)
    totals = np.maximum(counts.sum(axis=0), 1).astype(np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(uniq.size)
    # Largest groups first; among equal sizes, rarer-class-rich groups first; otherwise the shuffled order.
    order = order[np.lexsort((-counts[order, 1], -counts[order].sum(axis=1)))]
    fold_counts = np.zeros((n_folds, 2), dtype=np.float64)
    assign = np.empty(uniq.size, dtype=np.int64)
    for gi in order:
        trial = fold_counts[None, :, :] + np.eye(n_folds)[:, :, None] * counts[gi][None, None, :]
        # trial[k] = fold counts if the group goes to fold k; spread of each class's share across folds.
        spread = (trial / totals).std(axis=1).sum(axis=1)
        sizes = trial.sum(axis=2)[np.arange(n_folds), np.arange(n_folds)]
        best = np.lexsort((np.arange(n_folds), sizes, np.round(spread, 12)))[0]
        assign[gi] = best
        fold_counts[best] += counts[gi]
    fold_of = assign[inverse]
    folds = []
    for k in range(n_folds):
        val = np.flatnonzero(fold_of == k)
        if val.size == 0:
            raise DatasetError(f"fold {k + 1} of {n_folds} is empty: lower --folds")
        folds.append(Fold(k, np.flatnonzero(fold_of != k), val))
    n_pos = int(y.sum())
    if 0 < n_pos < n_folds:
        log.warning("only %d atypical figures for %d folds: some folds validate without any", n_pos, n_folds)
    return folds


def leave_one_domain_out(domains: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(domain, train indices, held-out indices)`` for each distinct value of ``domains`` (sorted)."""
    d = np.asarray(domains).astype(str)
    values = sorted(set(d.tolist()))
    if len(values) < 2:
        raise DatasetError(f"leave-one-domain-out needs at least 2 domains (found {len(values)})")
    return [(v, np.flatnonzero(d != v), np.flatnonzero(d == v)) for v in values]
