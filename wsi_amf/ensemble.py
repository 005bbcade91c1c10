"""The model ensemble: uint8 patches in, P(atypical) out (members' sigmoid probabilities averaged).

Engines:
- ``torch``: eager PyTorch. On CUDA: channels_last, autocast (bf16 where supported, else fp16), pinned
  host memory and non-blocking copies; preprocessing runs on the GPU.
- ``openvino``: each member exported once to ONNX, compiled by OpenVINO for the CPU (fp32 inference precision,
  so outputs stay within 1e-6 of eager).
- ``onnx``: the same ONNX graphs run by ONNX Runtime on the CPU.
- ``auto``: ``torch`` on CUDA; on the CPU ``openvino``, else ``onnx`` (whichever is installed and can run the
  architecture), else eager. See benchmarks/screen_throughput.py for measured speed-ups.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .bundle import ModelBundle, build_member, load_bundle
from .choices import ENGINES
from .errors import BundleError, OptionError
from .onnx_graphs import member_graph
from .preprocess import Preprocess, dihedral

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
_CPU_RUNTIMES = ("openvino", "onnx")
_OPENVINO_SUB_BATCH = 8  # patches per OpenVINO request (chosen by benchmarks/screen_throughput.py)


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
        # Members that share their preprocessing share one preprocessed batch (a mixed ensemble has several).
        configs = [bundle.config.member(k) for k in range(len(bundle.config.members))]
        keys = [(c.input_size, c.crop_fraction, tuple(c.mean), tuple(c.std)) for c in configs]
        self._groups = [(Preprocess.from_config(configs[keys.index(key)]), [k for k in range(len(keys)) if keys[k] == key])
                        for key in dict.fromkeys(keys)]
        self._torch_models: list[Any] = []
        self._sessions: list[Any] = []
        self.autocast_dtype: torch.dtype | None = None
        cuda = self.device.startswith("cuda")
        if engine in _CPU_RUNTIMES and cuda:
            raise OptionError(f"--engine {engine} runs on the CPU only; use --engine torch with --device cuda")
        models: dict[int, Any] = {}

        def member(k: int) -> Any:  # built on demand: a cached ONNX graph needs no torch module
            if k not in models:
                models[k] = build_member(bundle, k)
            return models[k]

        self.engine = "torch"
        if not cuda and engine != "torch":
            self._sessions, self.engine = self._compile(member, engine)
        if not self._sessions:
            for m in (member(k) for k in range(len(bundle.config.members))):
                m.to(self.device)
                if cuda:
                    m.to(memory_format=torch.channels_last)
                self._torch_models.append(m)
            if cuda:
                self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _compile(self, member: Callable[[int], Any], engine: str) -> tuple[list[Any], str]:
        """Export the members to ONNX (or take their cached graphs) and compile them for a CPU runtime: the one
        asked for, or with ``auto`` the first of OpenVINO / ONNX Runtime that is installed and runs the
        architecture (else eager)."""
        arch = "+".join(self.bundle.config.architectures)
        try:
            graphs = [member_graph(self.bundle, k, functools.partial(member, k)) for k in range(len(self.bundle.config.members))]
        except BundleError:  # a member that does not fit its architecture: the bundle's fault, whatever the engine
            raise
        except Exception as exc:  # export support differs between architectures
            if engine != "auto":
                raise OptionError(f"--engine {engine}: {arch} cannot be exported to ONNX ({_first_line(exc)})") from None
            log.warning("%s cannot be exported to ONNX (%s); using eager PyTorch", arch, _first_line(exc))
            return [], "torch"
        for runtime in ([engine] if engine != "auto" else list(_CPU_RUNTIMES)):
            try:
                runner = _openvino_runner if runtime == "openvino" else _onnxruntime_runner
                return [runner(g) for g in graphs], runtime
            except ImportError:
                if engine != "auto":
                    raise OptionError(f"--engine {runtime}: its package is not installed") from None
            except Exception as exc:  # an operator the runtime lacks
                if engine != "auto":
                    raise OptionError(f"--engine {runtime}: cannot run {arch} ({_first_line(exc)})") from None
                log.warning("%s cannot run %s (%s); trying the next engine", runtime, arch, _first_line(exc))
        return [], "torch"

    @property
    def info(self) -> EnsembleInfo:
        dtype = str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype is not None else None
        return EnsembleInfo(self.device, self.engine, len(self.bundle.config.members), self.tta, dtype)

    def predict(self, patches: np.ndarray) -> np.ndarray:
        """``uint8 [N, S, S, 3]`` -> ``float64 [N]`` P(atypical), averaged over members (and the 8 TTA views)."""
        import torch

        if len(patches) == 0:
            return np.zeros(0, dtype=np.float64)
        with torch.inference_mode():
            host = torch.from_numpy(np.ascontiguousarray(patches))
            if self.device.startswith("cuda"):
                host = host.pin_memory().to(self.device, non_blocking=True)
            per_view: list[torch.Tensor] = []  # the members' summed P(atypical), per TTA view
            for preprocess, members in self._groups:
                x = preprocess(host)
                sums = [self._members_prob(view, members) for view in (dihedral(x) if self.tta else [x])]
                per_view = [a + b for a, b in zip(per_view, sums)] if per_view else sums
            total = torch.zeros(len(patches), dtype=torch.float64)
            for view_sum in per_view:
                total += view_sum / len(self.bundle.config.members)
            return (total / len(per_view)).numpy()

    def _members_prob(self, x: torch.Tensor, members: list[int]) -> torch.Tensor:
        """The sum over ``members`` of their P(atypical) for the preprocessed batch ``x``."""
        import torch

        acc = torch.zeros(x.shape[0], dtype=torch.float64)
        if self._sessions:
            arr = x.contiguous().numpy()
            for k in members:
                logit = self._sessions[k](arr).reshape(-1)
                acc += torch.sigmoid(torch.from_numpy(logit).double())
        else:
            if self.device.startswith("cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
            for k in members:
                with torch.autocast(device_type="cuda", dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    logit = self._torch_models[k](x).float().reshape(-1)
                acc += torch.sigmoid(logit.double()).cpu()
        return acc


def open_ensemble(model: Ensemble | ModelBundle | str | Path | None, *, device: str = "auto", engine: str = "auto",
                  tta: bool = False) -> Ensemble:
    """The ensemble to run: ``model`` itself when it is an :class:`Ensemble` with the same ``tta`` (reused across
    slides), else one built from it (an Ensemble with another ``tta`` keeps its own device and engine), from a
    bundle, a bundle directory, or the built-in default (None)."""
    if isinstance(model, Ensemble):
        if tta == model.tta:
            return model
        return Ensemble(model.bundle, device=model.device, engine=model.engine, tta=tta)
    bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
    return Ensemble(bundle, device=device, engine=engine, tta=tta)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _onnxruntime_runner(graph: Path | bytes) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(graph) if isinstance(graph, Path) else graph, opts,
                                   providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def _openvino_runner(graph: Path | bytes) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO in throughput mode: the batch is cut into sub-batches run concurrently on the CPU streams
    (2.3x eager on 2 cores for convnextv2_atto, against 1.8x for one request on the whole batch). Threads are
    pinned to cores only when they are as many as the cores this process may use: OpenVINO pins them to the
    first of those cores, so processes with fewer threads (Ray actors of 1 CPU on a larger node) all ran on
    the same cores (two 1-thread processes on 2 cores: 65 patches/s in all pinned, 125 not), while one
    process using every core gains from pinning (111 against 90 patches/s, the built-in model on 2 cores)."""
    import openvino as ov

    core = ov.Core()
    if isinstance(graph, Path):  # compiled blobs cached beside the graph: a later run skips compilation
        core.set_property({"CACHE_DIR": str(graph.parent / "openvino")})
        model: Any = str(graph)
    else:
        model = ov.convert_model(io.BytesIO(graph))
    threads = _threads()
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": threads,
        "ENABLE_CPU_PINNING": threads >= _usable_cpus(),
    })
    jobs = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    results: dict[int, np.ndarray] = {}
    jobs.set_callback(lambda request, start: results.__setitem__(start, request.get_output_tensor(0).data.copy()))

    def run(x: np.ndarray) -> np.ndarray:
        results.clear()
        for start in range(0, len(x), _OPENVINO_SUB_BATCH):
            jobs.start_async({0: x[start:start + _OPENVINO_SUB_BATCH]}, start)
        jobs.wait_all()
        return np.concatenate([results[start] for start in sorted(results)])

    return run


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
