"""RecipeChanges: typed, frozen changes to a recipe, applied and validated by Recipe.apply / resolve_recipe."""

from __future__ import annotations

import dataclasses

import pytest

from wsi_amf.errors import OptionError
from wsi_amf.training import RECIPES, Recipe, RecipeChanges, resolve_recipe


def test_fields_mirror_the_recipe() -> None:
    recipe = {f.name for f in dataclasses.fields(Recipe)} - {"name"}
    assert {f.name for f in dataclasses.fields(RecipeChanges)} == recipe


def test_changes_apply_and_none_keeps() -> None:
    rec = resolve_recipe("efficientvit", RecipeChanges(epochs=3, augment=["hflip"], mean=[0, 0, 0]))  # type: ignore[arg-type]
    assert (rec.epochs, rec.augment, rec.mean) == (3, ("hflip",), (0.0, 0.0, 0.0))
    assert rec.lr == RECIPES["efficientvit"].lr and rec.name == "efficientvit"
    assert resolve_recipe("convnextv2") == RECIPES["convnextv2"] == RECIPES["convnextv2"].apply(RecipeChanges())
    assert resolve_recipe("convnextv2", RecipeChanges(augment=())).augment == ()  # --augment none
    with pytest.raises(dataclasses.FrozenInstanceError):
        RecipeChanges().epochs = 2  # type: ignore[misc]


@pytest.mark.parametrize(("changes", "message"), [
    (RecipeChanges(epochs=0), "--epochs 0: must be at least 1"),
    (RecipeChanges(crop=1.5), "--crop 1.5: must be in (0, 1]"),
    (RecipeChanges(loss="hinge"), "--loss 'hinge': expected one of bce, focal"),
    (RecipeChanges(augment=("blur",)), "--augment ('blur',): known operations"),
    (RecipeChanges(folds=1), "--folds 1: must be at least 2"),
])
def test_bad_changes_are_option_errors(changes: RecipeChanges, message: str) -> None:
    with pytest.raises(OptionError) as info:
        resolve_recipe("convnextv2", changes)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_changes_from_a_mapping() -> None:
    assert RecipeChanges.from_mapping({"epochs": 2, "lr": None, "name": "ignored"}) == RecipeChanges(epochs=2)
    with pytest.raises(OptionError, match="unknown training option 'colour'"):
        RecipeChanges.from_mapping({"colour": "red"})
    with pytest.raises(OptionError, match="--recipe 'resnet'"):
        resolve_recipe("resnet")
