"""Per-slide ratio estimators (wsi_amf.quantify) and calibration (wsi_amf.calibration) on cases with known answers,
cross-checked against quapy and scikit-learn; interval coverage on simulated slides (fixed seeds)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from wsi_amf.bundle import BUNDLE_FILE, default_bundle_path, load_bundle
from wsi_amf.calibration import Calibration, choose_calibration, fit_calibration, fit_logistic, logit
from wsi_amf.options import ScreenOptions
from wsi_amf.quantify import (
    Reference,
    ScoreHistogram,
    bundle_block,
    em_prior,
    estimate,
    estimate_all,
    fit_reference,
    load_reference,
    pool,
    shift_sd,
)

IDENTITY = Calibration("temperature", {"t": 1.0})


def _toy_reference() -> Reference:
    """10 atypical figures (8 score 0.9, 2 score 0.1) and 10 normal ones (1 at 0.9, 9 at 0.1), one per slide."""
    score = np.r_[np.full(8, 0.9), np.full(2, 0.1), 0.9, np.full(9, 0.1)]
    labels = np.r_[np.ones(10, int), np.zeros(10, int)]
    return Reference(score, labels, np.arange(20), IDENTITY)


def _slide(n_high: int, n: int) -> ScoreHistogram:
    return ScoreHistogram.of(np.r_[np.full(n_high, 0.9), np.full(n - n_high, 0.1)], 0.5)


def test_acc_pacc_pcc_and_cc_by_hand():
    ref = _toy_reference()
    assert ref.rates(0.5) == {"threshold": 0.5, "tpr": 0.8, "fpr": 0.1, "tp": 8, "fn": 2, "fp": 1, "tn": 9}
    est = estimate_all(_slide(45, 100), ref)
    assert est["cc"].share == pytest.approx(0.45)
    assert est["acc"].share == pytest.approx((0.45 - 0.1) / (0.8 - 0.1))  # 0.5
    # identity calibration: mean q of atypical 0.74, of normal 0.18; the slide's mean q 0.46
    assert est["pcc"].share == pytest.approx(0.46)
    assert est["pacc"].share == pytest.approx((0.46 - 0.18) / (0.74 - 0.18))  # 0.5
    assert est["acc"].estimated_n_atypical == pytest.approx(50.0)
    assert est["acc"].atypical_to_normal == pytest.approx(1.0)
    for e in est.values():  # every interval holds its estimate
        assert e.ci95[0] <= e.share <= e.ci95[1]


def test_adjusted_estimates_are_clipped_to_zero_and_one():
    ref = _toy_reference()
    assert estimate(_slide(2, 100), ref, "acc").share == 0.0  # called share 0.02 < FPR 0.1
    assert estimate(_slide(100, 100), ref, "acc").share == 1.0  # 1.0 > TPR 0.8
    assert estimate(_slide(100, 100), ref, "acc").atypical_to_normal == np.inf


def test_acc_agrees_with_quapy():
    quapy_f = pytest.importorskip("quapy.functional")
    for called in (0.05, 0.3, 0.45, 0.79):
        ours = estimate(_slide(int(called * 100), 100), _toy_reference(), "acc").share
        theirs = quapy_f.solve_adjustment_binary(np.array([1 - called, called]), tpr=0.8, fpr=0.1, clip=True)[1]
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_em_agrees_with_quapy_and_recovers_a_known_prior():
    aggregative = pytest.importorskip("quapy.method.aggregative")
    rng = np.random.default_rng(3)
    for prior, truth in ((0.3, 0.1), (0.2, 0.5), (0.5, 0.02)):
        # posteriors calibrated under `prior` for classes with score densities Beta(5, 2) / Beta(2, 5)
        y = rng.random(4000) < truth
        s = np.where(y, rng.beta(5, 2, y.size), rng.beta(2, 5, y.size))
        lr = (s ** 4 * (1 - s)) / (s * (1 - s) ** 4)  # f1 / f0 of the two Beta densities
        q = prior * lr / (prior * lr + 1 - prior)
        ours = em_prior(q[None, :], np.ones((1, q.size)), prior)[0]
        theirs = aggregative.EMQ.EM(np.array([1 - prior, prior]), np.c_[1 - q, q], epsilon=1e-12)[0][1]
        assert ours == pytest.approx(theirs, abs=1e-6)
        assert ours == pytest.approx(truth, abs=0.03)  # the likelihood's maximum is near the truth at n = 4000


def test_histograms_pool_like_the_union_of_their_candidates():
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(500)
    pooled = pool([ScoreHistogram.of(a, 0.3), ScoreHistogram.of(b, 0.3)])
    union = ScoreHistogram.of(np.r_[a, b], 0.3)
    np.testing.assert_array_equal(pooled.bins, union.bins)
    np.testing.assert_array_equal(pooled.counts, union.counts)
    np.testing.assert_allclose(pooled.mean_score, union.mean_score, rtol=1e-12)
    assert pooled.n_called == int((np.r_[a, b] >= 0.3).sum())
    again = ScoreHistogram.from_json(json.loads(json.dumps(union.to_json())))
    assert again.n == 800 and again.n_called == union.n_called


def test_platt_fit_matches_scikit_learn_and_the_choice_is_by_log_loss():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    s = rng.random(3000)
    y = (rng.random(s.size) < 1 / (1 + np.exp(-(2.0 * logit(s) - 1.0)))).astype(int)
    a, b = fit_logistic(logit(s), y)[0]
    sk = linear_model.LogisticRegression(C=1e12, tol=1e-10, max_iter=1000).fit(logit(s)[:, None], y)
    assert a == pytest.approx(sk.coef_[0, 0], rel=1e-4) and b == pytest.approx(sk.intercept_[0], abs=1e-4)
    cal, losses = choose_calibration(s, y, np.arange(s.size) % 5)
    assert cal.method == "platt" and losses["platt"] == min(losses.values())
    assert cal.params["a"] == pytest.approx(2.0, abs=0.2) and cal.params["b"] == pytest.approx(-1.0, abs=0.2)
    iso = fit_calibration("isotonic", s, y)
    assert np.all(np.diff(iso.apply(np.linspace(0, 1, 101))) >= 0)


def test_shift_sd_recovers_a_simulated_slide_shift():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(400), 20)
    y = (rng.random(groups.size) < 0.2).astype(int)
    z = np.where(y == 1, 0.5, -2.0) + rng.normal(0, 0.6, 400)[groups] + rng.normal(0, 1.0, groups.size)
    s = 1 / (1 + np.exp(-z))
    assert shift_sd(s, y, groups) == pytest.approx(0.6, abs=0.06)
    z0 = np.where(y == 1, 0.5, -2.0) + rng.normal(0, 1.0, groups.size)
    assert shift_sd(1 / (1 + np.exp(-z0)), y, groups) < 0.1


def _simulated_reference(rng: np.random.Generator, n_slides: int = 150, per_slide: int = 18):
    groups = np.repeat(np.arange(n_slides), per_slide)
    y = (rng.random(groups.size) < 0.2).astype(int)
    s = np.where(y == 1, rng.beta(4, 3, y.size), rng.beta(2, 6, y.size))
    return fit_reference(s, y, groups, groups % 5)[0]


def test_intervals_cover_the_truth_on_slides_drawn_like_the_reference():
    """95 % intervals on 150 simulated slides (n 100-1000, true share 0.02-0.5) drawn from the reference's own
    class-conditional distributions: coverage must be near nominal. Fixed seeds: deterministic, not flaky."""
    rng = np.random.default_rng(7)
    ref = _simulated_reference(rng)
    covered, errors = [], []
    for i in range(150):
        n = (100, 300, 1000)[i % 3]
        truth = (0.02, 0.1, 0.25, 0.5)[i % 4]
        k = rng.binomial(n, truth)
        s = np.r_[rng.beta(4, 3, k), rng.beta(2, 6, n - k)]
        e = estimate(ScoreHistogram.of(s, 0.35), ref, "acc")
        covered.append(e.ci95[0] <= k / n <= e.ci95[1])
        errors.append(e.share - k / n)
    assert 0.90 <= np.mean(covered) <= 1.0
    assert abs(np.mean(errors)) < 0.02  # ACC is unbiased under a pure change of the share
    cc = [estimate(ScoreHistogram.of(np.r_[rng.beta(4, 3, 10), rng.beta(2, 6, 490)], 0.35), ref, "cc").share
          for _ in range(5)]
    assert np.mean(cc) > 0.1  # while the share of calls is far from the true 0.02


def test_reference_round_trips_through_bundle_json(tmp_path):
    from bundles import random_bundle

    rng = np.random.default_rng(5)
    ref = _simulated_reference(rng, n_slides=40)
    block = bundle_block(ref, threshold=0.35, losses={"platt": 0.4}, stain=None, source="test")
    bundle = random_bundle(tmp_path / "b", architecture="convnextv2_atto")
    data = json.loads((bundle.path / BUNDLE_FILE).read_text())
    data["quantification"] = block
    (bundle.path / BUNDLE_FILE).write_text(json.dumps(data))
    again = load_reference(load_bundle(bundle.path).config.quantification, source="b")
    probe = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(again.calibration.apply(probe), ref.calibration.apply(probe), atol=1e-6)
    np.testing.assert_array_equal(again.labels, ref.labels)
    assert again.rates(0.35) == ref.rates(0.35) == block["rates"]
    h = ScoreHistogram.of(rng.random(400), 0.35)
    assert estimate(h, again).share == pytest.approx(estimate(h, ref).share, abs=1e-5)


def test_a_damaged_quantification_entry_is_one_line_error():
    from wsi_amf.errors import BundleError

    ref = _toy_reference()
    block = bundle_block(ref, threshold=0.5, losses={}, stain=None, source="test")
    block["figures"]["score"][0] = 7.0
    with pytest.raises(BundleError, match="quantification entry is damaged"):
        load_reference(block, source="b")
    del block["calibration"]
    with pytest.raises(BundleError, match="lacks 'calibration'"):
        load_reference(block, source="b")


def test_a_bundle_without_calibration_screens_uncorrected_and_warns_once(tmp_path, caplog, slide025, mitosis_points,
                                                                          tiny_bundle):
    """An old bundle (no quantification entry) still screens; its ratio is the share of calls, labelled so."""
    import importlib

    screen_mod = importlib.import_module("wsi_amf.screen")  # the module: the package exports the function by its name
    screen_mod._warned_uncorrected.discard(str(tiny_bundle.path))
    with caplog.at_level(logging.WARNING, logger="wsi_amf.screen"):
        r1 = screen_mod.screen(slide025.path, mitosis_points, ScreenOptions(threshold=0.5), model=tiny_bundle,
                               progress=False)
        screen_mod.screen(slide025.path, mitosis_points, ScreenOptions(threshold=0.5), model=tiny_bundle,
                          progress=False)
    assert sum("records no calibration" in m for m in caplog.messages) == 1
    s = r1.summary()
    assert s["amf_ratio_method"].startswith("cc (uncorrected") and not s["ratio_corrected"]
    assert s["amf_ratio"] == pytest.approx(s["called_amf_ratio"], abs=1e-6)
    np.testing.assert_array_equal(r1.p_calibrated, r1.p_atypical)


def test_the_built_in_model_records_its_out_of_fold_rates():
    """The shipped quantification entry agrees with the recorded cross-validation figures of bundle.json.

    The entry comes from the shipped weights' out-of-fold scores (``wsi-amf calibrate`` on the int8 members), the
    recorded figures from training's float32 ones: a few figures next to the threshold change sides (3 of 547
    atypical ones for the built-in model), hence a tolerance of 1 %."""
    if not (default_bundle_path() / BUNDLE_FILE).exists():
        pytest.skip("the built-in model is not shipped in this checkout")
    cfg = load_bundle(None).config
    ref = load_reference(cfg.quantification, source="default")
    rates = cfg.quantification["rates"]
    recorded = cfg.metrics["cv_oof"]
    assert rates["threshold"] == cfg.threshold and ref.score.size == recorded["n"] == 2679
    assert rates["tpr"] == pytest.approx(recorded["sensitivity"], abs=0.01)
    assert 1 - rates["fpr"] == pytest.approx(recorded["specificity"], abs=0.01)
    assert ref.rates(cfg.threshold) == rates
    assert ref.folds is not None and set(np.unique(ref.folds)) == set(range(1, len(cfg.members) + 1))
    losses = cfg.quantification["calibration_cv_log_loss"]
    assert losses[ref.calibration.method] == min(v for k, v in losses.items() if k != "uncalibrated")


def test_screen_and_batch_report_the_estimate_with_the_built_in_model(tmp_path, slide025, mitosis_points):
    """The CSV's p_atypical is the calibrated model score, the GeoJSON shows the same, the summary's ratio is the
    bundle's estimator on the classified candidates, and a one-slide cohort's pooled estimate is the slide's."""
    import csv

    from wsi_amf import screen, screen_batch

    if not (default_bundle_path() / BUNDLE_FILE).exists():
        pytest.skip("the built-in model is not shipped in this checkout")
    r = screen(slide025.path, mitosis_points, out=tmp_path / "out", progress=False)
    s = r.summary()
    ref = r.reference
    rows = list(csv.DictReader(open(r.outputs["csv"], encoding="utf-8")))
    score = np.array([float(x["model_score"]) for x in rows])
    p = np.array([float(x["p_atypical"]) for x in rows])
    np.testing.assert_allclose(p, ref.calibration.apply(score), atol=2e-6)
    assert [x["label"] == "atypical" for x in rows] == (score >= s["threshold"]).tolist()
    features = json.loads(r.outputs["geojson"].read_text())["features"]
    np.testing.assert_allclose([f["properties"]["measurements"]["AMF probability"] for f in features], p, atol=1e-6)
    again = estimate(ScoreHistogram.of(score, s["threshold"]), ref, unlike=s["domain_warning"] is not None)
    assert s["amf_ratio"] == pytest.approx(again.share, abs=1e-5) and s["amf_ratio_method"] == ref.estimator == "acc"
    assert s["called_amf_ratio"] == pytest.approx(s["n_atypical"] / s["n_classified"])
    assert s["estimated_n_atypical"] == pytest.approx(s["amf_ratio"] * s["n_classified"], abs=1e-4)
    assert s["ratio_corrected"] and s["calibration"] == ref.calibration.method
    batch = screen_batch(None, manifest=_manifest(tmp_path, slide025.path, mitosis_points), out=tmp_path / "b",
                         progress=False)
    cohort = json.loads(batch.files["json"].read_text())
    pooled, row = cohort["pooled"], cohort["slides"][0]
    assert row["amf_ratio"] == pytest.approx(s["amf_ratio"], abs=1e-6) and row["amf_ratio_ci95"] == s["amf_ratio_ci95"]
    assert pooled["amf_ratio"] == row["amf_ratio"] and pooled["n_classified"] == row["n_classified"]


def _manifest(tmp_path, slide, points):
    path = tmp_path / "manifest.csv"
    path.write_text(f"slide,points\n{slide},{points}\n", encoding="utf-8")
    return path


def test_acc_interval_does_not_collapse_when_a_small_slide_has_no_call():
    """5 candidates, none called: a share of 0.3 gives that 16 % of the time ((1 - 0.1 - 0.7 x 0.3)^5 under the toy
    reference's TPR 0.8 and FPR 0.1), so the interval must reach past it, not be [0, 0]."""
    e = estimate(_slide(0, 5), _toy_reference(), "acc")
    assert e.share == 0.0 and e.ci95[0] == 0.0 and e.ci95[1] >= 0.3


def test_acc_interval_is_the_whole_range_when_no_rates_of_the_reference_explain_the_calls():
    """100 of 100 called where the reference's TPR (0.8 or so, from 540 atypical figures) never reaches 1 in a
    replicate: the estimate clips at 1 and so does every replicate; the interval says the calls do not bound
    the share (the summary's ratio_warning says why)."""
    ref = _simulated_reference(np.random.default_rng(7))
    assert ref.rates(0.35)["tpr"] < 0.9
    e = estimate(ScoreHistogram.of(np.full(100, 0.9), 0.35), ref, "acc")
    assert e.share == 1.0 and e.ci95 == (0.0, 1.0)
    inside = estimate(ScoreHistogram.of(np.r_[np.full(50, 0.9), np.full(50, 0.1)], 0.35), ref, "acc")
    assert 0.0 < inside.ci95[0] < inside.share < inside.ci95[1] < 1.0


def test_calls_below_every_site_fpr_get_the_single_slide_spread_not_a_zero_width_interval():
    """A large slide with fewer calls than any site-level FPR allows: ACC clips at 0 in every replicate of the site
    spread, so its interval comes from the single-slide spread (as for a slide flagged unlike the reference)."""
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(150), 18)
    y = (rng.random(groups.size) < 0.2).astype(int)
    z = np.where(y == 1, 0.8, -1.5) + rng.normal(0, 0.6, 150)[groups] + rng.normal(0, 1.0, groups.size)  # slides differ
    ref = fit_reference(1 / (1 + np.exp(-z)), y, groups, groups % 5)[0]
    fpr = ref.rates(0.35)["fpr"]
    n = 2000
    low = int(0.6 * fpr * n)  # well below the FPR: an all-normal slide would give about fpr * n calls
    hist = ScoreHistogram.of(np.r_[np.full(low, 0.9), np.full(n - low, 0.1)], 0.35)
    e = estimate(hist, ref, "acc")
    assert e.share == 0.0 and e.ci95 == estimate(hist, ref, "acc", unlike=True).ci95
    assert 0.0 < e.ci95[1] < 1.0
