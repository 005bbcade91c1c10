"""Options shared by several subcommands, as reusable click decorators, and the error bridge."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from ..choices import CACHE_MAX_GB, ENGINES, EXPORT_SUFFIXES, POINTS_FORMATS
from ..errors import OptionError, WsiAmfError
from .verbosity import configure_logging as configure_logging
from .verbosity import is_quiet as is_quiet

if TYPE_CHECKING:
    from ..options import ScreenOptions
    from ..points import PointsOptions

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
        "--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
        help="Inference engine: auto = OpenVINO (else ONNX Runtime) on the CPU, PyTorch (autocast) on CUDA.",
    )(f)


def threads_option(f: F) -> F:
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None,
        help="CPU threads for PyTorch / ONNX Runtime (default: one per core). Use 1 when other jobs share the CPU.",
    )(f)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def patch_inference_options(f: F) -> F:
    """Running a bundle on patch images (``evaluate``, ``classify``, ``classify-stack``): --model, --device,
    --engine, --batch-size, --tta, --threshold, --threads."""
    for decorator in reversed((model_option, device_option, engine_option, batch_size_option, tta_option,
                               threshold_option, threads_option)):
        f = decorator(f)
    return f


def points_options(f: F) -> F:
    """The points-file options (format, columns, score filter, class filter, database slide), handed to the
    command as one ``points_options: PointsOptions`` argument."""

    @functools.wraps(f)
    def wrapper(*args: Any, points_format: str | None, x_col: str | None, y_col: str | None, score_col: str | None,
                min_score: float | None, class_name: str | None, db_slide: str | None, **kwargs: Any) -> Any:
        from ..points import PointsOptions

        opts = PointsOptions(fmt=points_format, x_col=x_col, y_col=y_col, score_col=score_col, min_score=min_score,
                             class_name=class_name, db_slide=db_slide)
        return f(*args, points_options=opts, **kwargs)

    for decorator in reversed((
        click.option("--points-format", type=click.Choice(list(POINTS_FORMATS)),
                     default=None,
                     help="Points file format (default: from the extension and content). gc-json: grand-challenge "
                          "'Multiple points' in mm; sliderunner: SlideRunner/EXACT SQLite; midogpp: MIDOG++ JSON."),
        click.option("--x-col", default=None, help="CSV column of x (default: detected from the header)."),
        click.option("--y-col", default=None, help="CSV column of y (default: detected from the header)."),
        click.option("--score-col", default=None, help="Detector score column / measurement (default: detected)."),
        click.option("--min-score", type=float, default=None, help="Keep only candidates with a detector score >= this."),
        click.option("--class", "class_name", default=None,
                     help="Keep only objects of this class (GeoJSON classification, CSV class/label column, "
                          "database or MIDOG++ class name, gc-json point name)."),
        click.option("--db-slide", default=None,
                     help="The slide's file name (or number) in a SlideRunner database or MIDOG++ JSON holding many "
                          "slides (default: the slide's own file name)."),
    )):
        wrapper = decorator(wrapper)
    return wrapper  # type: ignore[return-value]


def screening_options(f: F) -> F:
    """Every option of ``screen`` besides the slide, points file and output directory (shared with ``batch``)."""
    for decorator in reversed((
        model_option,
        click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=None,
                     help="Patch cache directory. Default: the user cache directory ($WSI_AMF_CACHE overrides). "
                          "A folder that cannot be written is used read-only."),
        click.option("--no-cache", "cache", flag_value=False, default=True,
                     help="Read every patch from the slide; keep nothing."),
        click.option("--cache-max-gb", type=click.FloatRange(min=0), default=CACHE_MAX_GB, show_default=True,
                     help="Bound of the patch cache: after a run the least recently used slides are evicted "
                          "beyond it (0: no bound)."),
        click.option("--mpp", type=float, default=None,
                     help="Slide resolution in um/px, overriding (or supplying) the file's."),
        click.option("--roi", type=click.Path(path_type=Path), default=None,
                     help="Region of interest: QuPath annotation GeoJSON (polygons, level-0 pixels). Only candidates "
                          "inside are classified; the summary adds its area in mm2 and the densities per mm2 and 2 mm2."),
        click.option("--export", type=click.Choice(list(EXPORT_SUFFIXES)), multiple=True,
                     help="Extra output (repeatable): gc-json = grand-challenge 'Multiple points' JSON in mm, "
                          "probability = P(atypical)."),
        device_option,
        engine_option,
        batch_size_option,
        tta_option,
        threshold_option,
        click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Slide reader threads while the model waits for patches (one low-priority thread reads while it "
                          "is busy)."),
        click.option("--report", is_flag=True,
                     help="Also write <stem>.report.html: thumbnail with every candidate, hotspot, histogram, galleries."),
        points_options,
    )):
        f = decorator(f)
    return f


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


def build_screen_options(points_options: PointsOptions, values: dict[str, Any]) -> ScreenOptions:
    """The ``ScreenOptions`` of ``screening_options``' values (those it adds are taken out of ``values``)."""
    from dataclasses import fields

    from ..options import ScreenOptions

    names = [f.name for f in fields(ScreenOptions) if f.name != "points"]
    return ScreenOptions(points=points_options, **{name: values.pop(name) for name in names})
