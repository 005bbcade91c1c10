"""Training augmentations, batched on the training device, on the full uint8 patch.

``augment_batch`` takes ``uint8 [N, S, S, 3]`` and returns ``uint8 [N, S, S, 3]``: the augmented patch is
rounded back to 8 bits, so that the model is then fed through exactly the ``Preprocess`` (centre crop,
resize, normalisation) that inference uses. Random draws come from a seeded CPU generator, so a run is
reproducible whatever the device.

Operations (each applied per patch with probability ``p``; ``stain`` with ``stain_p``):

- ``transpose``, ``hflip``, ``vflip``: the dihedral flips;
- ``shift_scale_rotate``: shift up to 6.25 % of the size, scale by 1 +/- 0.1, rotate up to +/- 45 degrees,
  bilinear, reflected borders (albumentations' ShiftScaleRotate defaults);
- ``stain``: H&E stain augmentation by colour deconvolution (Ruifrok & Johnston 2001): RGB -> optical
  density -> haematoxylin / eosin / DAB concentrations; each channel scaled by U(1 - alpha, 1 + alpha) and
  shifted by U(-beta, beta); back to RGB;
- ``colour``: scanner and lab colour: brightness and contrast each scaled by U(1 - c, 1 + c), saturation by
  U(1 - 2c, 1 + 2c) and hue turned by up to +/- ``hue_deg`` degrees (rotation about the grey axis),
  ``c = colour_strength`` (torchvision's ColorJitter at brightness = contrast = c, saturation 2c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from ..choices import AUGMENTATIONS
from ..stain import OD_FLOOR as _OD_FLOOR
from ..stain import RGB_FROM_HED

OPERATIONS = AUGMENTATIONS


@dataclass(frozen=True)
class AugmentConfig:
    operations: tuple[str, ...] = ()
    p: float = 0.5
    shift: float = 0.0625
    scale: float = 0.1
    rotate_deg: float = 45.0
    stain_p: float = 1.0
    stain_alpha: float = 0.05
    stain_beta: float = 0.05
    colour_strength: float = 0.15
    hue_deg: float = 8.0

    def __post_init__(self) -> None:
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r} (known: {', '.join(OPERATIONS)})")


def _mask(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    import torch

    return torch.rand(n, generator=gen) < p


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    import torch

    return low + (high - low) * torch.rand(shape, generator=gen)


def hed_matrices(device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(rgb_from_hed, hed_from_rgb)`` as float32 3x3 tensors (row vectors: ``od = hed @ rgb_from_hed``)."""
    import torch

    rgb_from_hed = torch.tensor(RGB_FROM_HED, dtype=torch.float64)
    rgb_from_hed = rgb_from_hed / rgb_from_hed.norm(dim=1, keepdim=True)
    hed_from_rgb = torch.linalg.inv(rgb_from_hed)
    return rgb_from_hed.float().to(device), hed_from_rgb.float().to(device)


def stain_jitter(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """H&E jitter of ``float [N, 3, H, W]`` RGB in [0, 1]: ``hed * scale + shift`` per patch and stain channel.

    RGB -> optical density ``od``; stains ``hed = od @ hed_from_rgb``; jittered stains back to optical
    density ``(hed * scale + shift) @ rgb_from_hed``. The chain is affine in ``od``, so it runs as one
    3x3 matrix and offset per patch.
    """
    import torch

    rgb_from_hed, hed_from_rgb = hed_matrices(x.device)
    n, _, h, w = x.shape
    mat = hed_from_rgb[None] @ (scale.to(x.device)[:, :, None] * rgb_from_hed[None])  # [N, 3, 3]
    offset = shift.to(x.device) @ rgb_from_hed  # [N, 3]
    od = -torch.log(x.clamp_min(_OD_FLOOR)).reshape(n, 3, h * w)  # [N, 3, HW]
    od2 = torch.baddbmm(offset[:, :, None], mat.transpose(1, 2), od)  # [N, 3, HW]
    return torch.exp(-od2).clamp_(0.0, 1.0).reshape(n, 3, h, w)


def colour_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                  hue: torch.Tensor) -> torch.Tensor:
    """Colour jitter of ``float [N, 3, H, W]`` RGB in [0, 1], per patch: ``brightness`` and ``contrast``
    (about the patch's mean grey) as factors, ``saturation`` as a factor of the distance from grey, ``hue``
    in radians (a rotation about the grey axis). All four factors are ``[N]``; factor 1 and hue 0 keep ``x``."""
    import torch

    n = x.shape[0]
    dev = x.device
    b, c, s, h = (t.to(dev, x.dtype).reshape(n, 1, 1, 1) for t in (brightness, contrast, saturation, hue))
    luma = torch.tensor([0.299, 0.587, 0.114], device=dev, dtype=x.dtype).reshape(1, 3, 1, 1)
    x = x * b
    grey = (x * luma).sum(1, keepdim=True)
    x = (x - grey.mean((2, 3), keepdim=True)) * c + grey.mean((2, 3), keepdim=True)
    grey = (x * luma).sum(1, keepdim=True)
    chroma = x - grey
    # rotate the chroma about the grey axis (1, 1, 1) / sqrt(3) by Rodrigues' formula
    axis = torch.full((1, 3, 1, 1), 1.0 / math.sqrt(3.0), device=dev, dtype=x.dtype)
    cross = torch.cross(axis.expand_as(chroma), chroma, dim=1)
    along = (chroma * axis).sum(1, keepdim=True) * axis
    chroma = chroma * torch.cos(h) + cross * torch.sin(h) + along * (1.0 - torch.cos(h))
    return (grey + chroma * s).clamp_(0.0, 1.0)


def _shift_scale_rotate(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    angle = _uniform((n,), -cfg.rotate_deg, cfg.rotate_deg, gen) * (math.pi / 180.0)
    scale = _uniform((n,), 1.0 - cfg.scale, 1.0 + cfg.scale, gen)
    shift = _uniform((n, 2), -cfg.shift, cfg.shift, gen) * 2.0  # normalised coordinates span 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(patches: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Augment ``uint8 [N, S, S, 3]`` patches (any device); returns ``uint8 [N, S, S, 3]`` on that device."""
    import torch

    if not cfg.operations or patches.shape[0] == 0:
        return patches
    n = patches.shape[0]
    x = patches.permute(0, 3, 1, 2).float().div(255.0)  # [N, 3, S, S]
    for op in cfg.operations:
        sel = _mask(n, cfg.stain_p if op == "stain" else cfg.p, gen)
        if not bool(sel.any()):
            continue
        idx = torch.nonzero(sel).reshape(-1).to(x.device)
        part = x.index_select(0, idx)
        if op == "transpose":
            part = part.transpose(2, 3)
        elif op == "hflip":
            part = part.flip(3)
        elif op == "vflip":
            part = part.flip(2)
        elif op == "shift_scale_rotate":
            part = _shift_scale_rotate(part, cfg, gen)
        elif op == "colour":
            k = part.shape[0]
            c = cfg.colour_strength
            part = colour_jitter(part, _uniform((k,), 1.0 - c, 1.0 + c, gen), _uniform((k,), 1.0 - c, 1.0 + c, gen),
                                 _uniform((k,), max(0.0, 1.0 - 2 * c), 1.0 + 2 * c, gen),
                                 _uniform((k,), -cfg.hue_deg, cfg.hue_deg, gen) * (math.pi / 180.0))
        else:  # stain
            k = part.shape[0]
            scale = _uniform((k, 3), 1.0 - cfg.stain_alpha, 1.0 + cfg.stain_alpha, gen)
            shift = _uniform((k, 3), -cfg.stain_beta, cfg.stain_beta, gen)
            part = stain_jitter(part, scale, shift)
        x = x.index_copy(0, idx, part.contiguous())
    return x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
