"""Leave one domain out: for each value of a domain column, a k-fold ensemble trained on all the others and
scored on the held-out one, saved as a bundle under ``BUNDLE_DIR/loco/<domain>/``.

The held-out threshold is the inner OOF's best; ``loco_predictions.csv`` holds every held-out figure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..bundle import ModelBundle
from ..datasets import PatchDataset
from ..errors import OptionError
from ..inference.reports import headline, json_ready, metrics_report, write_predictions
from ..stats import best_balanced_accuracy_threshold, binary_metrics
from .checkpoints import FoldStore
from .kfold import bundle_config, cross_validate, now, write_bundle
from .recipes import Recipe
from .splits import leave_one_domain_out

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocoOutcome:
    metrics: dict[str, Any]  # held-out domain -> metrics on it
    bundles: dict[str, ModelBundle]
    predictions: Path
    trained: int
    resumed: int


@dataclass(frozen=True)
class _HeldOut:
    value: str
    index: np.ndarray
    p: np.ndarray
    threshold: float


def loco_column(ds: PatchDataset, cv: str, domain_column: str | None) -> str | None:
    """The domain column ``cv="loco"`` holds out (None for plain k-fold); OptionError when there is none."""
    if cv != "loco":
        return None
    if domain_column is None:
        if len(ds.domains) != 1:
            have = ", ".join(ds.domains) or "none"
            raise OptionError(f"--cv loco needs --domain-column (dataset {ds.source} has domain columns: {have})")
        return next(iter(ds.domains))
    if domain_column not in ds.domains:
        have = ", ".join(ds.domains) or "none"
        raise OptionError(f"--domain-column {domain_column}: dataset {ds.source} has no such column (domain columns: {have})")
    return domain_column


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "domain"


def run_loco(ds: PatchDataset, column: str, rec: Recipe, store: FoldStore, *, out: Path, provenance: Mapping[str, Any],
             device: str, precision: str, quiet: bool) -> LocoOutcome:
    """For each value of ``column``: a k-fold ensemble on the other values, scored on the held-out one."""
    metrics: dict[str, Any] = {}
    bundles: dict[str, ModelBundle] = {}
    held: list[_HeldOut] = []
    trained = resumed = 0
    for d, (value, tr_idx, ho_idx) in enumerate(leave_one_domain_out(ds.domains[column])):
        run = cross_validate(
            ds, tr_idx, rec, store, key=f"loco-{d + 1}", label=f"without {value}", seed_base=rec.seed + 1000 * (d + 1),
            device=device, predict_idx=ho_idx, quiet=quiet,
        )
        trained, resumed = trained + run.trained, resumed + run.resumed
        t = best_balanced_accuracy_threshold(ds.labels[tr_idx], run.oof)
        scores = metrics_report(ds.labels[ho_idx], run.extra, t)
        scores.pop("per_domain")
        inner = headline(binary_metrics(ds.labels[tr_idx], run.oof, t))
        metrics[value] = {"n_train": int(tr_idx.size), "n_heldout": int(ho_idx.size), **scores, "inner_oof": inner}
        sub_prov = {**provenance, "name": f"{provenance['name']} without {column}={value}", "seeds": list(run.seeds),
                    "heldout": {column: value}, "finished": now()}
        sub_cfg = bundle_config(rec, ds, run, t, sub_prov, json_ready({"heldout": headline(scores), "inner_oof": inner}))
        bundles[value] = write_bundle(out / "loco" / _slug(value), sub_cfg, run, precision=precision)
        held.append(_HeldOut(value, ho_idx, run.extra, t))
        log.info("held-out %s=%s: balanced accuracy %s, ROC AUC %s", column, value, scores["balanced_accuracy"],
                 scores["roc_auc"])
    path = out / "loco_predictions.csv"
    _write_heldout(path, ds, held)
    return LocoOutcome(metrics, bundles, path, trained, resumed)


def _write_heldout(path: Path, ds: PatchDataset, held: list[_HeldOut]) -> None:
    idx = np.concatenate([h.index for h in held])
    write_predictions(
        path, paths=[ds.paths[i] for i in idx], p=np.concatenate([h.p for h in held]),
        threshold=np.concatenate([np.full(h.index.size, h.threshold) for h in held]), labels=ds.labels[idx],
        columns={"heldout_domain": [h.value for h in held for _ in range(h.index.size)], "group": ds.groups[idx].tolist()},
    )


def loco_summary(column: str, outcome: LocoOutcome) -> dict[str, Any]:
    """The ``loco`` entry of ``metrics.json``: means over the held-out domains and each domain's metrics."""
    ba = [m["balanced_accuracy"] for m in outcome.metrics.values() if m["balanced_accuracy"] is not None]
    auc = [m["roc_auc"] for m in outcome.metrics.values() if m["roc_auc"] is not None]
    return {
        "column": column,
        "mean_balanced_accuracy": float(np.mean(ba)) if ba else None,
        "mean_roc_auc": float(np.mean(auc)) if auc else None,
        "domains": outcome.metrics,
    }
