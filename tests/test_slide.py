"""The slide reader: exact pixels, resampling across resolutions, edge padding, resolution handling."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import MITOSES_UM, shared_file
from PIL import Image

from wsi_amf.errors import OptionError, SlideError
from wsi_amf.slide import PatchReader, Slide
from wsi_amf.synthetic import write_pyramidal_tiff


def test_patch_is_the_slides_own_pixels_at_native_resolution(slide025):
    with Slide(slide025.path) as sl:
        assert sl.backend == "openslide" and sl.mpp == pytest.approx(0.25) and sl.mpp_source == "metadata"
        assert sl.dimensions == (2048, 2048) and len(sl.level_downsamples) == 2
        for x, y in [(1000, 700), (64, 64), (1500, 1984)]:
            patch = sl.read_patch(x, y, size=128, target_mpp=0.25)
            np.testing.assert_array_equal(patch, slide025.image[y - 64 : y + 64, x - 64 : x + 64])


def test_same_tissue_at_0125_025_05_gives_matching_patches(slides):
    """A patch at 0.25 um/px around the same micrometre position matches whatever the scan resolution."""
    patches = {}
    for mpp, s in slides.items():
        with Slide(s.path) as sl:
            patches[mpp] = [sl.read_patch(*s.px(x, y), size=128, target_mpp=0.25).astype(float) for x, y in MITOSES_UM]
    for a, b in [(0.125, 0.25), (0.5, 0.25), (0.125, 0.5)]:
        for pa, pb in zip(patches[a], patches[b]):
            assert np.abs(pa - pb).mean() < 3.0
            assert np.corrcoef(pa.ravel(), pb.ravel())[0, 1] > 0.97
    # ... while two different places differ a lot (the comparison above can fail).
    assert np.abs(patches[0.25][0] - patches[0.25][1]).mean() > 10


def test_downsampled_level_is_used_for_coarse_targets(slides):
    s = slides[0.125]
    with Slide(s.path) as sl:
        assert sl.best_level(2.0) == 1 and sl.best_level(1.0) == 0 and sl.best_level(16.0) == 2
        # target 1.0 um/px = 8x level 0 -> level 2 exactly (downsample 8)
        p = sl.read_patch(2048, 2048, size=64, target_mpp=1.0)
        assert p.shape == (64, 64, 3)


def test_edge_patches_are_padded_to_full_size(slide025):
    with Slide(slide025.path) as sl:
        w, h = sl.dimensions
        corner = sl.read_patch(10, 20, size=128, target_mpp=0.25)
        assert corner.shape == (128, 128, 3)
        assert (corner[:44] == 255).all() and (corner[:, :54] == 255).all()  # outside: white
        np.testing.assert_array_equal(corner[44:, 54:], slide025.image[: 128 - 44, : 128 - 54])
        far = sl.read_patch(w - 1, h - 1, size=128, target_mpp=0.5)  # resampled path at the far corner
        assert far.shape == (128, 128, 3) and (far[-60:, -60:] == 255).all()


def test_threaded_reads_equal_sequential(slide025):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 2048, size=(40, 2))
    with Slide(slide025.path) as sl:
        a = sl.read_patches(xy, size=128, target_mpp=0.25, workers=1)
        b = sl.read_patches(xy, size=128, target_mpp=0.25, workers=4)
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are a Linux feature")
@pytest.mark.parametrize("busy", [[], [True] * 10, [True]], ids=["model-waits", "model-busy", "busy-then-waits"])
def test_patch_reader_gives_way_to_a_busy_model(slide025, busy):
    """While busy() a low-priority thread reads, 8 patches at a time, asking again before each; else the pool."""
    import os
    import threading

    xy = np.random.default_rng(1).uniform(0, 2048, size=(24, 2))
    seen: list[tuple[str, int]] = []
    answers = iter(busy)
    with Slide(slide025.path) as sl:
        expected = sl.read_patches(xy, size=128, target_mpp=0.25, workers=1)
        own = sl._patch_image

        def spy(*args, **kwargs):
            seen.append((threading.current_thread().name.rsplit("_", 1)[0], os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            return own(*args, **kwargs)

        sl._patch_image = spy
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with PatchReader(sl, workers=3, busy=lambda: next(answers, False)) as reader:
            got = reader.read(xy, size=128, target_mpp=0.25)
    np.testing.assert_array_equal(got, expected)
    n_background = min(len(busy) * PatchReader.SLICE, len(xy)) if reader.lowered else 0
    assert reader.background_reads == n_background
    assert seen[:n_background] == [("wsi-amf-read-bg", 19)] * n_background
    assert set(seen[n_background:]) <= {("wsi-amf-read", before)} and len(seen) == len(xy)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the caller's priority is untouched


def test_missing_resolution_asks_for_mpp(tmp_path, scene):
    path = write_pyramidal_tiff(tmp_path / "nompp.tif", scene.render(0.5), mpp=None, downsamples=(1,))
    with pytest.raises(SlideError, match=r"nompp\.tif.*pass --mpp"):
        Slide(path)
    with Slide(path, mpp=0.5) as sl:
        assert sl.mpp == 0.5 and sl.mpp_source == "option"
    with pytest.raises(OptionError, match="--mpp 0"):
        Slide(path, mpp=0)


def test_plain_image_fallback(tmp_path, scene):
    img = scene.render(0.5)
    png = tmp_path / "plain.png"
    Image.fromarray(img).save(png)
    with Slide(png, mpp=0.5) as sl:
        assert sl.backend == "image"
        np.testing.assert_array_equal(sl.read_patch(300, 300, size=64, target_mpp=0.5), img[268:332, 268:332])
    tif = tmp_path / "plain.tif"  # untiled TIFF with a resolution tag: OpenSlide refuses it, the fallback reads it
    Image.fromarray(img).save(tif, dpi=(25400 / 0.5, 25400 / 0.5))
    with Slide(tif) as sl:
        assert sl.mpp == pytest.approx(0.5)


def test_plain_images_have_a_bound_of_their_own_and_pillows_stays_as_it_was(tmp_path, monkeypatch):
    import wsi_amf.slide

    png = tmp_path / "plain.png"
    Image.fromarray(np.full((300, 200, 3), 200, dtype=np.uint8)).save(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse this image as a bomb
    with Slide(png, mpp=0.5) as sl:
        assert sl.dimensions == (200, 300)
    assert Image.MAX_IMAGE_PIXELS == 100
    monkeypatch.setattr(wsi_amf.slide, "PLAIN_IMAGE_MAX_PIXELS", 200 * 300 - 1)
    with pytest.raises(SlideError, match="200 x 300 pixels, more than the 59,999"):
        Slide(png, mpp=0.5)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_transparent_pixels_are_composited_onto_white(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(200, 200, 3), dtype=np.uint8)
    alpha = np.full((200, 200), 255, dtype=np.uint8)
    alpha[:, :50] = 0  # not scanned
    alpha[:, 50:100] = 128  # half transparent
    png = tmp_path / "transparent.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(png)
    with Slide(png, mpp=0.5) as sl:
        exact = sl.read_patch(70, 100, size=64, target_mpp=0.5)  # image columns 38..101, not resampled
        upsampled = sl.read_patch(30, 100, size=64, target_mpp=0.25)  # resampled: columns 14..46, all unscanned
        padded = sl.read_patch(2, 100, size=64, target_mpp=0.25)  # past the left edge as well
    region, patch = rgb[68:132, 38:102].astype(int), exact.astype(int)
    assert (patch[:, : 50 - 38] == 255).all()
    np.testing.assert_array_equal(patch[:, 50 - 38 : 100 - 38], (region * 128 + 255 * 127)[:, 50 - 38 : 100 - 38] // 255)
    np.testing.assert_array_equal(patch[:, 100 - 38 :], region[:, 100 - 38 :])
    assert (upsampled == 255).all() and (padded == 255).all()
    assert exact.flags.writeable and upsampled.flags.writeable  # arrays of their own, as before


@pytest.mark.parametrize("content", [b"", b"not a slide at all" * 10, b"II*\x00\x08\x00\x00\x00\xff\xff"])
def test_broken_files_raise_slide_error(tmp_path, content):
    path = tmp_path / "broken.svs"
    path.write_bytes(content)
    with pytest.raises(SlideError, match="broken.svs"):
        Slide(path, mpp=0.25)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(SlideError, match="is a directory"):
        Slide(tmp_path)
    with pytest.raises(SlideError, match="no such file"):
        Slide(tmp_path / "nope.svs")


def test_real_aperio_slide_cmu1():
    path = shared_file("slides", "CMU-1-Small-Region.svs")
    with Slide(path) as sl:
        assert sl.dimensions == (2220, 2967) and sl.mpp == pytest.approx(0.499)
        p = sl.read_patch(1100, 1500, size=128, target_mpp=0.25)  # 2x upsampling of a 64-px region
        assert p.shape == (128, 128, 3) and p.std() > 5  # tissue, not padding
        native = sl.read_patch(1100, 1500, size=64, target_mpp=0.499)
        ref = np.asarray(sl._osr.read_region((1068, 1468), 0, (64, 64)))[..., :3]
        np.testing.assert_array_equal(native, ref)


def test_real_jpeg2000_slide_without_mpp():
    path = shared_file("slides", "TCGA-CR-7395-01A-01-TS1.svs")
    with pytest.raises(SlideError, match="pass --mpp"):
        Slide(path)
    with Slide(path, mpp=0.5) as sl:
        assert len(sl.level_downsamples) == 2
        p = sl.read_patch(2200, 1800, size=128, target_mpp=1.0)  # level 1 (downsample ~2) used
        assert p.shape == (128, 128, 3) and p.std() > 3
