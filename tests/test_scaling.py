"""Outputs at scale, without timing anything: the array work of rendering a result's outputs grows linearly
with its candidates, and a report of many candidates draws them as one image and stays small."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import write_points_csv

from wsi_amf import Points, screen
from wsi_amf.exports import gc_json_text
from wsi_amf.options import ScreenOptions
from wsi_amf.outputs import check_output_set, geojson_text, table_text, write_outputs
from wsi_amf.report import slide as slide_report_module
from wsi_amf.report import slide_report


class Counted(np.ndarray):
    """An array that counts, in ``Counted.touched``, the elements that numpy operations on it read: ufuncs,
    numpy functions and indexing with an array. Results stay ``Counted``, so work on derived arrays counts too."""

    touched = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        Counted.touched += sum(np.size(x) for x in inputs if isinstance(x, np.ndarray))
        inputs = tuple(x.view(np.ndarray) if isinstance(x, Counted) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, Counted) else x for x in kwargs["out"])
        return _counted(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        Counted.touched += sum(a.size for a in _arrays(args) + _arrays(tuple(kwargs.values())))
        return super().__array_function__(func, types, args, kwargs)

    def __getitem__(self, key):
        Counted.touched += sum(k.size for k in (key if isinstance(key, tuple) else (key,)) if isinstance(k, np.ndarray))
        return super().__getitem__(key)


def _arrays(values: tuple) -> list[np.ndarray]:
    out = []
    for v in values:
        if isinstance(v, np.ndarray):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out += _arrays(tuple(v))
    return out


def _counted(result):
    if isinstance(result, tuple):
        return tuple(_counted(r) for r in result)
    return result.view(Counted) if isinstance(result, np.ndarray) and result.ndim else result


@pytest.fixture(scope="module")
def screened(tmp_path_factory, slide025, tiny_bundle):
    """A real screening of a few candidates: the template of the large results below."""
    tmp = tmp_path_factory.mktemp("scaling")
    points = write_points_csv(tmp / "p.csv", [(400.0 + 40 * i, 300.0 + 25 * i) for i in range(12)])
    return screen(slide025.path, points, ScreenOptions(cache_dir=tmp / "cache"), model=tiny_bundle, progress=False)


def large_result(template, n: int, *, seed: int = 0, counted: bool = False):
    """``template`` with ``n`` candidates spread over its slide: random scores, a few skipped, ids and
    detector scores carried (arrays ``Counted`` when asked)."""
    rng = np.random.default_rng(seed)
    w, h = template.dimensions
    xy = np.column_stack([rng.uniform(0, w, n), rng.uniform(0, h, n)])
    status = np.where(rng.random(n) < 0.05, "outside_roi", "ok").astype(object)
    p = np.where(status == "ok", rng.beta(1, 4, n), np.nan)
    stain = np.column_stack([rng.normal(0.5, 0.05, n), rng.normal(0.3, 0.05, n)])
    pts = Points(source=Path("many.csv"), xy=xy, score=rng.random(n), columns={"id": [f"c{i}" for i in range(n)]})
    if counted:
        object.__setattr__(pts, "xy", pts.xy.view(Counted))
        object.__setattr__(pts, "score", pts.score.view(Counted))
        status, p, stain = status.view(Counted), p.view(Counted), stain.view(Counted)
    return dataclasses.replace(template, points=pts, status=status, p_atypical=p, stain=stain, outputs={})


def test_rendering_the_outputs_does_linear_array_work(screened) -> None:
    """Ten times the candidates, about ten times the array work (per-row recomputation of a whole-array
    property, as the CSV and GeoJSON once did, costs n elements a row: n² in all)."""
    touched = {}
    for n in (2000, 20000):
        result = large_result(screened, n, counted=True)
        Counted.touched = 0
        texts = [geojson_text(result), table_text(result), gc_json_text(result)]
        result.summary()
        touched[n] = Counted.touched
        assert texts[1].count("\n") == n + 1 and texts[0].count('"Feature"') == int((result.status == "ok").sum())
    per_candidate = (touched[20000] - touched[2000]) / 18000
    assert per_candidate < 200, touched  # a quadratic renderer adds ~n = 2,000-20,000 per candidate
    assert touched[20000] < 12 * touched[2000], touched


def test_a_report_of_200000_candidates_draws_them_as_one_image(tmp_path, screened) -> None:
    result = large_result(screened, 200_000)
    outputs = write_outputs(result, tmp_path / "out")
    assert check_output_set(outputs["summary"]) is None
    page = slide_report(outputs["summary"])
    text = page.read_text()
    assert page.stat().st_size < 10e6
    slide_view = text[text.index('<section id=slide>'):text.index('<section id=hotspot>')]
    assert 'class="marker-' not in slide_view and 'class="candidate-layer"' in slide_view  # no element per candidate
    assert text.count('class="candidate-layer"') >= 1


def test_the_image_layer_shows_each_class_where_the_candidates_are(tmp_path, screened, monkeypatch) -> None:
    from PIL import Image

    from wsi_amf.report.html import AMF_HEX, NMF_HEX

    monkeypatch.setattr(slide_report_module, "MARKER_LIMIT", 5)  # 12 candidates: drawn as an image
    out = write_outputs(screened, tmp_path / "out")
    text = slide_report(out["summary"]).read_text()
    slide_view = text[text.index('<section id=slide>'):text.index('<section id=hotspot>')]
    assert 'class="marker-' not in slide_view and "without hover details" in text
    uri = re.search(r'class="candidate-layer" href="data:image/png;base64,([^"]+)"', slide_view).group(1)
    layer = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri))))
    width, height = (int(v) for v in re.search(r'viewBox="0 0 (\d+) (\d+)"', slide_view).groups())
    assert layer.shape == (height, width, 4)
    sx, sy = width / screened.dimensions[0], height / screened.dimensions[1]
    colours = {True: tuple(int(AMF_HEX[k:k + 2], 16) for k in (1, 3, 5)),
               False: tuple(int(NMF_HEX[k:k + 2], 16) for k in (1, 3, 5))}
    covered = layer[..., 3] > 0
    for (x, y), ok in zip(screened.points.xy, screened.classified):
        i, j = int(round(y * sy)), int(round(x * sx))
        if ok:
            assert layer[i, j, 3] == 255
            assert tuple(layer[i, j, :3]) in colours.values()
            covered[max(0, i - 6):i + 7, max(0, j - 6):j + 7] = False
    assert tuple(layer[..., :3][layer[..., 3] > 0][0]) in (*colours.values(), (255, 255, 255))
    assert not covered.any()  # nothing drawn away from the candidates
    amf_pixels = np.all(layer[..., :3] == colours[True], axis=-1).sum()
    assert (amf_pixels > 0) == bool(screened.atypical.any())
