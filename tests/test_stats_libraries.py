"""The library-backed statistics (scikit-learn, scikit-image) against exact reference implementations."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_amf.stats import binary_metrics, midranks, otsu_threshold, roc_auc, roc_curve


def exact_otsu(p: np.ndarray) -> float:
    """Otsu's threshold on the sorted values: the best split's two neighbours' mid-point."""
    q = np.sort(np.asarray(p, dtype=np.float64))
    n = q.size
    if n < 2 or q[0] == q[-1]:
        return 0.5
    csum = np.cumsum(q)
    k = np.arange(1, n)
    w0 = k / n
    between = w0 * (1 - w0) * (csum[k - 1] / k - (csum[-1] - csum[k - 1]) / (n - k)) ** 2
    between[q[k] == q[k - 1]] = -np.inf
    i = int(np.argmax(between))
    lo, hi = q[k[i] - 1], q[k[i]]
    mid = lo + (hi - lo) / 2.0
    return float(mid if mid > lo else hi)


def rank_auc(y: np.ndarray, p: np.ndarray) -> float:
    ranks = midranks(p)
    n_pos = int(y.sum())
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * (y.size - n_pos)))


@pytest.mark.parametrize("seed", range(20))
def test_otsu_matches_the_exact_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.beta(0.5, 3.0, 200 + seed), rng.beta(4.0, 1.0, 30 + 3 * seed)])
    assert otsu_threshold(p) == exact_otsu(p)
    coarse = np.round(p, 2)  # many ties
    assert otsu_threshold(coarse) == exact_otsu(coarse)


@pytest.mark.parametrize("seed", range(20))
def test_auc_curve_and_counts_match_the_rank_statistic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 100)
    p = np.round(rng.random(100), 1)  # ties between classes
    assert roc_auc(y, p) == pytest.approx(rank_auc(y, p), abs=1e-12)
    fpr, tpr = roc_curve(y, p)
    assert fpr.size == np.unique(p).size + 1 and (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    m = binary_metrics(y, p, 0.5)
    called = p >= 0.5
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (int((called & (y == 1)).sum()), int((called & (y == 0)).sum()),
                                                    int((~called & (y == 0)).sum()), int((~called & (y == 1)).sum()))
    assert binary_metrics([], [], 0.5)["balanced_accuracy"] is None
