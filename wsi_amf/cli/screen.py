"""``wsi-amf screen``: one slide, its candidate points, a model -> GeoJSON, CSV table, summary."""

from __future__ import annotations

from pathlib import Path

import click

from .options import (batch_size_option, device_option, engine_option, handle_errors, model_option, threshold_option,
                      tta_option)


@click.command("screen")
@click.argument("slide", type=click.Path(path_type=Path))
@click.option("--points", "points_path", required=True, type=click.Path(path_type=Path),
              help="Candidate positions in level-0 pixels: CSV or QuPath GeoJSON.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Output directory (created).")
@model_option
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
              help="Patch cache directory. Default: the user cache directory ($WSI_AMF_CACHE overrides).")
@click.option("--mpp", type=float, default=None, help="Slide resolution in um/px, overriding (or supplying) the file's.")
@device_option
@engine_option
@batch_size_option
@tta_option
@threshold_option
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Slide reader threads.")
@click.option("--points-format", type=click.Choice(["csv", "geojson"]), default=None, help="Default: from the file.")
@click.option("--x-col", default=None, help="CSV column of x (default: detected from the header).")
@click.option("--y-col", default=None, help="CSV column of y (default: detected from the header).")
@click.option("--score-col", default=None, help="Detector score column / measurement (default: detected).")
@click.option("--min-score", type=float, default=None, help="Keep only candidates with a detector score >= this.")
@click.option("--class", "class_name", default=None, help="Keep only objects of this classification.")
@click.pass_context
@handle_errors
def screen_cmd(ctx: click.Context, slide: Path, points_path: Path, out: Path, model: str | None, cache_dir: Path | None,
               mpp: float | None, device: str, engine: str, batch_size: int, tta: bool, threshold: float | None,
               workers: int, points_format: str | None, x_col: str | None, y_col: str | None, score_col: str | None,
               min_score: float | None, class_name: str | None) -> None:
    """Classify the candidate mitoses of SLIDE as normal or atypical mitotic figures."""
    from ..points import read_points
    from ..screen import screen

    quiet = ctx.obj.get("quiet", False) if ctx.obj else False
    points = read_points(points_path, fmt=points_format, x_col=x_col, y_col=y_col, score_col=score_col,
                         min_score=min_score, class_name=class_name)
    result = screen(slide, points, model=model, out=out, cache_dir=cache_dir, mpp=mpp, device=device, engine=engine,
                    batch_size=batch_size, tta=tta, threshold=threshold, workers=workers, progress=not quiet)
    if quiet:
        return
    s = result.summary()
    ratio = "n/a" if s["amf_ratio"] is None else f"{s['amf_ratio']:.3f}"
    ci = "" if s["amf_ratio_ci95"] is None else " (95% CI {:.3f}-{:.3f})".format(*s["amf_ratio_ci95"])
    click.echo(f"{result.slide_path.name}: {s['n_classified']} of {s['n_candidates']} candidates classified, "
               f"{s['n_atypical']} atypical, {s['n_normal']} normal; AMF ratio {ratio}{ci}")
    for kind, path in result.outputs.items():
        click.echo(f"  {kind:8s} {path}")
