"""Screen one slide: slide -> points -> patch cache -> model ensemble -> scores -> outputs.

``screen`` checks every input before the model loads and the cache opens, finds the candidates to classify
(on the slide, inside the region of interest, in tile order), scores their patches (``stream``: a reader
thread and a batcher, memory bounded whatever the number of candidates), marks those on glass, and builds
the :class:`~wsi_amf.results.ScreenResult`, which ``outputs`` writes. ``fill_cache`` is its first half without
a model (a batch prefetches the next slide with it).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .bundle import ModelBundle
from .cache import PatchCache, open_cache
from .ensemble import Ensemble, open_ensemble
from .errors import BundleError, OptionError, PointsError, SlideError
from .options import ScreenOptions
from .outputs import write_outputs
from .points import Points, PointsOptions, SlideContext
from .quantify import Reference, load_reference
from .results import ScreenResult
from .roi import Roi, read_roi
from .slide import PatchReader, Slide
from .stain import BACKGROUND_TISSUE, StainRange
from .stream import ReadStats, Scores, cache_chunks, score_patches

log = logging.getLogger(__name__)


def screen(
    slide: str | Path,
    points: Points | str | Path,
    options: ScreenOptions | None = None,
    *,
    model: Ensemble | ModelBundle | str | Path | None = None,
    out: str | Path | None = None,
    stem: str | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> ScreenResult:
    """Classify every candidate of ``points`` on ``slide`` as a normal or atypical mitotic figure.

    ``options`` (:class:`~wsi_amf.options.ScreenOptions`, default: the defaults) say how. ``model`` is a loaded
    :class:`Ensemble` (reused across slides), a bundle, a bundle directory, or None for the built-in default.
    ``points`` is read (after the slide is opened, so formats in millimetres can use its resolution) with
    ``options.points`` when it is a path. ``options.roi`` keeps only the candidates inside it (the others get
    status ``outside_roi``) and adds the region's area and densities to the summary. With ``out``, the GeoJSON,
    CSV table, summary and the ``options.export`` files are written there atomically, named ``<stem>.*``
    (default: the slide's file stem); with ``options.report`` too, the HTML slide report ``<stem>.report.html``
    (``wsi_amf.report.slide_report``). Every input is checked before the model loads and before the patch
    cache is touched. ``stop``, once set, abandons the slide (SlideError) before anything is written: a batch
    whose slide ran past its time limit sets it.

    ``timings`` of the result (seconds): ``points`` (reading them), ``prepare`` (the model, the cache's index),
    ``classify`` (wall time of reading patches and the model, which overlap), ``read`` and ``model`` (the time
    each of the two spent), ``total`` (up to here); with ``out`` also ``summary`` (hotspot and estimates
    included), one per output file (rendering it), ``write`` (writing the set) and ``report``.
    """
    opts = options or ScreenOptions()
    _check_out(out, opts)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with Slide(slide, mpp=opts.mpp) as sl:
        pts, status, order, region = _candidates(sl, points, opts.points, opts.roi)
        timings["points"] = time.perf_counter() - t0
        ensemble = open_ensemble(model, device=opts.device, engine=opts.engine, tta=opts.tta)
        cfg = ensemble.bundle.config
        reference, stain_range = _quantification(ensemble.bundle)
        scored = _score(sl, pts, order, ensemble, opts, progress=progress, timings=timings, t0=t0)
        _mark_glass(sl, status, scored.stain)
        timings["total"] = time.perf_counter() - t0
        info = ensemble.info
        result = ScreenResult(
            slide_path=sl.path, slide_mpp=sl.mpp, mpp_source=sl.mpp_source, dimensions=sl.dimensions,
            points=pts, status=status, p_atypical=scored.p,
            threshold=cfg.threshold if opts.threshold is None else float(opts.threshold),
            model={**ensemble.bundle.describe(), "bundle_threshold": cfg.threshold},
            engine={"device": info.device, "engine": info.engine, "tta": info.tta, "autocast": info.autocast_dtype,
                    "batch_size": opts.batch_size},
            cache_path=scored.cache_path, cache_mode=scored.cache_mode, n_read=scored.reads.read,
            n_cached=scored.reads.cached, timings=dict(timings), roi=region, output_stem=stem, reference=reference,
            stain=scored.stain[:, :2], stain_range=stain_range,
        )
    if stop is not None and stop.is_set():
        raise SlideError(f"slide {sl.path}: abandoned (stop was set); nothing written")
    return result if out is None else _write(result, out, opts, timings)


@dataclass(frozen=True)
class _Scored:
    """Per candidate: the ensemble's score and the patch stain statistics (NaN where not classified); how the
    cache served them."""

    p: np.ndarray
    stain: np.ndarray
    reads: ReadStats
    cache_path: Path
    cache_mode: str


def _score(sl: Slide, pts: Points, order: np.ndarray, ensemble: Ensemble, opts: ScreenOptions, *, progress: bool,
           timings: dict[str, float], t0: float) -> _Scored:
    """Score the candidates at ``order`` through the patch cache; ``timings`` gets ``prepare`` (since ``t0``,
    after ``points``), ``classify``, ``read`` and ``model``."""
    cfg = ensemble.bundle.config
    with open_cache(opts.cache_dir, sl.path, sl.identity(), size=cfg.patch_size, mpp=cfg.mpp, enabled=opts.cache,
                    max_gb=opts.cache_max_gb) as pc:
        cache_idx = np.full(len(pts), -1, dtype=np.int64)
        cache_idx[order] = pc.locate(pts.xy[order])
        needed = np.unique(cache_idx[order])
        _check_space(pc, needed)
        timings["prepare"] = time.perf_counter() - t0 - timings["points"]
        t_classify = time.perf_counter()
        scores = score_patches(sl, pc, needed, ensemble, batch_size=opts.batch_size, workers=opts.workers,
                               progress=progress)
        timings["classify"] = time.perf_counter() - t_classify
        cache_path, cache_mode = pc.path, pc.mode
    timings["read"], timings["model"] = scores.reads.seconds, scores.model_seconds
    p, stain = _per_candidate(scores, cache_idx, order)
    return _Scored(p, stain, scores.reads, cache_path, cache_mode)


def _write(result: ScreenResult, out: str | Path, opts: ScreenOptions, timings: dict[str, float]) -> ScreenResult:
    """Write the outputs (and the report) of ``result``; the result with them and the final timings."""
    outputs = write_outputs(result, out, export=opts.export, timings=timings)
    if opts.report:
        from .report import slide_report

        t_report = time.perf_counter()
        outputs["report"] = slide_report(outputs["summary"])
        timings["report"] = time.perf_counter() - t_report
    return result.with_outputs(outputs, timings)


def _check_out(out: str | Path | None, opts: ScreenOptions) -> None:
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise OptionError(f"--out {out}: is a file, expected a directory")
    if opts.report and out is None:
        raise OptionError("--report: needs an output directory (out)")


def _per_candidate(scores: Scores, cache_idx: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scores and patch stain statistics per candidate (NaN for those not classified)."""
    p = np.full(len(cache_idx), np.nan)
    p[order] = scores.probs[cache_idx[order]] if len(order) else []
    stain = np.full((len(cache_idx), 3), np.nan)
    stain[order] = scores.stains[cache_idx[order]] if len(order) else np.empty((0, 3))
    return p, stain


def _mark_glass(sl: Slide, status: np.ndarray, stain: np.ndarray) -> None:
    """Status ``background`` for the classified candidates whose patch centre is glass."""
    glass = (status == "ok") & (stain[:, 2] < BACKGROUND_TISSUE)
    if glass.any():
        status[glass] = "background"
        log.warning("slide %s: %d of %d candidates lie on glass (their patch centre is less than %d%% tissue): "
                    "status background, outside the counts", sl.path, int(glass.sum()), len(status),
                    round(100 * BACKGROUND_TISSUE))


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


def fill_cache(
    slide: str | Path,
    points: Points | str | Path,
    options: ScreenOptions | None = None,
    *,
    patch_size: int,
    patch_mpp: float,
    stop: threading.Event | None = None,
    busy: Callable[[], bool] | None = None,
) -> int:
    """Read the patches of ``points`` that the cache lacks into the cache, without a model; the number read.

    The first half of :func:`screen` (same candidates, same cache entries, the same ``options``): ``batch``
    runs it for the next slide while the current one is classified, so that ``screen`` then finds every patch
    cached. Setting ``stop`` ends it after the current chunk. While ``busy()`` is true (a model is running
    beside it) it reads at low priority (:class:`~wsi_amf.slide.PatchReader`).
    """
    opts = options or ScreenOptions()
    if not opts.cache:  # without a cache there is nothing to fill
        return 0
    stats = ReadStats()
    with Slide(slide, mpp=opts.mpp) as sl:
        pts, _, order, _ = _candidates(sl, points, opts.points, opts.roi)
        with open_cache(opts.cache_dir, sl.path, sl.identity(), size=patch_size, mpp=patch_mpp,
                        max_gb=opts.cache_max_gb) as cache:
            if not cache.keeps:  # a read-only cache: nothing to fill
                return 0
            needed = np.unique(cache.locate(pts.xy[order]))
            missing = needed[~cache.filled[needed]]
            with PatchReader(sl, workers=opts.workers, busy=busy) as reader:
                for _ in cache_chunks(reader, cache, missing, stats):
                    if stop is not None and stop.is_set():
                        break
    return stats.read


def _candidates(sl: Slide, points: Points | str | Path, points_options: PointsOptions,
                roi: Roi | str | Path | None) -> tuple[Points, np.ndarray, np.ndarray, Roi | None]:
    """The slide's points, a status per point, the indices of those to classify in tile order, and the region
    of interest clipped to the slide (None without ``roi``)."""
    if isinstance(points, Points):
        pts = points
    else:
        context = SlideContext(name=sl.path.name, mpp=sl.mpp, dimensions=sl.dimensions)
        pts = points_options.read(points, slide=context)
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
