"""ONNX graphs of bundle members for the CPU runtimes, exported once and kept between runs.

Exporting a member (``torch.onnx.export``) takes about half a second, and a 5-member bundle would pay it on
every ``screen`` call; so each graph is written to ``<cache>/graphs/<key>.onnx``, the key a hash of the
member file, the architecture, its keyword arguments and the input size. OpenVINO keeps its compiled blobs
beside them (``<cache>/graphs/openvino``). When the folder cannot be written the graph stays in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable

from .bundle import ModelBundle
from .cache import cache_root
from .errors import OutputError
from .files import atomic_write_bytes

log = logging.getLogger(__name__)
OPSET = 17


def graphs_dir() -> Path:
    """``$WSI_AMF_CACHE/graphs``, else the user cache directory's ``wsi-amf/graphs``."""
    return cache_root() / "graphs"


def member_graph(bundle: ModelBundle, k: int, build: Callable[[], Any]) -> Path | bytes:
    """Member ``k``'s ONNX graph: the cached file when there is one, else exported from ``build()`` (the torch
    module) and cached; the bytes themselves when the cache cannot be written."""
    path = graphs_dir() / f"{_key(bundle, k)}.onnx"
    if path.is_file() and path.stat().st_size > 0:
        return path
    graph = export(build(), bundle.config.member(k).input_size)
    try:
        atomic_write_bytes(path, graph)
        return path
    except OutputError as exc:
        log.info("ONNX graph cache %s not writable (%s); keeping the graph in memory", path.parent, exc)
        return graph


def export(model: Any, size: int) -> bytes:
    """The ONNX graph of a torch module taking ``[N, 3, size, size]`` (N dynamic) and giving one logit each."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 3, size, size),), buf,  # type: ignore[arg-type]  # file objects are written too
            input_names=["x"], output_names=["logit"],
            dynamic_axes={"x": {0: "n"}, "logit": {0: "n"}}, opset_version=OPSET, dynamo=False,
        )
    return buf.getvalue()


def _key(bundle: ModelBundle, k: int) -> str:
    import torch

    cfg = bundle.config.member(k)
    h = hashlib.sha256(json.dumps([cfg.architecture, dict(cfg.model_kwargs), cfg.input_size, OPSET, torch.__version__],
                                  sort_keys=True, default=str).encode())
    with open(bundle.path / cfg.members[0], "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:40]
