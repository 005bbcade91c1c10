"""The patch cache under faults, through the real CLI: deleted, swapped and damaged chunks, damaged metadata,
--no-cache, a read-only cache, the size bound, a full disk. Nothing wrong is ever served silently."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_points_csv

from wsi_amf.cli import main


def _grid(n: int) -> np.ndarray:
    side = int(np.ceil(np.sqrt(n)))
    g = np.linspace(100, 1900, side)
    return np.array([(x, y) for y in g for x in g][:n])


@pytest.fixture()
def env(tmp_path, slide025, tiny_bundle):
    pts = write_points_csv(tmp_path / "det.csv", _grid(200))

    def run(out: str, *extra: str, cache: Path | None = tmp_path / "cache"):
        argv = ["screen", str(slide025.path), "--points", str(pts), "--model", str(tiny_bundle.path),
                "--threshold", "0.5", "--out", str(tmp_path / out), *extra]
        if cache is not None and "--cache" not in extra:
            argv += ["--cache", str(cache)]
        res = CliRunner().invoke(main, argv)
        summary = tmp_path / out / f"{slide025.path.stem}.summary.json"
        return res, (json.loads(summary.read_text()) if summary.exists() else None), _table(tmp_path / out, slide025)

    return run, tmp_path


def _table(out: Path, slide) -> list[dict] | None:
    path = out / f"{slide.path.stem}.csv"
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _group(tmp_path: Path) -> Path:
    (group,) = (tmp_path / "cache").glob("*/s128_mpp0.25")
    return group


def _chunks(group: Path) -> list[Path]:
    return sorted((group / "patches" / "c").glob("*/0/0/0"), key=lambda p: int(p.parts[-4]))


def test_deleted_and_swapped_chunk_files_are_read_again_not_served(env):
    run, tmp_path = env
    res, first, rows = run("a")
    assert res.exit_code == 0, res.output
    assert first["cache"]["patches_read_from_slide"] == 200
    chunks = _chunks(_group(tmp_path))
    assert len(chunks) == 4  # 200 patches, 64 per chunk
    for c in chunks[:2]:  # a partial clean-up: two chunk files gone
        c.unlink()
    res, again, rows2 = run("b")
    assert res.exit_code == 0, res.output
    assert again["cache"]["patches_read_from_slide"] == 128  # exactly the two lost chunks, read from the slide
    assert [r["p_atypical"] for r in rows2] == [r["p_atypical"] for r in rows]  # not black patches
    assert "fail their checksum" in res.output  # the warning reaches the user (shown even with -q)
    # The re-read patches were stored again: a third run reads nothing.
    res, third, _ = run("c")
    assert third["cache"]["patches_read_from_slide"] == 0
    # Swapped chunk files (a sync gone wrong): both are detected and re-read.
    chunks = _chunks(_group(tmp_path))
    a, b = chunks[1], chunks[2]
    tmp = a.with_name("swap")
    a.rename(tmp), b.rename(a), tmp.rename(b)
    res, swapped, rows4 = run("d")
    assert res.exit_code == 0, res.output
    assert swapped["cache"]["patches_read_from_slide"] == 128
    assert [r["p_atypical"] for r in rows4] == [r["p_atypical"] for r in rows]


@pytest.mark.parametrize("damage", ["group zarr.json", "filled chunk", "slide zarr.json"])
def test_damaged_metadata_rebuilds_the_entry(env, damage):
    run, tmp_path = env
    res, first, rows = run("a")
    group = _group(tmp_path)
    target = {"group zarr.json": group / "zarr.json", "filled chunk": next((group / "filled" / "c").glob("*")),
              "slide zarr.json": group.parent / "zarr.json"}[damage]
    target.write_bytes(b"\x00garbage{")
    res, again, rows2 = run("b")
    assert res.exit_code == 0, res.output
    assert again["cache"]["patches_read_from_slide"] == 200  # rebuilt: every patch read again
    assert [r["p_atypical"] for r in rows2] == [r["p_atypical"] for r in rows]
    assert "rebuilding it" in res.output
    res, third, _ = run("c")
    assert res.exit_code == 0 and third["cache"]["patches_read_from_slide"] == 0


def test_no_cache_reads_the_slide_and_keeps_nothing(env):
    run, tmp_path = env
    res, cached, rows = run("a")
    res, s, rows2 = run("b", "--no-cache", cache=tmp_path / "other-cache")
    assert res.exit_code == 0, res.output
    assert s["cache"]["mode"] == "none" and s["cache"]["patches_read_from_slide"] == 200
    assert not (tmp_path / "other-cache").exists()
    assert [r["p_atypical"] for r in rows2] == [r["p_atypical"] for r in rows]


@contextlib.contextmanager
def _mounted(args: list[str], target: Path):
    """Mount (root only: a read-only bind mount, a small tmpfs); skip the test where mounting is refused."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.decode().strip()[:80]})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _read_only_copy(src: Path, target: Path):
    target.mkdir(parents=True, exist_ok=True)
    with _mounted(["--bind", str(src)], target):
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield target


def test_a_complete_read_only_cache_is_used_as_it_is(env):
    run, tmp_path = env
    res, first, rows = run("a")
    if os.geteuid() != 0:
        os.chmod(tmp_path / "cache", 0o555)
        ro = contextlib.nullcontext(tmp_path / "cache")
    else:
        ro = contextlib.contextmanager(_read_only_copy)(tmp_path / "cache", tmp_path / "ro")
    with ro as cache:
        res, s, rows2 = run("b", cache=cache)
    assert res.exit_code == 0, res.output
    assert s["cache"]["mode"] == "r" and s["cache"]["patches_read_from_slide"] == 0
    assert s["cache"]["patches_from_cache"] == 200
    assert [r["p_atypical"] for r in rows2] == [r["p_atypical"] for r in rows]


def test_the_cache_bound_evicts_the_least_recently_used_slide(tmp_path, slides, tiny_bundle):
    cache = tmp_path / "cache"
    runs = []
    for mpp in (0.25, 0.5, 0.125):  # three slides, screened in this order
        sl = slides[mpp]
        pts = write_points_csv(tmp_path / f"det{mpp}.csv", [sl.px(x, y) for x, y in ((100, 100), (200, 150))])
        res = CliRunner().invoke(main, ["-q", "screen", str(sl.path), "--points", str(pts), "--model", str(tiny_bundle.path),
                                        "--out", str(tmp_path / "out"), "--cache", str(cache), "--cache-max-gb", "0.0001"])
        assert res.exit_code == 0, res.output
        runs.append(sl.path.stem)
    kept = {p.name.rsplit("-", 1)[0] for p in cache.iterdir() if p.is_dir()}
    # Each slide's entry holds about 40 kB of files: within 100 kB the first (least recently used) went.
    assert runs[0] not in kept and runs[-1] in kept
    assert sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) <= 100_000


def test_a_full_disk_is_one_line_naming_the_cache(env):
    run, tmp_path = env
    with _mounted(["-t", "tmpfs", "-o", "size=600k", "tmpfs"], tmp_path / "small") as small:
        res, s, _ = run("a", cache=small / "cache")
    assert res.exit_code == 1
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith("Error: patch cache ") and "the disk is full" in errors[0]
    assert str(small) in errors[0]
    assert "the disk has" in res.output and "GB free" in res.output  # warned before reading
    assert s is None and not (tmp_path / "a").exists()  # nothing half written
    shutil.rmtree(tmp_path / "small", ignore_errors=True)


def test_a_full_disk_for_the_outputs_is_one_line_naming_the_file(env):
    run, tmp_path = env
    with _mounted(["-t", "tmpfs", "-o", "size=40k", "tmpfs"], tmp_path / "tiny") as tiny:
        out = tiny / "out"
        res, s, _ = run(str(out))
        errors = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
        assert res.exit_code == 1 and len(errors) == 1
        assert errors[0].startswith(f"Error: output {out}") and "the disk is full" in errors[0]
        assert not list(out.glob("*.summary.json")) and not list(out.glob(".*.tmp"))  # nothing half written
