"""The command line's habits: ``-v``/``-q`` before or after the subcommand with one meaning on every command,
``--help`` without loading a numerical library, and the AMF ratio worded the same everywhere."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wsi_amf.cli import main
from wsi_amf.text import amf_ratio_text, estimate, interval

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numba", "zarr", "numpy", "openslide", "shapely")


def _loaded_after(argv: list[str]) -> list[str]:
    code = ("import sys\nfrom wsi_amf.cli import main\ntry:\n    main(sys.argv[1:], prog_name='wsi-amf')\n"
            "except SystemExit:\n    pass\n"
            f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "Usage:" in done.stdout, done.stderr
    return [m for m in done.stderr.strip().splitlines()[-1].removeprefix("loaded:").split(",") if m]


@pytest.mark.parametrize("argv", [["--help"], ["screen", "--help"], ["batch", "--help"], ["train", "--help"]])
def test_help_loads_no_numerical_library(argv):
    assert _loaded_after(argv) == []


def test_importing_the_package_is_cheap_and_its_names_load_on_use():
    code = ("import sys, wsi_amf\nassert 'numpy' not in sys.modules\n"
            "from wsi_amf import Ensemble, ManifestError, PointsOptions, Roi, Slide, open_ensemble, read_roi, screen\n"
            "import wsi_amf.screen\nassert wsi_amf.screen is screen and callable(screen)\n"
            "assert all(hasattr(wsi_amf, name) for name in wsi_amf.__all__)\n"
            "from wsi_amf.batch.jobs import ManifestError as M\nassert M is ManifestError\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_subcommand_takes_verbose_and_quiet():
    for name in main.list_commands(None):  # type: ignore[arg-type]
        res = CliRunner().invoke(main, [name, "--help"])
        assert res.exit_code == 0 and "-q, --quiet" in res.output and "-v, --verbose" in res.output, name


def _screen_argv(slide, points, bundle, tmp_path: Path) -> list[str]:
    return ["screen", str(slide), "--points", str(points), "--model", str(bundle), "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "c"), "--threshold", "0.5"]


def test_quiet_after_the_subcommand_keeps_the_result_line(tmp_path, slide025, mitosis_points, tiny_bundle):
    res = CliRunner().invoke(main, [*_screen_argv(slide025.path, mitosis_points, tiny_bundle.path, tmp_path), "-q"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if not line.startswith("  warning: ")]
    assert len(lines) == 1 and lines[0].startswith("scene_0.25.tif: 8 of 8 candidates classified")
    assert "estimated AMF ratio" in lines[0] and "geojson" not in res.stdout

    res = CliRunner().invoke(main, ["-q", *_screen_argv(slide025.path, mitosis_points, tiny_bundle.path, tmp_path), "-q"])
    assert res.exit_code == 0 and res.output == ""  # -q twice, before and after: errors only

    default = CliRunner().invoke(main, ["report", str(tmp_path / "out")])
    assert default.exit_code == 0 and "report.html" in default.output
    quiet = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == ""
    verbose = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "-v"])
    assert verbose.exit_code == 0 and logging.getLogger().getEffectiveLevel() == logging.INFO
    CliRunner().invoke(main, ["-qq", "report", str(tmp_path / "out")])
    assert logging.getLogger().getEffectiveLevel() == logging.ERROR
    CliRunner().invoke(main, ["-q", "report", str(tmp_path / "out")])
    assert logging.getLogger().getEffectiveLevel() == logging.WARNING  # -q keeps warnings


def test_quiet_batch(tmp_path, slide025, mitosis_points, tiny_bundle):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"slide,points\n{slide025.path},{mitosis_points}\n")
    argv = ["batch", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--model", str(tiny_bundle.path),
            "--cache", str(tmp_path / "c"), "--threshold", "0.5", "--no-prefetch"]
    quiet = CliRunner().invoke(main, [*argv, "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout.splitlines() == [f"1 slides: 1 ok, 0 failed, 0 skipped; cohort table {tmp_path / 'out' / 'cohort.csv'}"]
    again = CliRunner().invoke(main, [*argv, "-qq"])
    assert again.exit_code == 0 and again.output == ""
    default = CliRunner().invoke(main, argv)
    assert default.exit_code == 0 and "up to date from an earlier run" in default.output


def test_quiet_demo(tmp_path, tiny_bundle):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--model", str(tiny_bundle.path), "-q"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and "SYNTHETIC" in lines[0] and lines[1].startswith("40 candidates classified")
    assert "QuPath" not in res.output


def test_quiet_classify(tmp_path, tiny_bundle):
    for i, value in enumerate((60, 200)):
        Image.fromarray(np.full((128, 128, 3), value, dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    argv = ["classify", str(tmp_path / "p0.png"), str(tmp_path / "p1.png"), "--model", str(tiny_bundle.path),
            "--engine", "torch", "--threads", "1"]
    default = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / "a.csv")])
    assert default.exit_code == 0 and default.stdout.startswith("2 patches"), default.output
    quiet = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / "b.csv"), "-q"])
    assert quiet.exit_code == 0 and len(quiet.stdout.splitlines()) <= 1
    silent = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / "c.csv"), "-qq"])
    assert silent.exit_code == 0 and silent.output == "" and (tmp_path / "c.csv").exists()


def test_the_ratio_is_worded_once():
    assert estimate(0.15, [0.1, 0.2]) == "0.150 (95% CI 0.100\u20130.200)"
    assert estimate(None, [0.1, 0.2]) == "n/a (95% CI 0.100\u20130.200)"
    assert estimate(0.15) == "0.150" and interval(None) == ""
    summary = {"amf_ratio": 0.15, "amf_ratio_ci95": [0.1, 0.2], "amf_ratio_method": "acc", "called_amf_ratio": 0.2}
    assert amf_ratio_text(summary) == "estimated AMF ratio 0.150 (acc, 95% CI 0.100-0.200); share of calls 0.200"
    assert amf_ratio_text({**summary, "amf_ratio_method": "cc"}) == "estimated AMF ratio 0.150 (cc, 95% CI 0.100-0.200)"
    assert amf_ratio_text({"amf_ratio": None}) == "AMF ratio n/a"
    assert amf_ratio_text({**summary, "amf_ratio_ci95": None}) == "estimated AMF ratio 0.150 (acc); share of calls 0.200"
