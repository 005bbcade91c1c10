"""Reports of ``evaluate``, and of ``train`` on its out-of-fold predictions: metric summaries, prediction
tables, the ROC curve PNG.

Every file is written atomically (``files.atomic_open``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..files import atomic_open, atomic_write_text
from ..stats import METRIC_KEYS, binary_metrics, otsu_threshold, roc_auc, roc_curve

THRESHOLD_DEPENDENT = ("balanced_accuracy", "sensitivity", "specificity", "accuracy", "tp", "fp", "tn", "fn")


def _short(m: Mapping[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("threshold", *THRESHOLD_DEPENDENT)}


def metrics_report(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    *,
    domains: Mapping[str, np.ndarray] | None = None,
    otsu: float | None = None,
) -> dict[str, Any]:
    """Metrics at ``threshold`` (top level), at 0.5 and at Otsu's threshold, overall and per domain value.

    Per-domain entries use the same thresholds as the whole set (``threshold`` and the overall Otsu).
    """
    t_otsu = otsu_threshold(p) if otsu is None else otsu
    report: dict[str, Any] = binary_metrics(y, p, threshold)
    report["thresholds"] = {"selected": float(threshold), "0.5": 0.5, "otsu": t_otsu}
    report["at_0.5"] = _short(binary_metrics(y, p, 0.5))
    report["at_otsu"] = _short(binary_metrics(y, p, t_otsu))
    per_domain: dict[str, dict[str, Any]] = {}
    for column, values in (domains or {}).items():
        col = {}
        for value in sorted(set(np.asarray(values).astype(str).tolist())):
            mask = np.asarray(values).astype(str) == value
            entry = binary_metrics(y[mask], p[mask], threshold)
            entry["at_otsu"] = _short(binary_metrics(y[mask], p[mask], t_otsu))
            col[value] = entry
        per_domain[column] = col
    report["per_domain"] = per_domain
    return report


def headline(m: Mapping[str, Any]) -> dict[str, Any]:
    """The five metrics and the threshold (for bundle.json and summaries)."""
    return {"threshold": m.get("threshold"), **{k: m.get(k) for k in METRIC_KEYS}, "n": m.get("n")}


def json_ready(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating, np.integer)):
        return json_ready(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n")


def write_predictions(
    path: Path,
    *,
    paths: Sequence[str],
    p: np.ndarray,
    threshold: float | np.ndarray,
    labels: np.ndarray | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """CSV ``path[,label],p_atypical,predicted`` then ``columns`` (group, fold, domains ...).

    ``threshold`` may be one value or one per row.
    """
    extra = dict(columns or {})
    called = np.asarray(p) >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), np.shape(p))
    header = ["path"] + (["label"] if labels is not None else []) + ["p_atypical", "predicted", *extra]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for i, name in enumerate(paths):
            row: list[Any] = [name]
            if labels is not None:
                row.append("atypical" if labels[i] else "normal")
            row += [f"{p[i]:.6f}", "atypical" if called[i] else "normal"]
            row += [values[i] for values in extra.values()]
            writer.writerow(row)


def roc_png(path: Path, y: np.ndarray, p: np.ndarray, *, title: str = "ROC", size: int = 480) -> None:
    """A ROC curve drawn with Pillow (no plotting library needed)."""
    from PIL import Image, ImageDraw

    fpr, tpr = roc_curve(y, p)
    auc = roc_auc(y, p)
    margin = 48
    inner = size - 2 * margin
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def xy(fx: float, ty: float) -> tuple[float, float]:
        return margin + fx * inner, size - margin - ty * inner

    for tick in np.linspace(0.0, 1.0, 6):
        draw.line([xy(tick, 0), xy(tick, 1)], fill=(230, 230, 230))
        draw.line([xy(0, tick), xy(1, tick)], fill=(230, 230, 230))
        draw.text((xy(tick, 0)[0] - 8, size - margin + 6), f"{tick:.1f}", fill="black")
        draw.text((margin - 28, xy(0, tick)[1] - 6), f"{tick:.1f}", fill="black")
    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    draw.line([xy(0, 0), xy(1, 1)], fill=(160, 160, 160))
    draw.line([xy(f, t) for f, t in zip(fpr, tpr)], fill=(220, 20, 60), width=3)
    label = f"{title}   AUC = {auc:.3f}" if auc is not None else f"{title}   AUC undefined (one class)"
    draw.text((margin, 8), label, fill="black")
    draw.text((size // 2 - 50, size - 22), "false positive rate", fill="black")
    draw.text((margin - 28, margin - 20), "true positive rate", fill="black")
    with atomic_open(path, "wb") as fh:
        img.save(fh, format="PNG")
