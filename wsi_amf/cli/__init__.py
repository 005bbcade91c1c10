"""The ``wsi-amf`` command line: a thin click layer over the Python API (one module per subcommand)."""

from __future__ import annotations

import click

from .._version import __version__
from .options import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-amf")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less output: no progress bars, warnings only with -q, errors only with -qq.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: int) -> None:
    """Classify candidate mitotic figures on whole-slide images as normal or atypical."""
    configure_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet > 0


def _register() -> None:
    from .batch import batch_cmd
    from .classify_stack import classify_stack_cmd
    from .demo import demo_cmd
    from .report import report_cmd
    from .screen import screen_cmd
    from .train import calibrate_cmd, classify_cmd, combine_cmd, evaluate_cmd, train_cmd

    for cmd in (screen_cmd, batch_cmd, report_cmd, demo_cmd, train_cmd, evaluate_cmd, calibrate_cmd, combine_cmd, classify_cmd,
                classify_stack_cmd):
        main.add_command(cmd)


_register()
