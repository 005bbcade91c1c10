"""``classify``: P(atypical) of patch images (files, folders searched recursively, multi-page TIFF stacks).

Writes a CSV ``path,p_atypical,label``; a page of a multi-page TIFF is named ``file.tiff#K`` (K from 1).
Images are read in chunks, so memory stays bounded whatever their number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..datasets import IMAGE_SUFFIXES, load_images
from ..errors import DatasetError
from ..files import atomic_open
from .options import InferenceOptions
from .predict import predict_patches

CHUNK = 1024


@dataclass(frozen=True)
class PatchRef:
    path: Path
    page: int | None = None  # page of a multi-page TIFF (0-based)

    @property
    def name(self) -> str:
        return f"{self.path}#{self.page + 1}" if self.page is not None else str(self.path)


@dataclass(frozen=True)
class ClassifyResult:
    out: Path
    n: int
    n_atypical: int
    threshold: float


def _pages(path: Path) -> list[PatchRef]:
    if path.suffix.lower() not in (".tif", ".tiff"):
        return [PatchRef(path)]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            n = int(getattr(im, "n_frames", 1))
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"image {path}: cannot be decoded ({exc})") from None
    return [PatchRef(path)] if n == 1 else [PatchRef(path, k) for k in range(n)]


def find_patches(inputs: Iterable[str | Path]) -> list[PatchRef]:
    """Expand files and folders (recursively, sorted) into patch references."""
    refs: list[PatchRef] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DatasetError(f"folder {path}: no patch images ({', '.join(IMAGE_SUFFIXES)}) inside")
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DatasetError(f"image {path}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            files = [path]
        else:
            raise DatasetError(f"image {path}: no such file or folder")
        for f in files:
            refs += _pages(f)
    if not refs:
        raise DatasetError("no patch images given")
    return refs


def classify(
    paths: Sequence[str | Path],
    out_csv: str | Path,
    options: InferenceOptions | None = None,
    *,
    workers: int = 4,
    quiet: bool = False,
) -> ClassifyResult:
    """Classify patch images with ``options.model`` (default: the built-in bundle); write ``out_csv``."""
    import csv

    opts = options or InferenceOptions()
    refs = find_patches(paths)
    ensemble = opts.open()
    size = ensemble.bundle.config.patch_size
    t = opts.threshold_for(ensemble.bundle)
    n_atypical = 0
    with atomic_open(out_csv, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "p_atypical", "label"])
        for start in range(0, len(refs), CHUNK):
            chunk = refs[start : start + CHUNK]
            pixels = load_images([r.path for r in chunk], pages=[r.page for r in chunk], size=size, workers=workers)
            desc = f"classifying {start + 1}-{start + len(chunk)} of {len(refs)}"
            p = predict_patches(ensemble, pixels, batch_size=opts.batch_size, quiet=quiet, desc=desc)
            called = p >= t
            n_atypical += int(np.sum(called))
            for ref, prob, hit in zip(chunk, p, called):
                writer.writerow([ref.name, f"{prob:.6f}", "atypical" if hit else "normal"])
    return ClassifyResult(out=Path(out_csv), n=len(refs), n_atypical=n_atypical, threshold=t)
