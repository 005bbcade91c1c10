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

from wsi_amf import screen
from wsi_amf.hotspot import densest_square, find_hotspot
from wsi_amf.quantify import wilson_interval


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
    r = screen(hotspot_slide.path, hotspot_slide.points, model=tiny_bundle, out=tmp_path / "out", cache_dir=tmp_path / "c",
               progress=False)
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
    r = screen(slide025.path, pts, model=tiny_bundle, out=tmp_path / "o", cache_dir=tmp_path / "c", progress=False)
    assert json.loads(r.outputs["summary"].read_text())["hotspot"] is None
