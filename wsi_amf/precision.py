"""How a bundle member's weights are stored (``--precision``): ``fp32``, ``fp16`` or ``int8``.

- ``fp32``: as trained. ``fp16``: every floating-point tensor in half precision (half the size).
- ``int8``: weight-only quantisation of the large tensors. Every floating-point tensor of two or more
  dimensions (convolution and linear weights) with at least :data:`MIN_INT8_VALUES` values is stored as
  int8 ``q`` plus one float32 scale per output channel (``<name>::scale``, symmetric: ``w = q * scale``,
  ``scale = max|w| / 127`` over the channel). The other tensors stay in fp16: biases, BatchNorm, and the
  small convolutions of the early stages, where rounding errors grow most through the network. Nothing is
  quantised at inference: :func:`decode` restores float32 weights, and the engines run them as before.

  On the built-in model (EfficientNet-Lite0), int8 holds 83 % of the values: a member is 4.1 MB (fp16
  6.9 MB). Its logits differ from fp32 by 0.027 on average (fp16: 0.011; everything in int8, 3.6 MB:
  0.092), against a spread of 2.0 across figures. ``tests/test_default_model.py`` checks the built-in
  model's recorded out-of-fold figures on the weights it ships.

:func:`decode` is the one reader: it accepts all three (a file tells its precision by its tensors' types).
"""

from __future__ import annotations

from typing import Any, Mapping

from .choices import PRECISIONS

#: Suffix of an int8 tensor's per-output-channel scale.
SCALE_SUFFIX = "::scale"
#: Smaller floating-point tensors stay fp16 under int8 (the early stages' convolutions: see above).
MIN_INT8_VALUES = 65536


def encode(state: Mapping[str, Any], precision: str) -> dict[str, Any]:
    """The tensors to write for the state dict ``state`` (torch tensors) at ``precision``."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    out: dict[str, Any] = {}
    for key, value in state.items():
        t = value.detach().to("cpu").contiguous()
        if key.endswith(SCALE_SUFFIX):
            raise ValueError(f"tensor name {key!r} ends with {SCALE_SUFFIX!r}, which marks an int8 scale")
        if not t.is_floating_point() or precision == "fp32":
            out[key] = t.clone()
        elif precision == "int8" and t.ndim >= 2 and t.numel() >= MIN_INT8_VALUES:
            w = t.float()
            peak = w.abs().reshape(w.shape[0], -1).amax(dim=1)
            scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
            shape = (-1,) + (1,) * (w.ndim - 1)
            out[key] = torch.round(w / scale.reshape(shape)).clamp_(-127, 127).to(torch.int8).contiguous()
            out[key + SCALE_SUFFIX] = scale.contiguous()
        else:
            out[key] = t.half().contiguous()
    return out


def layout_problem(tensors: Mapping[str, tuple[bool, tuple[int, ...]]]) -> str | None:
    """What is wrong with a member file's int8 layout, given each tensor's (is int8, shape); None when nothing.
    Every int8 tensor needs its scale, one value per output channel, and every scale its int8 tensor."""
    for key, (is_int8, shape) in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            base = tensors.get(key[: -len(SCALE_SUFFIX)])
            if base is None or not base[0]:
                return f"scale {key!r} has no int8 tensor"
            if len(shape) != 1 or not base[1] or shape[0] != base[1][0]:
                want = f"({base[1][0]},)" if base[1] else "one value per output channel"
                return f"int8 tensor {key[: -len(SCALE_SUFFIX)]!r}: its scale has shape {shape}, not {want}"
        elif is_int8 and key + SCALE_SUFFIX not in tensors:
            return f"int8 tensor {key!r} has no scale ({key + SCALE_SUFFIX!r})"
    return None


def decode(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """Float32 weights from the tensors of a member file at any precision; ValueError when its int8 layout
    is broken (:func:`layout_problem`)."""
    import torch

    problem = layout_problem({k: (t.dtype == torch.int8, tuple(t.shape)) for k, t in tensors.items()})
    if problem is not None:
        raise ValueError(problem)
    out: dict[str, Any] = {}
    for key, t in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(key + SCALE_SUFFIX)
        if scale is not None:
            out[key] = t.float() * scale.float().reshape((-1,) + (1,) * (t.ndim - 1))
        else:
            out[key] = t.float() if t.is_floating_point() else t
    return out
