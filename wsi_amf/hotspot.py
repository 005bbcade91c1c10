"""The hotspot: the 2 mm² field of the slide that holds the most classified mitotic figures.

Pathologists count mitoses in the densest field of a slide (breast: per 2 mm²). Here the field is an
axis-aligned **square of side sqrt(area) mm** (1.414 mm for 2 mm²) placed anywhere on the slide. The search
is exact and takes O(n log n): a densest square can always be slid right and down until its left edge
passes through a figure's x and its top edge through a figure's y (closed edges). The top edge sweeps down
through the figures' y; a segment tree over the candidate left edges holds, for every left edge, the
figures of the current band that its square holds (range-add as figures enter and leave the band,
range-max at the root), plus a bonus where a figure on the top edge itself is inside (so that only tight
squares win). The loop runs compiled (numba).

Ties are broken deterministically, independently of the input order: among the densest tight squares
(a figure inside on the left edge, one on the top edge) the one with the smallest top, then the smallest
left. The reported box is then centred on the figures it holds and kept inside the
slide where the slide is large enough: the figures inside stay the same (there can be no more, the count
is maximal; none leave, their extent is at most one side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .stats import wilson_interval

FIELD_AREA_MM2 = 2.0
FIELD_SHAPE = "square"


@dataclass(frozen=True)
class Hotspot:
    """The densest field: its box in level-0 pixels and the figures it holds."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (level-0 pixels)
    members: np.ndarray  # indices (into the points given) of the figures inside
    n_mf: int
    n_amf: int
    area_mm2: float
    mpp: float

    @property
    def side_px(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0

    @property
    def amf_ratio(self) -> float | None:
        """The share of *calls* (``n_amf`` counts candidates called atypical)."""
        return self.n_amf / self.n_mf if self.n_mf else None

    def to_json(self) -> dict[str, Any]:
        ci = wilson_interval(self.n_amf, self.n_mf)
        return {
            "shape": FIELD_SHAPE,
            "area_mm2": self.area_mm2,
            "side_um": round(self.side_px * self.mpp, 3),
            "box_px": [round(v, 3) for v in self.box],
            "centre_px": [round(v, 3) for v in self.centre],
            "n_mf": self.n_mf,
            "n_amf": self.n_amf,
            "n_nmf": self.n_mf - self.n_amf,
            "called_amf_ratio": self.amf_ratio,
            "called_amf_ratio_ci95": list(ci) if ci else None,
        }


def densest_square(xy: np.ndarray, side: float) -> tuple[float, float, int]:
    """``(left, top, count)`` of a closed axis-aligned square of ``side`` holding the most points.

    Among the densest squares that are tight (a point inside lies on the left edge, one on the top edge)
    the one with the smallest top, then the smallest left. ``xy`` must not be empty. O(n log n).
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("densest_square needs at least one point")
    x, y = pts[:, 0], pts[:, 1]
    lefts = np.unique(x)  # a densest square can be slid right until its left edge passes through a point
    tops = np.unique(y)  # and down until its top edge does
    lo = np.searchsorted(lefts + side, x, "left")  # the lefts L with L <= x <= L + side: lo <= index < hi
    hi = np.searchsorted(lefts, x, "right")
    row = np.searchsorted(tops, y, "left")  # the point's own top; it is inside the squares of tops
    enter = np.searchsorted(tops + side, y, "left")  # enter .. row (those t with t <= y <= t + side)
    # On each top, the lefts whose square holds a point lying on that top edge ("covered"): the points'
    # ranges merged (sorted by x on one top, a point's range starts and ends no earlier than the previous one's).
    order = np.lexsort((x, row))
    c_row, c_lo, c_hi = row[order], lo[order], hi[order]
    new_run = np.r_[True, (c_row[1:] != c_row[:-1]) | (c_lo[1:] >= c_hi[:-1])]
    firsts = np.flatnonzero(new_run)
    lasts = np.r_[firsts[1:], len(order)] - 1
    c_row, c_lo, c_hi = c_row[firsts], c_lo[firsts], c_hi[lasts]
    # The sweep's events (top index at which a range-add happens): a point counts for the squares of the tops
    # from `enter` to its own; a covered range gets a bonus above any count on its top only.
    bonus = len(pts) + 1
    n, m = len(pts), len(c_row)
    when = np.concatenate([enter, row + 1, c_row, c_row + 1])
    delta = np.concatenate([np.ones(n, np.int64), np.full(n, -1, np.int64), np.full(m, bonus, np.int64),
                            np.full(m, -bonus, np.int64)])
    first, stop = np.concatenate([lo, lo, c_lo, c_lo]), np.concatenate([hi, hi, c_hi, c_hi])
    keep = when < len(tops)
    o = np.argsort(when[keep], kind="stable")
    when, delta, first, stop = when[keep][o], delta[keep][o], first[keep][o], stop[keep][o]
    last_of_top = np.r_[when[1:] != when[:-1], True]
    best, best_top = _sweep(1 << max(1, int(len(lefts) - 1).bit_length()), when, delta, first, stop, last_of_top)
    count, top = int(best - bonus), float(tops[best_top])
    # The smallest left on that top: its squares counted directly.
    on_row = np.sort(x[(y >= top) & (y <= top + side)])
    counts = np.searchsorted(on_row, lefts + side, "right") - np.searchsorted(on_row, lefts, "left")
    covered = np.zeros(len(lefts) + 1, np.int64)
    on_top = y == top
    np.add.at(covered, lo[on_top], 1)
    np.add.at(covered, hi[on_top], -1)
    left = float(lefts[np.argmax((counts == count) & (np.cumsum(covered)[:-1] > 0))])
    # The reported left edge is the leftmost point inside (the tight square).
    inside = (x >= left) & (x <= left + side) & (y >= top) & (y <= top + side)
    return float(x[inside].min()), top, count


def _compiled(fn):
    """``fn`` compiled by numba, cached on disk (beside this file, else in the user's cache folder); where
    neither can be written, compiled once per process."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


def _sweep(size: int, when: np.ndarray, delta: np.ndarray, first: np.ndarray, stop: np.ndarray,
           last_of_top: np.ndarray) -> tuple[int, int]:  # pragma: no cover - compiled; tests call .py_func too
    """Range-adds of ``delta`` over leaves ``[first, stop)`` of a segment tree of ``size`` leaves (bottom-up, no
    pushes: ``tree[v]`` is the maximum of v's leaves counting the adds at v and below, ``lazy[v]`` the adds at
    v); after the last event of each top the maximum over all leaves is read. The largest maximum and the
    first top (index into the sorted tops) that reached it."""
    tree = np.zeros(2 * size, np.int64)
    lazy = np.zeros(size, np.int64)
    best, best_top = -1, -1
    for k in range(len(delta)):
        v = delta[k]
        lo, hi = first[k] + size, stop[k] + size
        a, b = lo >> 1, (hi - 1) >> 1  # the parents of the two end leaves: rebuilt below
        while lo < hi:
            if lo & 1:
                tree[lo] += v
                if lo < size:
                    lazy[lo] += v
                lo += 1
            if hi & 1:
                hi -= 1
                tree[hi] += v
                if hi < size:
                    lazy[hi] += v
            lo >>= 1
            hi >>= 1
        while a != b:  # the two paths up to where they meet, then one path to the root
            tree[a] = max(tree[2 * a], tree[2 * a + 1]) + lazy[a]
            tree[b] = max(tree[2 * b], tree[2 * b + 1]) + lazy[b]
            a >>= 1
            b >>= 1
        while a > 0:
            tree[a] = max(tree[2 * a], tree[2 * a + 1]) + lazy[a]
            a >>= 1
        if last_of_top[k] and tree[1] > best:
            best, best_top = tree[1], when[k]
    return best, best_top


_sweep = _compiled(_sweep)


def find_hotspot(
    xy: np.ndarray,
    atypical: np.ndarray,
    *,
    mpp: float,
    area_mm2: float = FIELD_AREA_MM2,
    dimensions: tuple[int, int] | None = None,
) -> Hotspot | None:
    """The field of ``area_mm2`` with the most figures among the classified ones at ``xy`` (level-0 pixels).

    ``atypical`` flags the AMF among them; ``mpp`` is the slide's resolution; with ``dimensions`` (width,
    height) the box is kept inside the slide where it fits. None when there is no figure.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    amf = np.asarray(atypical, dtype=bool).reshape(-1)
    if len(pts) != len(amf):
        raise ValueError(f"{len(pts)} points but {len(amf)} atypical flags")
    if len(pts) == 0:
        return None
    if not (mpp > 0 and area_mm2 > 0):
        raise ValueError(f"mpp ({mpp}) and area_mm2 ({area_mm2}) must be positive")
    side = math.sqrt(area_mm2) * 1000.0 / mpp
    left, top, count = densest_square(pts, side)
    inside = (pts[:, 0] >= left) & (pts[:, 0] <= left + side) & (pts[:, 1] >= top) & (pts[:, 1] <= top + side)
    members = np.flatnonzero(inside)
    lo, hi = pts[members].min(axis=0), pts[members].max(axis=0)
    x0, y0 = (lo + hi) / 2.0 - side / 2.0
    if dimensions is not None:
        x0 = _keep_inside(x0, side, dimensions[0])
        y0 = _keep_inside(y0, side, dimensions[1])
    return Hotspot(box=(float(x0), float(y0), float(x0 + side), float(y0 + side)), members=members, n_mf=count,
                   n_amf=int(amf[members].sum()), area_mm2=float(area_mm2), mpp=float(mpp))


def _keep_inside(start: float, side: float, extent: float) -> float:
    if side >= extent:  # the slide is narrower than the field: centre the field on it
        return (extent - side) / 2.0
    return min(max(start, 0.0), extent - side)
