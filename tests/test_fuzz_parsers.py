"""Property-based tests of the parsers of ROIs, bundle.json, track 2 stacks and training tables: any input
ends in a result or in our own error type (``WsiAmfError``), never in another exception."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.numpy import save as save_safetensors

from wsi_amf.bundle import BundleConfig, load_bundle
from wsi_amf.datasets import MIDOG_DOMAINS, load_dataset
from wsi_amf.errors import BundleError, DatasetError, OptionError, RoiError
from wsi_amf.inference.track2 import read_stack
from wsi_amf.roi import Roi, read_roi

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(st.integers(-10**6, 10**6), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(-5000, 5000))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids,
                                                                                             max_size=4), max_leaves=25)


def dump(value: object) -> str:
    return json.dumps(value, allow_nan=True)  # NaN / Infinity tokens: not JSON, but Python (and some tools) write them


# ------------------------------------------------------------------------------------------ ROI

positions = st.lists(numbers | scalars, min_size=0, max_size=3)
rings = st.lists(positions, max_size=6) | st.lists(st.tuples(st.floats(-50, 3000), st.floats(-50, 3000)).map(list),
                                                   min_size=3, max_size=7)
geometries = st.fixed_dictionaries({
    "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString", "GeometryCollection", "Circle"]) | scalars,
    "coordinates": st.one_of(st.lists(rings, max_size=3), st.lists(st.lists(rings, max_size=2), max_size=2), json_values),
})
features = st.fixed_dictionaries({"type": st.just("Feature") | scalars, "geometry": geometries | json_values,
                                  "properties": json_values})
good_rings = st.lists(st.tuples(st.floats(-100, 3000), st.floats(-100, 3000)).map(list), min_size=3, max_size=7)
good_features = st.builds(
    lambda rings, multi: {"type": "Feature", "properties": {"objectType": "annotation"},
                          "geometry": {"type": "MultiPolygon", "coordinates": [rings]} if multi else
                          {"type": "Polygon", "coordinates": rings}},
    st.lists(good_rings, min_size=1, max_size=3), st.booleans())
roi_documents = st.one_of(
    st.fixed_dictionaries({"type": st.just("FeatureCollection"), "features": st.lists(good_features, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"type": st.just("FeatureCollection"), "features": st.lists(features | json_values, max_size=4)}),
    st.lists(features | good_features, max_size=3), features, geometries, json_values,
)


def check_roi(path: Path) -> None:
    try:
        roi = read_roi(path)
    except RoiError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert isinstance(roi, Roi) and roi.area_px > 0
    try:
        clipped = roi.on_slide(2048, 1024, 0.25)
    except RoiError:
        return
    assert 1.0 <= clipped.area_px <= 2048 * 1024 + 1e-6
    assert clipped.contains(np.array([[10.0, 10.0], [5000.0, 5.0]])).dtype == bool


@FUZZ
@given(doc=roi_documents)
def test_roi_reader_on_geojson_like_documents(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "roi.geojson"
    path.write_text(dump(doc))
    check_roi(path)


# ------------------------------------------------------------------------------------------ bundle.json

GOOD_BUNDLE = {"format_version": 1, "architecture": "resnet10t", "members": ["member-0.safetensors"], "input_size": 64,
               "patch_size": 128, "crop_fraction": 0.6, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "mpp": 0.25,
               "threshold": 0.5, "class_names": ["normal", "atypical"], "model_kwargs": {}, "provenance": {}, "metrics": {}}
bundle_documents = st.one_of(
    st.dictionaries(st.sampled_from(sorted(GOOD_BUNDLE)), json_values).map(lambda d: {**GOOD_BUNDLE, **d}),
    st.sets(st.sampled_from(sorted(GOOD_BUNDLE))).map(lambda drop: {k: v for k, v in GOOD_BUNDLE.items() if k not in drop}),
    json_values,
)
TINY_MEMBER = save_safetensors({"w": np.zeros(2, dtype=np.float32)})


@FUZZ
@given(doc=bundle_documents)
@example(doc={**GOOD_BUNDLE, "input_size": math.inf})
@example(doc={**GOOD_BUNDLE, "std": [math.nan, 0.2, 0.2]})
@example(doc={**GOOD_BUNDLE, "mean": [0.5, math.inf, 0.5]})
@example(doc={**GOOD_BUNDLE, "patch_size": 10**400})
@example(doc=[[[[[[[[[]]]]]]]]])
def test_bundle_json(tmp_path: Path, doc: object) -> None:
    """bundle.json's parser on fuzzed documents: a one-line BundleError or a valid config that round-trips."""
    root = tmp_path / "bundle"
    root.mkdir(exist_ok=True)
    (root / "member-0.safetensors").write_bytes(TINY_MEMBER)  # a valid member: the parser is what is fuzzed
    (root / "bundle.json").write_text(dump(doc))
    try:
        bundle = load_bundle(root)
    except BundleError as err:
        assert str(root) in str(err) and "\n" not in str(err)
        return
    cfg = bundle.config
    assert cfg.members and 0 < cfg.crop_fraction <= 1 and 0 <= cfg.threshold <= 1 and cfg.mpp > 0
    assert all(math.isfinite(v) for v in (*cfg.mean, *cfg.std)) and min(cfg.std) > 0
    assert BundleConfig.from_json(json.loads(json.dumps(cfg.to_json())), source=root) == cfg  # round trip


@FUZZ
@given(content=st.binary(max_size=200))
def test_bundle_json_bytes(tmp_path: Path, content: bytes) -> None:
    root = tmp_path / "bundle"
    root.mkdir(exist_ok=True)
    (root / "bundle.json").write_bytes(content)
    with pytest.raises(BundleError):
        load_bundle(root)  # no member file can exist for arbitrary bytes that happen to parse


# ------------------------------------------------------------------------------------------ track 2 stacks


def good_stack_bytes(n: int = 2) -> bytes:
    buf = io.BytesIO()
    pages = np.random.default_rng(0).integers(0, 256, size=(n, 128, 128, 3), dtype=np.uint8)
    with tifffile.TiffWriter(buf) as tif:
        for page in pages:
            tif.write(page, photometric="rgb", compression="zlib", metadata=None)
    return buf.getvalue()


GOOD_STACK = good_stack_bytes()


def check_stack(path: Path) -> None:
    try:
        pages = read_stack(path)
    except DatasetError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert pages.dtype == np.uint8 and pages.shape[1:] == (128, 128, 3) and len(pages) >= 1


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD_STACK) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, len(GOOD_STACK)))
def test_stack_reader_on_damaged_tiffs(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(GOOD_STACK)
    for pos, value in edits:
        data[pos] = value
    path = tmp_path / "stack.tiff"
    path.write_bytes(bytes(data[:cut]))
    check_stack(path)


@pytest.mark.parametrize("name, check", [("roi.geojson", check_roi), ("stack.tiff", check_stack)])
@FUZZ
@given(content=st.binary(max_size=300))
def test_readers_on_bytes(tmp_path: Path, name: str, check, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    check(path)


# ------------------------------------------------------------------------------------------ training tables

MIDOG_COLUMNS = ["image_id", "filename", "majority", *MIDOG_DOMAINS]
AMIBR_COLUMNS = ["", "slide", "dataset", "uid", "x", "y", "majority_atypical"]
CSV_COLUMNS = ["path", "label", "group", "domain"]
GOOD_CELLS = {"image_id": "1.png", "path": "1.png", "majority": "AMF", "label": "NMF", "majority_atypical": "True",
              "dataset": "MIDOG21", "uid": "7", "filename": "a.tiff", "group": "g1", "slide": "s1"}
cells = st.sampled_from(["1.png", "AMF", "NMF", "True", "False", "0", "1", "MIDOG21", "x", "", "patches", "..", "a,b", '"'])
cells = cells | st.text(max_size=8)


@st.composite
def tables(draw: st.DrawFn) -> str:
    header = draw(st.sampled_from([MIDOG_COLUMNS, AMIBR_COLUMNS, CSV_COLUMNS]))
    header = draw(st.just(header) | st.permutations(header).map(lambda h: h[: draw(st.integers(1, len(h)))]))
    good = [st.just(GOOD_CELLS.get(c, "x")) for c in header]
    row = st.tuples(*(st.one_of(g, g, g, cells) for g in good)).map(list)
    rows = draw(st.lists(st.one_of(row, row, st.lists(cells, max_size=len(header) + 1)), max_size=4))
    buf = io.StringIO()
    import csv

    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """The images the good cells name: MIDOG 2025 / generic CSV (1.png) and AMi-Br (patches/<class>/MIDOG21_7.png)."""
    for rel in ("1.png", "patches/atypical/MIDOG21_7.png", "patches/normal/MIDOG21_7.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((128, 128, 3), dtype=np.uint8)).save(tmp_path / rel)
    return tmp_path


@FUZZ
@given(table=tables() | st.text(max_size=200), fmt=st.sampled_from([None, "midog25", "amibr", "csv", "folder"]))
@example(table="path,label\n1.png,AMF,extra\n", fmt=None)
@example(table="path,label\n1.png,AMF\n", fmt=None)
@example(table="image_id,majority\n" + "x" * 200000 + ",AMF\n", fmt=None)
def test_dataset_tables(image_dir: Path, table: str, fmt: str | None) -> None:
    path = image_dir / "table.csv"
    path.write_text(table, encoding="utf-8", errors="surrogatepass")
    try:
        ds = load_dataset(path, format=fmt, workers=1)
    except (DatasetError, OptionError) as err:
        assert "\n" not in str(err)
        return
    assert len(ds) == len(ds.paths) >= 1 and set(np.unique(ds.labels)) <= {0, 1}
    assert ds.images.shape[1:] == (128, 128, 3)
