"""Metrics, threshold selection and Otsu's threshold against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsi_amf.stats import best_balanced_accuracy_threshold, binary_metrics, midranks, otsu_threshold, roc_auc, roc_curve

# y / p of six patches; by hand at threshold 0.5: TP 2 (0.8, 0.9), FN 1 (0.35), FP 1 (0.6), TN 2 (0.1, 0.4).
Y = np.array([0, 0, 1, 1, 0, 1])
P = np.array([0.1, 0.4, 0.35, 0.8, 0.6, 0.9])


def test_binary_metrics_by_hand() -> None:
    m = binary_metrics(Y, P, 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Pairs (positive, negative) ranked right: 0.35 > 0.1; 0.8 and 0.9 > all three negatives -> 7 of 9.
    assert m["roc_auc"] == pytest.approx(7 / 9)
    assert (m["n"], m["n_atypical"], m["n_normal"]) == (6, 3, 3)


def test_threshold_is_inclusive() -> None:
    assert binary_metrics([1, 0], [0.5, 0.2], 0.5)["tp"] == 1


def test_roc_auc_ties_count_half() -> None:
    # Positives 0.5, 0.8; negatives 0.5, 0.2: the tie 0.5/0.5 counts 1/2 -> (0.5 + 1 + 1 + 1) / 4.
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.8]) == pytest.approx(0.875)
    assert roc_auc([0, 1], [0.3, 0.3]) == pytest.approx(0.5)


def test_undefined_metrics_are_none() -> None:
    m = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7], 0.5)
    assert m["roc_auc"] is None and m["specificity"] is None
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)  # the one defined rate


def test_midranks() -> None:
    np.testing.assert_allclose(midranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_best_balanced_accuracy_threshold_by_hand() -> None:
    # Candidates are mid-points: at 0.7 (between 0.6 and 0.8) sensitivity 2/3 and specificity 1 -> BA 5/6,
    # better than any other cut (0.5 and 0.225 give 2/3, 0.85 gives 2/3, the extremes 1/2).
    t = best_balanced_accuracy_threshold(Y, P)
    assert t == pytest.approx(0.7)
    assert binary_metrics(Y, P, t)["balanced_accuracy"] == pytest.approx(5 / 6)


def test_best_threshold_ties_go_to_the_one_nearest_half() -> None:
    # Every cut gives BA 0.5; candidates 0.15, 0.45, 0.8 -> 0.45.
    assert best_balanced_accuracy_threshold([0, 1, 0, 1], [0.3, 0.3, 0.6, 0.6]) == pytest.approx(0.45)
    assert best_balanced_accuracy_threshold([1, 1], [0.2, 0.9]) == 0.5  # one class: 0.5


def test_otsu_by_hand() -> None:
    assert otsu_threshold([0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.5)
    # Splits of [0, .1, .2, 1]: between-class variance 0.0352, 0.0756, 0.1519 -> cut between 0.2 and 1.0.
    assert otsu_threshold([0.0, 0.1, 0.2, 1.0]) == pytest.approx(0.6)
    assert otsu_threshold([0.3, 0.3]) == 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=30))
@example([0.0, 5e-324])  # neighbouring floats: the plain mid-point is the lower value
def test_otsu_maximises_between_class_variance(values: list[float]) -> None:
    q = np.sort(np.asarray(values))
    t = otsu_threshold(q)
    if q[0] == q[-1]:
        return
    assert q[0] < t <= q[-1]  # both classes non-empty

    def between(cut: float) -> float:
        lo, hi = q[q < cut], q[q >= cut]
        return len(lo) * len(hi) / len(q) ** 2 * (lo.mean() - hi.mean()) ** 2

    cuts = [a + (b - a) / 2 if a + (b - a) / 2 > a else b for a, b in zip(q[:-1], q[1:]) if a != b]
    assert between(t) >= max(between(c) for c in cuts) - 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])), min_size=2, max_size=40))
def test_roc_auc_equals_pair_count(pairs: list[tuple[int, float]]) -> None:
    y = np.array([a for a, _ in pairs])
    p = np.array([b for _, b in pairs])
    auc = roc_auc(y, p)
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        assert auc is None
        return
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    assert auc == pytest.approx(wins / (len(pos) * len(neg)))


def test_roc_curve_area_matches_auc() -> None:
    fpr, tpr = roc_curve(Y, P)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(7 / 9)
