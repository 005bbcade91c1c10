"""``train``: cross-validated training of an ensemble, written as a model bundle.

One run = stratified, grouped k-fold cross-validation on the whole dataset (``kfold``): the k fold models
are the bundle's members, and the fold of every group is recorded in ``bundle.json``. The decision threshold
is the one maximising balanced accuracy on the out-of-fold (OOF) predictions.

With ``cv="loco"`` (leave one domain out, ``loco``), before that final run, a k-fold ensemble is trained for
each held-out value of the domain column on all the others, and scored on the held-out domain.

Outputs in ``BUNDLE_DIR``: ``bundle.json`` + ``member-K.safetensors``, ``metrics.json``,
``oof_predictions.csv`` (and ``loco_predictions.csv``), ``report.html`` (``wsi_amf.report.evaluation``).
Finished folds are kept in ``BUNDLE_DIR/.folds`` while the run lasts, so that an interrupted run resumes
(``checkpoints.FoldStore``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._version import __version__
from ..bundle import BUNDLE_FILE, ModelBundle
from ..choices import CV_SCHEMES, PRECISIONS
from ..datasets import PatchDataset, load_dataset
from ..errors import DatasetError, OptionError
from ..inference.reports import headline, json_ready, metrics_report, write_json, write_predictions
from ..report.evaluation import evaluation_report
from ..stats import best_balanced_accuracy_threshold
from . import pretrained, trainer
from .calibrate import quantification_block
from .checkpoints import FoldStore
from .kfold import CVRun, bundle_config, cross_validate, now, per_fold, write_bundle
from .loco import LocoOutcome, loco_column, loco_summary, run_loco
from .recipes import Recipe, RecipeChanges, resolve_recipe

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


def _software() -> dict[str, str]:
    import timm
    import torch

    return {"wsi_amf": __version__, "torch": torch.__version__, "timm": timm.__version__}


def train(
    data: str | Path | PatchDataset,
    out: str | Path,
    *,
    recipe: str | Recipe = "convnextv2",
    changes: RecipeChanges | None = None,
    format: str | None = None,
    group_column: str | None = None,
    domain_column: str | None = None,
    images: str | Path | None = None,
    cv: str = "kfold",
    device: str = "auto",
    workers: int = 4,
    precision: str = "fp32",
    force: bool = False,
    name: str | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train a cross-validated ensemble on ``data`` and write it as a bundle in ``out``.

    ``recipe``: ``"convnextv2"`` or ``"efficientvit"`` (or a ``Recipe``), with ``changes`` applied.
    ``cv="loco"`` adds leave-one-domain-out runs over ``domain_column``. ``precision``: how the members'
    weights are stored (``fp32``, ``fp16``, ``int8``: ``wsi_amf.precision``). A rerun after an interruption
    resumes; ``force`` starts over (and overwrites a finished bundle).
    """
    from ..ensemble import resolve_device

    started = now()
    rec = recipe.apply(changes) if isinstance(recipe, Recipe) else resolve_recipe(recipe, changes)
    out = _check_target(Path(out), cv, force)
    if precision not in PRECISIONS:
        raise OptionError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    dev = resolve_device(device)
    trainer.build_model(rec)  # fail fast (unknown --arch, weights that cannot be fetched) before any work
    ds = data if isinstance(data, PatchDataset) else load_dataset(
        data, format=format, group_column=group_column, domain_column=domain_column, images=images,
        patch_size=rec.patch_size, workers=workers, quiet=quiet,
    )
    if len(set(ds.labels.tolist())) < 2:
        raise DatasetError(f"dataset {ds.source}: all {len(ds)} patches have the same label; training needs both classes")
    loco_col = loco_column(ds, cv, domain_column)
    store = _fold_store(out, rec, ds, cv, loco_col, force=force)
    provenance = _provenance(rec, ds, cv, loco_col, name=name or out.resolve().name, device=dev, started=started)
    loco = None
    if loco_col is not None:
        loco = run_loco(ds, loco_col, rec, store, out=out, provenance=provenance, device=dev, precision=precision,
                        quiet=quiet)
    run = cross_validate(ds, np.arange(len(ds)), rec, store, key="all", label="all data", seed_base=rec.seed,
                         device=dev, quiet=quiet)
    provenance.update(seeds={"base": rec.seed, "split": rec.seed, "folds": list(run.seeds)}, finished=now())
    result = _finish(out, rec, ds, run, loco, provenance, cv=cv, precision=precision)
    store.remove()
    return result


def _check_target(out: Path, cv: str, force: bool) -> Path:
    if cv not in CV_SCHEMES:
        raise OptionError(f"--cv {cv!r}: expected one of {', '.join(CV_SCHEMES)}")
    if (out / BUNDLE_FILE).is_file() and not force:
        raise OptionError(f"{out} already holds a trained bundle; pass --force to overwrite it")
    return out


def _fold_store(out: Path, rec: Recipe, ds: PatchDataset, cv: str, loco_col: str | None, *, force: bool) -> FoldStore:
    """The store of finished folds (``force``: emptied, and a finished bundle's files removed)."""
    run_config = {"recipe": rec.to_json(), "data": ds.fingerprint(), "n": len(ds), "cv": cv, "loco_column": loco_col}
    store = FoldStore(out, run_config, force=force)
    if force:
        for old in (out / BUNDLE_FILE, *out.glob("member-*.safetensors")):
            old.unlink(missing_ok=True)
    return store


def _provenance(rec: Recipe, ds: PatchDataset, cv: str, loco_col: str | None, *, name: str, device: str,
                started: str) -> dict[str, Any]:
    return {
        "name": name,
        "recipe": rec.name,
        "hyperparameters": rec.to_json(),
        "weights": rec.weights_source(),
        "pretrained_checkpoint": pretrained.resolve(rec.pretrained_file).provenance() if rec.pretrained_file else None,
        "data": ds.describe(),
        "cv": {"scheme": cv, "folds": rec.folds, "stratified": True, "grouped_by": ds.group_by, "loco_column": loco_col},
        "threshold_method": THRESHOLD_METHOD,
        "device": device,
        "amp": bool(rec.amp and device.startswith("cuda")),
        "software": _software(),
        "started": started,
    }


def _finish(out: Path, rec: Recipe, ds: PatchDataset, run: CVRun, loco: LocoOutcome | None,
            provenance: Mapping[str, Any], *, cv: str, precision: str) -> TrainResult:
    """Threshold, metrics, the bundle and the reports of a finished run."""
    threshold = best_balanced_accuracy_threshold(ds.labels, run.oof)
    report = metrics_report(ds.labels, run.oof, threshold, domains=ds.domains)
    metrics: dict[str, Any] = {"recipe": rec.name, "cv": cv, "folds": rec.folds, "threshold_method": THRESHOLD_METHOD,
                               **report, "per_fold": per_fold(run, ds.labels, threshold)}
    if loco is not None:
        metrics["loco"] = loco_summary(provenance["cv"]["loco_column"], loco)
    config = replace(bundle_config(rec, ds, run, threshold, provenance, json_ready(_summary(metrics, loco))),
                     quantification=quantification_block(ds, run.oof, run.fold_of, threshold))
    bundle = write_bundle(out, config, run, precision=precision)
    files = {"loco_predictions": loco.predictions} if loco is not None else {}
    files.update(bundle=out / BUNDLE_FILE, metrics=out / "metrics.json", oof=out / "oof_predictions.csv")
    write_json(files["metrics"], metrics)
    write_predictions(
        files["oof"], paths=ds.paths, p=run.oof, threshold=threshold, labels=ds.labels,
        columns={"fold": run.fold_of.tolist(), "group": ds.groups.tolist(), **{k: v.tolist() for k, v in ds.domains.items()}},
    )
    files["report"] = evaluation_report(out / "report.html", json_ready(metrics), ds.labels, run.oof,
                                        title=f"wsi-amf training report: {provenance['name']} (out-of-fold)")
    return TrainResult(
        bundle=bundle, threshold=threshold, metrics=metrics, oof=run.oof, files=files,
        folds_trained=run.trained + (loco.trained if loco else 0), folds_resumed=run.resumed + (loco.resumed if loco else 0),
        loco=loco.bundles if loco is not None else {},
    )


def _summary(metrics: Mapping[str, Any], loco: LocoOutcome | None) -> dict[str, Any]:
    """The metrics ``bundle.json`` records: the OOF headline, at 0.5 and Otsu, per fold and per held-out domain."""
    summary = {
        "cv_oof": headline(metrics),
        "cv_oof_at_0.5": metrics["at_0.5"],
        "cv_oof_at_otsu": metrics["at_otsu"],
        "per_fold_roc_auc": [f["roc_auc"] for f in metrics["per_fold"]],
    }
    if loco is not None:
        summary["loco"] = {v: headline(m) for v, m in loco.metrics.items()}
    return summary
