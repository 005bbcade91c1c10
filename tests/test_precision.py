"""Member weights stored at fp16 or int8 (``--precision``, ``wsi_amf.precision``) load back as float32.

int8 stores each large weight tensor as int8 with a float32 scale per output channel: every restored value
lies within half a step (its channel's scale / 2) of the original, the small tensors are fp16, and a bundle
saved that way loads and predicts on every engine as its float32 weights do (the built-in model's recorded
figures on its int8 weights: ``test_default_model.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wsi_amf.bundle import build_member, load_bundle, save_bundle
from wsi_amf.ensemble import Ensemble
from wsi_amf.precision import MIN_INT8_VALUES, SCALE_SUFFIX, decode, encode


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=1).state_dict()


def test_int8_keeps_every_large_weight_within_half_a_step_of_its_value(state) -> None:
    stored = encode(state, "int8")
    restored = decode(stored)
    assert set(restored) == set(state)
    n_int8 = 0
    for key, w in state.items():
        if not w.is_floating_point():
            assert stored[key].dtype == w.dtype and torch.equal(restored[key], w)  # e.g. num_batches_tracked
        elif w.ndim >= 2 and w.numel() >= MIN_INT8_VALUES:
            n_int8 += w.numel()
            q, scale = stored[key], stored[key + SCALE_SUFFIX]
            assert q.dtype == torch.int8 and q.shape == w.shape and int(q.abs().max()) == 127
            assert scale.dtype == torch.float32 and scale.shape == (w.shape[0],)
            step = scale.reshape((-1,) + (1,) * (w.ndim - 1))
            assert bool(((restored[key] - w).abs() <= step / 2 + 1e-7).all()), key
        else:
            assert stored[key].dtype == torch.float16 and key + SCALE_SUFFIX not in stored
            assert torch.equal(restored[key], w.half().float())
        assert restored[key].dtype == (torch.float32 if w.is_floating_point() else w.dtype)
    assert n_int8 > 0.9 * sum(w.numel() for w in state.values() if w.is_floating_point())


def test_a_channel_of_zeros_stays_zero(state) -> None:
    key = next(k for k, w in state.items() if w.ndim == 4 and w.numel() >= MIN_INT8_VALUES)
    w = state[key].clone()
    w[0] = 0
    restored = decode(encode({key: w}, "int8"))[key]
    assert torch.equal(restored[0], torch.zeros_like(w[0])) and torch.isfinite(restored).all()


def test_unknown_precision_and_reserved_names_are_refused(state) -> None:
    with pytest.raises(ValueError, match="precision 'int4'"):
        encode(state, "int4")
    with pytest.raises(ValueError, match="marks an int8 scale"):
        encode({"conv.weight" + SCALE_SUFFIX: torch.ones(3)}, "fp32")


@pytest.mark.parametrize("broken, message", [
    (lambda t, k: t.pop(k + SCALE_SUFFIX), "has no scale"),
    (lambda t, k: t.__setitem__(k + SCALE_SUFFIX, torch.ones(3)), "its scale has shape (3,)"),
    (lambda t, k: t.__setitem__(k, t[k].float()), "has no int8 tensor"),
])
def test_a_broken_int8_layout_is_a_value_error(state, broken, message) -> None:
    stored = encode(state, "int8")
    key = next(k for k, v in stored.items() if v.dtype == torch.int8)
    broken(stored, key)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(stored)


@pytest.fixture(scope="module")
def bundles(state, tmp_path_factory: pytest.TempPathFactory):
    from wsi_amf.bundle import BundleConfig

    root = tmp_path_factory.mktemp("precision")
    cfg = BundleConfig(architecture="resnet10t", members=("member-0.safetensors",), input_size=64, crop_fraction=0.6)
    return {p: save_bundle(root / p, cfg, [state], precision=p) for p in ("fp32", "fp16", "int8")}


def test_bundle_sizes_follow_the_precision(bundles) -> None:
    size = {p: (b.path / "member-0.safetensors").stat().st_size for p, b in bundles.items()}
    assert size["fp16"] == pytest.approx(size["fp32"] / 2, rel=0.01)
    assert size["int8"] < 0.3 * size["fp32"]


def test_int8_bundle_loads_its_weights_and_predicts_like_float32_on_every_engine(state, bundles) -> None:
    int8 = load_bundle(bundles["int8"].path)  # the checks of load_bundle pass
    member = build_member(int8, 0)
    expected = decode(load_file(str(int8.path / "member-0.safetensors")))
    for key, value in member.state_dict().items():
        assert torch.equal(value, expected[key]), key
    images = np.random.default_rng(3).integers(0, 256, (16, 128, 128, 3), dtype=np.uint8)
    reference = Ensemble(bundles["fp32"], device="cpu", engine="torch").predict(images)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    for engine in ("torch", "onnx", "openvino"):
        p = Ensemble(int8, device="cpu", engine=engine).predict(images)
        assert np.abs(logit(p) - logit(reference)).max() < 0.05 * max(np.std(logit(reference)), 0.1), engine
