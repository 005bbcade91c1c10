"""``wsi-amf screen``: one slide, its candidate points, a model -> GeoJSON, CSV table, summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..text import amf_ratio_text
from .options import build_screen_options, handle_errors, screening_options
from .verbosity import echo_detail, echo_result, is_quiet

if TYPE_CHECKING:
    from ..points import PointsOptions


@click.command("screen")
@click.argument("slide", type=click.Path(path_type=Path))
@click.option("--points", "points_path", required=True, type=click.Path(path_type=Path, allow_dash=True),
              help="Candidate positions: CSV, QuPath GeoJSON (.gz, .zip), grand-challenge JSON (mm), SlideRunner "
                   "SQLite or MIDOG++ JSON (see --points-format). '-' reads standard input; pipes and FIFOs work.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Output directory (created).")
@screening_options
@click.pass_context
@handle_errors
def screen_cmd(ctx: click.Context, slide: Path, points_path: Path, out: Path, points_options: PointsOptions,
               **options: Any) -> None:
    """Classify the candidate mitoses of SLIDE as normal or atypical mitotic figures."""
    from ..screen import screen

    opts = build_screen_options(points_options, options)
    result = screen(slide, points_path, opts, out=out, progress=not is_quiet(ctx), **options)
    s = result.summary()
    echo_result(ctx, f"{result.slide_path.name}: {s['n_classified']} of {s['n_candidates']} candidates classified, "
                     f"{s['n_atypical']} called atypical, {s['n_normal']} normal; {amf_ratio_text(s)}")
    echo_warnings(ctx, s)
    if s["roi"] is not None:
        r = s["roi"]
        echo_result(ctx, f"  ROI {r['area_mm2']:.3f} mm2: {r['n_mf']} mitotic figures ({r['mf_per_2mm2']:.1f} per 2 mm2), "
                         f"{r['n_amf']} atypical ({r['amf_per_2mm2']:.1f} per 2 mm2); "
                         f"{s['n_skipped_outside_roi']} candidates outside the ROI")
    for kind, path in result.outputs.items():
        echo_detail(ctx, f"  {kind:8s} {path}")


def echo_warnings(ctx: click.Context, summary: dict[str, Any]) -> None:
    """The summary's domain and ratio warnings, one line each (shown with -q too)."""
    for key in ("domain_warning", "ratio_warning"):
        if summary.get(key):
            echo_result(ctx, f"  warning: {summary[key]}")
