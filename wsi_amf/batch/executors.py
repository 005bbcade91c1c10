"""Where the slides of a batch are screened: here (one model, the next slide prefetched) or on a Ray cluster
(one :class:`SlideWorker` actor per GPU, or per few CPUs on a CPU-only cluster, each loading the model once).

Both call ``on_row`` with each slide's cohort row as soon as it is finished, in completion order.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import OptionError, WsiAmfError
from ..options import ScreenOptions
from .cohort import slide_row
from .jobs import SlideJob
from .worker import SlideWorker

log = logging.getLogger(__name__)
Todo = Sequence[tuple[SlideJob, str]]  # (job, fingerprint)
OnRow = Callable[[dict[str, Any]], None]
CPUS_PER_ACTOR = 4  # on CPU-only clusters: one actor per this many CPUs (ONNX Runtime and reader threads)


def run_local(todo: Todo, worker: SlideWorker, on_row: OnRow) -> None:
    """Screen the slides in order; the worker reads slide i+1 while it classifies slide i."""
    for i, (job, fp) in enumerate(todo):
        next_job = todo[i + 1][0] if i + 1 < len(todo) else None
        on_row(worker.run(job, fp, next_job))


def run_ray(todo: Todo, *, model: str | None, out: Path, options: ScreenOptions,
            prefetch: bool, on_row: OnRow, address: str | None = None, actors: int | None = None) -> None:
    """Spread the slides over the actors of a Ray cluster (``address``; None: ``$RAY_ADDRESS``, an instance
    this process already started, or a new local one). Slides and ``out`` must be on storage every node sees."""
    try:
        import ray
    except ImportError:
        raise OptionError("--executor ray needs Ray: pip install 'wsi-amf[ray]'") from None
    own = not ray.is_initialized()
    if own:  # a new local instance needs no dashboard; an existing cluster is joined as it is
        local = address is None and not os.environ.get("RAY_ADDRESS")
        if local:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    elif address is not None:
        log.warning("Ray is already initialised in this process; --ray-address %s is not used", address)
    try:
        n, resources = actor_plan(actors, options.device,
                                  [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")])
        actor_cls = ray.remote(SlideWorker).options(**resources)

        def start() -> Any:
            return actor_cls.remote(model, out=out, options=options, prefetch=prefetch)

        pool = [start() for _ in range(min(n, len(todo)))]
        try:
            infos = ray.get([a.describe.remote() for a in pool])
        except ray.exceptions.RayError as exc:
            raise WsiAmfError(f"Ray workers could not load the model: {_cause(exc)}") from None
        log.info("Ray: %d workers (%s)", len(pool), ", ".join(f"{i['engine']} on {i['device']}" for i in infos))
        _dispatch(ray, todo, pool, start, on_row)
    finally:
        if own:
            ray.shutdown()


def actor_plan(actors: int | None, device: str, nodes: Sequence[Mapping[str, float]]) -> tuple[int, dict[str, float]]:
    """How many actors, and the resources of each: a GPU each (shared when ``actors`` exceeds the GPUs), or
    on CPU-only clusters (or ``device == "cpu"``) a few CPUs each, so that every actor fits."""
    gpus = sum(float(r.get("GPU", 0)) for r in nodes)
    cpus = [float(r.get("CPU", 0)) for r in nodes if r.get("CPU", 0)]
    if device.startswith("cuda") and gpus == 0:
        raise OptionError(f"--device {device}: the Ray cluster has no GPU")
    if device != "cpu" and gpus > 0:
        n = actors or int(gpus)
        return n, {"num_gpus": min(1.0, gpus / n), "num_cpus": 1}
    per = min(float(CPUS_PER_ACTOR), max(cpus, default=1.0))
    n = actors or max(1, sum(int(c // per) for c in cpus))
    return n, {"num_cpus": min(per, max(sum(cpus), 1.0) / n)}


def _dispatch(ray: Any, todo: Todo, pool: list, start: Callable[[], Any], on_row: OnRow) -> None:
    """Keep every actor busy with one slide and the slide it will take next (which it prefetches); an idle
    actor takes another's next slide at the end. A dead actor fails its slide and is replaced."""
    queue = deque(todo)
    reserved: dict[int, tuple[SlideJob, str]] = {}
    inflight: dict[Any, tuple[int, SlideJob]] = {}

    def submit(i: int) -> None:
        item = reserved.pop(i, None) or (queue.popleft() if queue else None)
        if item is None and reserved:
            item = reserved.pop(next(iter(reserved)))
        if item is None:
            return
        nxt = queue.popleft() if queue else None
        if nxt is not None:
            reserved[i] = nxt
        inflight[pool[i].run.remote(item[0], item[1], nxt[0] if nxt else None)] = (i, item[0])

    for i in range(len(pool)):
        submit(i)
    while inflight:
        (ref,), _ = ray.wait(list(inflight), num_returns=1)
        i, job = inflight.pop(ref)
        try:
            row = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            row = slide_row(job, status="failed", error=f"slide {job.slide}: the Ray worker died ({_cause(exc)})")
            pool[i] = start()
        except ray.exceptions.RayError as exc:
            row = slide_row(job, status="failed", error=f"slide {job.slide}: {_cause(exc)}")
        on_row(row)
        submit(i)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
