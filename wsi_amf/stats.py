"""Statistics: the Wilson interval of a proportion, and binary classification metrics on P(atypical).

Conventions: label 1 = atypical (positive), 0 = normal; a patch is called atypical when
``p >= threshold``. Thresholds chosen here always lie half-way between two observed probabilities, so
``>=`` and ``>`` give the same calls on the data they were chosen on. A metric that is undefined on the
given data (sensitivity without positives, ROC AUC with one class) is ``None``.

The counts, ROC AUC and ROC curve are scikit-learn's, Otsu's threshold scikit-image's (on the histogram of
the distinct values, so exact); both are imported when first needed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

_Z95 = 1.959963984540054  # the two-sided 95 % normal quantile

METRIC_KEYS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy")


def _arrays(y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    q = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != q.shape:
        raise ValueError(f"labels ({y.size}) and probabilities ({q.size}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (atypical)")
    return y, q


def _ratio(num: int, den: int) -> float | None:
    return float(num) / float(den) if den else None


def confusion(y_true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray) -> dict[str, int]:
    """Counts ``tp``, ``fp``, ``tn``, ``fn`` of 0/1 predictions."""
    from sklearn.metrics import confusion_matrix

    y = np.asarray(y_true).astype(bool).reshape(-1)
    yhat = np.asarray(pred).astype(bool).reshape(-1)
    if y.size == 0:
        return {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    tn, fp, fn, tp = confusion_matrix(y, yhat, labels=[False, True]).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def _one_class(y: np.ndarray) -> bool:
    n_pos = int(y.sum())
    return n_pos == 0 or n_pos == y.size


def roc_auc(y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve (tied scores count one half); None with one class."""
    from sklearn.metrics import roc_auc_score

    y, q = _arrays(y_true, p)
    if _one_class(y):
        return None
    return float(roc_auc_score(y, q))


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    # Start index of each run of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], sorted_vals.size]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_curve(y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    y, q = _arrays(y_true, p)
    if _one_class(y):
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    fpr, tpr, _ = sk_roc_curve(y, q, drop_intermediate=False)
    return fpr.astype(np.float64), tpr.astype(np.float64)


def binary_metrics(y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float) -> dict[str, Any]:
    """Balanced accuracy, ROC AUC, sensitivity, specificity and accuracy at ``threshold``, plus the counts."""
    y, q = _arrays(y_true, p)
    counts = confusion(y, q >= threshold)
    sens = _ratio(counts["tp"], counts["tp"] + counts["fn"])
    spec = _ratio(counts["tn"], counts["tn"] + counts["fp"])
    defined = [v for v in (sens, spec) if v is not None]
    return {
        "threshold": float(threshold),
        "balanced_accuracy": (sum(defined) / len(defined)) if defined else None,
        "roc_auc": roc_auc(y, q),
        "sensitivity": sens,
        "specificity": spec,
        "accuracy": _ratio(counts["tp"] + counts["tn"], y.size),
        "n": int(y.size),
        "n_atypical": int(y.sum()),
        "n_normal": int(y.size - y.sum()),
        **counts,
    }


def candidate_thresholds(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Mid-points between consecutive distinct probabilities, plus one below the lowest and one above the highest."""
    u = np.unique(np.asarray(p, dtype=np.float64))
    if u.size == 0:
        return np.array([0.5])
    mids = (u[1:] + u[:-1]) / 2.0
    low = max(0.0, u[0] / 2.0)
    high = min(1.0, (u[-1] + 1.0) / 2.0)
    return np.unique(np.r_[low, mids, high])


def best_balanced_accuracy_threshold(y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> float:
    """The threshold that maximises balanced accuracy (ties: the one nearest 0.5)."""
    y, q = _arrays(y_true, p)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    cands = candidate_thresholds(q)
    # Vectorised: for each candidate t, positives called = #(p >= t).
    pos_sorted = np.sort(q[y == 1])
    neg_sorted = np.sort(q[y == 0])
    tp = n_pos - np.searchsorted(pos_sorted, cands, side="left")
    tn = np.searchsorted(neg_sorted, cands, side="left")
    ba = (tp / n_pos + tn / n_neg) / 2.0
    best = np.flatnonzero(np.isclose(ba, ba.max(), rtol=0.0, atol=1e-12))
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def otsu_threshold(p: Sequence[float] | np.ndarray) -> float:
    """Otsu's threshold of the probabilities: the split maximising the between-class variance.

    Computed on the histogram of the distinct values (exact); the threshold is the mid-point between the
    two values either side of the best split. 0.5 when all values are equal.
    """
    from skimage.filters import threshold_otsu

    values, counts = np.unique(np.asarray(p, dtype=np.float64).reshape(-1), return_counts=True)
    if values.size < 2:
        return 0.5
    last_low = threshold_otsu(hist=(counts, values))  # the class below the split is ``<= last_low``
    k = int(np.searchsorted(values, last_low))
    return _midpoint(values[k], values[k + 1])


def _midpoint(lo: float, hi: float) -> float:
    """A cut strictly above ``lo`` and at most ``hi`` (the plain mid-point rounds down to ``lo`` for
    neighbouring floats such as 0 and 5e-324)."""
    mid = lo + (hi - lo) / 2.0
    return float(mid if mid > lo else hi)


def threshold_metrics(
    y_true: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, thresholds: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """``binary_metrics`` at each named threshold."""
    return {name: binary_metrics(y_true, p, t) for name, t in thresholds.items()}


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion k/n (None when n == 0)."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
