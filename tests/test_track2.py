"""``wsi-amf classify-stack``: MIDOG 2025 track 2 container I/O (multi-page TIFF of 128 px patches -> JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from bundles import random_bundle
from click.testing import CliRunner
from conftest import shared_file

from wsi_amf.bundle import load_bundle
from wsi_amf.cli import main
from wsi_amf.ensemble import Ensemble
from wsi_amf.errors import OptionError
from wsi_amf.inference import InferenceOptions
from wsi_amf.inference.track2 import classify_stack, read_stack


def assert_track2_output(path: Path, n_pages: int, threshold: float) -> np.ndarray:
    """The track 2 rules (../shared/FORMATS.md): a list in page order of {"class", "confidence" = P(atypical)}."""
    calls = json.loads(path.read_text())
    assert isinstance(calls, list) and len(calls) == n_pages
    for c in calls:
        assert set(c) == {"class", "confidence"} and c["class"] in ("normal", "atypical")
        assert type(c["confidence"]) is float and 0.0 <= c["confidence"] <= 1.0  # a plain float, never a string
        assert (c["class"] == "atypical") == (c["confidence"] >= threshold)
    return np.array([c["confidence"] for c in calls])


def write_stack(path: Path, pages: np.ndarray) -> Path:
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page, photometric="rgb", compression="zlib", metadata=None)
    return path


def test_shared_stack_with_the_default_model(tmp_path):
    stack = shared_file("formats", "track2_stack_5.tiff")
    out = tmp_path / "result.json"
    res = CliRunner().invoke(main, ["-q", "classify-stack", str(stack), "--out", str(out), "--engine", "torch"])
    assert res.exit_code == 0, res.output
    bundle = load_bundle(None)
    pages = tifffile.imread(stack)  # an independent reader: pages in file order
    assert pages.shape[1:] == (128, 128, 3) and len(pages) > 1
    confidence = assert_track2_output(out, len(pages), bundle.config.threshold)
    expected = Ensemble(bundle, device="cpu", engine="torch").predict(pages)
    np.testing.assert_allclose(confidence, expected, atol=1e-6)  # page k's call is page k's P(atypical)
    np.testing.assert_array_equal(read_stack(stack), pages)


def test_calls_follow_page_order(tmp_path, tiny_bundle):
    rng = np.random.default_rng(5)
    pages = rng.integers(0, 256, size=(6, 128, 128, 3), dtype=np.uint8)
    forward = classify_stack(write_stack(tmp_path / "a.tiff", pages), tmp_path / "a.json",
                             InferenceOptions(model=tiny_bundle, engine="torch", batch_size=4), quiet=True)
    backward = classify_stack(write_stack(tmp_path / "b.tiff", pages[::-1]), tmp_path / "b.json",
                              InferenceOptions(model=tiny_bundle, engine="torch"), quiet=True)
    a = assert_track2_output(tmp_path / "a.json", 6, forward.threshold)
    b = assert_track2_output(tmp_path / "b.json", 6, backward.threshold)
    assert np.ptp(a) > 1e-4  # distinct pages, distinct confidences: the order is testable
    np.testing.assert_allclose(a, b[::-1], atol=1e-9)
    np.testing.assert_array_equal(a, forward.confidence)
    assert forward.n == 6 and forward.n_atypical == int((a >= forward.threshold).sum())


def test_threshold_option_sets_the_class_not_the_confidence(tmp_path, tiny_bundle):
    rng = np.random.default_rng(6)
    stack = write_stack(tmp_path / "s.tiff", rng.integers(0, 256, size=(4, 128, 128, 3), dtype=np.uint8))
    base = classify_stack(stack, tmp_path / "a.json", InferenceOptions(model=tiny_bundle, engine="torch"), quiet=True)
    cut = float(np.median(base.confidence))
    r = classify_stack(stack, tmp_path / "b.json", InferenceOptions(model=tiny_bundle, engine="torch", threshold=cut),
                       quiet=True)
    np.testing.assert_array_equal(assert_track2_output(tmp_path / "b.json", 4, cut), base.confidence)
    assert r.n_atypical == int((base.confidence >= cut).sum())


def test_a_bundle_for_other_patch_sizes_is_refused(tmp_path):
    bundle = random_bundle(tmp_path / "b256", architecture="resnet10t", patch_size=256, input_size=64)
    stack = write_stack(tmp_path / "s.tiff", np.zeros((1, 128, 128, 3), dtype=np.uint8))
    with pytest.raises(OptionError, match="expects 256 px patches"):
        classify_stack(stack, tmp_path / "r.json", InferenceOptions(model=bundle), quiet=True)
    assert not (tmp_path / "r.json").exists()
