"""``train``: cross-validated training of an ensemble, written as a model bundle.

One run = stratified, grouped k-fold cross-validation on the whole dataset: fold k's model is trained on
the other folds and kept at its lowest validation loss; the k models are the bundle's members. The
decision threshold is the one maximising balanced accuracy on the out-of-fold (OOF) predictions.

With ``cv="loco"`` (leave one domain out), before that final run, a k-fold ensemble is trained for each
held-out value of the domain column on all the others, and scored on the held-out domain; each of those
ensembles is saved as a bundle under ``BUNDLE_DIR/loco/<domain>/``.

Outputs in ``BUNDLE_DIR``: ``bundle.json`` + ``member-K.safetensors``, ``metrics.json``,
``oof_predictions.csv`` (and ``loco_predictions.csv``), ``report.html`` (``wsi_amf.report.evaluation``). Finished folds are kept in ``BUNDLE_DIR/.folds``
while the run lasts, so that an interrupted run resumes (``checkpoints.FoldStore``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._version import __version__
from ..bundle import BUNDLE_FILE, BundleConfig, ModelBundle, save_bundle
from ..choices import CV_SCHEMES
from ..errors import DatasetError, OptionError
from ..report.evaluation import evaluation_report
from . import pretrained, trainer
from .calibrate import quantification_block
from .checkpoints import FoldStore
from .datasets import PatchDataset, load_dataset
from ..stats import best_balanced_accuracy_threshold, binary_metrics
from .recipes import Recipe, resolve_recipe, validate
from .reports import headline, json_ready, metrics_report, write_json, write_predictions
from .splits import leave_one_domain_out, stratified_group_folds

log = logging.getLogger(__name__)
THRESHOLD_METHOD = "maximum balanced accuracy on the out-of-fold predictions"


@dataclass(frozen=True)
class TrainResult:
    """A finished training run."""

    bundle: ModelBundle
    threshold: float
    metrics: Mapping[str, Any]  # the content of metrics.json
    oof: np.ndarray  # out-of-fold P(atypical), in dataset order
    files: Mapping[str, Path]
    folds_trained: int
    folds_resumed: int
    loco: Mapping[str, ModelBundle] = field(default_factory=dict)


@dataclass(frozen=True)
class _CVRun:
    oof: np.ndarray  # per position of ``index``
    fold_of: np.ndarray  # 1-based fold per position of ``index``
    records: tuple[dict[str, Any], ...]
    states: tuple[dict[str, Any], ...]
    extra: np.ndarray  # fold models' mean P(atypical) on ``predict_idx``
    seeds: tuple[int, ...]
    trained: int
    resumed: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "domain"


def _software() -> dict[str, str]:
    import timm
    import torch

    return {"wsi_amf": __version__, "torch": torch.__version__, "timm": timm.__version__}


def _cross_validate(
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
) -> _CVRun:
    y = data.labels[index]
    folds = stratified_group_folds(y, data.groups[index], recipe.folds, seed=recipe.seed)
    oof = np.full(index.size, np.nan)
    fold_of = np.zeros(index.size, dtype=np.int64)
    extra = np.zeros(predict_idx.size if predict_idx is not None else 0)
    records, states, seeds = [], [], []
    trained = resumed = 0
    for fold in folds:
        k = fold.index + 1
        seed = seed_base + fold.index
        train_idx, val_idx = index[fold.train], index[fold.val]
        fkey = f"{key}/fold-{k}"
        outcome = store.load(fkey, val_idx, predict_idx)
        was_saved = outcome is not None
        if outcome is None:
            log.info("%s fold %d/%d: training on %d patches, validating on %d", label, k, len(folds), train_idx.size, val_idx.size)
            outcome = trainer.train_fold(
                data.images, data.labels, train_idx, val_idx, recipe=recipe, seed=seed, device=device,
                predict_idx=predict_idx, desc=f"{label} fold {k}/{len(folds)}", quiet=quiet,
            )
            store.save(fkey, outcome, val_idx, predict_idx)
            trained += 1
        else:
            log.info("%s fold %d/%d: finished earlier, loaded from %s", label, k, len(folds), store.root)
            resumed += 1
        oof[fold.val] = outcome.val_probs
        fold_of[fold.val] = k
        if predict_idx is not None:
            extra += outcome.extra_probs / len(folds)
        states.append(outcome.state_dict)
        seeds.append(seed)
        records.append(
            {
                "fold": k,
                "seed": seed,
                "n_train": int(train_idx.size),
                "n_val": int(val_idx.size),
                "n_val_atypical": int(data.labels[val_idx].sum()),
                "n_val_groups": int(np.unique(data.groups[val_idx]).size),
                "best_epoch": outcome.best_epoch,
                "best_val_loss": outcome.best_val_loss,
                "seconds": round(outcome.seconds, 1),
                "resumed": was_saved,
                "history": list(outcome.history),
            }
        )
    return _CVRun(oof, fold_of, tuple(records), tuple(states), extra, tuple(seeds), trained, resumed)


def _per_fold(run: _CVRun, y: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    out = []
    for rec in run.records:
        mask = run.fold_of == rec["fold"]
        m = binary_metrics(y[mask], run.oof[mask], threshold)
        out.append({**{k: v for k, v in rec.items() if k != "history"}, **headline(m), "history": rec["history"]})
    return out


def _bundle_config(recipe: Recipe, data: PatchDataset, threshold: float, provenance: dict, metrics: dict) -> BundleConfig:
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
    )


def _write_bundle(out: Path, config: BundleConfig, states: tuple[dict[str, Any], ...], *, fp16: bool) -> ModelBundle:
    bundle = save_bundle(out, config, list(states), fp16=fp16)
    for stale in out.glob("member-*.safetensors"):
        if stale.name not in bundle.config.members:
            stale.unlink()
    return bundle


@dataclass(frozen=True)
class _LocoOutcome:
    metrics: dict[str, Any]  # held-out domain -> metrics on it
    bundles: dict[str, ModelBundle]
    predictions: Path
    trained: int
    resumed: int


def _leave_one_domain_out(
    ds: PatchDataset,
    column: str,
    rec: Recipe,
    store: FoldStore,
    *,
    out: Path,
    provenance: Mapping[str, Any],
    device: str,
    fp16: bool,
    quiet: bool,
) -> _LocoOutcome:
    """For each value of ``column``: a k-fold ensemble on the other values, scored on the held-out one.

    The held-out threshold is the inner OOF's best; each ensemble is saved under ``out/loco/<value>``.
    """
    metrics: dict[str, Any] = {}
    bundles: dict[str, ModelBundle] = {}
    probs, index, domain, thresholds = [], [], [], []
    trained = resumed = 0
    for d, (value, tr_idx, ho_idx) in enumerate(leave_one_domain_out(ds.domains[column])):
        run = _cross_validate(
            ds, tr_idx, rec, store, key=f"loco-{d + 1}", label=f"without {value}", seed_base=rec.seed + 1000 * (d + 1),
            device=device, predict_idx=ho_idx, quiet=quiet,
        )
        trained, resumed = trained + run.trained, resumed + run.resumed
        t = best_balanced_accuracy_threshold(ds.labels[tr_idx], run.oof)
        held = metrics_report(ds.labels[ho_idx], run.extra, t)
        held.pop("per_domain")
        inner = headline(binary_metrics(ds.labels[tr_idx], run.oof, t))
        metrics[value] = {"n_train": int(tr_idx.size), "n_heldout": int(ho_idx.size), **held, "inner_oof": inner}
        sub_prov = {**provenance, "name": f"{provenance['name']} without {column}={value}", "seeds": list(run.seeds),
                    "heldout": {column: value}, "finished": _now()}
        sub_cfg = _bundle_config(rec, ds, t, sub_prov, json_ready({"heldout": headline(held), "inner_oof": inner}))
        bundles[value] = _write_bundle(out / "loco" / _slug(value), sub_cfg, run.states, fp16=fp16)
        probs.append(run.extra)
        index.append(ho_idx)
        domain += [value] * ho_idx.size
        thresholds.append(np.full(ho_idx.size, t))
        log.info("held-out %s=%s: balanced accuracy %s, ROC AUC %s", column, value, held["balanced_accuracy"], held["roc_auc"])
    idx = np.concatenate(index)
    path = out / "loco_predictions.csv"
    write_predictions(
        path, paths=[ds.paths[i] for i in idx], p=np.concatenate(probs), threshold=np.concatenate(thresholds),
        labels=ds.labels[idx], columns={"heldout_domain": domain, "group": ds.groups[idx].tolist()},
    )
    return _LocoOutcome(metrics, bundles, path, trained, resumed)


def _resolve(recipe: str | Recipe, overrides: Mapping[str, Any]) -> Recipe:
    if isinstance(recipe, Recipe):
        given = {k: v for k, v in overrides.items() if v is not None}
        rec = replace(recipe, **given) if given else recipe
        validate(rec)
        return rec
    return resolve_recipe(recipe, **overrides)


def train(
    data: str | Path | PatchDataset,
    out: str | Path,
    *,
    recipe: str | Recipe = "convnextv2",
    format: str | None = None,
    group_column: str | None = None,
    domain_column: str | None = None,
    images: str | Path | None = None,
    cv: str = "kfold",
    device: str = "auto",
    workers: int = 4,
    fp16: bool = False,
    force: bool = False,
    name: str | None = None,
    quiet: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train a cross-validated ensemble on ``data`` and write it as a bundle in ``out``.

    ``recipe``: ``"convnextv2"`` or ``"efficientvit"`` (or a ``Recipe``); ``overrides``: any ``Recipe`` field
    (``arch``, ``epochs``, ``lr``, ``weight_decay``, ``img_size``, ``crop``, ``batch_size``, ``folds``,
    ``loss``, ``sampler``, ``seed``, ``pretrained``, ``pretrained_file`` ...). ``cv="loco"`` adds
    leave-one-domain-out runs over ``domain_column``. A rerun after an interruption resumes; ``force``
    starts over (and overwrites a finished bundle).
    """
    from ..ensemble import resolve_device

    started = _now()
    rec = _resolve(recipe, overrides)
    if cv not in CV_SCHEMES:
        raise OptionError(f"--cv {cv!r}: expected one of {', '.join(CV_SCHEMES)}")
    out = Path(out)
    if (out / BUNDLE_FILE).is_file() and not force:
        raise OptionError(f"{out} already holds a trained bundle; pass --force to overwrite it")
    dev = resolve_device(device)
    trainer.build_model(rec)  # fail fast (unknown --arch, weights that cannot be fetched) before any work
    ds = data if isinstance(data, PatchDataset) else load_dataset(
        data, format=format, group_column=group_column, domain_column=domain_column, images=images,
        patch_size=rec.patch_size, workers=workers, quiet=quiet,
    )
    if len(set(ds.labels.tolist())) < 2:
        raise DatasetError(f"dataset {ds.source}: all {len(ds)} patches have the same label; training needs both classes")
    loco_col = _loco_column(ds, cv, domain_column)
    run_config = {"recipe": rec.to_json(), "data": ds.fingerprint(), "n": len(ds), "cv": cv, "loco_column": loco_col}
    store = FoldStore(out, run_config, force=force)
    if force:
        for old in (out / BUNDLE_FILE, *out.glob("member-*.safetensors")):
            old.unlink(missing_ok=True)

    provenance: dict[str, Any] = {
        "name": name or out.resolve().name,
        "recipe": rec.name,
        "hyperparameters": rec.to_json(),
        "weights": rec.weights_source(),
        "pretrained_checkpoint": pretrained.resolve(rec.pretrained_file).provenance() if rec.pretrained_file else None,
        "data": ds.describe(),
        "cv": {"scheme": cv, "folds": rec.folds, "stratified": True, "grouped_by": ds.group_by, "loco_column": loco_col},
        "threshold_method": THRESHOLD_METHOD,
        "device": dev,
        "amp": bool(rec.amp and dev.startswith("cuda")),
        "software": _software(),
        "started": started,
    }
    files: dict[str, Path] = {}
    trained = resumed = 0

    loco: _LocoOutcome | None = None
    if loco_col is not None:
        loco = _leave_one_domain_out(ds, loco_col, rec, store, out=out, provenance=provenance, device=dev, fp16=fp16, quiet=quiet)
        trained, resumed = trained + loco.trained, resumed + loco.resumed
        files["loco_predictions"] = loco.predictions

    everything = np.arange(len(ds))
    run = _cross_validate(ds, everything, rec, store, key="all", label="all data", seed_base=rec.seed, device=dev, quiet=quiet)
    trained, resumed = trained + run.trained, resumed + run.resumed
    threshold = best_balanced_accuracy_threshold(ds.labels, run.oof)
    report = metrics_report(ds.labels, run.oof, threshold, domains=ds.domains)
    metrics: dict[str, Any] = {
        "recipe": rec.name,
        "cv": cv,
        "folds": rec.folds,
        "threshold_method": THRESHOLD_METHOD,
        **report,
        "per_fold": _per_fold(run, ds.labels, threshold),
    }
    if loco is not None:
        ba = [m["balanced_accuracy"] for m in loco.metrics.values() if m["balanced_accuracy"] is not None]
        auc = [m["roc_auc"] for m in loco.metrics.values() if m["roc_auc"] is not None]
        metrics["loco"] = {
            "column": loco_col,
            "mean_balanced_accuracy": float(np.mean(ba)) if ba else None,
            "mean_roc_auc": float(np.mean(auc)) if auc else None,
            "domains": loco.metrics,
        }
    provenance.update(seeds={"base": rec.seed, "split": rec.seed, "folds": list(run.seeds)}, finished=_now())
    summary = {
        "cv_oof": headline(report),
        "cv_oof_at_0.5": report["at_0.5"],
        "cv_oof_at_otsu": report["at_otsu"],
        "per_fold_roc_auc": [f["roc_auc"] for f in metrics["per_fold"]],
    }
    if loco is not None:
        summary["loco"] = {v: headline(m) for v, m in loco.metrics.items()}
    config = replace(_bundle_config(rec, ds, threshold, provenance, json_ready(summary)),
                     quantification=quantification_block(ds, run.oof, run.fold_of, threshold))
    bundle = _write_bundle(out, config, run.states, fp16=fp16)
    files.update(bundle=out / BUNDLE_FILE, metrics=out / "metrics.json", oof=out / "oof_predictions.csv")
    write_json(files["metrics"], metrics)
    write_predictions(
        files["oof"], paths=ds.paths, p=run.oof, threshold=threshold, labels=ds.labels,
        columns={"fold": run.fold_of.tolist(), "group": ds.groups.tolist(), **{k: v.tolist() for k, v in ds.domains.items()}},
    )
    files["report"] = evaluation_report(out / "report.html", json_ready(metrics), ds.labels, run.oof,
                                        title=f"wsi-amf training report: {provenance['name']} (out-of-fold)")
    store.remove()
    return TrainResult(
        bundle=bundle, threshold=threshold, metrics=metrics, oof=run.oof, files=files,
        folds_trained=trained, folds_resumed=resumed, loco=loco.bundles if loco is not None else {},
    )


def _loco_column(ds: PatchDataset, cv: str, domain_column: str | None) -> str | None:
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
