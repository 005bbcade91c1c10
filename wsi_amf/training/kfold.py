"""One k-fold cross-validation over part of a dataset, resumable fold by fold, and the bundle it makes.

Fold k's model is trained on the other folds and kept at its lowest validation loss; its validation
probabilities are the out-of-fold (OOF) predictions of fold k's figures. Finished folds are kept in the
``FoldStore`` and loaded instead of trained again when a run resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..bundle import BundleConfig, ModelBundle, save_bundle
from ..datasets import PatchDataset
from ..inference.reports import headline
from ..stats import binary_metrics
from . import trainer
from .checkpoints import FoldStore
from .recipes import Recipe
from .splits import Fold, group_folds, stratified_group_folds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CVRun:
    """What a k-fold run leaves: OOF predictions, the members' weights and a record per fold."""

    oof: np.ndarray  # per position of ``index``
    fold_of: np.ndarray  # 1-based fold per position of ``index``
    records: tuple[dict[str, Any], ...]
    states: tuple[dict[str, Any], ...]
    extra: np.ndarray  # fold models' mean P(atypical) on ``predict_idx``
    seeds: tuple[int, ...]
    trained: int
    resumed: int
    fold_groups: Mapping[str, int]  # 0-based fold of every group of ``index``


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cross_validate(
    data: PatchDataset,
    index: np.ndarray,
    recipe: Recipe,
    store: FoldStore,
    *,
    key: str,
    label: str,
    seed_base: int,
    device: str,
    predict_idx: np.ndarray | None = None,
    quiet: bool = True,
) -> CVRun:
    """Train (or resume) every fold of ``data[index]``; ``predict_idx`` is scored by every fold model."""
    groups = data.groups[index]
    folds = stratified_group_folds(data.labels[index], groups, recipe.folds, seed=recipe.seed)
    oof = np.full(index.size, np.nan)
    fold_of = np.zeros(index.size, dtype=np.int64)
    extra = np.zeros(predict_idx.size if predict_idx is not None else 0)
    records, states, seeds = [], [], []
    trained = resumed = 0
    for fold in folds:
        seed = seed_base + fold.index
        train_idx, val_idx = index[fold.train], index[fold.val]
        outcome, was_saved = _train_or_resume(data, train_idx, val_idx, recipe, store, seed=seed, device=device,
                                              fkey=f"{key}/fold-{fold.index + 1}", predict_idx=predict_idx,
                                              desc=f"{label} fold {fold.index + 1}/{len(folds)}", quiet=quiet)
        trained, resumed = trained + (not was_saved), resumed + was_saved
        oof[fold.val] = outcome.val_probs
        fold_of[fold.val] = fold.index + 1
        if predict_idx is not None:
            extra += outcome.extra_probs / len(folds)
        states.append(outcome.state_dict)
        seeds.append(seed)
        records.append(_fold_record(data, fold, train_idx, val_idx, outcome, seed=seed, resumed=was_saved))
    return CVRun(oof, fold_of, tuple(records), tuple(states), extra, tuple(seeds), trained, resumed,
                 group_folds(folds, groups))


def _train_or_resume(data: PatchDataset, train_idx: np.ndarray, val_idx: np.ndarray, recipe: Recipe, store: FoldStore,
                     *, seed: int, device: str, fkey: str, predict_idx: np.ndarray | None, desc: str,
                     quiet: bool) -> tuple[trainer.FoldOutcome, bool]:
    """The fold's outcome, loaded from ``store`` when a previous run finished it (then True), else trained."""
    outcome = store.load(fkey, val_idx, predict_idx)
    if outcome is not None:
        log.info("%s: finished earlier, loaded from %s", desc, store.root)
        return outcome, True
    log.info("%s: training on %d patches, validating on %d", desc, train_idx.size, val_idx.size)
    outcome = trainer.train_fold(
        data.images, data.labels, train_idx, val_idx, recipe=recipe, seed=seed, device=device,
        predict_idx=predict_idx, desc=desc, quiet=quiet,
    )
    store.save(fkey, outcome, val_idx, predict_idx)
    return outcome, False


def _fold_record(data: PatchDataset, fold: Fold, train_idx: np.ndarray, val_idx: np.ndarray,
                 outcome: trainer.FoldOutcome, *, seed: int, resumed: bool) -> dict[str, Any]:
    return {
        "fold": fold.index + 1,
        "seed": seed,
        "n_train": int(train_idx.size),
        "n_val": int(val_idx.size),
        "n_val_atypical": int(data.labels[val_idx].sum()),
        "n_val_groups": int(np.unique(data.groups[val_idx]).size),
        "best_epoch": outcome.best_epoch,
        "best_val_loss": outcome.best_val_loss,
        "seconds": round(outcome.seconds, 1),
        "resumed": resumed,
        "history": list(outcome.history),
    }


def per_fold(run: CVRun, y: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    """Each fold's record with its metrics on its own validation figures."""
    out = []
    for rec in run.records:
        mask = run.fold_of == rec["fold"]
        m = binary_metrics(y[mask], run.oof[mask], threshold)
        out.append({**{k: v for k, v in rec.items() if k != "history"}, **headline(m), "history": rec["history"]})
    return out


def bundle_config(recipe: Recipe, data: PatchDataset, run: CVRun, threshold: float, provenance: Mapping[str, Any],
                  metrics: Mapping[str, Any]) -> BundleConfig:
    """The configuration of the bundle whose members are ``run``'s fold models (members filled on saving)."""
    return BundleConfig(
        architecture=recipe.arch,
        members=(),
        input_size=recipe.img_size,
        patch_size=int(data.images.shape[1]),
        crop_fraction=recipe.crop,
        mean=recipe.mean,
        std=recipe.std,
        mpp=recipe.mpp,
        threshold=float(threshold),
        provenance=provenance,
        metrics=metrics,
        fold_groups=dict(run.fold_groups),
        fold_group_by=data.group_by or "group",
    )


def write_bundle(out: Path, config: BundleConfig, run: CVRun, *, precision: str) -> ModelBundle:
    """Save ``run``'s fold models as the bundle in ``out``; member files left from a larger run are removed."""
    bundle = save_bundle(out, config, list(run.states), precision=precision)
    for stale in out.glob("member-*.safetensors"):
        if stale.name not in bundle.config.members:
            stale.unlink()
    return bundle
