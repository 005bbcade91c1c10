"""Screen one slide: slide -> points -> patch cache -> model ensemble -> scores -> outputs.

A reader thread walks the cache chunk by chunk (points are appended to the cache in tile order, so this is
also the slide's tile order): chunks already filled come from the cache, missing patches are read from the
slide and written to the cache (by a thread pool while the model waits for patches, by one low-priority
thread while it is busy: :class:`~wsi_amf.slide.PatchReader`). Chunks travel through a bounded queue to the
main thread, which runs the ensemble in batches. Memory stays bounded whatever the number of candidates.
"""

from __future__ import annotations

import copy
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .bundle import ModelBundle
from .cache import CHUNK, DEFAULT_MAX_GB, PatchCache, open_cache
from .ensemble import Ensemble, open_ensemble
from .errors import OptionError, PointsError
from .exports import check_exports
from .outputs import write_outputs
from .points import Points, PointsOptions, SlideContext
from .quantify import Reference, ScoreHistogram, ShareEstimate, estimate, load_reference
from .roi import Roi, read_roi
from .slide import PatchReader, Slide, check_mpp_option
from .stain import BACKGROUND_TISSUE, StainRange, patch_stats, slide_stain

log = logging.getLogger(__name__)
_DONE = object()


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
    timings: dict[str, float]  # seconds per stage (see :func:`screen`)
    outputs: dict[str, Path] = field(default_factory=dict)
    cache_mode: str = "rw"  # "rw", "r" (read-only: nothing kept) or "none" (--no-cache)
    roi: Roi | None = None  # the region of interest, clipped to the slide
    output_stem: str | None = None  # names the output files; None: the slide's file stem
    reference: Reference | None = None  # the bundle's calibration and out-of-fold figures (None: uncorrected ratios)
    stain: np.ndarray | None = None  # [n, 2] mean H and E of each classified patch's centre (NaN otherwise)
    stain_range: StainRange | None = None  # the training slides' range of median H and E

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
        outside = self.stain_range.outside(self.slide_stain)
        if not outside:
            return None
        where = "; ".join(f"{k} {self.slide_stain[k]:.3f} outside [{self.stain_range.low[k]:.3f}, "
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
        from .outputs import summary_dict

        return summary_dict(self)

    def summary(self) -> dict[str, Any]:
        return copy.deepcopy(self._summary)


def screen(
    slide: str | Path,
    points: Points | str | Path,
    *,
    points_options: PointsOptions | None = None,
    model: Ensemble | ModelBundle | str | Path | None = None,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    cache_max_gb: float | None = DEFAULT_MAX_GB,
    mpp: float | None = None,
    roi: Roi | str | Path | None = None,
    export: Sequence[str] = (),
    device: str = "auto",
    engine: str = "auto",
    batch_size: int = 64,
    tta: bool = False,
    threshold: float | None = None,
    workers: int = 4,
    progress: bool = True,
    report: bool = False,
    stem: str | None = None,
) -> ScreenResult:
    """Classify every candidate of ``points`` on ``slide`` as a normal or atypical mitotic figure.

    ``model`` is a loaded :class:`Ensemble` (reused across slides), a bundle, a bundle directory, or None for
    the built-in default. ``points`` is read (after the slide is opened, so formats in millimetres can use
    its resolution) with ``points_options`` when it is a path. ``roi`` (a QuPath annotation GeoJSON file or a
    :class:`Roi`, level-0 pixels) keeps only the candidates inside it (the others get status ``outside_roi``)
    and adds the region's area and densities to the summary. With ``out``, the GeoJSON, CSV table, summary
    and the ``export`` files (``gc-json``) are written there atomically, named ``<stem>.*`` (default: the
    slide's file stem); with ``report`` too, the HTML slide report ``<stem>.report.html``
    (``wsi_amf.report.slide_report``). Every input is checked before the model loads and before the patch
    cache is touched.

    ``timings`` of the result (seconds): ``points`` (reading them), ``prepare`` (the model, the cache's index),
    ``classify`` (wall time of reading patches and the model, which overlap), ``read`` and ``model`` (the time
    each of the two spent), ``total`` (up to here); with ``out`` also ``summary`` (hotspot and estimates
    included), one per output file (rendering it), ``write`` (writing the set) and ``report``.
    """
    export = check_exports(export)
    check_options(batch_size=batch_size, threshold=threshold, mpp=mpp)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise OptionError(f"--out {out}: is a file, expected a directory")
    if report and out is None:
        raise OptionError("--report: needs an output directory (out)")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with Slide(slide, mpp=mpp) as sl:
        pts, status, order, region = _candidates(sl, points, points_options, roi)
        timings["points"] = time.perf_counter() - t0
        ensemble = open_ensemble(model, device=device, engine=engine, tta=tta)
        cfg = ensemble.bundle.config
        reference, stain_range = _quantification(ensemble.bundle)
        thr = cfg.threshold if threshold is None else float(threshold)
        with open_cache(cache_dir, sl.path, sl.identity(), size=cfg.patch_size, mpp=cfg.mpp, enabled=cache,
                        max_gb=cache_max_gb) as pc:
            cache_idx = np.full(len(pts), -1, dtype=np.int64)
            cache_idx[order] = pc.locate(pts.xy[order])
            _check_space(pc, np.unique(cache_idx[order]))
            timings["prepare"] = time.perf_counter() - t0 - timings["points"]
            t_classify = time.perf_counter()
            probs, stains, stats = _classify(sl, pc, np.unique(cache_idx[order]), ensemble, batch_size=batch_size,
                                             workers=workers, progress=progress)
            timings["classify"] = time.perf_counter() - t_classify
            n_read, n_cached = stats["read"], stats["cached"]
            cache_path, cache_mode = pc.path, pc.mode
        p = np.full(len(pts), np.nan)
        p[order] = probs[cache_idx[order]] if len(order) else []
        st = np.full((len(pts), 3), np.nan)
        st[order] = stains[cache_idx[order]] if len(order) else np.empty((0, 3))
        glass = (status == "ok") & (st[:, 2] < BACKGROUND_TISSUE)
        if glass.any():
            status[glass] = "background"
            log.warning("slide %s: %d of %d candidates lie on glass (their patch centre is less than %d%% tissue): "
                        "status background, outside the counts", sl.path, int(glass.sum()), len(pts),
                        round(100 * BACKGROUND_TISSUE))
        timings["read"], timings["model"] = stats["t_read"], stats["t_model"]
        timings["total"] = time.perf_counter() - t0
        info = ensemble.info
        result = ScreenResult(
            slide_path=sl.path, slide_mpp=sl.mpp, mpp_source=sl.mpp_source, dimensions=sl.dimensions,
            points=pts, status=status, p_atypical=p, threshold=thr,
            model={**ensemble.bundle.describe(), "bundle_threshold": cfg.threshold},
            engine={"device": info.device, "engine": info.engine, "tta": info.tta, "autocast": info.autocast_dtype,
                    "batch_size": batch_size},
            cache_path=cache_path, cache_mode=cache_mode, n_read=n_read, n_cached=n_cached, timings=timings, roi=region,
            output_stem=stem, reference=reference, stain=st[:, :2], stain_range=stain_range,
        )
    if out is not None:
        outputs = write_outputs(result, out, export=export, timings=timings)
        if report:
            from .report import slide_report

            t_report = time.perf_counter()
            outputs["report"] = slide_report(outputs["summary"])
            timings["report"] = time.perf_counter() - t_report
        result.outputs.update(outputs)  # the same result: its summary is not computed again
    return result


_warned_uncorrected: set[str] = set()


def _quantification(bundle: ModelBundle) -> tuple[Reference | None, StainRange | None]:
    """The bundle's reference figures and stain range; a bundle without them warns once per process."""
    block = bundle.config.quantification
    reference = load_reference(block, source=str(bundle.path))
    if reference is None:
        if str(bundle.path) not in _warned_uncorrected:
            _warned_uncorrected.add(str(bundle.path))
            log.warning("model bundle %s records no calibration (trained before wsi-amf 0.2?): AMF ratios are the "
                        "uncorrected share of calls; add it with `wsi-amf calibrate %s TRAINING_DATA`", bundle.path, bundle.path)
        return None, None
    try:
        stain_range = StainRange.from_json(block["stain"]) if block.get("stain") else None
    except (KeyError, TypeError, ValueError) as exc:
        from .errors import BundleError

        raise BundleError(f"model bundle {bundle.path}: bundle.json's quantification.stain is damaged ({exc})") from None
    return reference, stain_range


def _check_space(cache: PatchCache, needed: np.ndarray) -> None:
    """Warn when the patches this run will add to the cache need more space than its disk has free."""
    if not cache.keeps:
        return
    n_missing = int((~cache.filled[needed]).sum()) if len(needed) else 0
    if n_missing == 0:
        return
    need = cache.missing_bytes(n_missing)
    try:
        free = shutil.disk_usage(cache.slide_dir).free
    except OSError:
        return
    if need > free:
        log.warning("patch cache %s: the %d patches to read need about %.1f GB, the disk has %.1f GB free; pass "
                    "--cache DIR on another disk or --no-cache", cache.slide_dir, n_missing, need / 1e9, free / 1e9)


def check_options(*, batch_size: int = 64, threshold: float | None = None, mpp: float | None = None) -> None:
    """OptionError for a screening option no slide can use (checked once for a whole batch)."""
    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size}: must be at least 1")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise OptionError(f"--threshold {threshold}: must be between 0 and 1")
    check_mpp_option(mpp)


def fill_cache(
    slide: str | Path,
    points: Points | str | Path,
    *,
    patch_size: int,
    patch_mpp: float,
    points_options: PointsOptions | None = None,
    cache_dir: str | Path | None = None,
    cache_max_gb: float | None = DEFAULT_MAX_GB,
    mpp: float | None = None,
    roi: Roi | str | Path | None = None,
    workers: int = 4,
    stop: threading.Event | None = None,
    busy: Callable[[], bool] | None = None,
) -> int:
    """Read the patches of ``points`` that the cache lacks into the cache, without a model; the number read.

    The first half of :func:`screen` (same candidates, same cache entries): ``batch`` runs it for the next
    slide while the current one is classified, so that ``screen`` then finds every patch cached. Setting
    ``stop`` ends it after the current chunk. While ``busy()`` is true (a model is running beside it) it reads
    at low priority (:class:`~wsi_amf.slide.PatchReader`).
    """
    with Slide(slide, mpp=mpp) as sl:
        pts, _, order, _ = _candidates(sl, points, points_options, roi)
        with open_cache(cache_dir, sl.path, sl.identity(), size=patch_size, mpp=patch_mpp, max_gb=cache_max_gb) as cache:
            if not cache.keeps:  # a read-only cache: nothing to fill
                return 0
            needed = np.unique(cache.locate(pts.xy[order]))
            missing = needed[~cache.filled[needed]]
            stats = {"read": 0, "cached": 0, "t_read": 0.0}
            with PatchReader(sl, workers=workers, busy=busy) as reader:
                for _ in _blocks(reader, cache, missing, stats, None):
                    if stop is not None and stop.is_set():
                        break
    return stats["read"]


def _candidates(sl: Slide, points: Points | str | Path, points_options: PointsOptions | None,
                roi: Roi | str | Path | None) -> tuple[Points, np.ndarray, np.ndarray, Roi | None]:
    """The slide's points, a status per point, the indices of those to classify in tile order, and the region
    of interest clipped to the slide (None without ``roi``)."""
    if isinstance(points, Points):
        pts = points
    else:
        context = SlideContext(name=sl.path.name, mpp=sl.mpp, dimensions=sl.dimensions)
        pts = (points_options or PointsOptions()).read(points, slide=context)
    inside = sl.contains(pts.xy) if len(pts) else np.zeros(0, dtype=bool)
    _check_points_on_slide(pts, sl, inside)
    region = None
    if roi is not None:
        region = (roi if isinstance(roi, Roi) else read_roi(roi)).on_slide(*sl.dimensions, sl.mpp)
    status = np.where(inside, "ok", "outside_slide").astype(object)
    if (~inside).any():
        log.warning("slide %s: %d of %d candidates lie outside the slide and are skipped", sl.path, int((~inside).sum()), len(pts))
    if region is not None:
        status[inside & ~region.contains(pts.xy)] = "outside_roi"
        inside = status == "ok"
    ins = np.flatnonzero(inside)
    return pts, status, ins[sl.tile_order(pts.xy[ins])], region


def _check_points_on_slide(pts: Points, slide: Slide, inside: np.ndarray) -> None:
    """PointsError when the candidates cannot belong to the slide: all outside it (``inside``: another slide's
    file, another unit; negative coordinates count as outside), or all within its size in millimetres (a file
    in millimetres read as pixels)."""
    if len(pts) == 0:
        return
    w, h = slide.dimensions
    (x_min, y_min), (x_max, y_max) = pts.xy.min(axis=0).tolist(), pts.xy.max(axis=0).tolist()
    if not inside.any():
        raise PointsError(
            f"points file {pts.source}: all {len(pts)} candidates lie outside the slide ({w} x {h} pixels; "
            f"candidates at x {x_min:g} to {x_max:g}, y {y_min:g} to {y_max:g}); are they another slide's, or in "
            "another unit?"
        )
    w_mm, h_mm = w * slide.mpp / 1000.0, h * slide.mpp / 1000.0
    if x_max <= w_mm and y_max <= h_mm:
        raise PointsError(
            f"points file {pts.source}: every coordinate lies within {x_max:g} x {y_max:g}, inside the slide's size in "
            f"millimetres ({w_mm:g} x {h_mm:g}); coordinates must be level-0 pixels, not millimetres"
        )


def _classify(
    slide: Slide, cache: PatchCache, needed: np.ndarray, ensemble: Ensemble, *, batch_size: int, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, dict]:
    """P(atypical) and the patch stain statistics (``stain.patch_stats``) for every needed cache index (arrays
    indexed by cache index); counts read / cached and the seconds spent reading / in the model."""
    from tqdm.auto import tqdm

    probs = np.full(len(cache), np.nan)
    stains = np.full((len(cache), 3), np.nan)  # H, E, tissue share
    stats = {"read": 0, "cached": 0, "t_read": 0.0, "t_model": 0.0}
    if len(needed) == 0:
        return probs, stains, stats
    n_missing = int((~cache.filled[needed]).sum())
    q: queue.Queue = queue.Queue(maxsize=max(2, 2 * batch_size // CHUNK + 1))
    stop = threading.Event()
    bar_read = tqdm(total=n_missing, desc="reading patches", unit="patch", disable=not progress or n_missing == 0, leave=False)
    bar_cls = tqdm(total=len(needed), desc="classifying", unit="patch", disable=not progress)

    def produce() -> None:
        try:
            # Chunks waiting in the queue mean the model is busy: read then at low priority (PatchReader).
            with PatchReader(slide, workers=workers, busy=lambda: q.qsize() > 0) as patch_reader:
                for idx, patches in _blocks(patch_reader, cache, needed, stats, bar_read):
                    if stop.is_set():
                        return
                    q.put((idx, patches))
            q.put(_DONE)
        except BaseException as exc:  # surfaced in the main thread
            q.put(exc)

    reader = threading.Thread(target=produce, name="wsi-amf-reader", daemon=True)
    reader.start()
    pend_idx: list[np.ndarray] = []
    pend: list[np.ndarray] = []
    n_pend = 0
    try:
        while True:
            item = q.get()
            if item is _DONE or isinstance(item, BaseException):
                if isinstance(item, BaseException):
                    raise item
                break
            idx, patches = item
            pend_idx.append(idx)
            pend.append(patches)
            n_pend += len(idx)
            while n_pend >= batch_size:
                n_pend = _run_batch(ensemble, pend_idx, pend, batch_size, probs, stains, bar_cls, stats)
        while n_pend:
            n_pend = _run_batch(ensemble, pend_idx, pend, batch_size, probs, stains, bar_cls, stats)
    finally:
        stop.set()
        while reader.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                reader.join(0.05)
        bar_read.close()
        bar_cls.close()
    return probs, stains, stats


def _run_batch(ensemble: Ensemble, pend_idx: list, pend: list, batch_size: int, probs: np.ndarray,  # noqa: ANN001
               stains: np.ndarray, bar, stats: dict) -> int:  # noqa: ANN001
    idx = np.concatenate(pend_idx)
    patches = np.concatenate(pend) if len(pend) > 1 else pend[0]
    take = min(batch_size, len(idx))
    t = time.perf_counter()
    probs[idx[:take]] = ensemble.predict(patches[:take])
    stains[idx[:take]] = patch_stats(patches[:take])
    stats["t_model"] += time.perf_counter() - t
    bar.update(take)
    pend_idx.clear()
    pend.clear()
    if take < len(idx):
        pend_idx.append(idx[take:])
        pend.append(patches[take:])
    return len(idx) - take


def _blocks(
    reader: PatchReader, cache: PatchCache, needed: np.ndarray, stats: dict, bar  # noqa: ANN001
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (cache indices, patches) chunk by chunk; missing patches are read, written to the cache."""
    needed = np.unique(needed)  # sorted: each chunk's share is one slice
    blocks = np.unique(needed // CHUNK)
    bounds = np.searchsorted(needed, np.r_[blocks, blocks[-1:] + 1] * CHUNK) if len(blocks) else []
    for k, b in enumerate(blocks):
        start, stop = int(b) * CHUNK, min(len(cache), (int(b) + 1) * CHUNK)
        want = needed[bounds[k]:bounds[k + 1]]
        filled = cache.filled[start:stop]
        patches = cache.read(start, stop) if filled.any() else None
        filled = cache.filled[start:stop]  # a chunk that failed to decode is now marked unfilled
        if filled.all() and patches is not None:
            stats["cached"] += len(want)
            yield want, patches[want - start]
            continue
        t = time.perf_counter()
        if patches is None:
            patches = np.empty((stop - start, cache.size, cache.size, 3), dtype=np.uint8)
        missing = np.flatnonzero(~filled)
        patches[missing] = reader.read(cache.coords[start + missing], size=cache.size, target_mpp=cache.mpp)
        cache.write(start, patches)
        stats["t_read"] += time.perf_counter() - t
        newly = int(np.isin(start + missing, want).sum())
        stats["read"] += newly
        stats["cached"] += len(want) - newly
        if bar is not None:
            bar.update(newly)
        yield want, patches[want - start]
