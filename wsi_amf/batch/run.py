"""``screen_batch``: screen every slide of a folder or a manifest into one output folder and a cohort table.

Slides whose outputs are up to date are skipped (resume), slides without a points file are skipped, a slide
that fails is recorded and the others go on. The cohort table is rewritten after every finished slide.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..bundle import ModelBundle, load_bundle
from ..choices import EXECUTORS
from ..errors import OptionError, SlideError
from ..points import PointsOptions
from ..quantify import load_reference
from . import resume
from .cohort import HISTOGRAM, jsonable, read_summary, slide_row, write_cohort
from .jobs import DEFAULT_POINTS_PATTERNS, SLIDE_SUFFIXES, SlideJob, folder_jobs, manifest_jobs

if TYPE_CHECKING:
    from ..ensemble import Ensemble

PER_SLIDE = frozenset({"points_options", "model", "out", "progress", "stem"})  # screen() arguments batch sets itself


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
    manifest: str | Path | None = None,
    points_dir: str | Path | None = None,
    points_patterns: Sequence[str] = DEFAULT_POINTS_PATTERNS,
    recursive: bool = False,
    points_options: PointsOptions | None = None,
    model: Ensemble | ModelBundle | str | Path | None = None,
    force: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    ray_actors: int | None = None,
    prefetch: bool = True,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    **screen_options: Any,
) -> BatchResult:
    """Screen every slide of the folder ``slides`` (paired with ``points_dir/<pattern>`` by stem) or of the
    CSV ``manifest`` (``slide,points[,roi]``) into ``out``: per slide the outputs of :func:`wsi_amf.screen`,
    plus ``cohort.json`` / ``cohort.csv``. ``screen_options`` are keyword arguments of :func:`wsi_amf.screen`
    (``cache_dir``, ``mpp``, ``device``, ``engine``, ``batch_size``, ``tta``, ``threshold``, ``workers`` ...),
    the same for every slide; a manifest's ``roi`` cell is passed as ``roi=`` for its slide.
    ``on_row`` is called with each slide's row when it is finished.
    """
    from ..screen import check_options, screen

    if (slides is None) == (manifest is None):
        raise OptionError("give a slides folder or --manifest (one of them)")
    if executor not in EXECUTORS:
        raise OptionError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    screen_options = _with_defaults(screen, screen_options)
    check_options(batch_size=screen_options["batch_size"], threshold=screen_options["threshold"], mpp=screen_options["mpp"])
    out = Path(out)
    points_options = points_options or PointsOptions()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    if manifest is not None:
        jobs = manifest_jobs(manifest)
    else:
        exclude = [out, *([screen_options["cache_dir"]] if screen_options.get("cache_dir") else [])]
        jobs = folder_jobs(slides, points_dir=points_dir, patterns=points_patterns, recursive=recursive,  # type: ignore[arg-type]
                           exclude=exclude)
    if not jobs:
        raise SlideError(f"slides folder {slides}: no slide found (extensions {' '.join(sorted(SLIDE_SUFFIXES))}"
                         f"{'' if recursive else '; --recursive searches sub-folders'})")

    worker = None
    if executor == "local":  # load the model first: a model or device problem stops the batch before any slide
        from .worker import SlideWorker

        worker = SlideWorker(model, out=out, options=screen_options, points_options=points_options, prefetch=prefetch)
        bundle = worker.bundle
    else:
        bundle = _bundle(model)
    model_digest = resume.bundle_digest(bundle)
    options = {**screen_options, "points_options": points_options}
    describe = {**bundle.describe(), "bundle_threshold": bundle.config.threshold, "sha256": model_digest}
    recorded = jsonable({**options, "executor": executor, "prefetch": prefetch, "force": force})
    reference = load_reference(bundle.config.quantification, source=str(bundle.path))

    def write(rows: dict[str, dict[str, Any]]) -> dict[str, Path]:
        ordered = [rows[j.stem] for j in jobs if j.stem in rows]
        return write_cohort(out, ordered, created=started, model=describe, options=recorded, reference=reference)

    out.mkdir(parents=True, exist_ok=True)
    try:
        with resume.locked(out):  # a second batch into the same folder refuses here, before it writes anything
            rows, todo = _triage(jobs, out, model_digest=model_digest, options=options, force=force)
            _run(rows, todo, write=write, out=out, worker=worker, bundle=bundle, model=model,
                 screen_options=screen_options, points_options=points_options, prefetch=prefetch, progress=progress,
                 on_row=on_row, ray_address=ray_address, ray_actors=ray_actors)
            files = write(rows)
            if screen_options.get("report"):
                from ..report import cohort_report

                files["report"] = cohort_report(out)
    finally:
        if worker is not None:
            worker.close()
    return BatchResult(out=out, rows=tuple(rows[j.stem] for j in jobs), files=files)


def _run(rows: dict[str, dict[str, Any]], todo: list[tuple[SlideJob, str]], *,
         write: Callable[[dict[str, dict[str, Any]]], Any], out: Path, worker: Any, bundle: ModelBundle, model: Any,
         screen_options: dict[str, Any], points_options: PointsOptions, prefetch: bool, progress: bool,
         on_row: Callable[[dict[str, Any]], None] | None, ray_address: str | None, ray_actors: int | None) -> None:
    """Screen the slides of ``todo`` into ``rows``, rewriting the cohort table after each."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="slides", unit="slide", disable=not progress or not todo)

    def finished(row: dict[str, Any]) -> None:
        rows[row["stem"]] = row
        write(rows)
        bar.update(1)
        if on_row is not None:
            on_row(row)

    write(rows)
    try:
        if worker is not None:
            from .executors import run_local

            run_local(todo, worker, finished)
        else:
            from .executors import run_ray

            absolute = {k: v.absolute() if isinstance(v, Path) else v for k, v in screen_options.items()}  # any cwd
            run_ray(todo, model=None if model is None else str(bundle.path.absolute()), out=out.absolute(),
                    options=absolute, points_options=points_options, prefetch=prefetch, on_row=finished,
                    address=ray_address, actors=ray_actors)
    finally:
        bar.close()


def _triage(jobs: Sequence[SlideJob], out: Path, *, model_digest: str, options: dict[str, Any], force: bool
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


def _with_defaults(screen: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
    """Every option of ``screen`` (its defaults, then ``given``), so that equal settings compare equal."""
    params = {name: p for name, p in inspect.signature(screen).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in PER_SLIDE}
    unknown = set(given) - set(params)
    if unknown:
        raise OptionError(f"screen_batch: unknown screening option(s) {', '.join(sorted(unknown))}")
    return {**{name: p.default for name, p in params.items()}, **given}


def _bundle(model: Ensemble | ModelBundle | str | Path | None) -> ModelBundle:
    if isinstance(model, ModelBundle):
        return model
    loaded = getattr(model, "bundle", None)  # an Ensemble (not imported here: the Ray driver needs no torch)
    return loaded if isinstance(loaded, ModelBundle) else load_bundle(model)  # type: ignore[arg-type]
