"""MIDOG 2025 track 2 container I/O: a multi-page TIFF of 128 px patches in, a JSON list of calls out.

Input: every page one 128x128 RGB (8-bit) patch, about 0.25 um/px. Output, in page order:
``[{"class": "normal" | "atypical", "confidence": P(atypical)}, ...]``; ``confidence`` is always the
probability of *atypical* (the organisers compute ROC AUC from it), a plain float; ``class`` is
``atypical`` when it reaches the decision threshold (the bundle's unless given).

The stack's page headers are all checked before the model loads; pages are then decoded in chunks, so memory
stays bounded; the output is written atomically once every page is classified.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..bundle import ModelBundle
from ..errors import DatasetError, OptionError, WsiAmfError, one_line
from ..files import atomic_write_text
from .options import InferenceOptions
from .predict import predict_patches

log = logging.getLogger(__name__)
PATCH_SIZE = 128
PATCH_MPP = 0.25  # about 0.248 um/px in the MIDOG 2025 data
CHUNK = 1024
CLASSES = ("normal", "atypical")


@dataclass(frozen=True)
class StackResult:
    out: Path
    n: int
    n_atypical: int
    threshold: float
    confidence: np.ndarray  # P(atypical) per page, in page order


def _open(path: Path) -> Any:  # -> PIL.Image.Image
    from PIL import Image

    if not path.exists():
        raise DatasetError(f"stack {path}: no such file")
    if path.is_dir():
        raise DatasetError(f"stack {path}: is a directory, expected a multi-page TIFF file")
    if path.stat().st_size == 0:
        raise DatasetError(f"stack {path}: the file is empty (0 bytes)")
    try:
        im = Image.open(path)
    except PermissionError:
        raise DatasetError(f"stack {path}: cannot be read (permission denied)") from None
    except Exception as exc:  # PIL raises many types on a damaged file; all mean "not a readable image"
        raise DatasetError(f"stack {path}: not a readable image ({one_line(exc)})") from None
    if im.format != "TIFF":
        im.close()
        raise DatasetError(f"stack {path}: is a {im.format or 'non-TIFF'} image, expected a multi-page TIFF")
    return im


def count_pages(path: str | Path) -> int:
    """The number of pages, after checking that every page is a 128x128 RGB image (headers only)."""
    path = Path(path)
    with _open(path) as im:
        k = 0
        try:
            n = int(im.n_frames)
            for k in range(n):
                im.seek(k)
                _check_page(path, k, im)
        except WsiAmfError:
            raise
        except Exception as exc:  # a damaged page directory
            raise DatasetError(f"stack {path} page {k + 1}: cannot be read ({one_line(exc)})") from None
    if n < 1:
        raise DatasetError(f"stack {path}: has no pages")
    return n


def _check_page(path: Path, k: int, im: Any) -> None:
    if im.size != (PATCH_SIZE, PATCH_SIZE) or im.mode != "RGB":
        w, h = im.size
        raise DatasetError(
            f"stack {path} page {k + 1}: is a {w}x{h} {im.mode} image, expected {PATCH_SIZE}x{PATCH_SIZE} RGB"
        )


def iter_stack(path: str | Path, *, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """The pages as ``uint8 [n, 128, 128, 3]`` arrays of up to ``chunk`` pages, in page order."""
    path = Path(path)
    with _open(path) as im:
        n = int(im.n_frames)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            out = np.empty((stop - start, PATCH_SIZE, PATCH_SIZE, 3), dtype=np.uint8)
            for k in range(start, stop):
                try:
                    im.seek(k)
                    _check_page(path, k, im)
                    out[k - start] = np.asarray(im, dtype=np.uint8)
                except WsiAmfError:
                    raise
                except Exception as exc:  # truncated or corrupt pixel data
                    raise DatasetError(f"stack {path} page {k + 1}: cannot be decoded ({one_line(exc)})") from None
            yield out


def read_stack(path: str | Path) -> np.ndarray:
    """Every page of a track 2 stack as ``uint8 [N, 128, 128, 3]``."""
    count_pages(path)
    return np.concatenate(list(iter_stack(path)))


def track2_json(confidence: np.ndarray, threshold: float) -> str:
    """The track 2 output document for P(atypical) per page."""
    calls = [{"class": CLASSES[int(p >= threshold)], "confidence": float(p)} for p in confidence]
    return json.dumps(calls, allow_nan=False) + "\n"


def classify_stack(stack: str | Path, out: str | Path, options: InferenceOptions | None = None, *,
                   quiet: bool = False) -> StackResult:
    """Classify every page of a track 2 stack with ``options.model`` (default: the built-in bundle); write ``out``."""
    opts = options or InferenceOptions()
    out = Path(out)
    if out.is_dir():
        raise OptionError(f"--out {out}: is a directory, expected a JSON file name")
    n = count_pages(stack)
    bundle = opts.load_bundle()
    _check_bundle(bundle)
    ensemble = opts.open(bundle)
    t = opts.threshold_for(bundle)
    parts = []
    for start, pixels in zip(range(0, n, CHUNK), iter_stack(stack)):
        desc = f"classifying pages {start + 1}-{start + len(pixels)} of {n}"
        parts.append(predict_patches(ensemble, pixels, batch_size=opts.batch_size, quiet=quiet, desc=desc))
    confidence = np.concatenate(parts)
    if len(confidence) != n:  # the file changed between the two passes
        raise DatasetError(f"stack {stack}: {len(confidence)} pages decoded, {n} counted")
    atomic_write_text(out, track2_json(confidence, t))
    return StackResult(out=out, n=n, n_atypical=int(np.sum(confidence >= t)), threshold=t, confidence=confidence)


def _check_bundle(bundle: ModelBundle) -> None:
    """OptionError unless the bundle reads 128 px patches; a warning when it was trained at another resolution."""
    cfg = bundle.config
    if cfg.patch_size != PATCH_SIZE:
        raise OptionError(
            f"--model {bundle.path}: expects {cfg.patch_size} px patches; track 2 stacks hold {PATCH_SIZE} px patches"
        )
    if abs(cfg.mpp - PATCH_MPP) > 0.1 * PATCH_MPP:
        log.warning("model %s was trained at %g um/px; track 2 patches are about %g um/px", bundle.name, cfg.mpp, PATCH_MPP)
