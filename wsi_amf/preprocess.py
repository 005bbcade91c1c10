"""Preprocessing shared by training and inference: centre crop, resize, normalise.

Patches travel as ``uint8 [N, S, S, 3]`` (NHWC, RGB). The model sees ``float32 [N, 3, I, I]``: the centre
``crop_fraction`` of the patch, resized (bilinear, antialiased) to ``input_size`` and normalised with the
bundle's mean/std. Training and inference call the same function, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

    from .bundle import BundleConfig


def crop_box(size: int, fraction: float) -> tuple[int, int]:
    """Start and length of the centred crop of ``fraction`` of ``size`` pixels."""
    length = max(1, int(round(size * fraction)))
    start = (size - length) // 2
    return start, length


@dataclass(frozen=True)
class Preprocess:
    input_size: int
    crop_fraction: float
    mean: Sequence[float]
    std: Sequence[float]

    @classmethod
    def from_config(cls, config: BundleConfig) -> Preprocess:
        return cls(config.input_size, config.crop_fraction, tuple(config.mean), tuple(config.std))

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """``uint8 [N, S, S, 3]`` (any device) -> normalised ``float32 [N, 3, I, I]`` on the same device."""
        import torch
        import torch.nn.functional as F

        if patches.ndim != 4 or patches.shape[-1] != 3:
            raise ValueError(f"expected patches of shape [N, S, S, 3], got {tuple(patches.shape)}")
        # Crop while still uint8, convert once into a contiguous NCHW float tensor, and normalise in place with
        # the mean and std scaled to 0-255: fewer passes over the data than converting the whole patch and
        # normalising, with the same values to 1e-6.
        x = patches.permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        if self.crop_fraction < 1.0:
            y0, ch = crop_box(h, self.crop_fraction)
            x0, cw = crop_box(w, self.crop_fraction)
            x = x[:, :, y0 : y0 + ch, x0 : x0 + cw]
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)  # never the caller's tensor
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).mul_(255.0).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).mul_(255.0).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips / 90-degree rotations of an NCHW batch (test-time augmentation)."""
    import torch

    out = []
    for k in range(4):
        r = torch.rot90(x, k, dims=(2, 3))
        out.append(r)
        out.append(torch.flip(r, dims=(3,)))
    return out
