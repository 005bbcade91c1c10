"""Augmentations: shapes and dtype kept, flips exact, stain deconvolution invertible, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsi_amf.training.augment import AugmentConfig, augment_batch, colour_jitter, hed_matrices, stain_jitter


def patches(n: int = 4, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("op", "expect"),
    [("hflip", lambda x: x.flip(2)), ("vflip", lambda x: x.flip(1)), ("transpose", lambda x: x.transpose(1, 2))],
)
def test_flips_are_exact(op: str, expect) -> None:
    x = patches()
    out = augment_batch(x, AugmentConfig((op,), p=1.0), torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, expect(x))


def test_no_operation_is_identity() -> None:
    x = patches()
    assert torch.equal(augment_batch(x, AugmentConfig(()), torch.Generator()), x)
    assert torch.equal(augment_batch(x, AugmentConfig(("hflip",), p=0.0), torch.Generator()), x)


def test_shift_scale_rotate_keeps_shape_and_content() -> None:
    x = torch.full((3, 32, 32, 3), 120, dtype=torch.uint8)
    out = augment_batch(x, AugmentConfig(("shift_scale_rotate",), p=1.0), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert torch.equal(out, x)  # a flat patch stays flat (reflected borders, no black corners)


def test_hed_matrices_invert() -> None:
    rgb_from_hed, hed_from_rgb = hed_matrices()
    torch.testing.assert_close(rgb_from_hed @ hed_from_rgb, torch.eye(3), atol=1e-5, rtol=0)


def test_stain_jitter_identity_and_effect() -> None:
    x = patches(2).permute(0, 3, 1, 2).float().div(255).clamp_min(0.05)
    same = stain_jitter(x, torch.ones(2, 3), torch.zeros(2, 3))
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)
    darker = stain_jitter(x, torch.ones(2, 3), torch.tensor([[0.2, 0.0, 0.0]] * 2))  # more haematoxylin
    assert float(darker.mean()) < float(x.mean())


def test_stain_augmentation_is_seeded_and_moderate() -> None:
    x = patches(8)
    cfg = AugmentConfig(("stain",), stain_alpha=0.05, stain_beta=0.05)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    diff = (a.float() - x.float()).abs().mean()
    assert 0.5 < float(diff) < 40


def _rgb(n: int = 2) -> torch.Tensor:
    return patches(n).permute(0, 3, 1, 2).float().div(255)


def test_colour_jitter_identity() -> None:
    x = _rgb()
    one, zero = torch.ones(2), torch.zeros(2)
    torch.testing.assert_close(colour_jitter(x, one, one, one, zero), x, atol=1e-5, rtol=0)


def test_colour_jitter_each_factor_does_what_it_says() -> None:
    x = _rgb().mul(0.6).add(0.2)  # away from the clamp
    one, zero = torch.ones(2), torch.zeros(2)
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    brighter = colour_jitter(x, one * 1.2, one, one, zero)
    torch.testing.assert_close(brighter, x * 1.2)
    flatter = colour_jitter(x, one, one * 0.5, one, zero)
    assert float(flatter.std((1, 2, 3)).max()) < float(x.std((1, 2, 3)).min())
    torch.testing.assert_close(flatter.mul(luma).sum(1).mean((1, 2)), x.mul(luma).sum(1).mean((1, 2)))
    grey = colour_jitter(x, one, one, zero, zero)  # saturation 0: every pixel grey, luma kept
    torch.testing.assert_close(grey[:, 0], grey[:, 1])
    torch.testing.assert_close(grey[:, 0], x.mul(luma).sum(1))
    turned = colour_jitter(x, one, one, one, torch.full((2,), 2 * torch.pi / 3))  # a third of a turn
    # a rotation of 120 degrees about the grey axis cycles the channels (r, g, b) -> (b, r, g)
    torch.testing.assert_close(turned, x[:, [2, 0, 1]], atol=1e-5, rtol=0)


def test_colour_augmentation_is_seeded_and_moderate() -> None:
    x = patches(8)
    cfg = AugmentConfig(("colour",), p=1.0)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment_batch(x, cfg, torch.Generator().manual_seed(5)))
    diff = (a.float() - x.float()).abs().mean()
    assert 1.0 < float(diff) < 40


def test_unknown_operation() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        AugmentConfig(("blur",))
