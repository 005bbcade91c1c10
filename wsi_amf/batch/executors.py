"""Where the slides of a batch are screened: here, one model, the next slide prefetched (``run_local``); on a
Ray cluster, see :mod:`wsi_amf.batch.ray_executor`. Both call ``on_row`` with each slide's cohort row as soon
as it is finished, in completion order, and both bound a slide's time with ``slide_timeout``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Sequence

from .cohort import slide_row
from .jobs import SlideJob
from .worker import SlideWorker

log = logging.getLogger(__name__)
Item = tuple[SlideJob, str]  # (job, fingerprint)
Todo = Sequence[Item]
OnRow = Callable[[dict[str, Any]], None]


def run_local(todo: Todo, worker: SlideWorker, on_row: OnRow, *, slide_timeout: float | None = None) -> None:
    """Screen the slides in order; the worker reads slide i+1 while it classifies slide i. A slide that takes
    longer than ``slide_timeout`` seconds is recorded failed and abandoned (left to its thread, nothing more of it
    written), and the batch goes on."""
    for i, (job, fp) in enumerate(todo):
        next_job = todo[i + 1][0] if i + 1 < len(todo) else None
        if slide_timeout is None:
            on_row(worker.run(job, fp, next_job))
        else:
            on_row(_bounded(worker, job, fp, next_job, slide_timeout))


def _bounded(worker: SlideWorker, job: SlideJob, fp: str, next_job: SlideJob | None, timeout: float) -> dict[str, Any]:
    """``worker.run`` in a daemon thread, waited for at most ``timeout`` seconds."""
    rows: list[dict[str, Any]] = []
    stop = threading.Event()
    thread = threading.Thread(target=lambda: rows.append(worker.run(job, fp, next_job, stop=stop)), daemon=True,
                              name=f"wsi-amf-slide-{job.stem}")
    thread.start()
    thread.join(timeout)
    if rows:
        return rows[0]
    stop.set()
    log.warning("slide %s: still running after %g s (--slide-timeout); abandoned", job.slide, timeout)
    return slide_row(job, status="failed", seconds=timeout, error=timeout_error(job, timeout, "abandoned"))


def timeout_error(job: SlideJob, timeout: float, then: str) -> str:
    return f"slide {job.slide}: did not finish within {timeout:g} s (--slide-timeout); {then}"
