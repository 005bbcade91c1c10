"""``wsi-amf demo``: a synthetic slide screened with the built-in model, and how to open it in QuPath."""

from __future__ import annotations

from pathlib import Path

import click

from .options import device_option, handle_errors, is_quiet, model_option, ratio_text


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

    quiet = is_quiet(ctx)
    click.echo(f"Writing a synthetic slide (drawn by wsi-amf, not real tissue) and its candidate points into {out}/ ...")
    demo = run_demo(out, model=model, device=device, progress=not quiet)
    r = demo.result
    s = r.summary()
    click.echo("")
    click.echo("This slide is SYNTHETIC: its counts show the tool working, not the model's accuracy.")
    click.echo(f"Model: {s['model']['name']} ({s['model']['members']} x {s['model']['architecture']}), "
               f"engine {s['engine']['engine']} on {s['engine']['device']}")
    click.echo(f"{s['n_classified']} candidates classified: {s['n_atypical']} called atypical, {s['n_normal']} normal; "
               f"{ratio_text(s)}")
    click.echo(f"  slide    {demo.slide}")
    click.echo(f"  points   {demo.points}")
    for kind, path in r.outputs.items():
        click.echo(f"  {kind:8s} {path}")
    click.echo("")
    click.echo(f"To see it in a browser: open {r.outputs['report']} (candidates on the slide, the hotspot, galleries).")
    click.echo("To see it in QuPath: File > Open... the slide, then drag the .geojson file onto the viewer")
    click.echo("(or File > Import objects from file). Detections are coloured by class; the 'AMF probability'")
    click.echo("measurement is in the detection measurement table (Measure > Show detection measurements).")
