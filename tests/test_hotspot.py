"""The hotspot: exact densest square against brute force, deterministic ties, and a synthetic slide whose
densest 2 mm² field is planted."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import HOT_CLUSTER_BOX_UM, HOT_MPP
from hypothesis import given, settings
from hypothesis import strategies as st

from wsi_amf import hotspot, screen
from wsi_amf.hotspot import densest_square, find_hotspot
from wsi_amf.options import ScreenOptions
from wsi_amf.stats import wilson_interval


def brute_force(xy: np.ndarray, side: float) -> tuple[float, float, int]:
    """Every tight square (a point inside on its left edge, one on its top edge): the densest, smallest (top, left)."""
    best = (0, math.inf, math.inf)
    for left in np.unique(xy[:, 0]):
        for top in np.unique(xy[:, 1]):
            inside = (xy[:, 0] >= left) & (xy[:, 0] <= left + side) & (xy[:, 1] >= top) & (xy[:, 1] <= top + side)
            tight = inside.any() and xy[inside, 0].min() == left and xy[inside, 1].min() == top
            count = int(inside.sum())
            if tight and (count > best[0] or (count == best[0] and (top, left) < (best[1], best[2]))):
                best = (count, float(top), float(left))
    return best[2], best[1], best[0]


def strip_search(xy: np.ndarray, side: float) -> tuple[float, float, int]:
    """The search wsi-amf used before its sweep (exact, O(n) strips of up to n points): for each distinct x a
    vertical strip, a sorted sweep counting every anchored top at once; the same tie rule."""
    order = np.argsort(xy[:, 0], kind="stable")
    xs, ys = xy[order, 0], xy[order, 1]
    best = (0, math.inf, math.inf)
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    stops = np.searchsorted(xs, xs[starts] + side, side="right")
    for start, stop in zip(starts.tolist(), stops.tolist()):
        strip = np.sort(ys[start:stop])
        first = np.searchsorted(strip, strip, side="left")
        counts = np.searchsorted(strip, strip + side, side="right") - first
        k = int(np.argmax(counts))
        cand = (int(counts[k]), float(strip[k]), float(xs[start]))
        if cand[0] > best[0] or (cand[0] == best[0] and (cand[1], cand[2]) < (best[1], best[2])):
            best = cand
    count, top, left = best
    inside = (xs >= left) & (xs <= left + side) & (ys >= top) & (ys <= top + side)
    return float(xs[inside].min()), top, count


def adversarial(kind: str, n: int, side: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "one strip":  # every point within one field's width: the old search's worst case
        return np.column_stack([rng.uniform(0, side / 3, n), rng.uniform(0, 40 * side, n)])
    if kind == "duplicates on edges":  # a lattice of step side/4: many points exactly on field edges, repeated
        return rng.integers(0, 24, (n, 2)).astype(np.float64) * (side / 4)
    if kind == "one row":
        return np.column_stack([rng.uniform(0, 40 * side, n), np.full(n, 7.0)])
    if kind == "clusters":
        centres = rng.uniform(0, 20 * side, (5, 2))
        return np.vstack([rng.uniform(0, 20 * side, (n, 2))] + [rng.normal(c, side / 3, (n // 8, 2)) for c in centres])
    return rng.uniform(0, 10 * side, (n, 2))  # uniform


points_on_a_grid = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(points_on_a_grid, st.sampled_from([0.0, 1.0, 3.0, 7.5, 10.0]))
def test_densest_square_equals_brute_force_with_ties_and_edges(pts: list[tuple[int, int]], side: float) -> None:
    xy = np.asarray(pts, dtype=np.float64)  # integer coordinates: many ties and points exactly on edges
    assert densest_square(xy, side) == brute_force(xy, side)


@pytest.mark.parametrize("seed", range(5))
def test_densest_square_on_random_points_and_any_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = np.vstack([rng.uniform(0, 1000, (120, 2)), rng.normal(600, 40, (15, 2))])
    expected = brute_force(xy, 150.0)
    assert densest_square(xy, 150.0) == expected
    assert densest_square(xy[rng.permutation(len(xy))], 150.0) == expected  # independent of the input order
    assert expected[2] >= 15


@pytest.mark.parametrize("kind", ["uniform", "one strip", "duplicates on edges", "one row", "clusters"])
def test_densest_square_equals_the_strip_search(kind: str) -> None:
    rng = np.random.default_rng(len(kind))
    for n, side in ((60, 10.0), (700, 33.0), (2500, 150.0)):
        xy = adversarial(kind, n, side, rng)
        assert densest_square(xy, side) == strip_search(xy, side), (kind, n)
        assert densest_square(xy[::-1].copy(), side) == strip_search(xy, side)


def test_the_compiled_sweep_and_its_python_source_agree() -> None:
    rng = np.random.default_rng(11)
    calls = []
    source = hotspot._sweep.py_func  # the function numba compiled, run by the interpreter

    def python_sweep(*args):
        calls.append(len(args[2]))
        return source(*args)

    xy = adversarial("clusters", 400, 50.0, rng)
    compiled = densest_square(xy, 50.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hotspot, "_sweep", python_sweep)
        assert densest_square(xy, 50.0) == compiled == strip_search(xy, 50.0)
    assert calls and calls[0] <= 4 * len(xy)  # four events per point at most


class _CountingNumpy:
    """``numpy`` for a module under test: counts the elements of the arrays passed to its functions (not ufuncs)."""

    def __init__(self) -> None:
        self.elements = 0

    def __getattr__(self, name: str):
        attr = getattr(np, name)
        if not callable(attr) or isinstance(attr, (type, np.ufunc)):
            return attr

        def counted(*args, **kwargs):
            self.elements += sum(a.size for a in args if isinstance(a, np.ndarray))
            return attr(*args, **kwargs)

        return counted


def test_the_hotspot_search_does_not_grow_quadratically(monkeypatch) -> None:
    """On a dense, flat field (every field holds ~10 % of the figures) ten times the figures cost about ten
    times the array work (the strip search did ~n² / 10); the compiled sweep gets at most four events a figure."""
    rng = np.random.default_rng(5)
    work = {}
    for n in (2000, 20000):
        counting = _CountingNumpy()
        monkeypatch.setattr(hotspot, "np", counting)
        events: list[int] = []

        def counted(*a, events=events, sweep=hotspot._sweep):
            events.append(len(a[2]))
            return sweep(*a)

        monkeypatch.setattr(hotspot, "_sweep", counted)
        densest_square(rng.uniform(0, 3000, (n, 2)), 1000.0)
        monkeypatch.undo()
        work[n] = counting.elements
        assert events[0] <= 4 * n
    assert work[20000] < 15 * work[2000], work


def test_find_hotspot_box_members_counts_and_interval() -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 30000, (200, 2))
    amf = rng.random(200) < 0.3
    hs = find_hotspot(xy, amf, mpp=0.25, dimensions=(30000, 30000))
    side = math.sqrt(2.0) * 1000 / 0.25
    assert hs.side_px == pytest.approx(side)
    assert hs.n_mf == brute_force(xy, side)[2] == len(hs.members)
    x0, y0, x1, y1 = hs.box
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert set(np.flatnonzero(inside)) == set(hs.members.tolist())  # the box shown holds exactly the members
    assert 0 <= x0 and x1 <= 30000 and 0 <= y0 and y1 <= 30000
    assert hs.n_amf == int(amf[hs.members].sum())
    j = hs.to_json()
    assert j["shape"] == "square" and j["area_mm2"] == 2.0 and j["side_um"] == pytest.approx(1414.214, abs=1e-3)
    assert j["called_amf_ratio"] == pytest.approx(hs.n_amf / hs.n_mf)
    assert j["called_amf_ratio_ci95"] == pytest.approx(list(wilson_interval(hs.n_amf, hs.n_mf)))
    assert j["n_nmf"] == hs.n_mf - hs.n_amf


def test_find_hotspot_near_edges_and_on_small_slides() -> None:
    corner = np.array([[10.0, 20.0], [30.0, 5.0], [50.0, 50.0]])
    hs = find_hotspot(corner, np.array([True, False, False]), mpp=0.5, dimensions=(20000, 20000))
    assert hs.box[0] == 0.0 and hs.box[1] == 0.0 and hs.n_mf == 3 and hs.n_amf == 1  # kept on the slide
    small = find_hotspot(corner, np.zeros(3, bool), mpp=0.5, dimensions=(100, 80))  # slide smaller than the field
    assert small.centre == pytest.approx((50.0, 40.0)) and small.n_mf == 3 and small.amf_ratio == 0.0
    assert find_hotspot(np.zeros((0, 2)), np.zeros(0, bool), mpp=0.25) is None
    with pytest.raises(ValueError):
        find_hotspot(corner, np.zeros(2, bool), mpp=0.25)


def test_screening_finds_the_planted_hotspot(tmp_path, hotspot_slide, tiny_bundle) -> None:
    r = screen(hotspot_slide.path, hotspot_slide.points, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle,
               out=tmp_path / "out", progress=False)
    summary = json.loads(r.outputs["summary"].read_text())
    hs = summary["hotspot"]
    assert hs["n_mf"] == int(hotspot_slide.cluster.sum()) == 14
    rows = list(csv.DictReader(r.outputs["csv"].open()))
    in_cluster_amf = sum(row["label"] == "atypical" for row, c in zip(rows, hotspot_slide.cluster) if c)
    assert hs["n_amf"] == in_cluster_amf and hs["n_nmf"] == 14 - in_cluster_amf
    x0, y0, x1, y1 = hs["box_px"]
    cx0, cy0, cx1, cy1 = (v / HOT_MPP for v in HOT_CLUSTER_BOX_UM)
    assert x0 <= cx0 and y0 <= cy0 and x1 >= cx1 and y1 >= cy1  # the field frames the planted cluster
    assert x1 - x0 == pytest.approx(1414.2136, abs=1e-3)  # sqrt(2) mm at 1 um/px
    assert x1 <= 4000 and y1 <= 3000  # and lies on the slide
    xy = hotspot_slide.xy
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert np.array_equal(inside, hotspot_slide.cluster)
    assert summary["hotspot"] == r.summary()["hotspot"]


def test_no_classified_candidate_no_hotspot(tmp_path, slide025, tiny_bundle) -> None:
    pts = tmp_path / "none.csv"
    pts.write_text("x,y\n")  # a detector that found nothing
    r = screen(slide025.path, pts, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, out=tmp_path / "o",
               progress=False)
    assert json.loads(r.outputs["summary"].read_text())["hotspot"] is None
