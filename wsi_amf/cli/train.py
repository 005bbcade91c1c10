"""``wsi-amf train``, ``evaluate``, ``classify``, ``calibrate`` and ``combine``: thin click layers over
``wsi_amf.training`` and ``wsi_amf.inference``."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click

from ..choices import CV_SCHEMES, DATASET_FORMATS, LOSSES, OPTIMIZERS, PRECISIONS, RECIPE_NAMES, SAMPLERS
from .options import device_option, handle_errors, patch_inference_options, set_threads, threads_option
from .verbosity import echo_detail, echo_result, is_quiet

if TYPE_CHECKING:
    from ..inference.options import InferenceOptions
    from ..training.recipes import RecipeChanges

F = TypeVar("F", bound=Callable[..., Any])
#: What ``patch_inference_options`` gives a command besides --model and --threads.
INFERENCE_KEYS = ("device", "engine", "batch_size", "tta", "threshold")


def _operations(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    ops = tuple(v.strip() for v in value.split(",") if v.strip())
    return () if ops in ((), ("none",)) else ops


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def inference_options(model: str | None, opts: dict[str, Any]) -> InferenceOptions:
    """The ``patch_inference_options`` of a command as one ``InferenceOptions`` (their values taken out of ``opts``)."""
    from ..inference.options import InferenceOptions

    return InferenceOptions(model=model, **{key: opts.pop(key) for key in INFERENCE_KEYS})


def recipe_changes(opts: dict[str, Any]) -> RecipeChanges:
    """The hyper-parameter options of ``train`` (every ``RecipeChanges`` field it has) taken out of ``opts``."""
    from ..training.recipes import RecipeChanges

    return RecipeChanges(**{f.name: opts.pop(f.name) for f in fields(RecipeChanges) if f.name in opts})


def dataset_options(f: F) -> F:
    for decorator in reversed((
        click.option("--format", "data_format", type=click.Choice(DATASET_FORMATS), default=None,
                     help="Dataset format. Default: detected from DATA."),
        click.option("--images", type=click.Path(path_type=Path), default=None,
                     help="MIDOG 2025: folder of the patch images (default: beside the table or one level below)."),
        click.option("--group-column", default=None,
                     help="Column naming the source slide/image; folds never split a group. Default: per format."),
        click.option("--domain-column", default=None,
                     help="Extra column to report metrics by (and the domain of --cv loco)."),
        click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Image decoding threads."),
    )):
        f = decorator(f)
    return f


@click.command("train")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write (created).")
@click.option("--recipe", type=click.Choice(RECIPE_NAMES), default="convnextv2", show_default=True, help="Training recipe.")
@dataset_options
@click.option("--cv", type=click.Choice(CV_SCHEMES), default="kfold", show_default=True,
              help="kfold: stratified grouped k-fold; loco: also leave-one-domain-out over --domain-column.")
@click.option("--arch", default=None, help="Any timm architecture (default: the recipe's).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per fold.")
@click.option("--lr", type=float, default=None, help="Learning rate.")
@click.option("--weight-decay", type=float, default=None, help="Weight decay.")
@click.option("--img-size", type=click.IntRange(min=8), default=None, help="Model input size in pixels.")
@click.option("--crop", type=click.FloatRange(0.0, 1.0, min_open=True), default=None,
              help="Centre-crop fraction of the patch, resized to --img-size.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Training batch size.")
@click.option("--folds", type=click.IntRange(min=2), default=None, help="Cross-validation folds (= ensemble members).")
@click.option("--loss", type=click.Choice(LOSSES), default=None, help="Loss function.")
@click.option("--sampler", type=click.Choice(SAMPLERS), default=None, help="Batch sampling.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None, help="Optimiser.")
@click.option("--augment", default=None, callback=lambda ctx, param, value: _operations(value),
              help="Comma-separated augmentations: transpose, hflip, vflip, shift_scale_rotate, stain, colour; or 'none'.")
@click.option("--focal-gamma", type=float, default=None, help="Focal loss gamma.")
@click.option("--focal-alpha", type=click.FloatRange(0.0, 1.0), default=None, help="Focal loss weight of atypical figures.")
@click.option("--stain-alpha", type=float, default=None, help="H&E augmentation: stain scale in 1 +/- alpha.")
@click.option("--stain-beta", type=float, default=None, help="H&E augmentation: stain shift in +/- beta (optical density).")
@click.option("--grad-clip", type=float, default=None, help="Gradient norm clipping.")
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA (default: on).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (splits, initialisation, sampling).")
@click.option("--mpp", type=float, default=None, help="Resolution of the training patches in um/px (default 0.25).")
@click.option("--pretrained", is_flag=True, default=None, help="Start from timm's pretrained weights (downloads).")
@click.option("--pretrained-file", type=click.Path(path_type=str), default=None,
              help="Start from local weights (a timm checkpoint for --arch: .safetensors, .pth).")
@device_option
@threads_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="How the members' weights are stored: fp32, fp16 (half the size) or int8 (about 0.3: the "
                   "large weights in int8 with a scale per output channel, the rest fp16; float32 when loaded).")
@click.option("--fp16", is_flag=True, help="The same as --precision fp16.")
@click.option("--force", is_flag=True, help="Start over: discard an interrupted run or overwrite a finished bundle.")
@click.option("--name", default=None, help="Model name recorded in the bundle (default: the --out folder name).")
@click.pass_context
@handle_errors
def train_cmd(ctx: click.Context, data: Path, out: Path, recipe: str, **opts: Any) -> None:
    """Train a cross-validated ensemble on DATA and write it as a model bundle.

    DATA: a MIDOG 2025 track 2 table (+ images), an AMi-Br folder, a folder of atypical/normal
    sub-folders, or a CSV path,label[,group][,domain].
    """
    from ..training import train

    set_threads(opts.pop("threads"))
    if opts.pop("fp16"):
        if opts["precision"] not in ("fp32", "fp16"):
            raise click.UsageError(f"--fp16 and --precision {opts['precision']} contradict each other; give one")
        opts["precision"] = "fp16"
    changes = recipe_changes(opts)
    result = train(data, out, recipe=recipe, changes=changes, format=opts.pop("data_format"), quiet=is_quiet(ctx), **opts)
    m = result.metrics
    echo_result(ctx,
        f"{result.bundle.path}: {len(result.bundle.config.members)} members "
        f"(folds trained: {result.folds_trained}, resumed from an interrupted run: {result.folds_resumed})"
    )
    echo_result(ctx,
        f"  out-of-fold: balanced accuracy {_fmt(m['balanced_accuracy'])}, ROC AUC {_fmt(m['roc_auc'])}, "
        f"sensitivity {_fmt(m['sensitivity'])}, specificity {_fmt(m['specificity'])} at threshold {result.threshold:.3f}"
    )
    if "loco" in m:
        echo_result(ctx,
            f"  leave-one-{m['loco']['column']}-out: mean balanced accuracy {_fmt(m['loco']['mean_balanced_accuracy'])}, "
            f"mean ROC AUC {_fmt(m['loco']['mean_roc_auc'])}"
        )
    for kind, path in result.files.items():
        echo_detail(ctx, f"  {kind:16s} {path}")


@click.command("evaluate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory (created).")
@dataset_options
@patch_inference_options
@click.pass_context
@handle_errors
def evaluate_cmd(ctx: click.Context, data: Path, out: Path, model: str | None, data_format: str | None, **opts: Any) -> None:
    """Evaluate a model bundle on the labelled dataset DATA: metrics.json, predictions.csv, roc.png."""
    from ..inference import evaluate

    set_threads(opts.pop("threads"))
    result = evaluate(data, out, inference_options(model, opts), format=data_format, quiet=is_quiet(ctx), **opts)
    m = result.metrics
    echo_result(ctx,
        f"{m['n']} patches ({m['n_atypical']} atypical): balanced accuracy {_fmt(m['balanced_accuracy'])}, "
        f"ROC AUC {_fmt(m['roc_auc'])}, sensitivity {_fmt(m['sensitivity'])}, specificity {_fmt(m['specificity'])}, "
        f"accuracy {_fmt(m['accuracy'])} at threshold {result.threshold:.3f}"
    )
    o = m["at_otsu"]
    echo_detail(ctx, f"  at Otsu's threshold {o['threshold']:.3f}: balanced accuracy {_fmt(o['balanced_accuracy'])}")
    for kind, path in result.files.items():
        echo_detail(ctx, f"  {kind:12s} {path}")


@click.command("classify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="CSV to write: path,p_atypical,label.")
@patch_inference_options
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Image decoding threads.")
@click.pass_context
@handle_errors
def classify_cmd(ctx: click.Context, paths: tuple[Path, ...], out: Path, model: str | None, **opts: Any) -> None:
    """Classify patch images (files, folders searched recursively, multi-page TIFF stacks) as normal or atypical."""
    from ..inference import classify

    set_threads(opts.pop("threads"))
    result = classify(list(paths), out, inference_options(model, opts), quiet=is_quiet(ctx), **opts)
    echo_result(ctx, f"{result.n} patches: {result.n_atypical} atypical at threshold {result.threshold:.3f}; wrote {result.out}")


@click.command("calibrate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@dataset_options
@device_option
@click.pass_context
@handle_errors
def calibrate_cmd(ctx: click.Context, bundle: Path, data: Path, data_format: str | None, **opts: Any) -> None:
    """Give BUNDLE (trained before the ratio estimators) its calibration and rates from DATA, its training data.

    The out-of-fold predictions are rebuilt from the recorded folds (each member scores the figures it never
    saw); bundle.json gains its quantification entry; the weights are untouched.
    """
    from ..training.calibrate import calibrate

    result = calibrate(bundle, data, format=data_format, quiet=is_quiet(ctx), **opts)
    q = result.config.quantification
    r = q["rates"]
    echo_result(ctx, f"{result.path}: calibration {q['calibration']['method']}, TPR {r['tpr']:.3f} ({r['tp']}/{r['tp'] + r['fn']}), "
                     f"FPR {r['fpr']:.3f} ({r['fp']}/{r['fp'] + r['tn']}) at threshold {r['threshold']:.3f}; "
                     f"estimator {q['estimator']}")


@click.command("combine")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="The training data of every bundle.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write (created).")
@click.option("--name", default=None, help="The combined bundle's name (default: the --out folder's).")
@click.option("--force", is_flag=True, help="Overwrite a bundle already in --out.")
@dataset_options
@device_option
@click.pass_context
@handle_errors
def combine_cmd(ctx: click.Context, bundles: tuple[Path, ...], data: Path, data_format: str | None, **opts: Any) -> None:
    """One ensemble of several BUNDLES trained on DATA with the same folds (e.g. different architectures).

    Each keeps its members' architecture and preprocessing; a figure's out-of-fold score is the mean of its
    fold's members, and the threshold, metrics and calibration are computed from it.
    """
    from ..training.combine import combine

    result = combine(bundles, data, format=data_format, quiet=is_quiet(ctx), **opts)
    m = result.config.metrics["cv_oof"]
    echo_result(ctx, f"{result.path}: {len(result.config.members)} members ({'+'.join(result.config.architectures)}); "
                     f"out-of-fold {', '.join(f'{k} {v:.3f}' for k, v in m.items() if isinstance(v, float))}; "
                     f"threshold {result.config.threshold:.3f}")
