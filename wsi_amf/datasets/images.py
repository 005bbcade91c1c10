"""Patch images decoded into ``uint8 [N, S, S, 3]`` (other sizes resized, one log line per size)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _load_one(path: Path, size: int, page: int | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
    from PIL import Image, UnidentifiedImageError

    where = f"image {path}" + (f" page {page + 1}" if page is not None else "")
    try:
        with Image.open(path) as im:
            if page is not None:
                im.seek(page)
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"{where}: no such file") from None
    except (OSError, EOFError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"{where}: cannot be decoded ({exc})") from None
    if rgb.size == (size, size):
        return np.asarray(rgb, dtype=np.uint8), None
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8), rgb.size


def load_images(
    paths: Sequence[str | Path],
    *,
    pages: Sequence[int | None] | None = None,
    size: int = 128,
    workers: int = 4,
    quiet: bool = True,
) -> np.ndarray:
    """Decode images (``pages[i]``: a page of a multi-page TIFF) into ``uint8 [N, size, size, 3]``.

    Runs in ``workers`` threads; other sizes are resized (bilinear) and one log line per size says so.
    """
    from tqdm.auto import tqdm

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"image {missing[0]}: no such file ({len(missing)} of {len(paths)} listed images are missing)")
    page_list = list(pages) if pages is not None else [None] * len(paths)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    resized: dict[tuple[int, int], int] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda item: _load_one(Path(item[0]), size, item[1]), zip(paths, page_list))
        bar = tqdm(results, total=len(paths), desc="loading images", disable=quiet, unit="img", leave=False)
        for i, (arr, was) in enumerate(bar):
            out[i] = arr
            if was is not None:
                resized[was] = resized.get(was, 0) + 1
    for (w, h), count in sorted(resized.items()):
        log.warning("resized %d images from %dx%d to %dx%d pixels", count, w, h, size, size)
    return out

