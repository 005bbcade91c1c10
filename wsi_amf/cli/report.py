"""``wsi-amf report``: the HTML reports of a results folder (slides, cohort, evaluation), written afterwards."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ReportError
from .options import handle_errors
from .verbosity import echo_detail


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--slides", type=click.Path(path_type=Path), default=None,
              help="Folder holding the slides, when they moved since screening (found by file name).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="Patch cache directory, when screening used another one than the summaries record.")
@click.pass_context
@handle_errors
def report_cmd(ctx: click.Context, results_dir: Path, slides: Path | None, cache_dir: Path | None) -> None:
    """Write the HTML reports of RESULTS_DIR: <stem>.report.html for every <stem>.summary.json, cohort.html
    when it holds a batch's cohort.json, report.html when it holds an evaluation's metrics.json."""
    from ..report import write_reports

    done = write_reports(results_dir, slides=slides, cache=cache_dir)
    for path in done.written:
        echo_detail(ctx, f"  report   {path}")
    for line in done.errors[:-1]:
        click.echo(f"Error: {line}", err=True)
    if done.errors:
        raise ReportError(done.errors[-1] + (f" ({len(done.errors)} reports failed)" if len(done.errors) > 1 else ""))
