"""The result of screening one slide: :class:`ScreenResult`, built once by ``screen`` and not changed afterwards.

Everything the outputs show is derived here from the per-candidate arrays, once: the calls, the calibrated
probabilities, the stain check, the estimated share of atypical figures and the summary (hotspot included).
``outputs`` renders it into files; ``exports`` into other formats.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .hotspot import find_hotspot
from .points import Points
from .quantify import Reference, ScoreHistogram, ShareEstimate, estimate
from .roi import BREAST_COUNT_AREA_MM2, Roi, roi_summary
from .stain import StainRange, slide_stain
from .stats import wilson_interval


@dataclass(frozen=True)
class ScreenResult:
    """Everything a screening produced; ``outputs`` names the files written (empty without ``out``)."""

    slide_path: Path
    slide_mpp: float
    mpp_source: str
    dimensions: tuple[int, int]
    points: Points
    status: np.ndarray  # str per candidate: "ok" | "outside_slide" | "outside_roi" | "background"
    p_atypical: np.ndarray  # the ensemble's score per candidate (uncalibrated; calls are score >= threshold), NaN when skipped
    threshold: float
    model: dict[str, Any]
    engine: dict[str, Any]
    cache_path: Path
    n_read: int
    n_cached: int
    timings: Mapping[str, float]  # seconds per stage (see :func:`wsi_amf.screen.screen`)
    outputs: Mapping[str, Path] = field(default_factory=dict)  # kind -> file written
    cache_mode: str = "rw"  # "rw", "r" (read-only: nothing kept) or "none" (--no-cache)
    roi: Roi | None = None  # the region of interest, clipped to the slide
    output_stem: str | None = None  # names the output files; None: the slide's file stem
    reference: Reference | None = None  # the bundle's calibration and out-of-fold figures (None: uncorrected ratios)
    stain: np.ndarray | None = None  # [n, 2] mean H and E of each classified patch's centre (NaN otherwise)
    stain_range: StainRange | None = None  # the training slides' range of median H and E

    def __post_init__(self) -> None:
        for array in (self.status, self.p_atypical, self.stain):  # not changed after the result is built
            if isinstance(array, np.ndarray):
                array.flags.writeable = False

    @property
    def stem(self) -> str:
        return self.output_stem or self.slide_path.stem

    # Arrays computed once: the outputs index them per candidate.
    @cached_property
    def classified(self) -> np.ndarray:
        return self.status == "ok"

    @cached_property
    def atypical(self) -> np.ndarray:
        return self.classified & (np.nan_to_num(self.p_atypical, nan=-1.0) >= self.threshold)

    @cached_property
    def p_calibrated(self) -> np.ndarray:
        """Calibrated P(atypical) per candidate (the score itself for a bundle without calibration)."""
        return self.p_atypical.copy() if self.reference is None else self.reference.calibration.apply(self.p_atypical)

    @cached_property
    def slide_stain(self) -> dict[str, float] | None:
        return None if self.stain is None else slide_stain(self.stain[self.classified])

    @cached_property
    def domain_warning(self) -> str | None:
        """Why the slide looks unlike the training data (None when it does not, or nothing tells)."""
        if self.stain_range is None:
            return None
        stain = self.slide_stain
        outside = self.stain_range.outside(stain)
        if not outside or stain is None:
            return None
        where = "; ".join(f"{k} {stain[k]:.3f} outside [{self.stain_range.low[k]:.3f}, "
                          f"{self.stain_range.high[k]:.3f}]" for k in outside)
        return (f"the slide's stain is outside the range of the {self.stain_range.n_slides} training slides ({where}): "
                f"calls and ratios may be off; the ratio's interval allows for a slide-level shift")

    def histogram(self, members: np.ndarray | None = None) -> ScoreHistogram:
        """The scores of the classified candidates (or of those at ``members``, indices into them)."""
        scores = self.p_atypical[self.classified]
        return ScoreHistogram.of(scores if members is None else scores[members], self.threshold)

    def estimate(self, members: np.ndarray | None = None) -> ShareEstimate:
        """The estimated share of atypical figures among the classified candidates (or ``members`` of them)."""
        if members is None:
            return self._slide_estimate
        return estimate(self.histogram(members), self.reference, unlike=self.domain_warning is not None)

    @cached_property
    def _slide_estimate(self) -> ShareEstimate:  # the summary, the CLI and amf_ratio all ask for it
        return self.estimate(np.arange(self.n_classified))

    @property
    def n_classified(self) -> int:
        return int(self.classified.sum())

    @property
    def n_atypical(self) -> int:
        """Candidates *called* atypical (score >= threshold): the GeoJSON's atypical detections."""
        return int(self.atypical.sum())

    @property
    def n_normal(self) -> int:
        return self.n_classified - self.n_atypical

    @property
    def amf_ratio(self) -> float | None:
        """The estimated share of atypical figures among the classified candidates (see :meth:`estimate`)."""
        return self.estimate().share

    @cached_property
    def _summary(self) -> dict[str, Any]:  # computed once: the hotspot search grows with the candidates
        return _summary(self)

    def summary(self, timings: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The summary JSON's content (a copy), its ``timings_s`` from ``timings`` (default: the result's)."""
        summary = copy.deepcopy(self._summary)
        summary["timings_s"] = {k: round(v, 3) for k, v in (self.timings if timings is None else timings).items()}
        return summary

    def with_outputs(self, outputs: Mapping[str, Path], timings: Mapping[str, float]) -> ScreenResult:
        """This result with the files written and the final timings; what was derived is kept (it depends on
        neither)."""
        new = replace(self, outputs=dict(outputs), timings=dict(timings))
        for name in _DERIVED:
            if name in self.__dict__:
                new.__dict__[name] = self.__dict__[name]
        return new


def _summary(result: ScreenResult) -> dict[str, Any]:
    """The summary but its timings (``ScreenResult.summary`` adds them, in this place of the order)."""
    n_amf, n_nmf, n_cls = result.n_atypical, result.n_normal, result.n_classified
    called_ci = wilson_interval(n_amf, n_cls)
    ok = result.classified
    est = result.estimate()
    hotspot = find_hotspot(result.points.xy[ok], result.atypical[ok], mpp=result.slide_mpp, dimensions=result.dimensions)
    hotspot_json = None
    if hotspot is not None:
        hotspot_json = {**hotspot.to_json(), **_estimate_keys(result.estimate(hotspot.members), "n_amf")}
    ref = result.reference
    summary = {
        "slide": str(result.slide_path),
        "points": str(result.points.source) if result.points.source else None,
        "mpp": result.slide_mpp,
        "mpp_source": result.mpp_source,
        "patch_mpp": result.model["mpp"],
        "n_candidates": len(result.points),
        "n_classified": n_cls,
        "n_skipped": len(result.points) - n_cls,
        "n_skipped_outside_slide": int(np.sum(result.status == "outside_slide")),
        "n_skipped_outside_roi": int(np.sum(result.status == "outside_roi")),
        "n_skipped_background": int(np.sum(result.status == "background")),
        "background_px": [[float(v) for v in xy] for xy in result.points.xy[result.status == "background"][:1000]],
        "n_duplicates_merged": result.points.n_duplicates,
        "n_filtered": result.points.n_filtered,
        "n_atypical": n_amf,
        "n_normal": n_nmf,
        "called_amf_ratio": (n_amf / n_cls) if n_cls else None,
        "called_amf_ratio_ci95": list(called_ci) if called_ci else None,
        "called_atypical_to_normal_ratio": (n_amf / n_nmf) if n_nmf else None,
        **_estimate_keys(est, "n_atypical"),
        "ratio_corrected": est.corrected,
        "calibration": ref.calibration.method if ref is not None else None,
        "stain": {"slide": result.slide_stain,
                  "training_range": result.stain_range.to_json() if result.stain_range is not None else None},
        "domain_warning": result.domain_warning,
        "ratio_warning": _ratio_warning(result),
        "hotspot": hotspot_json,
        "threshold": result.threshold,
        "threshold_calibrated": float(ref.calibration.apply(result.threshold)) if ref is not None else result.threshold,
        "tta": result.engine["tta"],
        "model": result.model,
        "engine": result.engine,
        "cache": {"path": str(result.cache_path), "mode": result.cache_mode, "patches_read_from_slide": result.n_read,
                  "patches_from_cache": result.n_cached},
        "timings_s": None,
        "roi": None,
        "score_histogram": result.histogram().to_json(),
    }
    if result.roi:
        summary["roi"] = {**roi_summary(result.roi, mpp=result.slide_mpp, n_mf=n_cls, n_amf=n_amf),
                          **_roi_estimate(est, result.roi.area_mm2(result.slide_mpp))}
    return summary


def _ratio_warning(result: ScreenResult) -> str | None:
    """Why the share of calls cannot come from figures like the reference's: its Wilson interval lies wholly
    above the reference's TPR or below its FPR (the estimate is then clipped to 1 or 0)."""
    ref, n, k = result.reference, result.n_classified, result.n_atypical
    if ref is None or n == 0:
        return None
    rates = ref.rates(result.threshold)
    lo, hi = wilson_interval(k, n) or (0.0, 1.0)
    if lo > rates["tpr"]:
        side = f"above the reference's true-positive rate {rates['tpr']:.3f}, the most an all-atypical slide would give"
    elif hi < rates["fpr"]:
        side = f"below the reference's false-positive rate {rates['fpr']:.3f}, the least an all-normal slide would give"
    else:
        return None
    return (f"the share of calls {k / n:.3f} ({k} of {n}) is {side}: these candidates are unlike the training figures "
            f"(not mitotic figures? another domain?) and the estimated ratio, clipped, is not to be trusted")


def _estimate_keys(est: ShareEstimate, count_key: str) -> dict[str, Any]:
    """``amf_ratio`` (+ interval, method), ``estimated_<count_key>`` and the atypical:normal ratio (+ interval)."""
    keys = est.to_json()
    keys[f"estimated_{count_key}"] = keys.pop("estimated_n_atypical")
    return keys


def _roi_estimate(est: ShareEstimate, area_mm2: float) -> dict[str, Any]:
    n = est.estimated_n_atypical
    ci = est.ci95
    per2 = BREAST_COUNT_AREA_MM2 / area_mm2
    return {**_estimate_keys(est, "n_amf"),
            "estimated_amf_per_2mm2": None if n is None else n * per2,
            "estimated_amf_per_2mm2_ci95": None if ci is None else [ci[0] * est.n * per2, ci[1] * est.n * per2]}


_DERIVED = tuple(name for name, value in vars(ScreenResult).items() if isinstance(value, cached_property))
