"""The hotspot: the 2 mm² field of the slide that holds the most classified mitotic figures.

Pathologists count mitoses in the densest field of a slide (breast: per 2 mm²). Here the field is an
axis-aligned **square of side sqrt(area) mm** (1.414 mm for 2 mm²) placed anywhere on the slide. The search
is exact: a densest square can always be slid right and down until its left edge passes through a
figure's x and its top edge through a figure's y (closed edges), so only those n² anchors need counting;
for each distinct x a vertical strip is cut and a sorted sweep counts every anchored top at once.

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

import numpy as np

from .quantify import wilson_interval

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
    the one with the smallest top, then the smallest left. ``xy`` must not be empty.
    """
    pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("densest_square needs at least one point")
    order = np.argsort(pts[:, 0], kind="stable")
    xs, ys = pts[order, 0], pts[order, 1]
    best = (0, math.inf, math.inf)  # count, top, left
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    stops = np.searchsorted(xs, xs[starts] + side, side="right")
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if stop - start < best[0]:
            continue
        strip = np.sort(ys[start:stop])
        first = np.searchsorted(strip, strip, side="left")
        counts = np.searchsorted(strip, strip + side, side="right") - first
        k = int(np.argmax(counts))  # the first maximum: the smallest top in this strip
        cand = (int(counts[k]), float(strip[k]), float(xs[start]))
        if cand[0] > best[0] or (cand[0] == best[0] and (cand[1], cand[2]) < (best[1], best[2])):
            best = cand
    count, top, left = best
    # The top is a point inside; the left edge may not be: slide it right onto the leftmost point inside.
    inside = (xs >= left) & (xs <= left + side) & (ys >= top) & (ys <= top + side)
    return float(xs[inside].min()), top, count


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
