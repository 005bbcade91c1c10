"""Augmentations: shapes and dtype kept, flips exact, stain deconvolution invertible, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsi_amf.training.augment import AugmentConfig, augment_batch, hed_matrices, stain_jitter


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


def test_unknown_operation() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        AugmentConfig(("blur",))
