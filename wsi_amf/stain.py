"""Stain statistics of patches: haematoxylin and eosin optical density by colour deconvolution.

RGB -> optical density (OD = -ln(I / 255)) -> haematoxylin / eosin / DAB concentrations with the Ruifrok &
Johnston stain vectors (the matrix of ``skimage.color.hed_from_rgb``). A patch's statistic is the mean H and
E concentration over the tissue pixels (OD sum above ``TISSUE_OD``) of its central half, where the figure is.

A bundle records the range, over its training slides, of each slide's median patch H and E (``StainRange``);
a screened slide whose own medians fall outside it was stained or scanned unlike anything the model was
trained on, and its summary says so (``domain_warning``). A candidate whose patch centre is mostly glass
(its tissue share from ``patch_stats`` below ``BACKGROUND_TISSUE``; every training figure's is at least half tissue) is not a
mitotic figure: screening gives it the status ``background``. ``training/augment.py`` uses the same vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

# Ruifrok & Johnston stain vectors (rows: haematoxylin, eosin, DAB), as in skimage.color.rgb_from_hed.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))
OD_FLOOR = 1.0 / 255.0
TISSUE_OD = 0.3  # a pixel whose OD summed over R, G, B is below this is glass
_rgb_from_hed = np.asarray(RGB_FROM_HED, dtype=np.float64)
_HED_FROM_RGB = np.linalg.inv(_rgb_from_hed / np.linalg.norm(_rgb_from_hed, axis=1, keepdims=True)).astype(np.float32)
_OD_LUT = (-np.log(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)
STAINS = ("haematoxylin", "eosin")


def patch_stats(patches: np.ndarray, *, centre: float = 0.5, step: int = 2) -> np.ndarray:
    """``[N, 3]`` per ``uint8 [N, S, S, 3]`` patch: the mean haematoxylin and eosin concentration over the tissue
    pixels of its central ``centre`` fraction (NaN for a patch of glass), and the share of tissue pixels there.
    Every ``step``-th pixel of each row and column is used (the means of a 64 x 64 centre barely move; a
    quarter of the work)."""
    x = np.asarray(patches)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"patches must be [N, S, S, 3], not {x.shape}")
    s = x.shape[1]
    lo = int(round(s * (1 - centre) / 2))
    core = x[:, lo:s - lo:step, lo:s - lo:step, :]
    od = _OD_LUT[core].reshape(len(x), -1, 3)  # [N, P, 3]
    tissue = od.sum(axis=2) > TISSUE_OD
    n = tissue.sum(axis=1)
    out = np.empty((len(x), 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        # The projection is linear: project the tissue pixels' summed optical density, not every pixel.
        out[:, :2] = (np.einsum("npc,np->nc", od, tissue.astype(np.float32)) @ _HED_FROM_RGB[:, :2]) / n[:, None]
    out[n == 0, :2] = np.nan
    out[:, 2] = n / od.shape[1]
    return out


BACKGROUND_TISSUE = 0.2  # a candidate whose patch centre is less tissue than this is on glass (training: >= 0.52)


def slide_stain(stain: np.ndarray) -> dict[str, float] | None:
    """A slide's median patch H and E (over its patches with tissue); None without any."""
    st = np.asarray(stain, dtype=np.float64).reshape(-1, 2)
    st = st[np.all(np.isfinite(st), axis=1)]
    if len(st) == 0:
        return None
    med = np.median(st, axis=0)
    return {STAINS[0]: round(float(med[0]), 5), STAINS[1]: round(float(med[1]), 5)}


@dataclass(frozen=True)
class StainRange:
    """The range of the training slides' median patch H and E: ``low``/``high`` per stain, over ``n_slides``."""

    low: Mapping[str, float]
    high: Mapping[str, float]
    n_slides: int

    @classmethod
    def of(cls, stain: np.ndarray, groups: np.ndarray) -> StainRange:
        """From per-patch statistics and each patch's source slide."""
        st = np.asarray(stain, dtype=np.float64).reshape(-1, 2)
        g = np.asarray(groups).astype(str)
        medians = [m for v in np.unique(g) if (m := slide_stain(st[g == v])) is not None]
        if not medians:
            raise ValueError("no training patch holds tissue: no stain range")
        return cls(low={k: min(m[k] for m in medians) for k in STAINS},
                   high={k: max(m[k] for m in medians) for k in STAINS}, n_slides=len(medians))

    def outside(self, slide: Mapping[str, float] | None) -> list[str]:
        """The stains whose slide median lies outside the training range."""
        if slide is None:
            return []
        return [k for k in STAINS if not self.low[k] <= slide[k] <= self.high[k]]

    def to_json(self) -> dict[str, Any]:
        return {"statistic": "median over a slide's patches of the mean H / E concentration of the patch centre",
                "low": {k: round(float(v), 5) for k, v in self.low.items()},
                "high": {k: round(float(v), 5) for k, v in self.high.items()}, "n_slides": self.n_slides}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StainRange:
        low = {k: float(data["low"][k]) for k in STAINS}
        high = {k: float(data["high"][k]) for k in STAINS}
        if any(not low[k] <= high[k] for k in STAINS):
            raise ValueError("stain range: low must not exceed high")
        return cls(low=low, high=high, n_slides=int(data.get("n_slides", 0)))
