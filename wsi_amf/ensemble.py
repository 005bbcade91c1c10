"""The model ensemble: uint8 patches in, P(atypical) out (members' sigmoid probabilities averaged).

Engines:
- ``torch``: eager PyTorch. On CUDA: channels_last, autocast (bf16 where supported, else fp16), pinned
  host memory and non-blocking copies; preprocessing runs on the GPU.
- ``onnx``: each member exported once to ONNX and run by ONNX Runtime on the CPU (1.2x eager PyTorch for
  convnextv2_atto on an idle 2-core machine, outputs within 1e-6; see benchmarks/screen_throughput.py).
- ``auto``: ``torch`` on CUDA, ``onnx`` on the CPU, falling back to eager when an architecture does not export.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .bundle import ModelBundle, build_member
from .errors import OptionError
from .preprocess import Preprocess, dihedral

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
ENGINES = ("auto", "torch", "onnx")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; validates explicit choices."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        return device
    if device != "cpu":
        raise OptionError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    return device


@dataclass(frozen=True)
class EnsembleInfo:
    device: str
    engine: str
    members: int
    tta: bool
    autocast_dtype: str | None


class Ensemble:
    """Load every member of a bundle once; ``predict`` a batch of uint8 patches."""

    def __init__(self, bundle: ModelBundle, *, device: str = "auto", engine: str = "auto", tta: bool = False) -> None:
        import torch

        if engine not in ENGINES:
            raise OptionError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self.bundle = bundle
        self.device = resolve_device(device)
        self.tta = tta
        self.preprocess = Preprocess.from_config(bundle.config)
        self._torch_models: list[Any] = []
        self._sessions: list[Any] = []
        self.autocast_dtype: torch.dtype | None = None
        cuda = self.device.startswith("cuda")
        if engine == "onnx" and cuda:
            raise OptionError("--engine onnx runs on the CPU only; use --engine torch with --device cuda")
        models = [build_member(bundle, k) for k in range(len(bundle.config.members))]
        want_onnx = engine == "onnx" or (engine == "auto" and not cuda)
        if want_onnx:
            try:
                self._sessions = [self._export(m) for m in models]
            except Exception as exc:  # export support differs between architectures
                if engine == "onnx":
                    raise OptionError(f"--engine onnx: {bundle.config.architecture} cannot run in ONNX Runtime ({exc})") from None
                log.warning("ONNX Runtime unavailable for %s (%s); using eager PyTorch", bundle.config.architecture, exc)
                self._sessions = []
        if not self._sessions:
            for m in models:
                m.to(self.device)
                if cuda:
                    m.to(memory_format=torch.channels_last)
                self._torch_models.append(m)
            if cuda:
                self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.engine = "onnx" if self._sessions else "torch"

    @property
    def info(self) -> EnsembleInfo:
        dtype = str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype is not None else None
        return EnsembleInfo(self.device, self.engine, len(self.bundle.config.members), self.tta, dtype)

    def _export(self, model: Any) -> Any:
        import onnxruntime as ort
        import torch

        size = self.bundle.config.input_size
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.zeros(1, 3, size, size),), buf, input_names=["x"], output_names=["logit"],
                dynamic_axes={"x": {0: "n"}, "logit": {0: "n"}}, opset_version=17, dynamo=False,
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def predict(self, patches: np.ndarray) -> np.ndarray:
        """``uint8 [N, S, S, 3]`` -> ``float64 [N]`` P(atypical), averaged over members (and the 8 TTA views)."""
        import torch

        if len(patches) == 0:
            return np.zeros(0, dtype=np.float64)
        with torch.inference_mode():
            host = torch.from_numpy(np.ascontiguousarray(patches))
            if self.device.startswith("cuda"):
                x = self.preprocess(host.pin_memory().to(self.device, non_blocking=True))
            else:
                x = self.preprocess(host)
            views = dihedral(x) if self.tta else [x]
            total = torch.zeros(len(patches), dtype=torch.float64)
            for view in views:
                total += self._members_prob(view)
            return (total / len(views)).numpy()

    def _members_prob(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        acc = torch.zeros(x.shape[0], dtype=torch.float64)
        if self._sessions:
            arr = x.contiguous().numpy()
            for sess in self._sessions:
                logit = sess.run(None, {"x": arr})[0].reshape(-1)
                acc += torch.sigmoid(torch.from_numpy(logit).double())
        else:
            if self.device.startswith("cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
            for model in self._torch_models:
                with torch.autocast(device_type="cuda", dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    logit = model(x).float().reshape(-1)
                acc += torch.sigmoid(logit.double()).cpu()
        return acc / max(1, len(self._sessions) or len(self._torch_models))
