"""A bundle's out-of-fold predictions rebuilt from its recorded folds.

A bundle written by ``train`` is a k-fold ensemble: member k is fold k's model (a mixed ensemble records
each member's fold: ``BundleConfig.member_folds``; a figure's score is then the mean of its fold's members),
and ``bundle.json`` records the fold of every training group (``BundleConfig.fold_groups``). Given the
dataset it was trained on (checked by fingerprint), each member scores only the figures of its own
validation fold, which it never saw: the same out-of-fold predictions ``train`` computed. This is how a bundle
gets its calibration and rates without retraining (``wsi-amf calibrate``) and how ``combine`` scores a mixed
ensemble.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..bundle import ModelBundle
from ..datasets import PatchDataset
from ..errors import BundleError, DatasetError
from .splits import Fold, folds_from_groups


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold P(atypical) with the labels, source groups, 1-based folds and domains of the figures."""

    p: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    folds: np.ndarray
    domains: dict[str, np.ndarray]


def recorded_folds(bundle: ModelBundle, data: PatchDataset) -> list[Fold]:
    """The folds ``bundle`` was cross-validated on, over ``data`` (its training data, checked by fingerprint)."""
    cfg = bundle.config
    recorded = (cfg.provenance.get("data") or {}).get("fingerprint")
    if recorded != data.fingerprint():
        raise DatasetError(
            f"dataset {data.source}: its fingerprint {data.fingerprint()} is not the one model bundle {bundle.path} "
            f"was trained on ({recorded}); out-of-fold predictions need the training data"
        )
    if not cfg.fold_groups:
        raise BundleError(
            f"model bundle {bundle.path}: bundle.json records no folds (fold_groups); out-of-fold predictions "
            "need the fold of every training group"
        )
    return folds_from_groups(data.groups, cfg.fold_groups, source=f"dataset {data.source}")


def recorded_oof(bundle: ModelBundle, data: PatchDataset, *, device: str = "cpu", engine: str = "auto",
                 batch_size: int = 256) -> OutOfFold:
    """Score each figure of ``data`` with the member(s) of the fold that held it out."""
    from ..ensemble import Ensemble

    cfg = bundle.config
    member_fold = [cfg.fold_of(k) for k in range(len(cfg.members))]
    p = np.full(len(data), np.nan)
    fold_of = np.zeros(len(data), dtype=np.int64)
    for fold in recorded_folds(bundle, data):  # a fold's members (one, or one per architecture) averaged
        members = tuple(name for name, f in zip(cfg.members, member_fold) if f == fold.index)
        ens = Ensemble(dataclasses.replace(bundle, config=dataclasses.replace(cfg, members=members)), device=device,
                       engine=engine)
        idx = fold.val
        p[idx] = np.concatenate([ens.predict(data.images[idx[i:i + batch_size]]) for i in range(0, len(idx), batch_size)])
        fold_of[idx] = fold.index + 1
    return OutOfFold(p=p, labels=data.labels.copy(), groups=data.groups.copy(), folds=fold_of,
                     domains={k: np.asarray(v).astype(str) for k, v in data.domains.items()})
