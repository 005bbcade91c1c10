"""``-v/--verbose`` and ``-q/--quiet``: counted, given before or after the subcommand, the same on every command.

What they mean:

- default: progress bars, warnings, every result line (counts, the files written, hints);
- ``-q``: no progress bars; warnings still shown; only the command's essential result line (and the warnings
  of that result) on standard output: no lists of files, no hints;
- ``-qq``: nothing but errors;
- ``-v``: informational log messages too; ``-vv``: debugging messages, and the traceback of an unexpected error.
"""

from __future__ import annotations

import logging
from typing import Any

import click

VERBOSE_HELP = "More log output (repeatable)."
QUIET_HELP = ("Less output (repeatable): -q: no progress bars, only the result line and warnings; -qq: errors only.")


def configure_logging(verbose: int, quiet: int) -> None:
    """The root logger's level: warnings by default (and with one -q), errors with -qq, info with -v, debug with -vv."""
    level = logging.WARNING - 10 * verbose + 10 * max(0, quiet - 1)
    logging.basicConfig(level=max(logging.DEBUG, min(logging.ERROR, level)), format="%(levelname)s: %(message)s",
                        force=True)


def _counts(ctx: click.Context) -> dict[str, int]:
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {}
    root.obj.setdefault("verbose", 0)
    root.obj.setdefault("quiet", 0)
    return root.obj


def _count(ctx: click.Context, param: click.Parameter, value: int) -> None:
    """Add a ``-v``/``-q`` count to those given so far (before the subcommand too); set the log level."""
    if not value:
        return
    counts = _counts(ctx)
    counts[str(param.name)] += value
    configure_logging(counts["verbose"], counts["quiet"])


def verbosity_options() -> list[click.Option]:
    """Fresh ``-v`` and ``-q`` options for a command; their counts add up in the root context."""
    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_count, help=VERBOSE_HELP),
        click.Option(["-q", "--quiet"], count=True, expose_value=False, callback=_count, help=QUIET_HELP),
    ]


def add_verbosity_options(cmd: click.Command) -> None:
    """Give ``cmd`` the ``-v``/``-q`` options unless it has them."""
    names = {name for p in cmd.params for name in getattr(p, "opts", ())}
    if "--quiet" not in names:
        cmd.params.extend(verbosity_options())


def quiet_level(ctx: click.Context) -> int:
    """0: everything; 1 (``-q``): the result line only; 2 or more (``-qq``): errors only."""
    root = ctx.find_root()
    return int(root.obj.get("quiet", 0)) if isinstance(root.obj, dict) else 0


def is_quiet(ctx: click.Context) -> bool:
    """Whether ``-q`` was given (before or after the subcommand): no progress bars, no details."""
    return quiet_level(ctx) > 0


def echo_result(ctx: click.Context, message: Any = "", **kwargs: Any) -> None:
    """A line of the command's essential result: shown unless ``-qq``."""
    if quiet_level(ctx) < 2:
        click.echo(message, **kwargs)


def echo_detail(ctx: click.Context, message: Any = "", **kwargs: Any) -> None:
    """A line of detail (files written, hints): shown unless ``-q``."""
    if quiet_level(ctx) < 1:
        click.echo(message, **kwargs)
