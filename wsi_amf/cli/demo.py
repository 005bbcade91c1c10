"""``wsi-amf demo``: a synthetic slide screened with the built-in model, and how to open it in QuPath."""

from __future__ import annotations

from pathlib import Path

import click

from ..text import amf_ratio_text
from .options import device_option, handle_errors, model_option
from .screen import echo_warnings
from .verbosity import echo_detail, echo_result, is_quiet


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("wsi-amf-demo"), show_default=True,
              help="Directory for the synthetic slide, its points and the results.")
@model_option
@device_option
@click.pass_context
@handle_errors
def demo_cmd(ctx: click.Context, out: Path, model: str | None, device: str) -> None:
    """Screen a small SYNTHETIC slide with the built-in model, to see the whole tool work."""
    from ..demo import run_demo

    echo_detail(ctx, f"Writing a synthetic slide (drawn by wsi-amf, not real tissue) and its candidate points into {out}/ ...")
    demo = run_demo(out, model=model, device=device, progress=not is_quiet(ctx))
    r = demo.result
    s = r.summary()
    echo_detail(ctx)
    echo_result(ctx, "This slide is SYNTHETIC: its counts show the tool working, not the model's accuracy.")
    echo_detail(ctx, f"Model: {s['model']['name']} ({s['model']['members']} x {s['model']['architecture']}), "
                     f"engine {s['engine']['engine']} on {s['engine']['device']}")
    echo_result(ctx, f"{s['n_classified']} candidates classified: {s['n_atypical']} called atypical, {s['n_normal']} "
                     f"normal; {amf_ratio_text(s)}")
    echo_warnings(ctx, s)
    echo_detail(ctx, f"  slide    {demo.slide}")
    echo_detail(ctx, f"  points   {demo.points}")
    for kind, path in r.outputs.items():
        echo_detail(ctx, f"  {kind:8s} {path}")
    echo_detail(ctx)
    echo_detail(ctx, f"To see it in a browser: open {r.outputs['report']} (candidates on the slide, the hotspot, galleries).")
    echo_detail(ctx, "To see it in QuPath: File > Open... the slide, then drag the .geojson file onto the viewer")
    echo_detail(ctx, "(or File > Import objects from file). Detections are coloured by class; the 'AMF probability'")
    echo_detail(ctx, "measurement is in the detection measurement table (Measure > Show detection measurements).")
