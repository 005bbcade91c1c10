"""Options shared by several subcommands, as reusable click decorators, and the error bridge."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

import click

from ..errors import OptionError, WsiAmfError

F = TypeVar("F", bound=Callable[..., Any])


def model_option(f: F) -> F:
    return click.option(
        "--model", "model", type=click.Path(path_type=str), default=None,
        help="Model bundle directory (bundle.json + member-K.safetensors). Default: the built-in model.",
    )(f)


def device_option(f: F) -> F:
    return click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)


def batch_size_option(f: F) -> F:
    return click.option(
        "--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Patches per model batch."
    )(f)


def threshold_option(f: F) -> F:
    return click.option(
        "--threshold", type=click.FloatRange(0.0, 1.0), default=None,
        help="Decision threshold on P(atypical). Default: the bundle's.",
    )(f)


def tta_option(f: F) -> F:
    return click.option("--tta", is_flag=True, help="Average the 8 flips / 90-degree rotations of every patch.")(f)


def engine_option(f: F) -> F:
    return click.option(
        "--engine", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True,
        help="Inference engine: auto = ONNX Runtime on the CPU, PyTorch (autocast) on CUDA.",
    )(f)


def handle_errors(f: F) -> F:
    """Turn library errors into one ``Error: ...`` line: exit 2 for bad options, 1 for failures."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except OptionError as exc:
            raise click.UsageError(str(exc)) from None
        except WsiAmfError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except MemoryError:
            raise click.ClickException("out of memory: lower --batch-size") from None
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:  # a bug or an unforeseen input: one line, the traceback with -v
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
                "(run with -vv for the traceback, and please report it)"
            ) from None

    return wrapper  # type: ignore[return-value]


def configure_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s: %(message)s", force=True)
