"""Training: a cross-validated ensemble written as a model bundle.

``train`` builds it with a recipe (``convnextv2`` or ``efficientvit``, changed by a ``RecipeChanges``).
Modules: ``splits`` (grouped folds), ``augment``, ``recipes``, ``trainer`` (one fold), ``checkpoints``
(resume), ``crossval`` (``train``), ``oof`` (out-of-fold predictions from the recorded folds), ``calibrate``,
``combine``. Running a bundle on patches is ``wsi_amf.inference``; the datasets are ``wsi_amf.datasets``.

The names below are imported on first use, so that importing one module (``wsi_amf.training.recipes``) does
not load the others; torch and timm are imported only when a function needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .crossval import TrainResult, train
    from .recipes import RECIPES, Recipe, RecipeChanges, resolve_recipe

_ORIGINS = {
    "RECIPES": "recipes",
    "Recipe": "recipes",
    "RecipeChanges": "recipes",
    "TrainResult": "crossval",
    "resolve_recipe": "recipes",
    "train": "crossval",
}
__all__ = ["RECIPES", "Recipe", "RecipeChanges", "TrainResult", "resolve_recipe", "train"]


def __getattr__(name: str) -> Any:
    origin = _ORIGINS.get(name)
    if origin is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{origin}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_ORIGINS})
