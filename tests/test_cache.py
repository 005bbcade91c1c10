"""The lazy zarr patch cache: reads only what is missing, survives kill -9, invalidates on a changed slide."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import openslide
import pytest
from conftest import write_points_csv

from wsi_amf import screen
from wsi_amf.cache import open_cache
from wsi_amf.options import ScreenOptions
from wsi_amf.slide import Slide


@pytest.fixture()
def read_counter(monkeypatch):
    """Counts every OpenSlide read_region call (the slide's tiles are only touched through it)."""
    calls = {"n": 0}
    original = openslide.OpenSlide.read_region

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(openslide.OpenSlide, "read_region", counting)
    return calls


def _grid(n: int, lo: float = 100, hi: float = 1900) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    g = np.linspace(lo, hi, side)
    return np.array([(x, y) for y in g for x in g][:n])


def test_second_run_reads_nothing_and_new_points_read_only_themselves(tmp_path, slide025, tiny_bundle, read_counter):
    cache = tmp_path / "cache"
    first = write_points_csv(tmp_path / "a.csv", _grid(100))
    r1 = screen(slide025.path, first, ScreenOptions(cache_dir=cache), model=tiny_bundle, progress=False)
    assert r1.n_read == 100 and r1.n_cached == 0 and read_counter["n"] == 100

    read_counter["n"] = 0
    r2 = screen(slide025.path, first, ScreenOptions(cache_dir=cache), model=tiny_bundle, progress=False)
    assert read_counter["n"] == 0 and r2.n_read == 0 and r2.n_cached == 100
    np.testing.assert_allclose(r1.p_atypical, r2.p_atypical, atol=1e-6)

    more = np.concatenate([_grid(100), [[555.5, 777.25], [1234.0, 321.0], [42.0, 1999.0]]])
    r3 = screen(slide025.path, write_points_csv(tmp_path / "b.csv", more), ScreenOptions(cache_dir=cache),
                model=tiny_bundle, progress=False)
    assert read_counter["n"] == 3 and r3.n_read == 3 and r3.n_cached == 100
    np.testing.assert_allclose(r3.p_atypical[:100], r1.p_atypical, atol=1e-6)


def test_cached_patches_are_the_extracted_pixels(tmp_path, slide025):
    xy = _grid(10)
    with Slide(slide025.path) as sl, open_cache(tmp_path, sl.path, sl.identity(), size=128, mpp=0.25) as cache:
        idx = cache.locate(xy)
        cache.write(0, sl.read_patches(xy, size=128, target_mpp=0.25))
        assert cache.filled[idx].all()
    with Slide(slide025.path) as sl, open_cache(tmp_path, sl.path, sl.identity(), size=128, mpp=0.25) as cache:
        np.testing.assert_array_equal(cache.read(0, 10), sl.read_patches(xy, size=128, target_mpp=0.25))
        np.testing.assert_array_equal(cache.coords, xy)


def test_changed_slide_invalidates_its_cache(tmp_path, slide025, tiny_bundle, read_counter):
    slide = tmp_path / "copy.tif"
    shutil.copy(slide025.path, slide)
    pts = write_points_csv(tmp_path / "p.csv", _grid(20))
    screen(slide, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, progress=False)
    os.utime(slide, ns=(1_000_000_000, 1_000_000_000))  # same bytes, new mtime: treated as a new file
    read_counter["n"] = 0
    r = screen(slide, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, progress=False)
    assert r.n_read == 20 and read_counter["n"] == 20


def test_corrupt_chunk_is_reread(tmp_path, slide025, tiny_bundle):
    pts = write_points_csv(tmp_path / "p.csv", _grid(20))
    r1 = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, progress=False)
    chunk = next(p for p in (r1.cache_path / "patches").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"garbage")
    r2 = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, progress=False)
    assert r2.n_read == 20
    np.testing.assert_allclose(r1.p_atypical, r2.p_atypical, atol=1e-6)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import wsi_amf.cache as cache
    calls = {"n": 0}
    original = cache.PatchCache.write
    def write(self, start, patches):
        original(self, start, patches)
        calls["n"] += 1
        if calls["n"] == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)   # kill -9 in the middle of the run
    cache.PatchCache.write = write
    from wsi_amf import screen
    from wsi_amf.options import ScreenOptions
    screen(sys.argv[1], sys.argv[2], ScreenOptions(cache_dir=sys.argv[5]), model=sys.argv[3], out=sys.argv[6], progress=False)
    """
)


def test_killed_run_resumes_and_gives_the_same_outputs(tmp_path, slide025, tiny_bundle):
    pts = write_points_csv(tmp_path / "p.csv", _grid(300))  # 5 cache chunks of 64
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    args = [sys.executable, str(script), str(slide025.path), str(pts), str(tiny_bundle.path), "3"]
    proc = subprocess.run(args + [str(tmp_path / "cache"), str(tmp_path / "out_killed")], capture_output=True)
    assert proc.returncode == -9
    assert not (tmp_path / "out_killed").exists() or not any((tmp_path / "out_killed").iterdir())

    resumed = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "cache"), model=tiny_bundle,
                     out=tmp_path / "out_killed",
                     progress=False)
    assert resumed.n_read == 300 - 3 * 64 and resumed.n_cached == 3 * 64
    screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "cache2"), model=tiny_bundle,
           out=tmp_path / "out_clean",
           progress=False)
    for name in ("scene_0.25.csv", "scene_0.25.geojson"):
        assert (tmp_path / "out_killed" / name).read_text() == (tmp_path / "out_clean" / name).read_text()
