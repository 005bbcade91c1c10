"""``wsi-amf demo``: write a small synthetic slide with candidate points and screen it with the default model.

The slide is synthetic (Gaussian 'nuclei' on a pink background, bar-shaped 'metaphase plates' and
three-armed 'multipolar' figures): it shows the tool working end to end, not the model's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .options import ScreenOptions
from .screen import ScreenResult, screen
from .synthetic import write_slide_with_points

DEMO_MPP = 0.25


@dataclass(frozen=True)
class DemoResult:
    slide: Path
    points: Path
    result: ScreenResult


def make_demo_slide(directory: str | Path, *, n_figures: int = 40, seed: int = 7) -> tuple[Path, Path]:
    """Write ``demo_slide.tif`` (1 x 0.75 mm at 0.25 um/px, 3 pyramid levels, deflate tiles) and ``demo_points.csv``."""
    directory = Path(directory)
    return write_slide_with_points(directory / "demo_slide.tif", directory / "demo_points.csv", width_um=1024.0,
                                   height_um=768.0, n_figures=n_figures, n_nuclei=900, mpp=DEMO_MPP,
                                   downsamples=(1, 4, 16), seed=seed)


def run_demo(directory: str | Path, *, model: str | Path | None = None, device: str = "auto", progress: bool = True) -> DemoResult:
    from .bundle import load_bundle

    bundle = load_bundle(model)  # fail before writing anything when the model is missing
    directory = Path(directory)
    slide, points = make_demo_slide(directory)
    result = screen(slide, points, ScreenOptions(cache_dir=directory / "cache", device=device, report=True),
                    model=bundle, out=directory / "results", progress=progress)
    return DemoResult(slide, points, result)
