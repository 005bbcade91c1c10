"""Training, evaluation and patch classification (issue 3).

``train`` builds a cross-validated ensemble with a recipe (``convnextv2`` or ``efficientvit``) and writes it
as a model bundle; ``evaluate`` scores a labelled dataset; ``classify`` scores patch images.
Modules: ``datasets`` (formats, image loading), ``splits`` (grouped folds), ``augment``, ``recipes``,
``trainer`` (one fold), ``checkpoints`` (resume), ``crossval`` (``train``), ``metrics``, ``reports``,
``evaluate``, ``classify``. Torch and timm are imported only when a function needs them.
"""

from __future__ import annotations

from .classify import ClassifyResult, classify
from .crossval import TrainResult, train
from .datasets import FORMATS, PatchDataset, load_dataset
from .evaluate import EvalResult, evaluate
from .recipes import RECIPES, Recipe, resolve_recipe

__all__ = [
    "FORMATS",
    "RECIPES",
    "ClassifyResult",
    "EvalResult",
    "PatchDataset",
    "Recipe",
    "TrainResult",
    "classify",
    "evaluate",
    "load_dataset",
    "resolve_recipe",
    "train",
]
