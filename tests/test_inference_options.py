"""InferenceOptions: one frozen set of options for evaluate / classify / classify-stack, checked when made."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wsi_amf.bundle import BundleConfig, ModelBundle
from wsi_amf.errors import OptionError
from wsi_amf.inference import InferenceOptions


def test_defaults_and_frozen() -> None:
    opts = InferenceOptions()
    assert (opts.model, opts.device, opts.engine, opts.batch_size, opts.tta, opts.threshold) == (None, "auto", "auto", 64,
                                                                                                 False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.batch_size = 2  # type: ignore[misc]


@pytest.mark.parametrize(("given", "message"), [
    ({"batch_size": 0}, "--batch-size 0: must be at least 1"),
    ({"batch_size": 2.5}, "--batch-size 2.5: must be at least 1"),
    ({"threshold": 1.5}, "--threshold 1.5: must be between 0 and 1"),
    ({"threshold": -0.1}, "--threshold -0.1: must be between 0 and 1"),
    ({"engine": "tensorrt"}, "--engine 'tensorrt': expected one of auto, torch, openvino, onnx"),
    ({"device": "tpu"}, "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
])
def test_bad_values_are_one_line_option_errors(given: dict, message: str) -> None:
    with pytest.raises(OptionError) as info:
        InferenceOptions(**given)
    assert str(info.value) == message


def test_threshold_is_the_given_one_else_the_bundle_s() -> None:
    bundle = ModelBundle(path=Path("b"), config=BundleConfig(architecture="x", members=("m.safetensors",), threshold=0.3))
    assert InferenceOptions().threshold_for(bundle) == 0.3
    assert InferenceOptions(threshold=0.0).threshold_for(bundle) == 0.0
    assert InferenceOptions(model=bundle).load_bundle() is bundle
