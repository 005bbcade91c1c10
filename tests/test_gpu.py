"""The CUDA path (autocast, channels_last, pinned memory). Skipped where no CUDA device is visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsi_amf import screen
from wsi_amf.ensemble import Ensemble
from wsi_amf.options import ScreenOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_autocast_matches_cpu(tiny_bundle):
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(50, 128, 128, 3), dtype=np.uint8)
    gpu = Ensemble(tiny_bundle, device="cuda")
    assert gpu.info.engine == "torch" and gpu.info.autocast_dtype in ("bfloat16", "float16")
    cpu = Ensemble(tiny_bundle, device="cpu", engine="torch")
    np.testing.assert_allclose(gpu.predict(patches), cpu.predict(patches), atol=2e-2)


def test_screen_on_cuda(tmp_path, slide025, mitosis_points, tiny_bundle):
    r = screen(slide025.path, mitosis_points, ScreenOptions(device="cuda", cache_dir=tmp_path / "c"),
               model=tiny_bundle, progress=False)
    assert r.engine["device"].startswith("cuda") and r.n_classified == 8
