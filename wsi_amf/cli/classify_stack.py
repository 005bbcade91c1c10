"""``wsi-amf classify-stack``: MIDOG 2025 track 2 container I/O (multi-page TIFF of patches -> JSON list)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import handle_errors, patch_inference_options, set_threads
from .train import inference_options
from .verbosity import echo_result, is_quiet


@click.command("classify-stack")
@click.argument("stack", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help='JSON to write: [{"class": "normal"|"atypical", "confidence": P(atypical)}, ...] in page order.')
@patch_inference_options
@click.pass_context
@handle_errors
def classify_stack_cmd(ctx: click.Context, stack: Path, out: Path, model: str | None, **opts: Any) -> None:
    """Classify every page of STACK, a multi-page TIFF of 128x128 RGB patches (MIDOG 2025 track 2 input)."""
    from ..inference.track2 import classify_stack

    set_threads(opts.pop("threads"))
    result = classify_stack(stack, out, inference_options(model, opts), quiet=is_quiet(ctx), **opts)
    echo_result(ctx, f"{result.n} patches: {result.n_atypical} atypical at threshold {result.threshold:.3f}; wrote {result.out}")
