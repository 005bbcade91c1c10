"""``wsi-amf batch``: screen every slide of a folder (or a manifest) -> per-slide outputs + a cohort table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..choices import EXECUTORS
from ..text import amf_ratio_text
from .options import build_screen_options, handle_errors, screening_options
from .verbosity import echo_detail, echo_result, is_quiet

if TYPE_CHECKING:
    from ..points import PointsOptions


def _fmt_row(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['stem']}: {row['status']}: {row['error']}"
    return (f"{row['stem']}: {row['n_classified']} of {row['n_candidates']} candidates classified, "
            f"{row['n_atypical']} called atypical; {amf_ratio_text(row)} ({row['seconds']:.1f} s)")


@click.command("batch")
@click.argument("slides_dir", required=False, type=click.Path(path_type=Path))
@click.option("--manifest", type=click.Path(path_type=Path), default=None,
              help="CSV with the columns slide,points[,roi] (paths relative to it) instead of SLIDES_DIR.")
@click.option("--points-dir", type=click.Path(path_type=Path), default=None,
              help="Folder of the points files. Default: SLIDES_DIR.")
@click.option("--points-pattern", "points_patterns", multiple=True, default=("{stem}.csv", "{stem}.geojson"),
              show_default=True, help="Points file of a slide, in --points-dir; {stem}, {name}, {parent}. Repeatable: "
              "the first that exists is used.")
@click.option("--recursive", is_flag=True, help="Also search the sub-folders of SLIDES_DIR.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Output directory: per-slide outputs, cohort.csv, cohort.json.")
@click.option("--force", is_flag=True, help="Redo slides whose outputs are up to date.")
@click.option("--prefetch/--no-prefetch", default=True, show_default=True,
              help="Read the next slide's patches while the current one is classified.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="local: this machine; ray: the slides spread over a Ray cluster (pip install 'wsi-amf[ray]').")
@click.option("--ray-address", default=None,
              help="Ray cluster to join (e.g. auto, or ray://head:10001). Default: $RAY_ADDRESS, else a local Ray.")
@click.option("--ray-actors", type=click.IntRange(min=1), default=None,
              help="Ray workers, each loading the model once. Default: one per GPU, or one per 4 CPUs.")
@click.option("--ray-retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Ray: how many more times a slide is tried when its worker dies (killed, out of memory, node lost).")
@click.option("--slide-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds a slide may take; one that takes longer is recorded failed and abandoned (on Ray its "
              "worker is replaced). Default: no limit.")
@screening_options
@click.pass_context
@handle_errors
def batch_cmd(ctx: click.Context, slides_dir: Path | None, points_options: PointsOptions, **options: Any) -> None:
    """Screen every slide of SLIDES_DIR (or of --manifest) into --out, with a cohort table.

    Each slide is paired with its points file by stem (--points-dir, --points-pattern). Slides whose outputs
    are up to date are skipped, so a re-run finishes what an interrupted one left; a slide that fails is
    recorded and the others go on. The exit code is 1 when any slide failed.
    """
    from tqdm.auto import tqdm

    from ..batch import screen_batch

    quiet = is_quiet(ctx)

    def report(row: dict[str, Any]) -> None:
        if row["status"] == "failed":
            tqdm.write(_fmt_row(row), file=sys.stderr)
        elif not quiet:
            tqdm.write(_fmt_row(row))

    opts = build_screen_options(points_options, options)
    result = screen_batch(slides_dir, options=opts, progress=not quiet, on_row=report, **options)
    for row in result.rows:
        if row["status"] == "skipped":
            echo_detail(ctx, _fmt_row(row))
    if result.n_reused:
        echo_detail(ctx, f"{result.n_reused} slides up to date from an earlier run, their rows reused (--force redoes them)")
    reused = f" ({result.n_reused} reused)" if result.n_reused else ""
    echo_result(ctx, f"{len(result.rows)} slides: {result.n_ok} ok{reused}, {result.n_failed} failed, "
                     f"{result.n_skipped} skipped; cohort table {result.files['csv']}")
    if result.n_failed:
        ctx.exit(1)
