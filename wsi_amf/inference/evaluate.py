"""``evaluate``: score a labelled dataset with a bundle; metrics overall and per domain, predictions, ROC.

Outputs in ``out``: ``metrics.json`` (``balanced_accuracy``, ``roc_auc``, ``sensitivity``, ``specificity``,
``accuracy`` at the bundle's threshold, the same at 0.5 and at Otsu's threshold, and ``per_domain``),
``predictions.csv``, ``roc.png`` and ``report.html`` (``wsi_amf.report.evaluation``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..bundle import ModelBundle
from ..datasets import PatchDataset, load_dataset, training_overlap
from ..quantify import Reference, ScoreHistogram, estimate, estimate_all, load_reference
from ..report.evaluation import evaluation_report
from .options import InferenceOptions
from .predict import predict_patches
from .reports import metrics_report, roc_png, write_json, write_predictions

log = logging.getLogger(__name__)


def ratio_report(y: np.ndarray, p: np.ndarray, threshold: float, reference: Reference | None, *,
                 domains: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The true share of atypical figures and each estimator's estimate, interval and error: over the whole
    set and per domain value (each treated as one slide). Without a reference, only the share of calls."""
    def one(mask: np.ndarray) -> dict[str, Any]:
        hist = ScoreHistogram.of(p[mask], threshold)
        truth = float(y[mask].mean()) if mask.any() else None
        ests = estimate_all(hist, reference) if reference is not None else {"cc": estimate(hist, None)}
        out = {}
        for name, e in ests.items():
            err = None if e.share is None or truth is None else e.share - truth
            covered = None if e.ci95 is None or truth is None else bool(e.ci95[0] <= truth <= e.ci95[1])
            out[name] = {"estimate": e.share, "ci95": list(e.ci95) if e.ci95 else None, "error": err, "covered": covered}
        return {"n": int(mask.sum()), "true_share": truth, "default": reference.estimator if reference else "cc",
                "estimators": out}

    overall = one(np.ones(len(y), dtype=bool))
    per_domain = {col: {v: one(np.asarray(vals).astype(str) == v) for v in sorted(set(np.asarray(vals).astype(str)))}
                  for col, vals in (domains or {}).items()}
    return {"overall": overall, "per_domain": per_domain, "corrected": reference is not None}


@dataclass(frozen=True)
class EvalResult:
    metrics: Mapping[str, Any]  # the content of metrics.json
    p_atypical: np.ndarray  # in dataset order
    threshold: float
    files: Mapping[str, Path]


def evaluate(
    data: str | Path | PatchDataset,
    out: str | Path,
    options: InferenceOptions | None = None,
    *,
    format: str | None = None,
    group_column: str | None = None,
    domain_column: str | None = None,
    images: str | Path | None = None,
    workers: int = 4,
    quiet: bool = False,
) -> EvalResult:
    """Evaluate ``options.model`` (default: the built-in bundle) on the labelled dataset ``data``."""
    opts = options or InferenceOptions()
    bundle = opts.load_bundle()
    ds = data if isinstance(data, PatchDataset) else load_dataset(
        data, format=format, group_column=group_column, domain_column=domain_column, images=images,
        patch_size=bundle.config.patch_size, workers=workers, quiet=quiet,
    )
    ensemble = opts.open(bundle)
    p = predict_patches(ensemble, ds.images, batch_size=opts.batch_size, quiet=quiet)
    t = opts.threshold_for(bundle)
    metrics = {
        **metrics_report(ds.labels, p, t, domains=ds.domains),
        "training_overlap": _overlap(bundle, ds),
        "ratio": ratio_report(ds.labels, p, t, load_reference(bundle.config.quantification, source=str(bundle.path)),
                              domains=ds.domains),
        "threshold_source": "bundle" if opts.threshold is None else "--threshold",
        "model": ensemble.bundle.describe(),
        "engine": {"device": ensemble.info.device, "engine": ensemble.info.engine, "tta": opts.tta},
        "data": {k: v for k, v in ds.describe().items() if k not in ("fingerprint", "patch_digests")},
    }
    files = _write_outputs(Path(out), metrics, ds, p, t, bundle)
    return EvalResult(metrics=metrics, p_atypical=p, threshold=t, files=files)


def _overlap(bundle: ModelBundle, ds: PatchDataset) -> dict[str, Any]:
    """How many patches of ``ds`` the bundle was trained on, with a warning when any."""
    overlap = training_overlap(bundle.config.provenance, ds)
    in_sample = None
    if overlap:
        in_sample = (f"{overlap} of the {len(ds)} patches of {ds.source} are patches model {bundle.name} was trained on: "
                     "these figures are in-sample and the metrics overstate how it does on new data")
        log.warning("%s", in_sample)
    return {"n_in_training": overlap, "n": len(ds), "warning": in_sample}


def _write_outputs(root: Path, metrics: Mapping[str, Any], ds: PatchDataset, p: np.ndarray, t: float,
                   bundle: ModelBundle) -> dict[str, Path]:
    files = {"metrics": root / "metrics.json", "predictions": root / "predictions.csv", "roc": root / "roc.png",
             "report": root / "report.html"}
    write_json(files["metrics"], metrics)
    write_predictions(
        files["predictions"], paths=ds.paths, p=p, threshold=t, labels=ds.labels,
        columns={"group": ds.groups.tolist(), **{k: v.tolist() for k, v in ds.domains.items()}},
    )
    roc_png(files["roc"], ds.labels, p, title=f"{bundle.name} on {Path(ds.source).name}")
    evaluation_report(files["report"], metrics, ds.labels, p, title=f"wsi-amf evaluation: {bundle.name} on "
                      f"{Path(ds.source).name}", bundle_metrics=bundle.config.metrics)
    return files
