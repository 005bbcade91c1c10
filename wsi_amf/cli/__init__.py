"""The ``wsi-amf`` command line: a thin click layer over the Python API (one module per subcommand).

The subcommand modules import only click and ``wsi_amf.choices``; each command imports the library when it
runs, so that ``wsi-amf --help`` (and a subcommand's) loads no numerical library.
"""

from __future__ import annotations

import click

from .._version import __version__
from .batch import batch_cmd
from .classify_stack import classify_stack_cmd
from .demo import demo_cmd
from .report import report_cmd
from .screen import screen_cmd
from .train import calibrate_cmd, classify_cmd, combine_cmd, evaluate_cmd, train_cmd
from .verbosity import add_verbosity_options, configure_logging, quiet_level


class _Group(click.Group):
    """A group whose subcommands all take ``-v``/``-q`` after their name too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        add_verbosity_options(cmd)
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsi-amf")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Classify candidate mitotic figures on whole-slide images as normal or atypical."""
    ctx.ensure_object(dict)
    configure_logging(ctx.obj.get("verbose", 0), quiet_level(ctx))


add_verbosity_options(main)
for _cmd in (screen_cmd, batch_cmd, report_cmd, demo_cmd, train_cmd, evaluate_cmd, calibrate_cmd, combine_cmd,
             classify_cmd, classify_stack_cmd):
    main.add_command(_cmd)
