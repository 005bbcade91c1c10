"""``wsi-amf demo``: write a small synthetic slide with candidate points and screen it with the default model.

The slide is synthetic (Gaussian 'nuclei' on a pink background, bar-shaped 'metaphase plates' and
three-armed 'multipolar' figures): it shows the tool working end to end, not the model's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .screen import ScreenResult, screen
from .synthetic import random_scene, write_pyramidal_tiff

DEMO_MPP = 0.25


@dataclass(frozen=True)
class DemoResult:
    slide: Path
    points: Path
    result: ScreenResult


def make_demo_slide(directory: str | Path, *, n_figures: int = 40, seed: int = 7) -> tuple[Path, Path]:
    """Write ``demo_slide.tif`` (1 x 0.75 mm at 0.25 um/px, 3 pyramid levels, deflate tiles) and ``demo_points.csv``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    width_um, height_um = 1024.0, 768.0
    rng = np.random.default_rng(seed)
    figures = np.column_stack([rng.uniform(40, width_um - 40, n_figures), rng.uniform(40, height_um - 40, n_figures)])
    atypical = rng.random(n_figures) < 0.3
    scene = random_scene(width_um, height_um, n_nuclei=900, mitoses_um=[tuple(p) for p in figures],
                         atypical=list(atypical), seed=seed)
    slide = write_pyramidal_tiff(directory / "demo_slide.tif", scene.render(DEMO_MPP), mpp=DEMO_MPP, downsamples=(1, 4, 16),
                                 compression="zlib")
    points = directory / "demo_points.csv"
    with open(points, "w", encoding="utf-8") as fh:
        fh.write("id,x,y,drawn_as\n")
        for i, ((x, y), a) in enumerate(zip(figures / DEMO_MPP, atypical)):
            fh.write(f"fig{i:03d},{x:.1f},{y:.1f},{'multipolar' if a else 'metaphase'}\n")
    return slide, points


def run_demo(directory: str | Path, *, model: str | Path | None = None, device: str = "auto", progress: bool = True) -> DemoResult:
    from .bundle import load_bundle

    bundle = load_bundle(model)  # fail before writing anything when the model is missing
    directory = Path(directory)
    slide, points = make_demo_slide(directory)
    result = screen(slide, points, model=bundle, out=directory / "results", cache_dir=directory / "cache", device=device,
                    progress=progress, report=True)
    return DemoResult(slide, points, result)
