"""Screening a batch on a Ray cluster: one :class:`RaySlideWorker` actor per GPU, or per few CPUs on a CPU-only
cluster, each loading the model once and screening one slide while it prefetches the next.

What the cluster may do to a batch, and what the batch does then:

- a worker dies (killed, out of memory, its node lost): its slide is tried again on a replacement actor, up to
  ``retries`` times, and only then recorded ``failed``; the slide it had prefetched goes back to the queue. A
  replacement that finds no room (its node is gone) waits, and the live actors take the slides meanwhile;
- a slide runs past ``slide_timeout`` seconds: it is recorded ``failed`` (not retried) and its actor is killed
  and replaced, so a hung read holds neither a slide nor a worker.

Slides and ``out`` must be on storage every node sees; each node keeps its own patch cache.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import OptionError, WsiAmfError
from ..options import ScreenOptions
from .cohort import slide_row
from .executors import Item, OnRow, Todo, timeout_error
from .worker import SlideWorker

log = logging.getLogger(__name__)
CPUS_PER_ACTOR = 4  # on CPU-only clusters: one actor per this many CPUs (ONNX Runtime and reader threads)
DEFAULT_RETRIES = 2  # a slide whose worker died is tried this many more times
START_LIMIT_S = 600.0  # with work left and no live worker, how long to wait for a replacement to start


class RaySlideWorker(SlideWorker):
    """A :class:`SlideWorker` as a Ray actor: its rows name the node and the actor that screened them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import ray

        ctx = ray.get_runtime_context()
        self.where = {"node": ctx.get_node_id(), "worker": ctx.get_actor_id()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.where, "pid": os.getpid()}


def run_ray(todo: Todo, *, model: str | None, out: Path, options: ScreenOptions, prefetch: bool, on_row: OnRow,
            address: str | None = None, actors: int | None = None, retries: int = DEFAULT_RETRIES,
            slide_timeout: float | None = None) -> None:
    """Spread the slides over the actors of a Ray cluster (``address``; None: ``$RAY_ADDRESS``, an instance
    this process already started, or a new local one)."""
    try:
        import ray
    except ImportError:
        raise OptionError("--executor ray needs Ray: pip install 'wsi-amf[ray]'") from None
    own = not ray.is_initialized()
    if own:  # a new local instance needs no dashboard; an existing cluster is joined as it is
        if address is None and not os.environ.get("RAY_ADDRESS"):
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    elif address is not None:
        log.warning("Ray is already initialised in this process; --ray-address %s is not used", address)
    try:
        n, resources = actor_plan(actors, options.device,
                                  [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")])
        actor_cls = ray.remote(RaySlideWorker).options(**resources)

        def start() -> Any:
            return actor_cls.remote(model, out=out, options=options, prefetch=prefetch)

        pool = _Pool(ray, start, min(n, len(todo)), on_row, retries=retries, timeout=slide_timeout)
        try:
            pool.run(todo)
        finally:
            pool.close()
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



@dataclass
class _Slot:
    """One actor: starting (``starting`` is its describe() call) or up; its slide in flight and the next."""

    actor: Any
    starting: Any = None
    where: dict[str, Any] = field(default_factory=dict)
    task: Any = None
    item: Item | None = None
    deadline: float = math.inf
    reserved: Item | None = None

    def take(self) -> tuple[Any, Item | None]:
        """The slide in flight (its task and item); the slot then has none."""
        task, item = self.task, self.item
        self.task, self.item, self.deadline = None, None, math.inf
        return task, item


class _Pool:
    """Keeps every live actor busy with one slide and the slide it will take next (which it prefetches); an
    idle actor takes another's next slide at the end. Dead and timed-out actors are replaced."""

    def __init__(self, ray: Any, start: Callable[[], Any], n: int, on_row: OnRow, *, retries: int,
                 timeout: float | None) -> None:
        self.ray, self.start, self.on_row = ray, start, on_row
        self.retries, self.timeout = retries, timeout
        self.queue: deque[Item] = deque()
        self.attempts: Counter[str] = Counter()
        self.slots = [_Slot(start()) for _ in range(n)]

    def run(self, todo: Todo) -> None:
        ray = self.ray
        try:
            infos = ray.get([s.actor.describe.remote() for s in self.slots])
        except ray.exceptions.RayError as exc:
            raise WsiAmfError(f"Ray workers could not load the model: {_cause(exc)}") from None
        for slot, info in zip(self.slots, infos):
            slot.where = {"node": info["node"], "worker": info["worker"]}
        log.info("Ray: %d workers on %d nodes (%s)", len(self.slots), len({i["node"] for i in infos}),
                 ", ".join(f"{i['engine']} on {i['device']}" for i in infos))
        self.queue.extend(todo)
        waiting_since: float | None = None
        while True:
            self._expire()  # every round: completions elsewhere must not delay a slide's time limit
            for slot in self.slots:
                if slot.starting is None and slot.task is None:
                    self._submit(slot)
            busy = [s for s in self.slots if s.task is not None]
            starting = [s for s in self.slots if s.starting is not None]
            if not busy:
                if not self.queue:
                    return
                if not starting:
                    raise WsiAmfError(f"Ray: no worker is left to screen the {len(self.queue)} slides still to do")
                waiting_since = waiting_since or time.monotonic()
                if time.monotonic() - waiting_since > START_LIMIT_S:
                    raise WsiAmfError(f"Ray: no worker could be started in {START_LIMIT_S:g} s (the cluster has no "
                                      f"room for one); {len(self.queue)} slides were not screened")
            else:
                waiting_since = None
            deadline = min((s.deadline for s in busy), default=math.inf)
            wait = None if math.isinf(deadline) else max(0.0, deadline - time.monotonic())
            if not busy:
                wait = 5.0 if wait is None else min(wait, 5.0)
            done, _ = ray.wait([s.task for s in busy] + [s.starting for s in starting], num_returns=1, timeout=wait)
            if not done:
                continue
            ref = done[0]
            slot = next(s for s in self.slots if ref in (s.task, s.starting))
            if ref is slot.starting:
                self._started(slot)
            else:
                self._finished(slot)

    def _submit(self, slot: _Slot) -> None:
        item, slot.reserved = slot.reserved, None
        if item is None and self.queue:
            item = self.queue.popleft()
        if item is None:  # the end: take a slide another actor would do next
            other = next((s for s in self.slots if s.reserved is not None), None)
            if other is None:
                return
            item, other.reserved = other.reserved, None
        assert item is not None
        nxt = self.queue.popleft() if self.queue else None
        slot.reserved = nxt
        slot.item = item
        slot.task = slot.actor.run.remote(item[0], item[1], nxt[0] if nxt else None)
        slot.deadline = math.inf if self.timeout is None else time.monotonic() + self.timeout

    def _finished(self, slot: _Slot) -> None:
        ray = self.ray
        ref, item = slot.take()
        assert item is not None
        job = item[0]
        try:
            row = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._lost(slot, item, _cause(exc))
            return
        except ray.exceptions.RayError as exc:
            row = slide_row(job, status="failed", error=f"slide {job.slide}: {_cause(exc)}", **slot.where)
        self.on_row(row)

    def _lost(self, slot: _Slot, item: Item, cause: str) -> None:
        """The actor of ``slot`` died while it screened ``item``: try the slide again, or record it failed."""
        job = item[0]
        where = dict(slot.where)
        self._replace(slot)
        self.attempts[job.stem] += 1
        if self.attempts[job.stem] <= self.retries:
            log.warning("slide %s: the Ray worker died (%s); trying again on another worker (retry %d of %d)",
                        job.slide, cause, self.attempts[job.stem], self.retries)
            self.queue.appendleft(item)
            return
        spent = f"; the {self.retries} retries (--ray-retries) are spent" if self.retries else ""
        self.on_row(slide_row(job, status="failed", error=f"slide {job.slide}: the Ray worker died ({cause}){spent}",
                              **where))

    def _expire(self) -> None:
        """Record the slides past their deadline failed, and replace their actors."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.task is None or slot.deadline > now:
                continue
            _, item = slot.take()
            assert item is not None and self.timeout is not None
            job, where = item[0], dict(slot.where)
            log.warning("slide %s: still running after %g s (--slide-timeout); its Ray worker is replaced",
                        job.slide, self.timeout)
            self._replace(slot)
            self.on_row(slide_row(job, status="failed", seconds=self.timeout, **where,
                                  error=timeout_error(job, self.timeout, "its Ray worker was replaced")))

    def _replace(self, slot: _Slot) -> None:
        """Kill the actor of ``slot`` and start another; the slide it had prefetched goes back to the queue."""
        if slot.reserved is not None:
            self.queue.appendleft(slot.reserved)
            slot.reserved = None
        self._kill(slot.actor)
        slot.actor = self.start()
        slot.starting, slot.where = slot.actor.describe.remote(), {}

    def _started(self, slot: _Slot) -> None:
        ray = self.ray
        try:
            info = ray.get(slot.starting)
        except ray.exceptions.RayError as exc:
            self.slots.remove(slot)
            self._kill(slot.actor)
            log.warning("Ray: a replacement worker did not start (%s); %d workers go on", _cause(exc), len(self.slots))
            return
        slot.starting, slot.where = None, {"node": info["node"], "worker": info["worker"]}

    def _kill(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception as exc:  # already gone with its node
            log.debug("Ray: killing an actor: %s", exc)

    def close(self) -> None:
        for slot in self.slots:
            self._kill(slot.actor)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause if isinstance(cause, BaseException) else exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
