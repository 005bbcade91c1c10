"""The evaluation report of ``evaluate`` and ``train``: ``report.html`` next to ``metrics.json``.

The ROC curve with the operating points, the confusion matrix at the selected threshold, P(atypical) by
true class, the metrics at the selected / 0.5 / Otsu thresholds, a table per domain column, the per-fold
results (``train``; for ``evaluate`` the model's own cross-validation recorded in its bundle) and the
leave-one-domain-out results when there are some.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ReportError
from ..stats import roc_curve
from ..text import interval
from . import html as h
from .plots import confusion_svg, histogram_svg, roc_svg
from .slide import read_json

REPORT_HTML = "report.html"
PREDICTION_FILES = ("predictions.csv", "oof_predictions.csv")
_METRIC_HEADERS = ("Balanced accuracy", "ROC AUC", "Sensitivity", "Specificity", "Accuracy")
_METRICS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy")


def evaluation_report(
    path: str | Path,
    metrics: Mapping[str, Any],
    labels: np.ndarray,
    p: np.ndarray,
    *,
    title: str,
    bundle_metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write the report of ``metrics`` (the content of ``metrics.json``) for labels (1 = atypical) and P(atypical).

    ``bundle_metrics``: the evaluated bundle's recorded training metrics (its per-fold ROC AUC), shown by
    ``evaluate`` where ``train`` shows its own per-fold table.
    """

    y = np.asarray(labels).astype(bool)
    q = np.asarray(p, dtype=np.float64)
    thr = float(metrics["threshold"])
    fpr, tpr = roc_curve(y.astype(int), q)
    points = [(name, *_rates(m)) for name, m in (("selected", metrics), ("0.5", metrics.get("at_0.5")),
                                                 ("Otsu", metrics.get("at_otsu"))) if m]
    curves = (f'<div class="grid"><div>{roc_svg(fpr, tpr, auc=metrics.get("roc_auc"), points=points)}</div>'
              f'<div>{confusion_svg(metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"], threshold=thr)}</div></div>')
    warning = (metrics.get("training_overlap") or {}).get("warning")
    sections = [
        *([h.section("Warning: in-sample figures",
                     f'<p class="note" data-key="training_overlap" data-value="{h.esc(warning)}">{h.esc(warning)}</p>',
                     ident="in-sample")] if warning else []),
        h.section("Overview", _overview(metrics), ident="overview"),
        h.section("Metrics", _threshold_table(metrics), ident="metrics",
                  note="A patch is called atypical when P(atypical) \u2265 the threshold."),
        h.section("ROC curve and confusion matrix", curves, ident="roc"),
        h.section("P(atypical) by true class", histogram_svg(q, y, threshold=thr, labels=("truly atypical", "truly normal")),
                  ident="histogram"),
        h.section("Per domain", _per_domain(metrics), ident="per-domain",
                  note="The same thresholds as the whole set."),
        h.section("Per fold", _per_fold(metrics, bundle_metrics), ident="per-fold"),
    ]
    if "ratio" in metrics:
        sections.append(h.section("Share of atypical figures", _ratio(metrics["ratio"]), ident="ratio",
                                  note="The whole set and each domain treated as one slide: the true share, each "
                                       "estimator's estimate and 95 % interval (wsi_amf.quantify), its error. "
                                       "cc is the share of calls."))
    if "loco" in metrics:
        sections.append(h.section(f"Leave one {metrics['loco']['column']} out", _loco(metrics["loco"]), ident="loco",
                                  note="Each ensemble trained without one domain, scored on it at its inner OOF threshold."))
    subtitle = ("IN-SAMPLE: the model was trained on some of these figures \u00b7 " if warning else "") + (
                f"{metrics.get('n')} patches ({metrics.get('n_atypical')} atypical): balanced accuracy "
                f"{h.fmt(metrics.get('balanced_accuracy'))}, ROC AUC {h.fmt(metrics.get('roc_auc'))} at threshold {thr:.3f}")
    return h.write_page(path, h.page(title, subtitle, sections, scripts=(h.SORT_JS,)))


def evaluation_report_dir(directory: str | Path) -> Path:
    """Re-write ``report.html`` of an ``evaluate`` / ``train`` output folder from its files."""
    root = Path(directory)
    metrics = read_json(root / "metrics.json", "metrics")
    table = next((root / n for n in PREDICTION_FILES if (root / n).is_file()), None)
    if table is None or "threshold" not in metrics:
        raise ReportError(f"{root}: not an evaluate / train output (metrics.json and predictions.csv needed)")
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        y = np.array([r["label"] == "atypical" for r in rows])
        p = np.array([float(r["p_atypical"]) for r in rows])
    except (KeyError, ValueError) as exc:
        raise ReportError(f"predictions {table}: not a labelled prediction table ({exc})") from None
    kind = "Cross-validation" if table.name.startswith("oof") else "Evaluation"
    return evaluation_report(root / REPORT_HTML, metrics, y, p, title=f"wsi-amf {kind.lower()} report: {root.name}")


def _rates(m: Mapping[str, Any]) -> tuple[float, float]:
    neg, pos = m["fp"] + m["tn"], m["tp"] + m["fn"]
    return (m["fp"] / neg if neg else 0.0), (m["tp"] / pos if pos else 0.0)


def _overview(m: Mapping[str, Any]) -> str:
    model = m.get("model") or {}
    data = m.get("data") or {}
    rows: list[tuple[str, Any]] = [
        ("Patches", h.cell(m.get("n"), key="n")),
        ("Atypical", h.cell(m.get("n_atypical"), key="n_atypical")),
        ("Normal", h.cell(m.get("n_normal"), key="n_normal")),
        ("Threshold", h.Cell(h.esc(f"{h.fmt(m.get('threshold'))} ({m.get('threshold_source') or m.get('threshold_method') or 'selected'})"),
                             attrs={"data-key": "threshold", "data-value": m.get("threshold")})),
    ]
    if model:
        rows.append(("Model", h.Cell(h.esc(f"{model.get('name')} ({model.get('members')} \u00d7 {model.get('architecture')})"))))
    if "recipe" in m:
        rows.append(("Training", h.Cell(h.esc(f"recipe {m['recipe']}, {m.get('cv')} cross-validation, {m.get('folds')} folds"))))
    if data:
        rows.append(("Data", h.Cell(h.esc(", ".join(f"{k}: {v}" for k, v in data.items() if not isinstance(v, (dict, list)))))))
    return h.kv_table(rows)


def _metric_cells(m: Mapping[str, Any], prefix: str) -> list[h.Cell]:
    return [h.cell(m.get(k), key=f"{prefix}{k}" if prefix else None) for k in _METRICS]


def _threshold_table(m: Mapping[str, Any]) -> str:
    rows = []
    for name, sub in (("selected", m), ("0.5", m.get("at_0.5")), ("Otsu", m.get("at_otsu"))):
        if not sub:
            continue
        prefix = "" if name != "selected" else "overall."
        cells = [h.cell(sub.get(k), key=f"{prefix}{k}" if prefix else None) for k in ("balanced_accuracy", "sensitivity",
                                                                                          "specificity", "accuracy")]
        rows.append([name, h.cell(sub.get("threshold")), *cells, *(sub.get(k) for k in ("tp", "fp", "tn", "fn"))])
    headers = ("Threshold", "Value", "Balanced accuracy", "Sensitivity", "Specificity", "Accuracy", "TP", "FP", "TN", "FN")
    return h.table(headers, rows) + f'<p class="note">ROC AUC (threshold-free): {h.esc(h.fmt(m.get("roc_auc")))}</p>'


def _per_domain(m: Mapping[str, Any]) -> str:
    per = m.get("per_domain") or {}
    if not per:
        return '<p class="note">The dataset has no domain column (pass --domain-column to add one).</p>'
    out = []
    for column, values in per.items():
        rows = [[value, sub.get("n"), sub.get("n_atypical"), *_metric_cells(sub, f"domain.{column}.{value}.")]
                for value, sub in values.items()]
        out.append(f"<h3>{h.esc(column)}</h3>" + h.table((column, "Patches", "Atypical", *_METRIC_HEADERS), rows, sortable=True))
    return "".join(out)


def _per_fold(m: Mapping[str, Any], bundle_metrics: Mapping[str, Any] | None) -> str:
    folds: Sequence[Mapping[str, Any]] = m.get("per_fold") or []
    if folds:
        rows = [[f.get("fold"), f.get("n_train"), f.get("n_val"), f.get("n_val_atypical"), f.get("best_epoch"),
                 h.cell(f.get("best_val_loss"), digits=4), *_metric_cells(f, f"fold.{f.get('fold')}."),
                 h.cell(f.get("seconds"), digits=1), bool(f.get("resumed"))] for f in folds]
        headers = ("Fold", "Train", "Validation", "Val. atypical", "Best epoch", "Best val. loss", *_METRIC_HEADERS,
                   "Seconds", "Resumed")
        return h.table(headers, rows, sortable=True) + '<p class="note">Each fold model on its own validation fold, at the ' \
            "ensemble's threshold.</p>"
    aucs = (bundle_metrics or {}).get("per_fold_roc_auc")
    if aucs:
        oof = (bundle_metrics or {}).get("cv_oof") or {}
        rows = [[k + 1, h.cell(a, key=f"bundle_fold.{k + 1}.roc_auc")] for k, a in enumerate(aucs)]
        return (f'<p class="note">This evaluation scores the whole ensemble; per fold: the model\'s own training '
                f"cross-validation as recorded in its bundle (out-of-fold balanced accuracy {h.esc(h.fmt(oof.get('balanced_accuracy')))}, "
                f"ROC AUC {h.esc(h.fmt(oof.get('roc_auc')))}).</p>" + h.table(("Fold", "ROC AUC"), rows))
    return '<p class="note">No per-fold results: the model\'s bundle records none.</p>'


def _loco(loco: Mapping[str, Any]) -> str:
    rows = [[value, sub.get("n_train"), sub.get("n_heldout"), h.cell(sub.get("threshold")),
             *_metric_cells(sub, f"loco.{value}."), h.cell((sub.get("inner_oof") or {}).get("balanced_accuracy"))]
            for value, sub in (loco.get("domains") or {}).items()]
    headers = ("Held out", "Train", "Held-out patches", "Threshold", *_METRIC_HEADERS, "Inner OOF balanced accuracy")
    mean = (f'<p class="note">Mean balanced accuracy {h.esc(h.fmt(loco.get("mean_balanced_accuracy")))}, '
            f'mean ROC AUC {h.esc(h.fmt(loco.get("mean_roc_auc")))}.</p>')
    return h.table(headers, rows, sortable=True) + mean


def _ratio(ratio: Mapping[str, Any]) -> str:
    rows = []
    sets = [("all", ratio["overall"])] + [(f"{col} = {v}", e) for col, vals in ratio.get("per_domain", {}).items()
                                          for v, e in vals.items()]
    for name, entry in sets:
        for est, r in entry["estimators"].items():
            star = " (default)" if est == entry.get("default") else ""
            rows.append([h.esc(name), entry["n"], entry["true_share"], h.Cell(h.esc(est + star)), r["estimate"],
                         h.Cell(h.esc(interval(r["ci95"]))) if r["ci95"] else "", r["error"],
                         h.Cell(h.esc({True: "yes", False: "no", None: ""}[r["covered"]]))])
    return h.table(("Set", "Figures", "True share", "Estimator", "Estimate", "95% interval", "Error", "Covers"), rows)
