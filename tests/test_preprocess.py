"""Preprocessing shared by training and inference: centre crop, resize, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsi_amf.preprocess import Preprocess, crop_box, dihedral

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def patches() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(5, 128, 128, 3), dtype=np.uint8))


def reference(patches: torch.Tensor, size: int, fraction: float) -> np.ndarray:
    """The textbook order: to [0, 1], crop, resize, normalise (NCHW)."""
    x = patches.permute(0, 3, 1, 2).double() / 255.0
    y0, n = crop_box(128, fraction)
    x = x[:, :, y0 : y0 + n, y0 : y0 + n]
    if n != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return ((x - torch.tensor(MEAN, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=x.dtype).view(1, 3, 1, 1)).numpy()


@pytest.mark.parametrize("size, fraction", [(128, 1.0), (77, 0.6), (96, 0.6), (64, 1.0), (224, 1.0)])
def test_matches_the_textbook_order(patches, size, fraction):
    before = patches.clone()
    x = Preprocess(size, fraction, MEAN, STD)(patches)
    assert x.dtype == torch.float32 and x.shape == (5, 3, size, size) and x.is_contiguous()
    np.testing.assert_allclose(x.numpy(), reference(patches, size, fraction), atol=1e-4)  # float32 resampling
    assert torch.equal(patches, before)  # the caller's patches are untouched


def test_float_input_is_not_modified_in_place(patches):
    floats = patches.float()
    before = floats.clone()
    x = Preprocess(128, 1.0, MEAN, STD)(floats)
    assert torch.equal(floats, before)
    np.testing.assert_allclose(x.numpy(), reference(patches, 128, 1.0), atol=1e-4)


def test_pixel_values_and_channel_order():
    patch = torch.zeros((1, 4, 4, 3), dtype=torch.uint8)
    patch[0, 1, 2] = torch.tensor([255, 0, 128], dtype=torch.uint8)  # one RGB pixel at row 1, column 2
    x = Preprocess(4, 1.0, MEAN, STD)(patch)[0]
    expected = [(1.0 - MEAN[0]) / STD[0], (0.0 - MEAN[1]) / STD[1], (128 / 255 - MEAN[2]) / STD[2]]
    np.testing.assert_allclose(x[:, 1, 2].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [-m / s for m, s in zip(MEAN, STD)], rtol=1e-6)


def test_dihedral_gives_the_eight_symmetries():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    views = dihedral(x)
    assert len(views) == 8 and len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[0], x)
