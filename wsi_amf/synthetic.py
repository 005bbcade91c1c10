"""Synthetic slides: an H&E-like scene defined in micrometres, rendered at any resolution, written as a
tiled pyramidal TIFF that OpenSlide reads. Used by the tests (known content at known places, the same
tissue at 0.125 / 0.25 / 0.5 um/px) and by ``wsi-amf demo``. Nothing here pretends to be real tissue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

BACKGROUND = np.array([236.0, 206.0, 220.0])  # eosin pink
NUCLEUS = np.array([90.0, 60.0, 140.0])  # haematoxylin purple
MITOSIS = np.array([45.0, 25.0, 80.0])  # condensed chromatin


@dataclass(frozen=True)
class Blob:
    """A Gaussian stain blob: centre and sigmas in micrometres, angle in radians, strength 0..1."""

    x_um: float
    y_um: float
    sx_um: float
    sy_um: float
    angle: float
    strength: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Scene:
    width_um: float
    height_um: float
    blobs: tuple[Blob, ...]
    texture_seed: int = 0

    def render(self, mpp: float) -> np.ndarray:
        """``uint8 [H, W, 3]`` sampled at pixel centres ((i + 0.5) * mpp micrometres)."""
        w, h = int(round(self.width_um / mpp)), int(round(self.height_um / mpp))
        xs = (np.arange(w) + 0.5) * mpp
        ys = (np.arange(h) + 0.5) * mpp
        rng = np.random.default_rng(self.texture_seed)
        # Low-frequency eosin texture: a few sinusoids with wavelengths of 40-200 um (alias-free at 0.5 um/px).
        tex = np.zeros((h, w), dtype=np.float32)
        for _ in range(4):
            kx, ky = rng.uniform(-1, 1, 2) * 2 * np.pi / rng.uniform(40, 200)
            ph = rng.uniform(0, 2 * np.pi)
            tex += np.float32(0.25) * np.cos(np.float32(kx) * xs[None, :].astype(np.float32)
                                             + np.float32(ky) * ys[:, None].astype(np.float32) + np.float32(ph))
        img = np.empty((h, w, 3), dtype=np.float32)
        for c in range(3):
            img[..., c] = BACKGROUND[c] - 12.0 * tex
        for b in self.blobs:
            r = 4.0 * max(b.sx_um, b.sy_um)
            j0, j1 = max(0, int((b.x_um - r) / mpp)), min(w, int((b.x_um + r) / mpp) + 2)
            i0, i1 = max(0, int((b.y_um - r) / mpp)), min(h, int((b.y_um + r) / mpp) + 2)
            if j1 <= j0 or i1 <= i0:
                continue
            dx = xs[None, j0:j1] - b.x_um
            dy = ys[i0:i1, None] - b.y_um
            ca, sa = np.cos(b.angle), np.sin(b.angle)
            u, v = ca * dx + sa * dy, -sa * dx + ca * dy
            a = (b.strength * np.exp(-0.5 * ((u / b.sx_um) ** 2 + (v / b.sy_um) ** 2))).astype(np.float32)[..., None]
            patch = img[i0:i1, j0:j1]
            img[i0:i1, j0:j1] = patch * (1 - a) + np.asarray(b.color, dtype=np.float32) * a
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def random_scene(width_um: float, height_um: float, *, n_nuclei: int, mitoses_um: Sequence[tuple[float, float]] = (),
                 atypical: Sequence[bool] = (), seed: int = 0) -> Scene:
    """Scattered nuclei plus mitotic figures at the given positions (atypical ones multipolar)."""
    rng = np.random.default_rng(seed)
    blobs = [
        Blob(float(x), float(y), float(rng.uniform(2.5, 4)), float(rng.uniform(2.5, 4)), float(rng.uniform(0, np.pi)), 0.7,
             tuple(NUCLEUS))
        for x, y in zip(rng.uniform(0, width_um, n_nuclei), rng.uniform(0, height_um, n_nuclei))
    ]
    flags = list(atypical) + [False] * (len(mitoses_um) - len(atypical))
    for (x, y), atyp in zip(mitoses_um, flags):
        angle = float(rng.uniform(0, np.pi))
        if atyp:  # multipolar: three plates around the centre
            for k in range(3):
                t = angle + k * 2 * np.pi / 3
                blobs.append(Blob(x + 4 * np.cos(t), y + 4 * np.sin(t), 1.2, 3.0, t, 0.95, tuple(MITOSIS)))
        else:  # metaphase plate: one elongated dark bar
            blobs.append(Blob(x, y, 1.3, 5.0, angle, 0.95, tuple(MITOSIS)))
    return Scene(width_um, height_um, tuple(blobs), texture_seed=seed)


def write_pyramidal_tiff(path: str | Path, image: np.ndarray, *, mpp: float | None, downsamples: Sequence[int] = (1, 4),
                         tile: int = 256, compression: str = "zlib") -> Path:
    """A tiled, pyramidal RGB TIFF (one IFD per level) that OpenSlide opens as a generic TIFF.

    ``mpp=None`` writes no resolution tags (a slide whose resolution is unknown).
    """
    import tifffile
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = image.shape[:2]
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for k, ds in enumerate(downsamples):
            level = image if ds == 1 else np.asarray(
                Image.fromarray(image).resize((max(1, w // ds), max(1, h // ds)), Image.Resampling.BOX))
            kwargs = {}
            if mpp is not None:
                res = 1e4 / (mpp * ds)  # pixels per centimetre
                kwargs = {"resolution": (res, res), "resolutionunit": "CENTIMETER"}
            tif.write(level, photometric="rgb", tile=(tile, tile), compression=compression,
                      subfiletype=0 if k == 0 else 1, metadata=None, **kwargs)
    return path


def write_slide_with_points(slide_path: str | Path, points_path: str | Path, *, width_um: float, height_um: float,
                            n_figures: int, n_nuclei: int, mpp: float = 0.25, downsamples: Sequence[int] = (1, 4),
                            atypical_fraction: float = 0.3, seed: int = 0) -> tuple[Path, Path]:
    """A synthetic slide (pyramidal TIFF, deflate tiles) with ``n_figures`` mitotic figures, and a points CSV
    (``id,x,y,drawn_as`` in level-0 pixels) listing them."""
    rng = np.random.default_rng(seed)
    margin = min(40.0, width_um / 4, height_um / 4)
    figures = np.column_stack([rng.uniform(margin, width_um - margin, n_figures),
                               rng.uniform(margin, height_um - margin, n_figures)])
    atypical = rng.random(n_figures) < atypical_fraction
    scene = random_scene(width_um, height_um, n_nuclei=n_nuclei, mitoses_um=[tuple(p) for p in figures],
                         atypical=list(atypical), seed=seed)
    slide = write_pyramidal_tiff(slide_path, scene.render(mpp), mpp=mpp, downsamples=downsamples, compression="zlib")
    points = Path(points_path)
    points.parent.mkdir(parents=True, exist_ok=True)
    with open(points, "w", encoding="utf-8") as fh:
        fh.write("id,x,y,drawn_as\n")
        for i, ((x, y), a) in enumerate(zip(figures / mpp, atypical)):
            fh.write(f"fig{i:03d},{x:.1f},{y:.1f},{'multipolar' if a else 'metaphase'}\n")
    return slide, points
