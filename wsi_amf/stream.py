"""Patches from the cache (or the slide) to the ensemble, with bounded memory.

:func:`cache_chunks` walks the patch cache chunk by chunk (points are appended to the cache in tile order, so
this is also the slide's tile order): filled chunks come from the cache, missing patches are read from the
slide (:class:`~wsi_amf.slide.PatchReader`) and written to the cache. :func:`score_patches` runs that walk in
a reader thread that hands chunks through a bounded queue to a :class:`Batcher` in the calling thread, which
runs the ensemble on batches of ``batch_size``.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .cache import CHUNK, PatchCache
from .ensemble import Ensemble
from .slide import PatchReader, Slide
from .stain import patch_stats


@dataclass
class ReadStats:
    """What a walk of the cache did: patches read from the slide, patches served by the cache, seconds reading."""

    read: int = 0
    cached: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Scores:
    """P(atypical) and the patch stain statistics (H, E, tissue share) per cache index (NaN where not needed),
    with the walk's counts and the seconds spent reading and in the model."""

    probs: np.ndarray
    stains: np.ndarray
    reads: ReadStats
    model_seconds: float


def cache_chunks(reader: PatchReader, cache: PatchCache, needed: np.ndarray, stats: ReadStats,
                 on_read: Callable[[int], Any] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(cache indices, patches)`` chunk by chunk over ``needed``; missing patches are read and written to the
    cache. ``on_read`` gets the number of patches each chunk read from the slide."""
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
            stats.cached += len(want)
            yield want, patches[want - start]
            continue
        t = time.perf_counter()
        if patches is None:
            patches = np.empty((stop - start, cache.size, cache.size, 3), dtype=np.uint8)
        missing = np.flatnonzero(~filled)
        patches[missing] = reader.read(cache.coords[start + missing], size=cache.size, target_mpp=cache.mpp)
        cache.write(start, patches)
        stats.seconds += time.perf_counter() - t
        newly = int(np.isin(start + missing, want).sum())
        stats.read += newly
        stats.cached += len(want) - newly
        if on_read is not None:
            on_read(newly)
        yield want, patches[want - start]


class Batcher:
    """Collects chunks of ``(cache indices, patches)`` and runs the ensemble on every full batch (and on the
    rest at :meth:`flush`), filling ``probs`` and ``stains`` at those indices."""

    def __init__(self, ensemble: Ensemble, size: int, batch_size: int, on_batch: Callable[[int], Any]) -> None:
        self.ensemble = ensemble
        self.batch_size = batch_size
        self.probs = np.full(size, np.nan)
        self.stains = np.full((size, 3), np.nan)
        self.seconds = 0.0
        self._on_batch = on_batch
        self._idx: list[np.ndarray] = []
        self._patches: list[np.ndarray] = []
        self._pending = 0

    def add(self, idx: np.ndarray, patches: np.ndarray) -> None:
        self._idx.append(idx)
        self._patches.append(patches)
        self._pending += len(idx)
        while self._pending >= self.batch_size:
            self._run()

    def flush(self) -> None:
        while self._pending:
            self._run()

    def _run(self) -> None:
        idx = np.concatenate(self._idx)
        patches = np.concatenate(self._patches) if len(self._patches) > 1 else self._patches[0]
        take = min(self.batch_size, len(idx))
        t = time.perf_counter()
        self.probs[idx[:take]] = self.ensemble.predict(patches[:take])
        self.stains[idx[:take]] = patch_stats(patches[:take])
        self.seconds += time.perf_counter() - t
        self._on_batch(take)
        self._idx, self._patches = ([idx[take:]], [patches[take:]]) if take < len(idx) else ([], [])
        self._pending = len(idx) - take


class _ChunkThread(threading.Thread):
    """Walks the cache (:func:`cache_chunks`) into a bounded queue; an exception travels through the queue too.
    While chunks wait in the queue the model is busy, so the slide is then read at low priority."""

    _DONE = object()

    def __init__(self, slide: Slide, cache: PatchCache, needed: np.ndarray, *, workers: int, maxsize: int,
                 on_read: Callable[[int], Any]) -> None:
        super().__init__(name="wsi-amf-reader", daemon=True)
        self.slide, self.cache, self.needed, self.workers, self.on_read = slide, cache, needed, workers, on_read
        self.stats = ReadStats()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            with PatchReader(self.slide, workers=self.workers, busy=lambda: self.queue.qsize() > 0) as reader:
                for chunk in cache_chunks(reader, self.cache, self.needed, self.stats, self.on_read):
                    if self._halt.is_set():
                        return
                    self.queue.put(chunk)
            self.queue.put(self._DONE)
        except BaseException as exc:  # raised again in the consuming thread
            self.queue.put(exc)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            item = self.queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._halt.set()
        while self.is_alive():  # unblock a walk waiting on a full queue
            try:
                self.queue.get_nowait()
            except queue.Empty:
                self.join(0.05)


def score_patches(slide: Slide, cache: PatchCache, needed: np.ndarray, ensemble: Ensemble, *, batch_size: int,
                  workers: int, progress: bool) -> Scores:
    """P(atypical) and patch stain statistics for every ``needed`` cache index, reading and classifying at once."""
    from tqdm.auto import tqdm

    n_missing = int((~cache.filled[needed]).sum()) if len(needed) else 0
    bar_read = tqdm(total=n_missing, desc="reading patches", unit="patch", disable=not progress or n_missing == 0,
                    leave=False)
    bar_cls = tqdm(total=len(needed), desc="classifying", unit="patch", disable=not progress or len(needed) == 0)
    batcher = Batcher(ensemble, len(cache), batch_size, bar_cls.update)
    walk = _ChunkThread(slide, cache, needed, workers=workers, maxsize=max(2, 2 * batch_size // CHUNK + 1),
                        on_read=bar_read.update)
    try:
        if len(needed):
            walk.start()
            for idx, patches in walk.chunks():
                batcher.add(idx, patches)
            batcher.flush()
    finally:
        walk.close()
        bar_read.close()
        bar_cls.close()
    return Scores(batcher.probs, batcher.stains, walk.stats, batcher.seconds)
