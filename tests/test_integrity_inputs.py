"""Inputs that used to fail whole slides or hang, through the real CLI (issue 19, item 6).

- Negative coordinates are treated like coordinates beyond the slide: the candidate gets status
  `outside_slide` (counted, warned about) and the rest of the slide is screened; a file wholly off the slide,
  or wholly within the slide's size in millimetres, is still an error.
- Points from standard input (`-`), a FIFO or process substitution (`/dev/fd/N`, a pipe) are read once and
  give the same results as the file; a FIFO never hangs; SQLite cannot come through a pipe; without an
  extension the content tells the format, and an error then points to --points-format.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import SyntheticSlide, write_points_csv

from wsi_amf.cli import main

#: Seconds a screening subprocess may take (a tiny model on 8 candidates takes about 10 s on a busy 2-core CPU).
TIMEOUT_S = 120
NEGATIVE = [(-0.4, 100.0), (300.0, -12.5), (-2000.0, -5.0)]  # -0.4 would round into the first pixel: outside too


def beyond(slide: SyntheticSlide) -> list[tuple[float, float]]:
    """Points just beyond the slide's right and bottom edges (x == width is already outside)."""
    h, w = slide.image.shape[:2]
    return [(float(w), 100.0), (300.0, h + 40.5)]


def run_cli(slide: SyntheticSlide, points: str, bundle, out: Path, *, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["screen", str(slide.path), "--points", points, "--model", str(bundle.path),
                                     "--threshold", "0.5", "--out", str(out)], input=stdin)


def screen_argv(slide: SyntheticSlide, bundle, out: Path) -> list[str]:
    """`wsi-amf screen` in a new process, without --points."""
    return [sys.executable, "-m", "wsi_amf", "-q", "screen", str(slide.path), "--model", str(bundle.path),
            "--threshold", "0.5", "--out", str(out)]


def run_process(argv: list[str], *, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"screening did not finish in {TIMEOUT_S} s (waiting for the points to be read again?)")


def rows(out: Path, slide: SyntheticSlide) -> list[tuple[str, str, str, str]]:
    with (out / f"{slide.path.stem}.csv").open(encoding="utf-8", newline="") as fh:
        return [(r["x"], r["y"], r["status"], r["label"]) for r in csv.DictReader(fh)]


def summary(out: Path, slide: SyntheticSlide) -> dict:
    return json.loads((out / f"{slide.path.stem}.summary.json").read_text(encoding="utf-8"))


def csv_points(path: Path) -> tuple[list[tuple[float, float]], list[str]]:
    """The positions and ids of a points CSV ``x,y,id`` (the ``mitosis_points`` fixture)."""
    cells = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return [(float(x), float(y)) for x, y, _ in cells], [i for _, _, i in cells]


def geojson_points(xy: list[tuple[float, float]], ids: list[str]) -> bytes:
    features = [{"type": "Feature", "properties": {"name": i}, "geometry": {"type": "Point", "coordinates": list(p)}}
                for p, i in zip(xy, ids)]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def error_line(res: Result) -> str:
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


# ---------------------------------------------------------------- negative coordinates


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
def test_negative_coordinates_are_outside_the_slide_like_those_beyond_it(tmp_path, slide025, mitosis_points,
                                                                          tiny_bundle, fmt):
    on, on_ids = csv_points(mitosis_points)
    off = NEGATIVE + beyond(slide025)
    xy = on + off
    ids = on_ids + [f"off{i}" for i in range(len(off))]
    if fmt == "csv":
        points = write_points_csv(tmp_path / "det.csv", xy, {"id": ids})
    else:
        points = tmp_path / "det.geojson"
        points.write_bytes(geojson_points(xy, ids))
    res = run_cli(slide025, str(points), tiny_bundle, tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert f"{len(off)} of {len(xy)} candidates lie outside the slide" in res.output
    got = rows(tmp_path / "out", slide025)
    assert [(status, bool(label)) for _, _, status, label in got] == [("ok", True)] * len(on) + [
        ("outside_slide", False)] * len(off)
    assert [(float(x), float(y)) for x, y, _, _ in got[len(on):]] == off
    s = summary(tmp_path / "out", slide025)
    assert (s["n_candidates"], s["n_classified"], s["n_skipped_outside_slide"]) == (len(xy), len(on), len(off))


@pytest.mark.parametrize(
    ("xy", "message"),
    [
        (NEGATIVE, "all 3 candidates lie outside the slide"),  # wholly off the slide, to its left and top
        ([(-0.02, 0.1), (0.3, 0.2), (0.45, 0.4)], "not millimetres"),  # millimetres, one just left of the slide
    ],
    ids=["all-negative", "millimetres-with-a-negative"],
)
def test_a_points_file_that_cannot_be_the_slides_is_still_an_error(tmp_path, slide025, tiny_bundle, xy, message):
    points = write_points_csv(tmp_path / "det.csv", xy)
    res = run_cli(slide025, str(points), tiny_bundle, tmp_path / "out")
    assert res.exit_code == 1, res.output
    line = error_line(res)
    assert message in line and "det.csv" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- standard input, FIFOs, pipes


@pytest.fixture()
def reference(tmp_path, slide025, mitosis_points, tiny_bundle) -> list[tuple[str, str, str, str]]:
    """The rows screening the plain points file gives."""
    res = run_cli(slide025, str(mitosis_points), tiny_bundle, tmp_path / "reference")
    assert res.exit_code == 0, res.output
    return rows(tmp_path / "reference", slide025)


@contextlib.contextmanager
def fed_fifo(path: Path, data: bytes) -> Iterator[Path]:
    """A FIFO at ``path`` that a thread writes ``data`` into once (as a detector piping its output would)."""
    os.mkfifo(path)

    def write() -> None:
        with contextlib.suppress(BrokenPipeError), open(path, "wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        if writer.is_alive():  # nobody opened it: open it here so that the writer's open returns
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=10)


def test_points_from_standard_input(tmp_path, slide025, mitosis_points, tiny_bundle, reference):
    out = tmp_path / "out"
    done = run_process([*screen_argv(slide025, tiny_bundle, out), "--points", "-"], stdin=mitosis_points.read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    assert rows(out, slide025) == reference


def test_points_from_a_fifo_are_read_once_without_hanging(tmp_path, slide025, mitosis_points, tiny_bundle, reference):
    out = tmp_path / "out"
    with fed_fifo(tmp_path / "fifo.csv", mitosis_points.read_bytes()) as fifo:
        done = run_process([*screen_argv(slide025, tiny_bundle, out), "--points", str(fifo)])
    assert done.returncode == 0, done.stderr.decode()
    assert rows(out, slide025) == reference


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for process substitution")
def test_points_from_process_substitution(tmp_path, slide025, mitosis_points, tiny_bundle, reference):
    out = tmp_path / "out"
    # bash -c SCRIPT $0 $1 ...: the command with --points <(cat det.csv), a /dev/fd/N pipe with no extension
    script = '"$@" --points <(cat "$0")'
    done = run_process(["bash", "-c", script, str(mitosis_points), *screen_argv(slide025, tiny_bundle, out)])
    assert done.returncode == 0, done.stderr.decode()
    assert rows(out, slide025) == reference


def test_geojson_from_standard_input_is_told_by_its_content(tmp_path, slide025, mitosis_points, tiny_bundle,
                                                            reference):
    res = run_cli(slide025, "-", tiny_bundle, tmp_path / "out", stdin=geojson_points(*csv_points(mitosis_points)))
    assert res.exit_code == 0, res.output
    assert rows(tmp_path / "out", slide025) == reference


def _sqlite_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "db.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE Slides (uid INTEGER PRIMARY KEY, filename TEXT)")
        db.commit()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("stdin", "messages"),
    [
        (_sqlite_bytes, ("points file - is an SQLite database", "save it to a file")),
        (lambda tmp_path: b"detections\n12 and 40\n", ("points file -: no coordinate columns", "--points-format")),
        (lambda tmp_path: b"", ("points file - is empty",)),
    ],
    ids=["sqlite", "unrecognised", "empty"],
)
def test_standard_input_problems_are_one_line(tmp_path, slide025, tiny_bundle, stdin, messages):
    res = run_cli(slide025, "-", tiny_bundle, tmp_path / "out", stdin=stdin(tmp_path))
    assert res.exit_code == 1, res.output
    line = error_line(res)
    assert all(m in line for m in messages), line
    assert not (tmp_path / "out").exists()
