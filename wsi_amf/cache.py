"""The lazy patch cache: one zarr (v3) group per slide, one sub-group per (patch size, mpp).

Layout of ``<cache>/<slide stem>-<path hash>/`` (attrs: the slide's identity)::

    s128_mpp0.25/          attrs: patch_size, mpp, format_version
        patches  uint8 [N, S, S, 3]   chunks of CHUNK patches, Blosc-LZ4 (fastest writes measured here)
        filled   bool  [N]            explicit: zarr skips chunks equal to the fill value
        coords   float64 [N, 2]       level-0 (x, y) of each patch

Only missing patches are read from the slide. Chunks are written before the ``filled`` flags that cover
them, and zarr's local store writes every chunk atomically, so an interrupted run leaves a consistent
cache that the next run completes. A slide file whose size, mtime or first bytes changed invalidates
its group. A file lock serialises runs that share one slide group.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import CacheError
from .slide import SlideIdentity

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
CHUNK = 64
_INDEX_CHUNK = 1 << 16


def cache_root() -> Path:
    """``$WSI_AMF_CACHE``, else the user cache directory's ``wsi-amf`` (patches and ONNX graphs live below)."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get("WSI_AMF_CACHE") or user_cache_dir("wsi-amf", appauthor=False))


def default_cache_dir() -> Path:
    return cache_root() / "patches"


def slide_group_name(slide_path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", slide_path.stem)[:80] or "slide"
    digest = hashlib.sha1(str(slide_path.resolve()).encode()).hexdigest()[:12]
    return f"{stem}-{digest}"


class PatchCache:
    """The cached patches of one slide at one patch size and resolution."""

    def __init__(self, root: str | Path, slide_path: Path, identity: SlideIdentity, *, size: int, mpp: float) -> None:
        import zarr

        self.size, self.mpp = int(size), float(mpp)
        self.slide_dir = Path(root) / slide_group_name(slide_path)
        self.path = self.slide_dir / f"s{self.size}_mpp{self.mpp:g}"
        try:
            self.slide_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fh = open(self.slide_dir.parent / f".{self.slide_dir.name}.lock", "w")
        except OSError as exc:
            raise CacheError(f"patch cache {self.slide_dir}: cannot be created ({exc.strerror or exc})") from None
        fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
        ident = asdict(identity)
        try:
            top = zarr.open_group(str(self.slide_dir), mode="a")
            stored = top.attrs.get("identity")
        except Exception as exc:  # unreadable metadata: start afresh rather than fail forever
            log.warning("patch cache %s is unreadable (%s); rebuilding it", self.slide_dir, exc)
            stored, top = None, None
        if top is None or (stored is not None and stored != ident):
            if stored is not None:
                log.info("slide %s changed since it was cached; discarding its cached patches", slide_path)
            self._wipe()
            top = zarr.open_group(str(self.slide_dir), mode="a")
        if top.attrs.get("identity") != ident:
            top.attrs.update({"identity": ident, "slide": str(slide_path.resolve()), "format_version": FORMAT_VERSION})
        self._open_arrays(top)

    def _wipe(self) -> None:
        for child in self.slide_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _open_arrays(self, top) -> None:  # noqa: ANN001
        from zarr.codecs import BloscCodec

        name = self.path.name
        try:
            g = top[name] if name in top else None
            if g is not None and not all(k in g for k in ("patches", "filled", "coords")):
                del top[name]
                g = None
            if g is None:
                g = top.create_group(name, attributes={"patch_size": self.size, "mpp": self.mpp, "format_version": FORMAT_VERSION})
                s = self.size
                g.create_array("patches", shape=(0, s, s, 3), chunks=(CHUNK, s, s, 3), dtype="uint8", fill_value=0,
                               compressors=BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"))
                g.create_array("filled", shape=(0,), chunks=(_INDEX_CHUNK,), dtype="bool", fill_value=False)
                g.create_array("coords", shape=(0, 2), chunks=(_INDEX_CHUNK, 2), dtype="float64", fill_value=0.0)
            # Patch chunks are never skipped as "empty": zarr's check compares every chunk with the fill value,
            # which cost 4x the compression itself (benchmarks/README.md, cache writes).
            self._patches = g["patches"].with_config({"write_empty_chunks": True})
            self._filled, self._coords = g["filled"], g["coords"]
            self.filled = np.asarray(self._filled[:], dtype=bool)
            self.coords = np.asarray(self._coords[:], dtype=np.float64).reshape(-1, 2)
        except Exception as exc:
            raise CacheError(f"patch cache {self.path}: cannot be opened ({exc})") from None
        n = min(len(self.filled), len(self.coords), self._patches.shape[0])
        self.filled, self.coords = self.filled[:n], self.coords[:n]
        self._index = {_key(x, y): i for i, (x, y) in enumerate(self.coords)}

    def __len__(self) -> int:
        return len(self.coords)

    def locate(self, xy: np.ndarray) -> np.ndarray:
        """Cache indices of the points, appending new points (in the order given) as unfilled entries.

        Positions equal to 1e-6 pixel share an entry: a point that went through millimetres and back
        (grand-challenge JSON) finds its patch."""
        idx = np.empty(len(xy), dtype=np.int64)
        new: list[tuple[float, float]] = []
        for i, (x, y) in enumerate(xy):
            key = _key(x, y)
            j = self._index.get(key)
            if j is None:
                j = len(self.coords) + len(new)
                self._index[key] = j
                new.append((float(x), float(y)))
            idx[i] = j
        if new:
            n0 = len(self.coords)
            n1 = n0 + len(new)
            s = self.size
            self._patches.resize((n1, s, s, 3))
            self._coords.resize((n1, 2))
            self._filled.resize((n1,))
            self._coords[n0:n1] = np.asarray(new, dtype=np.float64)
            self.coords = np.concatenate([self.coords, np.asarray(new, dtype=np.float64)])
            self.filled = np.concatenate([self.filled, np.zeros(len(new), dtype=bool)])
        return idx

    def write(self, start: int, patches: np.ndarray) -> None:
        """Store patches for the contiguous index range starting at ``start``, then flag them filled."""
        stop = start + len(patches)
        self._patches[start:stop] = patches
        self._filled[start:stop] = True
        self.filled[start:stop] = True

    def read(self, start: int, stop: int) -> np.ndarray | None:
        """Cached patches ``[start, stop)``, or None when a chunk cannot be decoded (they are then re-read)."""
        try:
            return np.asarray(self._patches[start:stop])
        except Exception as exc:
            log.warning("patch cache %s: patches %d-%d unreadable (%s); re-reading them", self.path, start, stop, exc)
            self.filled[start:stop] = False
            return None

    def close(self) -> None:
        fh = getattr(self, "_lock_fh", None)
        if fh is not None:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            self._lock_fh = None

    def __enter__(self) -> PatchCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def open_cache(root: str | Path | None, slide_path: Path, identity: SlideIdentity, *, size: int, mpp: float) -> Iterator[PatchCache]:
    cache = PatchCache(Path(root) if root is not None else default_cache_dir(), slide_path, identity, size=size, mpp=mpp)
    try:
        yield cache
    finally:
        cache.close()



def read_cached(group_path: str | Path, identity: SlideIdentity, xy: np.ndarray) -> dict[int, np.ndarray]:
    """Read-only lookup of the patches of level-0 points in the cache group at ``group_path``.

    Returns ``{i: uint8 [S, S, 3]}`` for the points ``xy[i]`` whose patch is cached and filled; nothing when
    the group is missing or unreadable or the slide's ``identity`` changed since it was cached. Nothing is
    created, locked or modified.
    """
    import zarr

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    path = Path(group_path)
    try:
        top = zarr.open_group(str(path.parent), mode="r")
        if top.attrs.get("identity") != asdict(identity):
            return {}
        g = zarr.open_group(str(path), mode="r")
        filled = np.asarray(g["filled"][:], dtype=bool)
        coords = np.asarray(g["coords"][:], dtype=np.float64).reshape(-1, 2)
        index = {_key(x, y): i for i, (x, y) in enumerate(coords[: len(filled)]) if filled[i]}  # as PatchCache.locate
        where = {i: index[k] for i, (x, y) in enumerate(xy) if (k := _key(x, y)) in index}
        if not where:
            return {}
        wanted = np.unique(np.fromiter(where.values(), dtype=np.int64))
        block = np.asarray(g["patches"].get_orthogonal_selection((wanted,)))
        return {i: block[int(np.searchsorted(wanted, j))] for i, j in where.items()}
    except Exception as exc:  # a missing or damaged cache: the caller reads the patches from the slide
        log.info("patch cache %s: not readable (%s); patches come from the slide", path, exc)
        return {}


def _key(x: float, y: float) -> tuple[float, float]:
    return (round(float(x), 6) + 0.0, round(float(y), 6) + 0.0)  # + 0.0: -0.0 and 0.0 are one key
