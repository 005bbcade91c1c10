"""Per-slide share of atypical figures: prevalence-corrected estimators and bootstrap intervals.

The share of *calls* at a threshold (classify and count, CC) is not the share of atypical figures: at a
sensitivity of 0.72 and a specificity of 0.76 a quarter of the normal figures, the large majority, are
counted as atypical. Estimating a class share from a classifier ("quantification") is a studied problem;
the estimators here all use the bundle's :class:`Reference`, the labelled out-of-fold figures of its
cross-validation (each scored by a member that never saw its slide):

- ``cc``: the share of calls (uncorrected; what ``called_amf_ratio`` reports);
- ``acc``: adjusted classify and count (Rogan & Gladen 1978): (CC - FPR) / (TPR - FPR), clipped to [0, 1];
- ``pcc``: probabilistic classify and count, the mean calibrated probability;
- ``pacc``: PCC adjusted like ACC with the mean calibrated probability of the atypical and of the normal
  reference figures in place of TPR and FPR (Bella et al. 2010);
- ``em``: the EM prior adjustment of calibrated posteriors (Saerens, Latinne & Decaestecker 2002).

**Intervals** are percentile intervals of a bootstrap: each replicate resamples the reference's source
slides (a cluster bootstrap: calibration map, rates and training prior are refitted on the resample) and the
slide's own candidates (multinomially; ACC's share of calls from its Jeffreys posterior, which does not
collapse when all candidates are called or none), and draws the slide's own rates around the reference's: TPR / FPR
(ACC) and the class means of the calibrated probability (PACC) with their spread between the reference's
folds and domains beyond sampling (``between_sd``), a shift of the slide's score logits for PCC and EM
(``shift_sd``). A slide flagged as unlike the reference (its stain: ``domain_warning``) gets the spread
between single source slides, much larger. A slide unlike the reference in ways stain does not show (another
tumour type) can be off by more than its interval. When every replicate of ACC or PACC is clipped at the
estimate's bound (calls above every TPR the site-level spread allows, or below every FPR), the slide is
taken as unlike the reference (the single-slide spread); when even that clips every replicate, the interval
is [0, 1]: such candidates say nothing about the share.

A slide enters as a :class:`ScoreHistogram` of its ensemble scores on a fixed grid (fine bins in logit space,
split at the threshold): estimates are functions of it, so slides pool by adding histograms (the cohort's
pooled ratio) and a slide of 200,000 candidates costs no more than one of 200. Everything is deterministic:
the random streams are seeded.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .calibration import Calibration, fit_calibration, fit_logistic, logit, sigmoid
from .stats import wilson_interval

ESTIMATORS = ("cc", "acc", "pcc", "pacc", "em")
DEFAULT_ESTIMATOR = "acc"  # chosen by benchmarks/ratio_accuracy.py: see benchmarks/README.md
UNCORRECTED = "cc (uncorrected: the bundle has no calibration)"
N_REPLICATES = 1000
SEED = 20021
_GRID = np.linspace(-12.0, 12.0, 481)  # bin edges on the logit of the score (0.05 wide)


def _edges(threshold: float) -> np.ndarray:
    t = float(logit(threshold))
    return np.unique(np.r_[_GRID, t])


# ----------------------------------------------------------------------------------------------- slide side


@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """A set of candidates' scores: counts and mean score per bin of the grid split at ``threshold``."""

    threshold: float
    bins: np.ndarray  # int: bin index (0 .. len(edges)); bin k holds edges[k-1] <= logit < edges[k]
    counts: np.ndarray  # int per bin
    mean_score: np.ndarray  # mean raw score of the candidates in each bin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScoreHistogram) and self.threshold == other.threshold and all(
            np.array_equal(a, b) for a, b in ((self.bins, other.bins), (self.counts, other.counts),
                                              (self.mean_score, other.mean_score)))

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of(cls, scores: np.ndarray, threshold: float) -> ScoreHistogram:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        s = s[np.isfinite(s)]
        b = np.searchsorted(_edges(threshold), logit(s), side="right")
        bins, inverse, counts = np.unique(b, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=s, minlength=bins.size)
        return cls(float(threshold), bins.astype(np.int64), counts.astype(np.int64), sums / np.maximum(counts, 1))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def called(self) -> np.ndarray:
        """Per bin: do its candidates count as atypical calls (score >= threshold)?"""
        edges = _edges(self.threshold)
        return self.bins > np.searchsorted(edges, float(logit(self.threshold)), side="left")

    @property
    def n_called(self) -> int:
        return int(self.counts[self.called].sum())

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        if other.threshold != self.threshold:
            raise ValueError("histograms at different thresholds cannot be pooled")
        bins = np.union1d(self.bins, other.bins)
        counts = np.zeros(bins.size, dtype=np.int64)
        sums = np.zeros(bins.size)
        for h in (self, other):
            pos = np.searchsorted(bins, h.bins)
            counts[pos] += h.counts
            sums[pos] += h.counts * h.mean_score
        return ScoreHistogram(self.threshold, bins, counts, sums / np.maximum(counts, 1))

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "bins": self.bins.tolist(), "counts": self.counts.tolist(),
                "mean_score": [round(float(v), 8) for v in self.mean_score]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoreHistogram:
        bins = np.asarray(data["bins"], dtype=np.int64)
        counts = np.asarray(data["counts"], dtype=np.int64)
        mean = np.asarray(data["mean_score"], dtype=np.float64)
        if not (bins.shape == counts.shape == mean.shape) or np.any(counts < 0):
            raise ValueError("score histogram: bins, counts and mean_score must be equal-length lists")
        return cls(float(data["threshold"]), bins, counts, mean)


def pool(histograms: Sequence[ScoreHistogram]) -> ScoreHistogram | None:
    """All candidates of several slides as one histogram (None for none)."""
    return functools.reduce(lambda a, b: a + b, histograms) if histograms else None


# ------------------------------------------------------------------------------------------- reference side


@dataclass(frozen=True)
class Reference:
    """Labelled out-of-fold figures: scores, labels (1 = atypical), source-slide groups, and the calibration map."""

    score: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # int code of each figure's source slide
    calibration: Calibration
    estimator: str = DEFAULT_ESTIMATOR
    domains: Mapping[str, np.ndarray] = field(default_factory=dict)
    shift_sd: float = 0.0  # sd of a site's shift in score logit: between folds / domains (see shift_sd())
    slide_shift_sd: float = 0.0  # the same between single source slides (larger): for slides unlike the reference
    folds: np.ndarray | None = None  # cross-validation fold of each figure (1-based), when known

    def __post_init__(self) -> None:
        if not (self.score.shape == self.labels.shape == self.groups.shape) or self.score.ndim != 1 or (
                self.folds is not None and self.folds.shape != self.score.shape):
            raise ValueError("reference scores, labels and groups must be equal-length lists")
        if not np.all(np.isfinite(self.score)) or np.any((self.score < 0) | (self.score > 1)):
            raise ValueError("reference scores must lie in [0, 1]")
        if set(np.unique(self.labels).tolist()) != {0, 1}:
            raise ValueError("reference labels must hold both classes (0 normal, 1 atypical)")
        for sd in (self.shift_sd, self.slide_shift_sd):
            if not (math.isfinite(sd) and sd >= 0):
                raise ValueError(f"shift_sd {sd} must be a non-negative number")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator {self.estimator!r} is not one of {', '.join(ESTIMATORS)}")

    @property
    def prior(self) -> float:
        return float(self.labels.mean())

    @functools.cached_property
    def class_means(self) -> tuple[float, float]:
        """Mean calibrated probability of the atypical and of the normal figures (PACC's rates)."""
        q = self.calibration.apply(self.score)
        return float(q[self.labels == 1].mean()), float(q[self.labels == 0].mean())

    def rates(self, threshold: float) -> dict[str, Any]:
        """TPR and FPR of calls at ``threshold`` on the reference, with their counts."""
        called = self.score >= threshold
        y = self.labels == 1
        tp, fn = int(np.sum(called & y)), int(np.sum(~called & y))
        fp, tn = int(np.sum(called & ~y)), int(np.sum(~called & ~y))
        return {"threshold": float(threshold), "tpr": tp / (tp + fn), "fpr": fp / (fp + tn),
                "tp": tp, "fn": fn, "fp": fp, "tn": tn}

    def to_json(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "calibration": self.calibration.to_json(),
                "prior": self.prior, "shift_sd": round(self.shift_sd, 6), "slide_shift_sd": round(self.slide_shift_sd, 6),
                "figures": {"score": [round(float(v), 6) for v in self.score],
                            "label": "".join("1" if v else "0" for v in self.labels),
                            "group": self.groups.tolist(),
                            **({"fold": self.folds.tolist()} if self.folds is not None else {}),
                            "domains": {k: _coded(v) for k, v in self.domains.items()}}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        fig = data["figures"]
        labels = np.frombuffer(str(fig["label"]).encode("ascii"), dtype=np.uint8) - ord("0")
        if labels.size and labels.max() > 1:
            raise ValueError("figures.label must be a string of 0 and 1")
        domains = {str(k): np.asarray(v["values"]).astype(str)[np.asarray(v["index"], dtype=np.int64)]
                   for k, v in (fig.get("domains") or {}).items()}
        return cls(score=np.asarray(fig["score"], dtype=np.float64), labels=labels.astype(np.int64),
                   groups=np.asarray(fig["group"], dtype=np.int64), calibration=Calibration.from_json(data["calibration"]),
                   estimator=str(data.get("estimator", DEFAULT_ESTIMATOR)), domains=domains,
                   shift_sd=float(data.get("shift_sd", 0.0)), slide_shift_sd=float(data.get("slide_shift_sd", 0.0)),
                   folds=np.asarray(fig["fold"], dtype=np.int64) if fig.get("fold") is not None else None)

    def replicates(self, threshold: float, *, unlike: bool = False) -> _Replicates:
        """The bootstrap replicates at ``threshold``; ``unlike``: with the slide-level shift (see :func:`estimate`)."""
        return _replicates(self, float(threshold), self.slide_shift_sd if unlike else self.shift_sd, unlike)

    def __hash__(self) -> int:  # identity: replicates are cached per object
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def _coded(values: np.ndarray) -> dict[str, list]:
    uniq, index = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return {"values": uniq.tolist(), "index": index.tolist()}


@dataclass(frozen=True)
class _Replicates:
    """The reference refitted on N_REPLICATES cluster-bootstrap resamples of its source slides."""

    calibrations: tuple[Calibration, ...]
    tpr: np.ndarray
    fpr: np.ndarray
    m1: np.ndarray  # mean calibrated probability of the atypical reference figures
    m0: np.ndarray  # ... of the normal ones
    prior: np.ndarray
    shift: np.ndarray  # each replicate's shift of the screened set's score logits (PCC, EM)
    tpr_site: np.ndarray = field(default_factory=lambda: np.zeros(0))  # TPR / FPR / m1 / m0 of the screened set's
    fpr_site: np.ndarray = field(default_factory=lambda: np.zeros(0))  # "site": the replicate's value moved by a
    m1_site: np.ndarray = field(default_factory=lambda: np.zeros(0))  # draw of its between-site spread (ACC, PACC)
    m0_site: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def apply(self, score: np.ndarray, *, shifted: bool = False) -> np.ndarray:
        """``[B, len(score)]``: every replicate's calibrated probability of ``score`` (moved by the replicate's
        shift when ``shifted``)."""
        return _calibrate_each(self.calibrations, logit(score)[None, :] + (self.shift[:, None] if shifted else 0.0))


def _calibrate_each(calibrations: Sequence[Calibration], z: np.ndarray) -> np.ndarray:
    """Row b of ``z`` (score logits, ``[B, G]`` or ``[1, G]``) through calibration b."""
    z = np.broadcast_to(z, (len(calibrations), z.shape[1]))
    method = calibrations[0].method
    if method == "platt":
        a = np.array([c.params["a"] for c in calibrations])[:, None]
        b = np.array([c.params["b"] for c in calibrations])[:, None]
        return sigmoid(a * z + b)
    if method == "temperature":
        return sigmoid(z / np.array([c.params["t"] for c in calibrations])[:, None])
    return np.stack([c.apply(sigmoid(zi)) for c, zi in zip(calibrations, z)])


@functools.lru_cache(maxsize=16)
def _replicates(ref: Reference, threshold: float, sd: float, unlike: bool = False) -> _Replicates:
    rng = np.random.default_rng(SEED)
    uniq, inverse = np.unique(ref.groups, return_inverse=True)
    draws = rng.multinomial(uniq.size, np.full(uniq.size, 1.0 / uniq.size), size=N_REPLICATES)
    w = draws[:, inverse].astype(np.float64)  # [B, N]: how often each figure's slide was drawn
    y = ref.labels.astype(np.float64)
    # A resample without both classes keeps its weights but gets one pseudo-figure of the missing class.
    for cls_ in (0, 1):
        empty = (w * (y == cls_)).sum(axis=1) == 0
        if empty.any():
            idx = np.flatnonzero(y == cls_)
            w[np.ix_(empty, idx)] += 1.0 / idx.size
    method = ref.calibration.method
    if method in ("platt", "temperature"):
        ab = fit_logistic(logit(ref.score), y, w, intercept=method == "platt")
        a = np.maximum(ab[:, 0], 1e-6)
        cals = tuple(Calibration("platt", {"a": float(ai), "b": float(bi)}) if method == "platt"
                     else Calibration("temperature", {"t": float(1.0 / ai)}) for ai, bi in zip(a, ab[:, 1]))
    else:
        cals = tuple(fit_calibration(method, ref.score, y, weights=wi) for wi in w)
    shift = rng.normal(0.0, sd, size=N_REPLICATES)
    q = _calibrate_each(cals, logit(ref.score)[None, :])  # [B, N]
    called = (ref.score >= threshold).astype(np.float64)
    wp, wn = w * y, w * (1 - y)
    sp, sn = wp.sum(axis=1), wn.sum(axis=1)
    tpr, fpr = (wp * called).sum(1) / sp, (wn * called).sum(1) / sn
    m1, m0 = (wp * q).sum(1) / sp, (wn * q).sum(1) / sn
    # How much each rate differs between sites (folds / domains) or, for a slide unlike the reference, between
    # single slides, beyond the sampling of their figures: the screened set's own rates are one such draw.
    units = [ref.groups] if unlike else [u for u in (ref.folds, *ref.domains.values()) if u is not None]
    q0 = ref.calibration.apply(ref.score)
    spread = [max((between_sd(x, u, ref.labels == cls_) for u in units), default=0.0)
              for x, cls_ in ((called, 1), (called, 0), (q0, 1), (q0, 0))]
    moved = [np.clip(v + rng.normal(0.0, sd_, N_REPLICATES), 0.0, 1.0) for v, sd_ in zip((tpr, fpr, m1, m0), spread)]
    return _Replicates(cals, tpr=tpr, fpr=fpr, m1=m1, m0=m0, prior=sp / (sp + sn), shift=shift,
                       tpr_site=moved[0], fpr_site=moved[1], m1_site=moved[2], m0_site=moved[3])


def between_sd(x: np.ndarray, units: np.ndarray, where: np.ndarray | None = None) -> float:
    """Standard deviation, between ``units`` (source slides, folds, domains), of the mean of ``x`` over their
    figures (those under ``where``), beyond the sampling of those figures: method of moments, the variance of
    the unit means (ddof 1) less the mean of (variance of ``x``) / (the unit's figures), floored at zero. Units
    with fewer than two figures are left out."""
    sel = np.ones(np.shape(x), dtype=bool) if where is None else np.asarray(where, dtype=bool)
    xs = np.asarray(x, dtype=np.float64)[sel]
    _, codes, sizes = np.unique(np.asarray(units).astype(str)[sel], return_inverse=True, return_counts=True)
    means = np.bincount(codes, weights=xs) / sizes
    keep = sizes >= 2
    if keep.sum() < 2:
        return 0.0
    noise = float(np.var(xs)) / sizes[keep]
    return float(math.sqrt(max(0.0, float(np.var(means[keep], ddof=1) - np.mean(noise)))))


# ------------------------------------------------------------------------------------------------ estimators


def _adjust(observed: np.ndarray, hit: np.ndarray, false: np.ndarray) -> np.ndarray:
    """(observed - false) / (hit - false), clipped to [0, 1]; the observed share where hit <= false."""
    denom = hit - false
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 1e-9, (observed - false) / denom, observed)
    return np.clip(out, 0.0, 1.0)


def em_prior(posteriors: np.ndarray, counts: np.ndarray, prior: np.ndarray | float, *, iterations: int = 60) -> np.ndarray:
    """Saerens-Latinne-Decaestecker: the share of positives that makes ``posteriors`` (calibrated under the
    training ``prior``) self-consistent. Rows of ``posteriors`` / ``counts`` (``[B, G]``) are independent.

    EM's fixed point is the maximum of the concave likelihood sum_g c_g log(pi a_g + (1 - pi) b_g), with
    a = q / prior and b = (1 - q) / (1 - prior); it is found here by bisection on the likelihood's decreasing
    derivative (to 1e-18 after 60 halvings) rather than by EM's slow iterations when the classes overlap.
    """
    q = np.clip(np.atleast_2d(np.asarray(posteriors, dtype=np.float64)), 1e-12, 1 - 1e-12)
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    pt = np.broadcast_to(np.asarray(prior, dtype=np.float64), (q.shape[0],))[:, None]
    a, b = q / pt, (1 - q) / (1 - pt)

    def slope(pi: np.ndarray) -> np.ndarray:
        return np.sum(c * (a - b) / (pi * a + (1 - pi) * b), axis=1)

    lo, hi = np.zeros(q.shape[0]), np.ones(q.shape[0])
    for _ in range(iterations):
        mid = (lo + hi) / 2
        up = slope(mid[:, None]) > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return (lo + hi) / 2


def _all_estimates(counts: np.ndarray, called: np.ndarray, q: np.ndarray, tpr: np.ndarray, fpr: np.ndarray,
                   m1: np.ndarray, m0: np.ndarray, prior: np.ndarray, methods: Sequence[str] = ESTIMATORS
                   ) -> dict[str, np.ndarray]:
    """The estimators of ``methods`` for each row: ``counts``/``q`` ``[B, G]``, the rest ``[B]`` (or scalars)."""
    n = np.maximum(counts.sum(axis=1), 1)
    out: dict[str, np.ndarray] = {}
    if {"cc", "acc"} & set(methods):
        out["cc"] = (counts * called).sum(axis=1) / n
        out["acc"] = _adjust(out["cc"], tpr, fpr)
    if {"pcc", "pacc"} & set(methods):
        out["pcc"] = (counts * q).sum(axis=1) / n
        out["pacc"] = _adjust(out["pcc"], m1, m0)
    if "em" in methods:
        out["em"] = em_prior(q, counts, prior)
    return out


@dataclass(frozen=True)
class ShareEstimate:
    """The estimated share of atypical figures among ``n`` candidates, with its 95 % interval."""

    method: str
    n: int
    n_called: int
    share: float | None
    ci95: tuple[float, float] | None
    atypical_to_normal: float | None
    atypical_to_normal_ci95: tuple[float, float] | None
    corrected: bool

    @property
    def estimated_n_atypical(self) -> float | None:
        return None if self.share is None else self.share * self.n

    def to_json(self, prefix: str = "amf_ratio") -> dict[str, Any]:
        """The summary's keys for this estimate (rounded; intervals as lists)."""
        def r(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(float(v), 6)

        def ci(v: tuple[float, float] | None) -> list[float | None] | None:
            return None if v is None else [r(v[0]), r(v[1])]

        return {prefix: r(self.share), f"{prefix}_ci95": ci(self.ci95), f"{prefix}_method": self.method,
                "estimated_n_atypical": r(self.estimated_n_atypical),
                "atypical_to_normal_ratio": r(self.atypical_to_normal),
                "atypical_to_normal_ratio_ci95": ci(self.atypical_to_normal_ci95)}


def _odds(share: np.ndarray | float) -> np.ndarray:
    s = np.asarray(share, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(s < 1.0, s / np.maximum(1.0 - s, 1e-300), np.inf)


def estimate(hist: ScoreHistogram, reference: Reference | None, method: str | None = None, *,
             unlike: bool = False) -> ShareEstimate:
    """The share of atypical figures in ``hist`` by ``method`` (default: the reference's), with its interval.

    The interval's shift term is a site's (between folds or domains of the reference); ``unlike`` (a slide
    whose stain is outside the reference's range) uses the larger shift between single source slides.

    Without a reference (a bundle that records no calibration) the share of calls with its Wilson interval,
    labelled uncorrected.
    """
    n, k = hist.n, hist.n_called
    if reference is None:
        ci = wilson_interval(k, n)
        share = k / n if n else None
        return ShareEstimate(UNCORRECTED, n, k, share, ci,
                             None if share is None or k == n else k / (n - k),
                             None if ci is None else (float(_odds(ci[0])), float(_odds(ci[1]))), corrected=False)
    method = method or reference.estimator
    return estimate_all(hist, reference, methods=(method,), unlike=unlike)[method]


def estimate_all(hist: ScoreHistogram, reference: Reference, methods: Sequence[str] = ESTIMATORS, *,
                 unlike: bool = False) -> dict[str, ShareEstimate]:
    """Every estimator of ``methods`` on ``hist``, with their bootstrap intervals (one shared resampling)."""
    for m in methods:
        if m not in ESTIMATORS:
            raise ValueError(f"estimator {m!r} is not one of {', '.join(ESTIMATORS)}")
    n, k = hist.n, hist.n_called
    if n == 0:
        return {m: ShareEstimate(m, 0, 0, None, None, None, None, corrected=True) for m in methods}
    called = hist.called
    rates = reference.rates(hist.threshold)
    m1, m0 = reference.class_means
    point = _all_estimates(hist.counts[None, :], called[None, :], reference.calibration.apply(hist.mean_score)[None, :],
                           np.array([rates["tpr"]]), np.array([rates["fpr"]]), np.array([m1]), np.array([m0]),
                           np.array([reference.prior]), methods)
    rep = reference.replicates(hist.threshold, unlike=unlike)
    rng = np.random.default_rng([SEED, n, k])
    counts = rng.multinomial(n, hist.counts / n, size=len(rep.tpr))
    # ACC and PACC: the screened set's rates drawn around the reference's; PCC and EM (which use the whole
    # score distribution): the screened set's scores shifted.
    boot: dict[str, np.ndarray] = {}
    if "pacc" in methods:
        boot["pacc"] = _all_estimates(counts, called[None, :], rep.apply(hist.mean_score), rep.tpr_site,
                                      rep.fpr_site, rep.m1_site, rep.m0_site, rep.prior, ("pacc",))["pacc"]
    if "acc" in methods:
        # ACC's share of calls from its Jeffreys posterior, Beta(k + 1/2, n - k + 1/2), not from the resample
        # above: a resample of a slide whose candidates are all called, or none, would never vary (5 candidates,
        # none called: not a share of 0 for certain).
        boot["acc"] = _adjust(rng.beta(k + 0.5, n - k + 0.5, size=len(rep.tpr)), rep.tpr_site, rep.fpr_site)
    by_shift = [m for m in methods if m not in ("acc", "pacc")]
    if by_shift:
        z = logit(hist.mean_score)
        moved = z[None, :] + rep.shift[:, None] >= float(logit(hist.threshold))  # calls of the shifted candidates
        shifted = _all_estimates(counts, moved, rep.apply(hist.mean_score, shifted=True), rep.tpr, rep.fpr, rep.m1,
                                 rep.m0, rep.prior, by_shift)
        boot.update({m: shifted[m] for m in by_shift})
    out = {}
    for m in methods:
        share = float(point[m][0])
        lo, hi = (float(v) for v in np.quantile(boot[m], [0.025, 0.975]))
        lo, hi = min(lo, share), max(hi, share)
        if m in ("acc", "pacc") and lo == hi and share in (0.0, 1.0):
            # Every replicate clipped at the estimate's bound: no rates within a site's spread give these
            # candidates' calls. The slide's rates are then those of a slide unlike the reference (the spread
            # between single slides); when even those cannot give them, the calls do not bound the share at all
            # (the summary's ratio_warning). An interval of zero width would claim the opposite.
            wider = None if unlike else estimate_all(hist, reference, (m,), unlike=True)[m].ci95
            lo, hi = wider if wider is not None else (0.0, 1.0)
        out[m] = ShareEstimate(m, n, k, share, (lo, hi), float(_odds(share)), (float(_odds(lo)), float(_odds(hi))),
                               corrected=m != "cc")
    return out


# --------------------------------------------------------------------------------------- the bundle's block


def shift_sd(score: np.ndarray, labels: np.ndarray, units: np.ndarray) -> float:
    """The standard deviation, between ``units``, of a shift of all their figures' score logits: ``between_sd``
    of each figure's residual, its score logit less its class's mean logit."""
    z = logit(score)
    y = np.asarray(labels).astype(np.int64)
    return between_sd(z - np.where(y == 1, z[y == 1].mean(), z[y == 0].mean()), units)


def fit_reference(score: np.ndarray, labels: np.ndarray, groups: Sequence[Any] | np.ndarray, folds: np.ndarray, *,
                  domains: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
                  estimator: str = DEFAULT_ESTIMATOR) -> tuple[Reference, dict[str, float]]:
    """A reference from out-of-fold predictions: the calibration chosen by cross-validated log-loss over
    ``folds``. Also returns each method's cross-validated log-loss (and the uncalibrated scores')."""
    from .calibration import choose_calibration, log_loss

    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    cal, losses = choose_calibration(s, y, np.asarray(folds))
    losses = {**losses, "uncalibrated": log_loss(y, s)}
    doms = {k: np.asarray(v).astype(str) for k, v in (domains or {}).items()}
    site = max([shift_sd(s, y, np.asarray(folds))] + [shift_sd(s, y, v) for v in doms.values()])
    ref = Reference(s, y, codes.astype(np.int64), cal, estimator, doms, shift_sd=site,
                    slide_shift_sd=shift_sd(s, y, codes), folds=np.asarray(folds).astype(np.int64))
    return ref, losses


def bundle_block(reference: Reference, *, threshold: float, losses: Mapping[str, float],
                 stain: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """The ``quantification`` entry of ``bundle.json``: the reference, the rates at the bundle's threshold with
    their counts, each calibration's cross-validated log-loss, the interval method and the stain range."""
    return {
        "version": 1,
        "source": source,
        **reference.to_json(),
        "calibration_cv_log_loss": {k: round(float(v), 6) for k, v in losses.items()},
        "rates": reference.rates(threshold),
        "interval": {"method": "percentile bootstrap", "replicates": N_REPLICATES, "seed": SEED,
                     "resamples": ["source slides of the reference (calibration, rates and prior refitted)",
                                   "the slide's candidates (multinomial)",
                                   "a shift of the slide's score logits, N(0, shift_sd); slide_shift_sd when the "
                                   "slide's stain is outside the training range"]},
        **({"stain": dict(stain)} if stain else {}),
    }


_LOADED: dict[int, tuple[Mapping[str, Any], Reference]] = {}


def load_reference(block: Mapping[str, Any], *, source: str) -> Reference | None:
    """The bundle's reference (None for a bundle without a ``quantification`` entry); BundleError when damaged.

    The same block (a loaded bundle's, screening slide after slide) gives the same Reference object, so that
    its bootstrap replicates (``_replicates``, cached per object) are computed once, not once per slide."""
    from .errors import BundleError, one_line

    if not block:
        return None
    cached = _LOADED.get(id(block))
    if cached is not None and cached[0] is block:
        return cached[1]
    try:
        ref = Reference.from_json(block)
        if len(_LOADED) >= 8:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[id(block)] = (block, ref)  # the block is kept with it: its id cannot be reused meanwhile
        return ref
    except (KeyError, TypeError, ValueError) as exc:
        what = f"lacks {exc.args[0]!r}" if isinstance(exc, KeyError) else f"is damaged ({one_line(exc)})"
        raise BundleError(f"model bundle {source}: bundle.json's quantification entry {what}") from None
