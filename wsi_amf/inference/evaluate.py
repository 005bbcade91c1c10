"""``evaluate``: score a labelled dataset with a bundle; metrics overall and per domain, predictions, ROC.

Outputs in ``out``: ``metrics.json`` (``balanced_accuracy``, ``roc_auc``, ``sensitivity``, ``specificity``,
``accuracy`` at the bundle's threshold, the same at 0.5 and at Otsu's threshold, and ``per_domain``),
``predictions.csv``, ``roc.png`` and ``report.html`` (``wsi_amf.report.evaluation``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..bundle import ModelBundle, load_bundle
from ..ensemble import open_ensemble
from ..quantify import Reference, ScoreHistogram, estimate, estimate_all, load_reference
from ..report.evaluation import evaluation_report
from .datasets import PatchDataset, load_dataset, training_overlap
from .reports import metrics_report, roc_png, write_json, write_predictions

if TYPE_CHECKING:
    from ..ensemble import Ensemble

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


def predict_patches(ensemble: Ensemble, patches: np.ndarray, *, batch_size: int = 64, quiet: bool = True, desc: str = "classifying") -> np.ndarray:
    """P(atypical) of ``uint8 [N, S, S, 3]`` patches, in batches, with a progress bar."""
    from tqdm.auto import tqdm

    out = np.empty(len(patches), dtype=np.float64)
    with tqdm(total=len(patches), desc=desc, unit="patch", disable=quiet, leave=False) as bar:
        for start in range(0, len(patches), batch_size):
            chunk = patches[start : start + batch_size]
            out[start : start + len(chunk)] = ensemble.predict(chunk)
            bar.update(len(chunk))
    return out


def evaluate(
    data: str | Path | PatchDataset,
    out: str | Path,
    *,
    model: str | Path | ModelBundle | None = None,
    format: str | None = None,
    group_column: str | None = None,
    domain_column: str | None = None,
    images: str | Path | None = None,
    threshold: float | None = None,
    device: str = "auto",
    engine: str = "auto",
    tta: bool = False,
    batch_size: int = 64,
    workers: int = 4,
    quiet: bool = False,
) -> EvalResult:
    """Evaluate ``model`` (default: the built-in bundle) on the labelled dataset ``data``."""
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    cfg = bundle.config
    ds = data if isinstance(data, PatchDataset) else load_dataset(
        data, format=format, group_column=group_column, domain_column=domain_column, images=images,
        patch_size=cfg.patch_size, workers=workers, quiet=quiet,
    )
    ensemble = open_ensemble(bundle, device=device, engine=engine, tta=tta)
    p = predict_patches(ensemble, ds.images, batch_size=batch_size, quiet=quiet)
    t = cfg.threshold if threshold is None else float(threshold)
    report = metrics_report(ds.labels, p, t, domains=ds.domains)
    reference = load_reference(cfg.quantification, source=str(bundle.path))
    overlap = training_overlap(cfg.provenance, ds)
    in_sample = None
    if overlap:
        in_sample = (f"{overlap} of the {len(ds)} patches of {ds.source} are patches model {bundle.name} was trained on: "
                     "these figures are in-sample and the metrics overstate how it does on new data")
        log.warning("%s", in_sample)
    metrics = {
        **report,
        "training_overlap": {"n_in_training": overlap, "n": len(ds), "warning": in_sample},
        "ratio": ratio_report(ds.labels, p, t, reference, domains=ds.domains),
        "threshold_source": "bundle" if threshold is None else "--threshold",
        "model": ensemble.bundle.describe(),
        "engine": {"device": ensemble.info.device, "engine": ensemble.info.engine, "tta": tta},
        "data": {k: v for k, v in ds.describe().items() if k not in ("fingerprint", "patch_digests")},
    }
    root = Path(out)
    files = {"metrics": root / "metrics.json", "predictions": root / "predictions.csv", "roc": root / "roc.png",
             "report": root / "report.html"}
    write_json(files["metrics"], metrics)
    write_predictions(
        files["predictions"], paths=ds.paths, p=p, threshold=t, labels=ds.labels,
        columns={"group": ds.groups.tolist(), **{k: v.tolist() for k, v in ds.domains.items()}},
    )
    roc_png(files["roc"], ds.labels, p, title=f"{ensemble.bundle.name} on {Path(ds.source).name}")
    evaluation_report(files["report"], metrics, ds.labels, p, title=f"wsi-amf evaluation: {ensemble.bundle.name} on "
                      f"{Path(ds.source).name}", bundle_metrics=cfg.metrics)
    return EvalResult(metrics=metrics, p_atypical=p, threshold=t, files=files)
