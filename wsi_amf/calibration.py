"""Calibration of P(atypical): a monotone map from the ensemble's score to a probability that means what it says.

A model trained with class weights, focal loss or a few epochs gives scores whose scale is its own; the
per-slide estimators (``quantify.py``) need probabilities calibrated on labelled figures the model never
saw: the out-of-fold predictions of cross-validation. Three maps, the one with the lowest cross-validated
log-loss chosen (``choose_calibration``: fitted on the other folds, scored on each fold in turn):

- ``platt``: sigmoid(a * logit(s) + b) (Platt 1999), a logistic regression on the score's logit;
- ``temperature``: sigmoid(logit(s) / T) (Guo et al. 2017), Platt without the shift;
- ``isotonic``: a non-decreasing step function through the pooled-adjacent-violators fit (scikit-learn's
  ``IsotonicRegression``), linear between its knots.

Platt and temperature are fitted by Newton's method on weighted data, vectorised over many weightings at
once (the bootstrap in ``quantify.py`` refits them on a thousand resamples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

METHODS = ("platt", "temperature", "isotonic")
_EPS = 1e-6  # scores are clipped to [EPS, 1 - EPS] before their logit


def logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class Calibration:
    """A fitted map from the ensemble's score to a calibrated P(atypical)."""

    method: str  # one of METHODS
    params: Mapping[str, Any]  # platt: a, b; temperature: t; isotonic: x, y (knots, on the score scale)

    def apply(self, score: np.ndarray | float) -> np.ndarray:
        s = np.asarray(score, dtype=np.float64)
        if self.method == "platt":
            return sigmoid(self.params["a"] * logit(s) + self.params["b"])
        if self.method == "temperature":
            return sigmoid(logit(s) / self.params["t"])
        if self.method == "isotonic":
            return np.interp(s, self.params["x"], self.params["y"])
        raise ValueError(f"unknown calibration method {self.method!r}")

    def to_json(self) -> dict[str, Any]:
        params = {k: ([round(float(v), 7) for v in val] if isinstance(val, (list, tuple, np.ndarray)) else float(val))
                  for k, val in self.params.items()}
        return {"method": self.method, **params}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        method = str(data["method"])
        need = {"platt": ("a", "b"), "temperature": ("t",), "isotonic": ("x", "y")}.get(method)
        if need is None:
            raise ValueError(f"calibration method {method!r} is not one of {', '.join(METHODS)}")
        if method == "isotonic":
            x = np.asarray(data["x"], dtype=np.float64)
            y = np.asarray(data["y"], dtype=np.float64)
            if x.ndim != 1 or x.shape != y.shape or x.size < 1 or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) \
                    or not (np.all(np.isfinite(x)) and np.all((y >= 0) & (y <= 1))):
                raise ValueError("isotonic calibration needs non-decreasing knots x, y of equal length, y in [0, 1]")
            return cls(method, {"x": x, "y": y})
        params = {k: float(data[k]) for k in need}
        if not all(np.isfinite(v) for v in params.values()) or (method == "temperature" and params["t"] <= 0):
            raise ValueError(f"{method} calibration has a bad parameter ({params})")
        if method == "platt" and params["a"] <= 0:
            raise ValueError(f"platt calibration must increase with the score (a = {params['a']})")
        return cls(method, params)


def log_loss(y: np.ndarray, q: np.ndarray) -> float:
    """Mean negative log-likelihood of labels ``y`` (0/1) under probabilities ``q``."""
    qq = np.clip(np.asarray(q, dtype=np.float64), 1e-12, 1 - 1e-12)
    yy = np.asarray(y, dtype=np.float64)
    return float(-np.mean(yy * np.log(qq) + (1 - yy) * np.log1p(-qq)))


def fit_logistic(z: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, *, intercept: bool = True,
                 iterations: int = 50) -> np.ndarray:
    """Weighted maximum-likelihood ``(a, b)`` of P(y=1) = sigmoid(a z + b) for each row of ``weights``.

    ``weights`` is ``[B, N]`` (one weighting per row; None: all ones, B = 1); returns ``[B, 2]`` (``b`` = 0
    without ``intercept``). Newton's method with a step-halving guard; a tiny ridge keeps separable data finite.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones((1, z.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=np.float64))
    X = np.stack([z, np.ones_like(z)], axis=1) if intercept else z[:, None]  # [N, k]
    k = X.shape[1]
    theta = np.zeros((w.shape[0], k))
    theta[:, 0] = 1.0
    ridge = 1e-6 * np.eye(k)

    def nll(th: np.ndarray) -> np.ndarray:
        eta = th @ X.T  # [B, N]
        return np.sum(w * (np.logaddexp(0.0, eta) - y * eta), axis=1) + 0.5e-6 * np.sum(th * th, axis=1)

    current = nll(theta)
    for _ in range(iterations):
        mu = sigmoid(theta @ X.T)
        grad = (w * (mu - y)) @ X + 1e-6 * theta  # [B, k]
        h = np.einsum("bn,ni,nj->bij", w * mu * (1 - mu), X, X) + ridge
        step = np.linalg.solve(h, grad[:, :, None])[:, :, 0]
        scale = np.ones((w.shape[0], 1))
        for _ in range(20):  # halve the step of any row whose likelihood would get worse
            trial = theta - scale * step
            new = nll(trial)
            worse = new > current + 1e-12
            if not worse.any():
                break
            scale[worse] *= 0.5
        theta, current = trial, np.minimum(new, current)
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    return np.c_[theta, np.zeros(len(theta))] if not intercept else theta


def fit_calibration(method: str, score: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> Calibration:
    """Fit one calibration map to scores and 0/1 labels (optionally weighted)."""
    s = np.asarray(score, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if method in ("platt", "temperature"):
        a, b = fit_logistic(logit(s), yy, None if weights is None else weights[None, :], intercept=method == "platt")[0]
        if method == "platt":
            return Calibration("platt", {"a": float(max(a, 1e-6)), "b": float(b)})
        return Calibration("temperature", {"t": float(1.0 / max(a, 1e-6))})
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
        iso.fit(s, yy, sample_weight=weights)
        return Calibration("isotonic", {"x": np.asarray(iso.X_thresholds_, dtype=np.float64),
                                        "y": np.asarray(iso.y_thresholds_, dtype=np.float64)})
    raise ValueError(f"unknown calibration method {method!r} (expected one of {', '.join(METHODS)})")


def choose_calibration(score: np.ndarray, y: np.ndarray, folds: np.ndarray,
                       methods: Sequence[str] = METHODS) -> tuple[Calibration, dict[str, float]]:
    """The method with the lowest cross-validated log-loss over ``folds`` (fit on the others, score on each),
    refitted on everything; and each method's cross-validated log-loss."""
    s = np.asarray(score, dtype=np.float64)
    yy = np.asarray(y).astype(np.int64)
    f = np.asarray(folds)
    losses: dict[str, float] = {}
    for method in methods:
        q = np.empty(s.size)
        for k in np.unique(f):
            held = f == k
            train = ~held
            if len(np.unique(yy[train])) < 2:
                q[held] = yy[train].mean()
                continue
            q[held] = fit_calibration(method, s[train], yy[train]).apply(s[held])
        losses[method] = log_loss(yy, q)
    best = min(methods, key=lambda m: (losses[m], methods.index(m)))
    return fit_calibration(best, s, yy), losses
