"""``screen_batch``: screen every slide of a folder or a manifest into one output folder and a cohort table.

Slides whose outputs are up to date are skipped (resume), slides without a points file are skipped, a slide
that fails is recorded and the others go on. The cohort table is rewritten after every finished slide.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from ..bundle import ModelBundle, load_bundle
from ..choices import EXECUTORS
from ..errors import OptionError, SlideError
from ..options import ScreenOptions
from ..quantify import load_reference
from . import resume
from .cohort import HISTOGRAM, jsonable, read_summary, slide_row, write_cohort
from .jobs import DEFAULT_POINTS_PATTERNS, SLIDE_SUFFIXES, SlideJob, folder_jobs, manifest_jobs

if TYPE_CHECKING:
    from ..ensemble import Ensemble
    from .worker import SlideWorker



@dataclass(frozen=True)
class BatchResult:
    """The cohort rows (in slide order) and the files of the cohort table."""

    out: Path
    rows: tuple[dict[str, Any], ...]
    files: dict[str, Path] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def n_ok(self) -> int:
        return self.count("ok")

    @property
    def n_failed(self) -> int:
        return self.count("failed")

    @property
    def n_skipped(self) -> int:
        return self.count("skipped")

    @property
    def n_reused(self) -> int:
        """Slides finished by an earlier run (up to date): their rows as that run recorded them."""
        return sum(bool(r.get("reused")) for r in self.rows)


def screen_batch(
    slides: str | Path | None = None,
    *,
    out: str | Path,
    options: ScreenOptions | None = None,
    manifest: str | Path | None = None,
    points_dir: str | Path | None = None,
    points_patterns: Sequence[str] = DEFAULT_POINTS_PATTERNS,
    recursive: bool = False,
    model: Ensemble | ModelBundle | str | Path | None = None,
    force: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    ray_retries: int = 2,
    slide_timeout: float | None = None,
    prefetch: bool = True,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> BatchResult:
    """Screen every slide of the folder ``slides`` (paired with ``points_dir/<pattern>`` by stem) or of the
    CSV ``manifest`` (``slide,points[,roi]``) into ``out``: per slide the outputs of :func:`wsi_amf.screen`,
    plus ``cohort.json`` / ``cohort.csv``. ``options`` are the same for every slide, except that a manifest's
    ``roi`` cell replaces ``options.roi`` for its slide. ``on_row`` is called with each slide's row when it is
    finished. A slide that takes longer than ``slide_timeout`` seconds is recorded failed and abandoned (its Ray
    worker replaced). On Ray, a slide whose worker died is tried again on another, ``ray_retries`` times.
    """
    opts = options or ScreenOptions()
    if (slides is None) == (manifest is None):
        raise OptionError("give a slides folder or --manifest (one of them)")
    if executor not in EXECUTORS:
        raise OptionError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if slide_timeout is not None and not slide_timeout > 0:
        raise OptionError(f"--slide-timeout {slide_timeout}: must be a positive number of seconds")
    if ray_retries < 0:
        raise OptionError(f"--ray-retries {ray_retries}: must be 0 or more")
    out = Path(out)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    jobs = _jobs(slides, manifest, out=out, opts=opts, points_dir=points_dir, points_patterns=points_patterns,
                 recursive=recursive)
    worker = None
    if executor == "local":  # load the model first: a model or device problem stops the batch before any slide
        from .worker import SlideWorker

        worker = SlideWorker(model, out=out, options=opts, prefetch=prefetch)
        bundle = worker.bundle
    else:
        bundle = _bundle(model)
    model_digest = resume.bundle_digest(bundle)
    write = _cohort_writer(out, jobs, bundle, model_digest, started=started,
                           recorded=jsonable({**opts.record(), "executor": executor, "prefetch": prefetch, "force": force,
                                             "slide_timeout": slide_timeout,
                                             **({"ray_retries": ray_retries} if executor == "ray" else {})}))
    out.mkdir(parents=True, exist_ok=True)
    try:
        with resume.locked(out):  # a second batch into the same folder refuses here, before it writes anything
            rows, todo = _triage(jobs, out, model_digest=model_digest, options=opts, force=force)
            run = _Run(rows, write=write, progress=progress, on_row=on_row, slide_timeout=slide_timeout)
            if worker is not None:
                run.local(todo, worker)
            else:
                run.ray(todo, model=None if model is None else str(bundle.path.absolute()), out=out, options=opts,
                        prefetch=prefetch, address=ray_address, actors=ray_actors, retries=ray_retries)
            files = write(rows)
            if opts.report:
                from ..report import cohort_report

                files["report"] = cohort_report(out)
    finally:
        if worker is not None:
            worker.close()
    return BatchResult(out=out, rows=tuple(rows[j.stem] for j in jobs), files=files)


def _jobs(slides: str | Path | None, manifest: str | Path | None, *, out: Path, opts: ScreenOptions,
          points_dir: str | Path | None, points_patterns: Sequence[str], recursive: bool) -> list[SlideJob]:
    """The slides of the manifest or of the folder (leaving out ``out`` and the cache folder), each with its
    points file; SlideError when a folder holds none."""
    if manifest is not None:
        return manifest_jobs(manifest)
    assert slides is not None
    exclude = [out, *([opts.cache_dir] if opts.cache_dir else [])]
    jobs = folder_jobs(slides, points_dir=points_dir, patterns=points_patterns, recursive=recursive, exclude=exclude)
    if not jobs:
        raise SlideError(f"slides folder {slides}: no slide found (extensions {' '.join(sorted(SLIDE_SUFFIXES))}"
                         f"{'' if recursive else '; --recursive searches sub-folders'})")
    return jobs


def _cohort_writer(out: Path, jobs: Sequence[SlideJob], bundle: ModelBundle, model_digest: str, *, started: str,
                   recorded: dict[str, Any]) -> Callable[[dict[str, dict[str, Any]]], dict[str, Path]]:
    """A function writing the cohort table of the rows so far (in the jobs' order)."""
    describe = {**bundle.describe(), "bundle_threshold": bundle.config.threshold, "sha256": model_digest}
    reference = load_reference(bundle.config.quantification, source=str(bundle.path))

    def write(rows: dict[str, dict[str, Any]]) -> dict[str, Path]:
        ordered = [rows[j.stem] for j in jobs if j.stem in rows]
        return write_cohort(out, ordered, created=started, model=describe, options=recorded, reference=reference)

    return write


class _Run:
    """Screens slides into ``rows``, rewriting the cohort table after each, with a progress bar over slides."""

    def __init__(self, rows: dict[str, dict[str, Any]], *, write: Callable[[dict[str, dict[str, Any]]], Any],
                 progress: bool, on_row: Callable[[dict[str, Any]], None] | None, slide_timeout: float | None) -> None:
        self.rows, self.write, self.progress, self.on_row = rows, write, progress, on_row
        self.slide_timeout = slide_timeout

    def local(self, todo: list[tuple[SlideJob, str]], worker: SlideWorker) -> None:
        from .executors import run_local

        with self._bar(todo) as finished:
            run_local(todo, worker, finished, slide_timeout=self.slide_timeout)

    def ray(self, todo: list[tuple[SlideJob, str]], *, model: str | None, out: Path, options: ScreenOptions,
            prefetch: bool, address: str | None, actors: int | None, retries: int) -> None:
        from .ray_executor import run_ray

        absolute = options.replace(**{k: getattr(options, k).absolute() for k in ("cache_dir", "roi")
                                      if isinstance(getattr(options, k), Path)})  # any cwd
        with self._bar(todo) as finished:
            run_ray(todo, model=model, out=out.absolute(), options=absolute, prefetch=prefetch, on_row=finished,
                    address=address, actors=actors, retries=retries, slide_timeout=self.slide_timeout)

    @contextmanager
    def _bar(self, todo: list[tuple[SlideJob, str]]) -> Iterator[Callable[[dict[str, Any]], None]]:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="slides", unit="slide", disable=not self.progress or not todo)

        def finished(row: dict[str, Any]) -> None:
            self.rows[row["stem"]] = row
            self.write(self.rows)
            bar.update(1)
            if self.on_row is not None:
                self.on_row(row)

        self.write(self.rows)
        try:
            yield finished
        finally:
            bar.close()


def _triage(jobs: Sequence[SlideJob], out: Path, *, model_digest: str, options: ScreenOptions, force: bool
            ) -> tuple[dict[str, dict[str, Any]], list[tuple[SlideJob, str]]]:
    """Rows of the slides skipped (no points file, or up to date), and the (job, fingerprint) pairs to screen."""
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple[SlideJob, str]] = []
    for job in jobs:
        if job.points is None:
            rows[job.stem] = slide_row(job, status="skipped", error=job.missing_points)
            continue
        fp = resume.fingerprint(job, model_digest=model_digest, options=options)
        done = None if force else resume.up_to_date(out, job.stem, fp)
        try:
            summary = read_summary(out, done[0]) if done else None
        except (OSError, ValueError):
            summary = None
        if done and summary is not None:
            outputs, recorded = done
            row = slide_row(job, status="ok", summary=summary, outputs=outputs)  # its histogram, for the pooled ratio
            if recorded is not None:  # the row as the run that screened the slide wrote it
                row.update({k: recorded[k] for k in recorded if k in row and k != HISTOGRAM})
            row["reused"] = True
            rows[job.stem] = row
        else:
            todo.append((job, fp))
    return rows, todo


def _bundle(model: Ensemble | ModelBundle | str | Path | None) -> ModelBundle:
    if isinstance(model, ModelBundle):
        return model
    loaded = getattr(model, "bundle", None)  # an Ensemble (not imported here: the Ray driver needs no torch)
    return loaded if isinstance(loaded, ModelBundle) else load_bundle(model)  # type: ignore[arg-type]
