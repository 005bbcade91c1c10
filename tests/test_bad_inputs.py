"""The corpus of bad inputs: points files, slides, bundles, ROIs, track 2 stacks and options.

One table of cases; each builds its bad input in its own folder and runs the real CLI. Every case must end
with exactly one ``Error:`` line naming the file (or option) and the problem, exit code 1 (2 for a bad
option), no traceback, nothing new in the output folder, and the patch cache of an earlier good run
byte-identical. Unreadable files are tested with an unprivileged effective user id (root reads anything).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import MITOSES_UM, write_points_csv
from PIL import Image

from wsi_amf import screen
from wsi_amf.cli import main
from wsi_amf.options import ScreenOptions
from wsi_amf.synthetic import random_scene, write_pyramidal_tiff

NOBODY = 65534


@dataclass(frozen=True)
class Env:
    """Good inputs every case starts from, and the cache of a good run (all readable by an unprivileged user)."""

    root: Path
    slide: Path
    points: Path
    bundle: Path
    cache: Path
    stack: Path


@pytest.fixture(scope="module")
def env(slide025, tiny_bundle):
    with tempfile.TemporaryDirectory(prefix="wsi-amf-corpus-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        slide = Path(shutil.copy(slide025.path, root / "slide.tif"))
        points = write_points_csv(root / "det.csv", [slide025.px(x, y) for x, y in MITOSES_UM])
        pages = np.random.default_rng(0).integers(0, 256, size=(3, 128, 128, 3), dtype=np.uint8)
        stack = write_tiff(root / "stack.tiff", pages)
        cache = root / "cache"
        screen(slide, points, ScreenOptions(cache_dir=cache, engine="torch"), model=tiny_bundle,
               progress=False)  # the cache to keep
        yield Env(root, slide, points, tiny_bundle.path, cache, stack)


# ------------------------------------------------------------------------------------------ builders


def write_tiff(path: Path, pages, **kwargs) -> Path:
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page, metadata=None, **kwargs)
    return path


Build = Callable[[Env, Path], Path]  # writes a bad input into the case's folder, returns its path


def text(name: str, content: str | bytes) -> Build:
    def build(env: Env, d: Path) -> Path:
        path = d / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path
    return build


def geojson(name: str, data: object) -> Build:
    return text(name, json.dumps(data))


def point_features(*xy: tuple[float, float]) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(p)}, "properties": {"objectType": "detection"}}
        for p in xy]}


def polygon_feature(ring: list) -> dict:
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"objectType": "annotation"}}


def folder(name: str) -> Build:
    def build(env: Env, d: Path) -> Path:
        (d / name).mkdir()
        return d / name
    return build


def missing(name: str) -> Build:
    return lambda env, d: d / name


def truncated_slide(name: str, fraction: float) -> Build:
    def build(env: Env, d: Path) -> Path:
        data = small_slide(d).read_bytes()
        (d / name).write_bytes(data[: int(len(data) * fraction)])
        return d / name
    return build


def small_slide(d: Path, *, mpp: float | None = 0.25) -> Path:
    image = random_scene(128, 128, n_nuclei=10, seed=2).render(0.25)
    return write_pyramidal_tiff(d / "small.tif", image, mpp=mpp, downsamples=(1, 4))


def slide_with_corrupt_tiles(env: Env, d: Path) -> Path:
    """Opens (its headers and smallest level are intact) but level-0 tiles do not decode."""
    path = small_slide(d)
    with tifffile.TiffFile(path) as tif:
        offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    data = bytearray(path.read_bytes())
    for offset, count in zip(offsets, counts):
        data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    return path


def png_file(name: str) -> Build:
    def build(env: Env, d: Path) -> Path:
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(d / name, format="PNG")
        return d / name
    return build


def stack_of(name: str, pages: np.ndarray, **kwargs) -> Build:
    return lambda env, d: write_tiff(d / name, pages, **kwargs)


def bundle_copy(edit: Callable[[Path, dict], dict | None] | None = None, raw_json: bytes | None = None) -> Build:
    """A copy of the good bundle, with ``bundle.json`` edited (``edit`` returns the new content) or replaced."""
    def build(env: Env, d: Path) -> Path:
        dest = Path(shutil.copytree(env.bundle, d / "bad_bundle"))
        meta = dest / "bundle.json"
        if raw_json is not None:
            meta.write_bytes(raw_json)
        elif edit is not None:
            data = edit(dest, json.loads(meta.read_text()))
            if data is not None:
                meta.write_text(json.dumps(data))
        return dest
    return build


def unlink_member(dest: Path, data: dict) -> None:
    (dest / data["members"][1]).unlink()


def member_bytes(content: bytes) -> Callable[[Path, dict], None]:
    def edit(dest: Path, data: dict) -> None:
        (dest / data["members"][0]).write_bytes(content)
    return edit


def member_dir(dest: Path, data: dict) -> None:
    member = dest / data["members"][0]
    member.unlink()
    member.mkdir()


def set_keys(**changes: object) -> Callable[[Path, dict], dict]:
    return lambda dest, data: {**data, **changes}


# ------------------------------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """``kind``: which input ``build`` replaces (points, slide, model, roi, stack) or "option" (``args`` only).

    ``expect``: text the Error line must hold besides the file's name (for options: the option itself).
    """

    id: str
    kind: str
    build: Build | None
    expect: str
    code: int = 1
    args: tuple[str, ...] = ()
    unreadable: bool = False
    reaches_cache: bool = False
    names: str | None = None  # what the Error line names, when not the bad file nor the option


P = "points"
S = "slide"
M = "model"
R = "roi"
T = "stack"
OPT = "option"
WIDE = (2048.0, 2048.0)  # the good slide, in pixels (0.512 mm square)
RING = [[100, 100], [900, 100], [900, 900], [100, 900], [100, 100]]

CASES = [
    # --- points files (CSV, QuPath GeoJSON)
    Case("points-empty", P, text("det.csv", ""), "is empty"),
    Case("points-blank-lines", P, text("det.csv", "  \n\n \n"), "is empty"),
    Case("points-csv-non-numeric", P, text("det.csv", "x,y\n10,20\n30,abc\n"), "row 2"),
    Case("points-csv-nan", P, text("det.csv", "x,y\nnan,20\n"), "not a finite number"),
    Case("points-csv-infinite", P, text("det.csv", "x,y\n10,-inf\n"), "not a finite number"),
    Case("points-csv-all-negative", P, text("det.csv", "x,y\n-12,20\n-0.4,900\n"), "lie outside the slide"),
    Case("points-csv-all-outside-slide", P, text("det.csv", "x,y\n50000,120\n9000,70000\n"), "lie outside the slide"),
    Case("points-csv-millimetres", P, text("det.csv", "x,y\n0.1,0.1\n0.256,0.128\n0.4,0.3\n"), "not millimetres"),
    Case("points-csv-ragged-row", P, text("det.csv", "x,y,score\n10,20,0.5\n30,40\n"), "has 2 fields"),
    Case("points-csv-no-header", P, text("det.csv", "10,20\n30,40\n"), "no header row"),
    Case("points-csv-unknown-columns", P, text("det.csv", "a,b\n10,20\n"), "no coordinate columns"),
    Case("points-csv-binary", P, text("det.csv", bytes(range(256)) * 4), "not UTF-8"),
    Case("points-directory", P, folder("det.csv"), "is a directory"),
    Case("points-missing", P, missing("det.csv"), "does not exist"),
    Case("points-unreadable", P, text("det.csv", "x,y\n10,20\n"), "permission denied", unreadable=True),
    Case("points-geojson-truncated", P, text("det.geojson", '{"type": "FeatureCollection", "features": [{"type": "Fea'),
         "not valid JSON"),
    Case("points-geojson-number", P, text("det.geojson", "42"), "the top level is a number"),
    Case("points-geojson-features-string", P, geojson("det.geojson", {"type": "FeatureCollection", "features": "all"}),
         "'features' is a string"),
    Case("points-geojson-string-coordinates", P, geojson("det.geojson", point_features(("10", "20"))), "not [x, y] numbers"),
    Case("points-geojson-properties-list", P, geojson("det.geojson", {"type": "Feature", "properties": [1],
         "geometry": {"type": "Point", "coordinates": [10, 20]}}), "'properties' is a list"),
    Case("points-geojson-classification-number", P, geojson("det.geojson", {"type": "Feature", "properties": {
         "classification": 7}, "geometry": {"type": "Point", "coordinates": [10, 20]}}), "'classification' is a number"),
    Case("points-geojson-nan", P, text("det.geojson", '{"type": "Point", "coordinates": [NaN, 20]}'), "not finite"),
    Case("points-geojson-all-negative", P, geojson("det.geojson", point_features((10, -4))), "lie outside the slide"),
    Case("points-geojson-only-lines", P, geojson("det.geojson", {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}),
         "none of its 1 objects"),
    Case("points-geojson-all-outside-slide", P, geojson("det.geojson", point_features((3000, 10), (10, 2049))),
         "lie outside the slide"),
    Case("points-geojson-millimetres", P, geojson("det.geojson", point_features((0.1, 0.1), (0.45, 0.08))), "not millimetres"),
    Case("points-min-score-without-scores", P, lambda env, d: env.points, "no score column", args=("--min-score", "0.5")),
    Case("points-class-without-class-column", P, lambda env, d: env.points, "no class column", args=("--class", "AMF")),
    # --- slides
    Case("slide-missing", S, missing("slide.svs"), "no such file"),
    Case("slide-directory", S, folder("slide.svs"), "is a directory"),
    Case("slide-empty-svs", S, text("slide.svs", b""), "is empty"),
    Case("slide-text-renamed-svs", S, text("slide.svs", "x,y\n10,20\n"), "OpenSlide does not recognise it"),
    Case("slide-png-renamed-svs", S, png_file("slide.svs"), "OpenSlide does not recognise it"),
    Case("slide-random-bytes-ndpi", S, text("slide.ndpi", np.random.default_rng(1).bytes(5000)), "does not recognise it"),
    Case("slide-truncated-svs", S, truncated_slide("slide.svs", 0.5), "truncated"),
    Case("slide-truncated-tiles-svs", S, truncated_slide("slide.svs", 0.95), "cannot be read by OpenSlide"),
    Case("slide-truncated-tif", S, truncated_slide("slide.tif", 0.3), "cannot be read as an image"),
    Case("slide-corrupt-png", S, text("slide.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100), "cannot be read as an image"),
    Case("slide-corrupt-tiles", S, slide_with_corrupt_tiles, "failed", reaches_cache=True),
    Case("slide-without-resolution", S, lambda env, d: small_slide(d, mpp=None), "pass --mpp"),
    Case("slide-unreadable", S, text("slide.svs", b"II*\x00" + b"\x00" * 64), "permission denied", unreadable=True),
    # --- model bundles
    Case("bundle-missing", M, missing("bundle"), "no such directory"),
    Case("bundle-empty-directory", M, folder("bundle"), "bundle.json is missing"),
    Case("bundle-missing-member", M, bundle_copy(unlink_member), "member file member-1.safetensors is missing"),
    Case("bundle-pickle-checkpoint", M, text("model.pth", b"\x80\x04\x95PK"), "pickle checkpoint is not accepted"),
    Case("bundle-pickle-member", M, bundle_copy(set_keys(members=["member-0.pt"])), "is not a .safetensors file name"),
    Case("bundle-unknown-architecture", M, bundle_copy(set_keys(architecture="no_such_net_42")),
         "cannot build architecture 'no_such_net_42'"),
    Case("bundle-other-architecture", M, bundle_copy(set_keys(architecture="resnet18")), "does not match architecture"),
    Case("bundle-json-truncated", M, bundle_copy(raw_json=b'{"format_version": 1, "archi'), "cannot be read"),
    Case("bundle-json-not-utf8", M, bundle_copy(raw_json=b"\xff\xfe\x00{"), "cannot be read"),
    Case("bundle-json-list", M, bundle_copy(raw_json=b"[1, 2]"), "is not a JSON object"),
    Case("bundle-json-members-number", M, bundle_copy(set_keys(members=3)), "bad value"),
    Case("bundle-json-mean-strings", M, bundle_copy(set_keys(mean=["a", "b", "c"])), "bad value"),
    Case("bundle-json-format-version", M, bundle_copy(set_keys(format_version=99)), "format_version 99"),
    Case("bundle-json-threshold", M, bundle_copy(set_keys(threshold=2)), "threshold 2.0 is not in [0, 1]"),
    Case("bundle-member-traversal", M, bundle_copy(set_keys(members=["../member-0.safetensors"])), "inside the bundle"),
    Case("bundle-member-garbage", M, bundle_copy(member_bytes(b"not safetensors at all")), "not a readable safetensors"),
    Case("bundle-member-empty", M, bundle_copy(member_bytes(b"")), "not a readable safetensors"),
    Case("bundle-member-directory", M, bundle_copy(member_dir), "member file member-0.safetensors is not a file"),
    Case("bundle-json-given-as-model", M, lambda env, d: Path(shutil.copy(env.bundle / "bundle.json", d)),
         "is a file"),
    # --- regions of interest
    Case("roi-missing", R, missing("roi.geojson"), "does not exist"),
    Case("roi-empty", R, text("roi.geojson", ""), "is empty"),
    Case("roi-directory", R, folder("roi.geojson"), "is a directory"),
    Case("roi-truncated", R, text("roi.geojson", '{"type": "Feature", "geometry": {"type": "Poly'), "not valid JSON"),
    Case("roi-binary", R, text("roi.geojson", b"\x89PNG\r\n\x1a\n\xff\xfe"), "not UTF-8"),
    Case("roi-only-points", R, geojson("roi.geojson", point_features((10, 10))), "no Polygon or MultiPolygon"),
    Case("roi-string-coordinates", R, geojson("roi.geojson", polygon_feature([["0", "0"], ["9", "0"], ["9", "9"]])),
         "not [x, y] numbers"),
    Case("roi-nan", R, text("roi.geojson", '{"type": "Polygon", "coordinates": [[[0, 0], [NaN, 0], [9, 9], [0, 0]]]}'),
         "not finite"),
    Case("roi-outside-slide", R, geojson("roi.geojson", polygon_feature([[3000, 0], [4000, 0], [4000, 900], [3000, 0]])),
         "do not overlap the slide"),
    Case("roi-millimetres", R, geojson("roi.geojson", polygon_feature([[0.01, 0.01], [0.3, 0.01], [0.3, 0.2], [0.01, 0.01]])),
         "not millimetres"),
    Case("roi-unreadable", R, geojson("roi.geojson", polygon_feature(RING)), "permission denied", unreadable=True),
    # --- track 2 stacks (classify-stack)
    Case("stack-missing", T, missing("stack.tiff"), "no such file"),
    Case("stack-directory", T, folder("stack.tiff"), "is a directory"),
    Case("stack-empty", T, text("stack.tiff", b""), "is empty"),
    Case("stack-text-renamed-tiff", T, text("stack.tiff", "image_id,label\n1.png,AMF\n"), "not a readable image"),
    Case("stack-png-renamed-tiff", T, png_file("stack.tiff"), "expected a multi-page TIFF"),
    Case("stack-64px-pages", T, stack_of("stack.tiff", np.zeros((2, 64, 64, 3), np.uint8), photometric="rgb"),
         "page 1: is a 64x64 RGB image, expected 128x128 RGB"),
    Case("stack-grey-pages", T, stack_of("stack.tiff", np.zeros((3, 128, 128), np.uint8)), "is a 128x128 L image"),
    Case("stack-rgba-page", T, lambda env, d: write_tiff(d / "stack.tiff", [np.zeros((128, 128, 3), np.uint8),
         np.zeros((128, 128, 4), np.uint8)], photometric="rgb"), "page 2: is a 128x128 RGBA image"),
    Case("stack-truncated", T, lambda env, d: text("stack.tiff", env.stack.read_bytes()[: env.stack.stat().st_size // 2])(env, d),
         "cannot be"),
    Case("stack-unreadable", T, stack_of("stack.tiff", np.zeros((1, 128, 128, 3), np.uint8), photometric="rgb"),
         "permission denied", unreadable=True),
    # --- options
    Case("option-mpp-zero", OPT, None, "--mpp 0", 2, ("--mpp", "0")),
    Case("option-mpp-negative", OPT, None, "--mpp -0.25", 2, ("--mpp", "-0.25")),
    Case("option-mpp-nan", OPT, None, "--mpp nan", 2, ("--mpp", "nan")),
    Case("option-mpp-millimetres", OPT, None, "not millimetres", 2, ("--mpp", "0.00025")),
    Case("option-mpp-nanometres", OPT, None, "--mpp 250", 2, ("--mpp", "250")),
    Case("option-threshold", OPT, None, "--threshold", 2, ("--threshold", "1.5")),
    Case("option-batch-size-zero", OPT, None, "--batch-size", 2, ("--batch-size", "0")),
    Case("option-workers-zero", OPT, None, "--workers", 2, ("--workers", "0")),
    Case("option-device", OPT, None, "--device 'tpu'", 2, ("--device", "tpu")),
    Case("option-engine", OPT, None, "--engine", 2, ("--engine", "tensorrt")),
    Case("option-export", OPT, None, "--export", 2, ("--export", "xml")),
    Case("option-points-format", OPT, None, "--points-format", 2, ("--points-format", "xml")),
    Case("option-x-col-alone", OPT, None, "--x-col and --y-col", 2, ("--x-col", "x")),
    Case("option-min-score-nan", OPT, None, "--min-score nan", 2, ("--min-score", "nan")),
    Case("option-out-is-a-file", OPT, None, "--out", 2, ("--out", "{file}")),
    Case("option-cache-is-a-file", OPT, None, "cannot be created", 1, ("--cache", "{file}"), names="a_file"),
    Case("option-stack-out-is-a-directory", T, lambda env, d: env.stack, "is a directory", 2, ("--out", "{dir}"),
         names="--out"),
]


def argv_for(case: Case, env: Env, bad: Path | None, d: Path) -> list[str]:
    out = d / "out"
    values = {"slide": env.slide, "points": env.points, "model": env.bundle, "roi": None, "stack": env.stack}
    if bad is not None:
        values[case.kind] = bad
    if case.kind == T:
        argv = ["classify-stack", str(values["stack"]), "--out", str(out / "result.json"), "--model", str(values["model"])]
    else:
        argv = ["screen", str(values["slide"]), "--points", str(values["points"]), "--model", str(values["model"]),
                "--out", str(out), "--cache", str(env.cache)]
        if values["roi"] is not None:
            argv += ["--roi", str(values["roi"])]
    (d / "a_file").write_text("not a directory\n")
    subs = {"{file}": str(d / "a_file"), "{dir}": str(out)}
    return [*argv, "--engine", "torch", *(subs.get(a, a) for a in case.args)]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block with an unprivileged effective user id when we are root (root reads any file)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env: Env) -> None:
    d = Path(tempfile.mkdtemp(prefix=f"{case.id}-", dir=env.root))
    d.chmod(0o755)
    bad = case.build(env, d) if case.build is not None else None
    argv = argv_for(case, env, bad, d)
    out = d / "out"
    out.mkdir()
    (out / "earlier-result.csv").write_text("x,y\n")
    before_out, before_cache = snapshot(out), snapshot(env.cache)

    if case.unreadable:
        bad.chmod(0)
    with unprivileged() if case.unreadable else nullcontext():
        res = CliRunner().invoke(main, argv)
    code, output = res.exit_code, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), output

    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert code == case.code, output
    assert len(errors) == 1 and lines[-1] == errors[0], output  # ends with exactly one error line
    assert "Traceback" not in output and "unexpected" not in errors[0], output
    named = case.names or (case.args[0] if case.kind == OPT else bad.name)
    assert named in errors[0] and case.expect in errors[0], errors[0]
    assert snapshot(out) == before_out, "a failed run left output behind"
    after_cache = snapshot(env.cache)
    if case.reaches_cache:  # a new slide's entries may appear; the existing ones stay as they were
        after_cache = {k: v for k, v in after_cache.items() if k in before_cache}
    assert after_cache == before_cache, "a failed run changed the existing cache"


def test_corpus_covers_every_kind_of_input() -> None:
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 40 and kinds == {P, S, M, R, T, OPT}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("content", ["x,y,score\n", '{"type": "FeatureCollection", "features": []}'])
def test_header_without_rows_is_a_slide_without_candidates(env: Env, tmp_path: Path, content: str) -> None:
    """Not an error: a detector that found nothing. Zero counts, no ratio, an empty overlay."""
    pts = tmp_path / ("none.csv" if content.startswith("x") else "none.geojson")
    pts.write_text(content)
    roi = tmp_path / "roi.geojson"
    roi.write_text(json.dumps(polygon_feature(RING)))
    res = CliRunner().invoke(main, ["screen", str(env.slide), "--points", str(pts), "--model", str(env.bundle), "--roi",
                                    str(roi), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"),
                                    "--engine", "torch", "--export", "gc-json"])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "out" / "slide.summary.json").read_text())
    assert s["n_candidates"] == 0 and s["n_atypical"] == 0 and s["amf_ratio"] is None and s["amf_ratio_ci95"] is None
    assert s["roi"]["n_mf"] == 0 and s["roi"]["amf_per_2mm2"] == 0.0 and s["roi"]["area_mm2"] == pytest.approx(0.04)
    assert json.loads((tmp_path / "out" / "slide.geojson").read_text())["features"] == []
    assert json.loads((tmp_path / "out" / "slide.gc.json").read_text())["points"] == []
    assert (tmp_path / "out" / "slide.csv").read_text().startswith("x,y,p_atypical,label,status")
    assert len((tmp_path / "out" / "slide.csv").read_text().splitlines()) == 1
