"""Shared fixtures: synthetic pyramidal TIFFs (same scene at 0.125 / 0.25 / 0.5 um/px), tiny random bundles,
and the shared real data (skipped when ``../shared/data`` is absent)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wsi_amf.synthetic import Scene, random_scene, write_pyramidal_tiff

# Every Ray instance a test starts (and its subprocesses) binds and connects on 127.0.0.1 only: Ray reads this
# when it is imported, and otherwise takes the machine's interface address. Nor does any report usage statistics.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCENE_UM = 512.0
# Mitotic figures of the scene, in micrometres (the last three atypical-looking).
MITOSES_UM = [(100.0, 100.0), (256.0, 128.0), (400.0, 300.0), (150.0, 420.0), (300.0, 250.0),
              (60.0, 300.0), (450.0, 80.0), (350.0, 460.0)]
ATYPICAL = [False] * 5 + [True] * 3


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Nothing a test does lands in the user's cache: default patch caches and ONNX graphs go to a session
    folder (subprocesses inherit it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WSI_AMF_CACHE", str(tmp_path_factory.mktemp("wsi-amf-cache")))
    yield
    mp.undo()


@dataclass(frozen=True)
class SyntheticSlide:
    path: Path
    mpp: float
    image: np.ndarray  # level 0 as rendered

    def px(self, x_um: float, y_um: float) -> tuple[float, float]:
        return x_um / self.mpp, y_um / self.mpp


@pytest.fixture(scope="session")
def scene() -> Scene:
    return random_scene(SCENE_UM, SCENE_UM, n_nuclei=150, mitoses_um=MITOSES_UM, atypical=ATYPICAL, seed=3)


@pytest.fixture(scope="session")
def slides(tmp_path_factory: pytest.TempPathFactory, scene: Scene) -> dict[float, SyntheticSlide]:
    """The same tissue at three resolutions, each a tiled pyramidal TIFF with lossless (deflate) tiles."""
    root = tmp_path_factory.mktemp("slides")
    out = {}
    for mpp, downsamples in ((0.125, (1, 2, 8)), (0.25, (1, 4)), (0.5, (1, 4))):
        img = scene.render(mpp)
        path = write_pyramidal_tiff(root / f"scene_{mpp:g}.tif", img, mpp=mpp, downsamples=downsamples)
        out[mpp] = SyntheticSlide(path, mpp, img)
    return out


@pytest.fixture(scope="session")
def slide025(slides: dict[float, SyntheticSlide]) -> SyntheticSlide:
    return slides[0.25]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):
    """Two randomly initialised resnet10t members at 64 px (plumbing, not accuracy)."""
    from bundles import random_bundle

    return random_bundle(tmp_path_factory.mktemp("bundle") / "tiny", architecture="resnet10t", members=2,
                         input_size=64, crop_fraction=0.6, mpp=0.25, threshold=0.5)


def write_points_csv(path: Path, xy, extra: dict[str, list] | None = None) -> Path:
    extra = extra or {}
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join(["x", "y", *extra]) + "\n")
        for i, (x, y) in enumerate(xy):
            fh.write(",".join([f"{x:g}", f"{y:g}", *(str(v[i]) for v in extra.values())]) + "\n")
    return path


@pytest.fixture()
def mitosis_points(tmp_path: Path, slide025: SyntheticSlide) -> Path:
    xy = [slide025.px(x, y) for x, y in MITOSES_UM]
    return write_points_csv(tmp_path / "det.csv", xy, {"id": [f"m{i}" for i in range(len(xy))]})


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


# A 4 x 3 mm slide at 1 um/px whose densest 2 mm² field is known: 14 figures clustered in a 0.6 mm square,
# and 7 scattered ones at least 1.5 mm (more than the field's 1.414 mm side) from the cluster and from each other.
HOT_MPP = 1.0
HOT_CLUSTER_BOX_UM = (3000.0, 1900.0, 3600.0, 2500.0)
HOT_SCATTERED_UM = [(200.0, 200.0), (1400.0, 200.0), (200.0, 1400.0), (1400.0, 1400.0), (200.0, 2800.0),
                    (1400.0, 2800.0), (3300.0, 200.0)]


@dataclass(frozen=True)
class PlantedSlide:
    path: Path
    points: Path  # CSV of every figure, cluster first
    cluster: np.ndarray  # bool per point: inside the planted densest field
    xy: np.ndarray  # level-0 pixels


@pytest.fixture(scope="session")
def hotspot_slide(tmp_path_factory: pytest.TempPathFactory) -> PlantedSlide:
    rng = np.random.default_rng(11)
    x0, y0, x1, y1 = HOT_CLUSTER_BOX_UM
    cluster = np.column_stack([rng.uniform(x0, x1, 14), rng.uniform(y0, y1, 14)])
    xy_um = np.vstack([cluster, np.asarray(HOT_SCATTERED_UM)])
    atypical = [i % 3 == 0 for i in range(len(xy_um))]
    scene = random_scene(4000.0, 3000.0, n_nuclei=1500, mitoses_um=[tuple(p) for p in xy_um], atypical=atypical, seed=5)
    root = tmp_path_factory.mktemp("hotspot")
    path = write_pyramidal_tiff(root / "planted.tif", scene.render(HOT_MPP), mpp=HOT_MPP, downsamples=(1, 4, 16))
    xy = xy_um / HOT_MPP
    points = write_points_csv(root / "planted.csv", [tuple(p) for p in xy], {"id": [f"f{i}" for i in range(len(xy))]})
    return PlantedSlide(path, points, np.arange(len(xy)) < len(cluster), xy)


def report_values(path: Path) -> dict[str, str]:
    """The ``data-key`` -> ``data-value`` pairs of an HTML report (the numbers its tables show)."""
    import html
    import re

    text = path.read_text(encoding="utf-8")
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r'data-key="([^"]*)" data-value="([^"]*)"', text)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The multi-node Ray tests run last, out of the way of the rest of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)
