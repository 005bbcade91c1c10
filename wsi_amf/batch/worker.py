"""Screen slides one after another with one loaded model, reading the next slide's patches meanwhile.

A :class:`SlideWorker` loads the ensemble once. ``run(job, next_job=...)`` starts filling the patch cache for
``next_job`` in a background thread (slide reads only, no model: ``screen.fill_cache``), then screens ``job``
(whose patches its own earlier prefetch has put in the cache). Reading and classifying thus overlap across
slides; while a slide is screened, the prefetch reads at low priority (``slide.PatchReader``). The same
class runs in the local executor and, as a Ray actor, on each node of a cluster.
A slide that fails gives a ``failed`` row; the worker goes on with the next. Prefetches run in daemon threads,
so that a read that never returns (a hung file system) cannot keep the process from exiting; ``run(stop=...)``
lets an executor abandon a slide that ran past its time limit without anything of it being written.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bundle import ModelBundle
from ..errors import WsiAmfError, one_line
from ..options import ScreenOptions
from . import resume
from .cohort import slide_row
from .jobs import SlideJob

if TYPE_CHECKING:
    from ..ensemble import Ensemble

log = logging.getLogger(__name__)


class SlideWorker:
    """One model, many slides, screened with the same ``options``."""

    def __init__(self, model: Ensemble | ModelBundle | str | Path | None, *, out: str | Path, options: ScreenOptions,
                 prefetch: bool = True) -> None:
        from ..ensemble import open_ensemble

        self.out = Path(out)
        self.options = options
        self.ensemble = open_ensemble(model, device=options.device, engine=options.engine, tta=options.tta)
        self.bundle = self.ensemble.bundle
        self._prefetch = prefetch
        self._pending: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._screening = threading.Event()  # set while screen() runs: the prefetch then reads at low priority
        self.where: dict[str, str | None] = {"node": None, "worker": None}  # a Ray actor's node and actor ids

    def describe(self) -> dict[str, Any]:
        info = self.ensemble.info
        return {"device": info.device, "engine": info.engine}

    def run(self, job: SlideJob, fingerprint: str, next_job: SlideJob | None = None, *,
            stop: threading.Event | None = None) -> dict[str, Any]:
        """Screen ``job`` into ``out`` (prefetching ``next_job``); its cohort row, ``ok`` or ``failed``. Once
        ``stop`` is set the slide is abandoned: nothing more of it is written, and it is not recorded as done."""
        from ..screen import screen

        if job.points is None:
            raise ValueError(f"slide {job.slide}: a job without a points file is skipped, not run")
        t0 = time.perf_counter()
        pending = self._pending.pop(job.stem, None)
        if pending is not None:
            pending.join()
        if next_job is not None and self._prefetch:
            thread = threading.Thread(target=self._fill, args=(next_job,), name=f"wsi-amf-prefetch-{next_job.stem}",
                                      daemon=True)
            self._pending[next_job.stem] = thread
            thread.start()
        try:
            resume.forget(self.out, job.stem)
            self._screening.set()
            try:
                result = screen(job.slide, job.points, self._options(job), model=self.ensemble, out=self.out,
                                stem=job.stem, progress=False, stop=stop)
            finally:
                self._screening.clear()
            outputs = {kind: _relative(path, self.out) for kind, path in result.outputs.items()}
            row = self._row(job, status="ok", summary=result.summary(), outputs=outputs, seconds=time.perf_counter() - t0)
            if stop is None or not stop.is_set():
                resume.record(self.out, job.stem, fingerprint, outputs, row)
        except WsiAmfError as exc:
            return self._row(job, status="failed", error=str(exc), seconds=time.perf_counter() - t0)
        except MemoryError:
            return self._row(job, status="failed", error=f"slide {job.slide}: out of memory (lower --batch-size)",
                             seconds=time.perf_counter() - t0)
        except Exception as exc:  # a bug or an unforeseen input: recorded, the batch goes on
            log.debug("slide %s failed", job.slide, exc_info=True)
            return self._row(job, status="failed", error=f"slide {job.slide}: unexpected {type(exc).__name__}: "
                             f"{one_line(exc)}", seconds=time.perf_counter() - t0)
        return row

    def _row(self, job: SlideJob, **fields: Any) -> dict[str, Any]:
        return slide_row(job, node=self.where["node"], worker=self.where["worker"], **fields)

    def _fill(self, job: SlideJob) -> None:
        """Read ``job``'s missing patches into the cache; any problem is left for ``screen`` to report."""
        from ..screen import fill_cache

        if self._stop.is_set() or job.points is None:
            return
        cfg = self.bundle.config
        try:
            fill_cache(job.slide, job.points, self._options(job), patch_size=cfg.patch_size, patch_mpp=cfg.mpp,
                       stop=self._stop, busy=self._screening.is_set)
        except Exception as exc:
            log.debug("prefetch of %s failed (%s); screen will report it", job.slide, exc)

    def _options(self, job: SlideJob) -> ScreenOptions:
        """The options for ``job``: a manifest's ROI replaces the batch's."""
        return self.options if job.roi is None else self.options.replace(roi=job.roi)

    def close(self) -> None:
        """Stop the prefetches (each ends after its current chunk) and wait for them."""
        self._stop.set()
        for thread in self._pending.values():
            thread.join()
        self._pending.clear()


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to ``out`` when inside it (as the cohort table names outputs), else absolute."""
    try:
        return Path(path).absolute().relative_to(out.absolute()).as_posix()
    except ValueError:
        return str(Path(path).absolute())
