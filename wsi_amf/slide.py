"""Whole-slide reading: OpenSlide for every format it knows, a plain-image fallback, patches at a target mpp.

A patch of ``size`` pixels at ``target_mpp`` centred on a level-0 point covers ``size * target_mpp /
slide_mpp`` level-0 pixels. We read that box from the best pyramid level (the coarsest one that is still at
least as fine as the target) and resample it with PIL's box-aware resize, so slides scanned at 0.125 or
0.5 um/px give the same tissue content. When the box falls on whole pixels of a level at exactly the target
resolution no resampling happens: the patch is the slide's own pixels. Outside the slide is white.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .errors import OptionError, SlideError, one_line

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
#: The most pixels of a plain image (one without a pyramid) that is decoded: far above Pillow's own bound,
#: which is made for photographs, and still a bound against a decompression bomb (about 6 GB as RGB).
PLAIN_IMAGE_MAX_PIXELS = 2**31
#: Pillow's bound is one global setting: it is lifted only while a plain image's header is read, one at a time.
_PIL_LIMIT_LOCK = threading.Lock()
_EPS = 1e-6
MPP_OPTION_RANGE = (0.05, 20.0)  # um/px: from beyond 100x down to a 1.25x overview


@dataclass(frozen=True)
class SlideIdentity:
    """What identifies a slide file's content cheaply: size, mtime and a hash of its first MiB."""

    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, path: Path) -> SlideIdentity:
        st = path.stat()
        with open(path, "rb") as fh:
            head = hashlib.sha256(fh.read(1 << 20)).hexdigest()
        return cls(st.st_size, st.st_mtime_ns, head)


class Slide:
    """An opened slide with a known resolution. Use as a context manager."""

    def __init__(self, path: str | Path, *, mpp: float | None = None) -> None:
        import openslide

        self.path = Path(path)
        check_mpp_option(mpp)
        if not self.path.exists():
            raise SlideError(f"slide {self.path}: no such file")
        if self.path.is_dir():
            raise SlideError(f"slide {self.path}: is a directory, not a slide file")
        try:
            with open(self.path, "rb") as fh:
                empty = not fh.read(1)
        except PermissionError:
            raise SlideError(f"slide {self.path}: cannot be read (permission denied)") from None
        except OSError as exc:
            raise SlideError(f"slide {self.path}: cannot be read ({exc.strerror or one_line(exc)})") from None
        if empty:
            raise SlideError(f"slide {self.path}: the file is empty (0 bytes)")
        self._osr: Any  # an OpenSlide, or the plain-image stand-in; None once closed
        try:
            self._osr = openslide.OpenSlide(str(self.path))
            self.backend = "openslide"
        except openslide.OpenSlideUnsupportedFormatError:
            self._osr = self._open_image()
            self.backend = "image"
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideError(f"slide {self.path}: cannot be read by OpenSlide ({one_line(exc)})") from None
        self.dimensions: tuple[int, int] = tuple(self._osr.dimensions)
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in self._osr.level_downsamples)
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(tuple(d) for d in self._osr.level_dimensions)
        meta_mpp = self._metadata_mpp()
        if mpp is not None:
            self.mpp, self.mpp_source = float(mpp), "option"
        elif meta_mpp is not None:
            self.mpp, self.mpp_source = meta_mpp, "metadata"
        else:
            self.close()
            raise SlideError(
                f"slide {self.path}: its resolution (microns per pixel) is not in the file; pass --mpp "
                "(e.g. --mpp 0.25 for a 40x scan, 0.5 for 20x)"
            )
        self.reads = 0  # read_region calls, for tests and benchmarks

    def _open_image(self):  # -> openslide.ImageSlide
        import openslide
        from PIL import UnidentifiedImageError

        if self.path.suffix.lower() not in IMAGE_SUFFIXES:
            raise SlideError(
                f"slide {self.path}: OpenSlide does not recognise it and it is not a plain image "
                "(a damaged, truncated or unsupported file?)"
            )
        try:
            img = _open_plain_image(self.path)
            img.load()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise SlideError(f"slide {self.path}: cannot be read as an image ({one_line(exc)})") from None
        self._image_dpi = _image_mpp(img)
        return openslide.ImageSlide(img.convert("RGB") if img.mode not in ("RGB", "RGBA") else img)

    def _metadata_mpp(self) -> float | None:
        props = self._osr.properties
        for key in ("openslide.mpp-x", "openslide.mpp-y"):
            try:
                val = float(props[key])
            except (KeyError, ValueError):
                continue
            if math.isfinite(val) and val > 0:
                return val
        tiff_mpp = _tiff_props_mpp(props)
        if tiff_mpp is not None:
            return tiff_mpp
        return getattr(self, "_image_dpi", None)

    def identity(self) -> SlideIdentity:
        return SlideIdentity.of(self.path)

    # -- patch geometry -------------------------------------------------------------------------------------
    def best_level(self, scale: float) -> int:
        """The coarsest level whose downsample does not exceed ``scale`` (level-0 pixels per patch pixel)."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= scale * (1 + _EPS):
                best = level
        return best

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Whether each level-0 ``(x, y)`` lies on the slide: ``0 <= x < width`` and ``0 <= y < height``.

        Pixel ``i`` spans ``[i, i + 1)``, so any negative coordinate, even -0.4 (which would round into the
        first pixel), lies outside, as does ``x == width``: left of / above the slide is treated like beyond it.
        """
        w, h = self.dimensions
        x, y = xy[:, 0], xy[:, 1]
        return (x >= 0) & (y >= 0) & (x < w) & (y < h)

    def read_patch(self, x: float, y: float, *, size: int, target_mpp: float) -> np.ndarray:
        """``uint8 [size, size, 3]`` centred on level-0 ``(x, y)`` at ``target_mpp``; white outside the slide."""
        return np.array(self._patch_image(x, y, size=size, target_mpp=target_mpp), dtype=np.uint8)

    def _patch_image(self, x: float, y: float, *, size: int, target_mpp: float) -> Image.Image:
        """The patch of :meth:`read_patch` as an RGB PIL image (``read_patches`` copies it straight into place)."""
        from PIL import Image

        scale = target_mpp / self.mpp  # level-0 pixels per patch pixel
        level = self.best_level(scale)
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        half0 = size * scale / 2.0
        # The patch box, in the chosen level's pixel coordinates (float).
        bx0, by0 = (x - half0) / ds, (y - half0) / ds
        side = size * scale / ds
        ix0, iy0 = math.floor(bx0 + _EPS), math.floor(by0 + _EPS)
        exact = abs(side - size) < 1e-6 and abs(bx0 - round(bx0)) < 1e-6 and abs(by0 - round(by0)) < 1e-6
        if exact:
            ix0, iy0 = round(bx0), round(by0)
            w = h = size
        else:
            w = math.ceil(bx0 + side) - ix0 + 1
            h = math.ceil(by0 + side) - iy0 + 1
        region = self._read(level, ix0, iy0, w, h, lw, lh, ds)
        if exact:
            return region
        box = (bx0 - ix0, by0 - iy0, bx0 - ix0 + side, by0 - iy0 + side)
        return region.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)

    def _read(self, level: int, x: int, y: int, w: int, h: int, lw: int, lh: int, ds: float) -> Image.Image:
        """RGB region of a level, white where it falls outside the level or is transparent."""
        from PIL import Image

        self.reads += 1
        # Only ask OpenSlide for the part inside the level; pad the rest with white.
        cx0, cy0 = max(x, 0), max(y, 0)
        cx1, cy1 = min(x + w, lw), min(y + h, lh)
        if cx1 <= cx0 or cy1 <= cy0:
            return Image.new("RGB", (w, h), (255, 255, 255))
        try:
            rgba = self._osr.read_region((int(round(cx0 * ds)), int(round(cy0 * ds))), level, (cx1 - cx0, cy1 - cy0))
        except Exception as exc:  # openslide raises OpenSlideError; corrupt tiles surface here
            raise SlideError(f"slide {self.path}: reading level {level} at ({cx0}, {cy0}) failed ({one_line(exc)})") from None
        if rgba.mode == "RGBA" and int(rgba.getchannel("A").getextrema()[0]) < 255:
            # Transparent = no tissue scanned: composite onto white.
            arr = np.asarray(rgba)
            alpha = arr[..., 3:4].astype(np.uint16)
            rgba = Image.fromarray(((arr[..., :3] * alpha + 255 * (255 - alpha)) // 255).astype(np.uint8))
        rgb = rgba.convert("RGB") if rgba.mode != "RGB" else rgba
        if (cx0, cy0, cx1, cy1) == (x, y, x + w, y + h):  # the usual case: the whole region lies inside the level
            return rgb
        out = Image.new("RGB", (w, h), (255, 255, 255))
        out.paste(rgb, (cx0 - x, cy0 - y))
        return out

    def read_patches(
        self, xy: np.ndarray, *, size: int, target_mpp: float, workers: int = 4, executor: ThreadPoolExecutor | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Patches for many points, read concurrently (OpenSlide releases the GIL), in the order given; into
        ``out`` (``uint8 [N, size, size, 3]``) when given."""
        if out is None:
            out = np.empty((len(xy), size, size, 3), dtype=np.uint8)
        elif out.shape != (len(xy), size, size, 3) or out.dtype != np.uint8:
            raise ValueError(f"out: expected uint8 {(len(xy), size, size, 3)}, got {out.dtype} {out.shape}")
        if len(xy) == 0:
            return out

        def one(i: int) -> None:
            out[i] = np.asarray(self._patch_image(float(xy[i, 0]), float(xy[i, 1]), size=size, target_mpp=target_mpp))

        if executor is not None:
            list(executor.map(one, range(len(xy))))
        elif workers <= 1:
            for i in range(len(xy)):
                one(i)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, range(len(xy))))
        return out

    def tile_order(self, xy: np.ndarray, tile: int = 512) -> np.ndarray:
        """Indices that visit points row band by row band, left to right (neighbours share decoded tiles)."""
        if len(xy) == 0:
            return np.zeros(0, dtype=np.int64)
        band = np.floor(xy[:, 1] / tile)
        return np.lexsort((xy[:, 0], band))

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        return np.asarray(self._osr.get_thumbnail((max_size, max_size)).convert("RGB"))

    def close(self) -> None:
        osr = getattr(self, "_osr", None)
        if osr is not None:
            osr.close()
            self._osr = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({str(self.path)!r}, dimensions={self.dimensions}, mpp={self.mpp})"


class PatchReader:
    """Reads chunks of patches for a pipeline whose model runs beside it; use as a context manager.

    While ``busy()`` is true (the model has patches queued: it is not waiting for these), patches are read
    ``SLICE`` at a time by one background thread at the lowest scheduling priority (nice 19 on Linux), so
    that reading takes the cycles the model leaves idle instead of preempting it; ``busy()`` is asked again
    before every slice. The rest of the chunk, once ``busy()`` turns false, is read by a pool of ``workers``
    threads at normal priority, the fastest way when the model waits. Where the priority cannot be lowered,
    the pool reads everything. Measured in benchmarks/README.md (``reader_policy.py``).
    """

    SLICE = 8

    def __init__(self, slide: Slide, *, workers: int = 4, busy: Callable[[], bool] | None = None) -> None:
        self.slide = slide
        self.busy = busy or (lambda: False)
        self.background_reads = 0  # patches read by the low-priority thread (for tests and benchmarks)
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="wsi-amf-read")
        self._background = ThreadPoolExecutor(1, thread_name_prefix="wsi-amf-read-bg")
        #: whether the background thread runs at the lowest priority (if not, the pool reads everything)
        self.lowered = self._background.submit(lower_thread_priority).result()

    def read(self, xy: np.ndarray, *, size: int, target_mpp: float) -> np.ndarray:
        """``uint8 [N, size, size, 3]`` for the level-0 points ``xy``, in the order given."""
        out = np.empty((len(xy), size, size, 3), dtype=np.uint8)
        done = 0
        while done < len(xy) and self.lowered and self.busy():
            part = slice(done, min(done + self.SLICE, len(xy)))
            self._background.submit(self.slide.read_patches, xy[part], size=size, target_mpp=target_mpp, workers=1,
                                    out=out[part]).result()
            self.background_reads += part.stop - done
            done = part.stop
        if done < len(xy):
            self.slide.read_patches(xy[done:], size=size, target_mpp=target_mpp, executor=self._pool, out=out[done:])
        return out

    def close(self) -> None:
        self._pool.shutdown()
        self._background.shutdown()

    def __enter__(self) -> PatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lower_thread_priority() -> bool:
    """Give the calling thread the lowest scheduling priority (Linux: nice is per thread); whether it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 19
    except Exception:
        return False


def check_mpp_option(mpp: float | None) -> None:
    """OptionError unless ``mpp`` (``--mpp``) is None or a plausible scan resolution in micrometres per pixel."""
    if mpp is None:
        return
    if not (math.isfinite(mpp) and mpp > 0):
        raise OptionError(f"--mpp {mpp}: must be a positive number of micrometres per pixel")
    if not MPP_OPTION_RANGE[0] <= mpp <= MPP_OPTION_RANGE[1]:
        raise OptionError(
            f"--mpp {mpp}: not a plausible resolution in micrometres per pixel (expected {MPP_OPTION_RANGE[0]:g} to "
            f"{MPP_OPTION_RANGE[1]:g}, e.g. 0.25 for a 40x scan; not millimetres, nanometres or a magnification)"
        )



def _unit_to_um(unit: str | int | None) -> float | None:
    """Micrometres per resolution unit (TIFF ResolutionUnit: 2 = inch, 3 = centimetre)."""
    table = {"inch": 25400.0, "2": 25400.0, "centimeter": 10000.0, "centimetre": 10000.0, "cm": 10000.0, "3": 10000.0}
    return table.get(str(unit).lower()) if unit is not None else None


def _tiff_props_mpp(props: Mapping[str, str]) -> float | None:
    try:
        res = float(props["tiff.XResolution"])
    except (KeyError, ValueError, TypeError):
        return None
    um = _unit_to_um(props.get("tiff.ResolutionUnit"))
    if um is None or not (math.isfinite(res) and res > 0):
        return None
    mpp = um / res
    return mpp if 0.01 < mpp < 100 else None  # 72-dpi defaults and similar are not microscope resolutions


def _open_plain_image(path: Path) -> Image.Image:
    """A plain image opened (its header read) under wsi-amf's bound on its pixels instead of Pillow's."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = before
    if img.width * img.height > PLAIN_IMAGE_MAX_PIXELS:
        img.close()
        raise SlideError(f"slide {path}: a plain image of {img.width} x {img.height} pixels, more than the "
                         f"{PLAIN_IMAGE_MAX_PIXELS:,} wsi-amf decodes (a decompression bomb?); convert it to a tiled "
                         "pyramidal TIFF")
    return img


def _image_mpp(img) -> float | None:
    """Resolution of a plain image from its TIFF tags (ResolutionUnit + XResolution), if meaningful."""
    tags = getattr(img, "tag_v2", None)
    if not tags:
        return None
    try:
        res = float(tags.get(282))  # XResolution
    except (TypeError, ValueError):
        return None
    um = _unit_to_um(tags.get(296, 2))
    if um is None or not res > 0:
        return None
    mpp = um / res
    return mpp if 0.01 < mpp < 100 else None
