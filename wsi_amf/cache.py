"""The lazy patch cache: one zarr (v3) group per slide, one sub-group per (patch size, mpp).

Layout of ``<cache>/<slide stem>-<path hash>/`` (attrs: the slide's identity)::

    s128_mpp0.25/          attrs: patch_size, mpp, format_version
        patches  uint8 [N, S, S, 3]   chunks of CHUNK patches, Blosc-LZ4 (the fastest writes: benchmarks/README.md)
        crc      uint32 [N]           CRC-32 of each patch: checked on every read
        filled   bool  [N]            explicit: zarr skips chunks equal to the fill value
        coords   float64 [N, 2]       level-0 (x, y) of each patch

Only missing patches are read from the slide. Chunks are written before their checksums and the ``filled``
flags that cover them, and zarr's local store writes every chunk atomically, so an interrupted run leaves a
consistent cache that the next run completes. A patch counts as cached only when its checksum matches: a
chunk file deleted (zarr would return the fill value, black patches), damaged or swapped is read again from
the slide with a warning, never served. Damaged metadata rebuilds that slide's entry. A slide file whose
size, mtime or first bytes changed invalidates its group. A file lock serialises runs that share one slide
group; its mtime is the slide's last use, and after each run the least recently used slides are evicted
while the cache is over its bound (``--cache-max-gb``, 50 GB by default). A cache folder that cannot be
written is used read-only; ``--no-cache`` uses none.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import zlib
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, TextIO

import numpy as np

from .choices import CACHE_MAX_GB
from .errors import CacheError, one_line
from .slide import SlideIdentity

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: a CRC-32 per patch
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
    """The cached patches of one slide at one patch size and resolution.

    ``mode``: ``"rw"`` (the default), ``"r"`` (a read-only cache: what it holds is used, verified, and the
    patches it lacks are read from the slide and not kept) or ``"none"`` (``--no-cache``: nothing is stored,
    every patch comes from the slide). A cache folder that cannot be written is opened read-only.
    """

    def __init__(self, root: str | Path, slide_path: Path, identity: SlideIdentity, *, size: int, mpp: float,
                 mode: str = "rw") -> None:
        self.size, self.mpp = int(size), float(mpp)
        self.slide_dir = Path(root) / slide_group_name(slide_path)
        self.path = self.slide_dir / f"s{self.size}_mpp{self.mpp:g}"
        self.mode = mode
        self._lock_fh: TextIO | None = None
        self._patches: Any = None  # zarr arrays, once opened
        self._crc: Any = None
        self._filled: Any = None
        self._coords: Any = None
        self._stored = 0  # entries that exist in the store (the rest were appended in memory only)
        self.filled = np.zeros(0, dtype=bool)
        self.crc = np.zeros(0, dtype=np.uint32)
        self.coords = np.zeros((0, 2), dtype=np.float64)
        self._index: dict[tuple[float, float], int] = {}
        if mode == "none":
            return
        if mode == "rw":
            try:
                self.slide_dir.mkdir(parents=True, exist_ok=True)
                self._lock_fh = open(self.slide_dir.parent / f".{self.slide_dir.name}.lock", "w")
            except PermissionError:
                self.mode = "r"
            except OSError as exc:
                if exc.errno != errno.EROFS:
                    raise CacheError(f"patch cache {self.slide_dir}: cannot be created ({exc.strerror or exc}){_ADVICE}") from None
                self.mode = "r"
        if self.mode == "r":
            self._open_read_only(slide_path, identity)
            return
        assert self._lock_fh is not None  # opened above unless the mode is read-only
        fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
        os.utime(self._lock_fh.name)  # last use, for the least-recently-used eviction
        self._open_writable(slide_path, identity)

    # -------------------------------------------------------------------------------------------- opening

    def _open_writable(self, slide_path: Path, identity: SlideIdentity) -> None:
        import zarr

        ident = asdict(identity)
        try:
            top = zarr.open_group(str(self.slide_dir), mode="a")
            stored = top.attrs.get("identity")
        except Exception as exc:  # unreadable metadata: start afresh rather than fail forever
            log.warning("patch cache %s: its metadata is unreadable (%s); rebuilding it (its patches are read again)",
                        self.slide_dir, one_line(exc))
            stored, top = None, None
        if top is None or (stored is not None and stored != ident):
            if stored is not None:
                log.info("slide %s changed since it was cached; discarding its cached patches", slide_path)
            self._wipe(self.slide_dir)
            top = zarr.open_group(str(self.slide_dir), mode="a")
        if top.attrs.get("identity") != ident:
            top.attrs.update({"identity": ident, "slide": str(slide_path.resolve()), "format_version": FORMAT_VERSION})
        try:
            self._load(self._group(top))
        except Exception as exc:  # damaged arrays (a zarr.json, the filled or checksum chunks): rebuild them
            log.warning("patch cache %s: damaged (%s); rebuilding it (its patches are read again)", self.path,
                        one_line(exc))
            try:
                shutil.rmtree(self.path, ignore_errors=True)
                self._load(self._group(zarr.open_group(str(self.slide_dir), mode="a")))
            except Exception as again:
                raise CacheError(f"patch cache {self.path}: damaged and cannot be rebuilt ({one_line(again)}); delete "
                                 f"the folder {self.slide_dir}{_ADVICE}") from None

    def _open_read_only(self, slide_path: Path, identity: SlideIdentity) -> None:
        import zarr

        try:
            top = zarr.open_group(str(self.slide_dir), mode="r")
            if top.attrs.get("identity") != asdict(identity):
                raise ValueError("it holds another version of the slide")
            self._load(zarr.open_group(str(self.path), mode="r"))
        except Exception as exc:
            log.warning("patch cache %s is read-only and not usable for slide %s (%s): every patch is read from the "
                        "slide", self.slide_dir, slide_path, one_line(exc))
            self.mode = "none"
            return
        log.info("patch cache %s is read-only: cached patches are used, missing ones read and not kept", self.path)

    def _group(self, top):
        from zarr.codecs import BloscCodec

        name = self.path.name
        g = top[name] if name in top else None
        if g is not None and (g.attrs.get("format_version") != FORMAT_VERSION
                              or not all(k in g for k in ("patches", "filled", "coords", "crc"))):
            del top[name]  # an older layout (no checksums): its patches cannot be verified, so they are read again
            g = None
        if g is None:
            g = top.create_group(name, attributes={"patch_size": self.size, "mpp": self.mpp, "format_version": FORMAT_VERSION})
            s = self.size
            g.create_array("patches", shape=(0, s, s, 3), chunks=(CHUNK, s, s, 3), dtype="uint8", fill_value=0,
                           compressors=BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"))
            g.create_array("crc", shape=(0,), chunks=(_INDEX_CHUNK,), dtype="uint32", fill_value=0)
            g.create_array("filled", shape=(0,), chunks=(_INDEX_CHUNK,), dtype="bool", fill_value=False)
            g.create_array("coords", shape=(0, 2), chunks=(_INDEX_CHUNK, 2), dtype="float64", fill_value=0.0)
        return g

    def _load(self, g) -> None:
        # Patch chunks are never skipped as "empty": zarr's check compares every chunk with the fill value,
        # which costs more than the compression itself (benchmarks/README.md, cache writes).
        self._patches = g["patches"].with_config({"write_empty_chunks": True})
        self._crc, self._filled, self._coords = g["crc"], g["filled"], g["coords"]
        filled = np.asarray(self._filled[:]).astype(bool)
        crc = np.asarray(self._crc[:], dtype=np.uint32)
        coords = np.asarray(self._coords[:], dtype=np.float64).reshape(-1, 2)
        n = min(len(filled), len(crc), len(coords), self._patches.shape[0])
        self.filled, self.crc, self.coords = filled[:n], crc[:n], coords[:n]
        self._stored = n
        self._index = {_key(x, y): i for i, (x, y) in enumerate(self.coords)}

    @staticmethod
    def _wipe(folder: Path) -> None:
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    # ---------------------------------------------------------------------------------------------- access

    @property
    def keeps(self) -> bool:
        """Are patches written here kept for later runs?"""
        return self.mode == "rw"

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
            added = np.asarray(new, dtype=np.float64)
            if self.keeps:
                s = self.size
                with self._writing("adding entries"):
                    self._patches.resize((n1, s, s, 3))
                    self._crc.resize((n1,))
                    self._coords.resize((n1, 2))
                    self._filled.resize((n1,))
                    self._coords[n0:n1] = added
                self._stored = n1
            self.coords = np.concatenate([self.coords, added])
            self.filled = np.concatenate([self.filled, np.zeros(len(new), dtype=bool)])
            self.crc = np.concatenate([self.crc, np.zeros(len(new), dtype=np.uint32)])
        return idx

    def write(self, start: int, patches: np.ndarray) -> None:
        """Store patches for the contiguous index range starting at ``start``: the chunk, its checksums, then
        the filled flags (nothing is kept by a read-only cache or without a cache)."""
        if not self.keeps:
            return
        stop = start + len(patches)
        crc = checksums(patches)
        with self._writing("writing patches"):
            self._patches[start:stop] = patches
            self._crc[start:stop] = crc
            self._filled[start:stop] = True
        self.crc[start:stop] = crc
        self.filled[start:stop] = True

    def read(self, start: int, stop: int) -> np.ndarray | None:
        """Cached patches ``[start, stop)``, None when a chunk cannot be decoded. A patch whose checksum does
        not match (a missing, damaged or swapped chunk file) is marked unfilled: it is read again, never served."""
        stop_stored = min(stop, self._stored)
        out = np.zeros((stop - start, self.size, self.size, 3), dtype=np.uint8)
        if self._patches is None or stop_stored <= start:
            return out
        try:
            out[: stop_stored - start] = np.asarray(self._patches[start:stop_stored])
        except Exception as exc:
            log.warning("patch cache %s: patches %d-%d unreadable (%s); re-reading them from the slide", self.path,
                        start, stop, one_line(exc))
            self.filled[start:stop] = False
            return None
        held = np.flatnonzero(self.filled[start:stop_stored])
        bad = held[checksums(out[held]) != self.crc[start + held]]
        if bad.size:
            log.warning("patch cache %s: %d cached patch(es) of %d-%d fail their checksum (a chunk file missing, "
                        "damaged or replaced); re-reading them from the slide", self.path, bad.size, start, stop)
            self.filled[start + bad] = False
        return out

    def missing_bytes(self, n_missing: int) -> int:
        """About how many bytes ``n_missing`` more patches take in this cache (from its own chunks when it has
        some, else 80 % of the raw size)."""
        raw = self.size * self.size * 3
        per = 0.8 * raw
        try:
            files = [f for f in (self.path / "patches").rglob("*") if f.is_file()]
            held = int(self.filled.sum())
            if files and held >= CHUNK:
                per = sum(f.stat().st_size for f in files) / max(held, 1)
        except OSError:
            pass
        return int(per * n_missing)

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise CacheError(f"patch cache {self.path}: the disk is full ({what}); free space, pass --cache DIR "
                                 f"on another disk, lower --cache-max-gb or run with --no-cache") from None
            raise CacheError(f"patch cache {self.path}: cannot be written ({exc.strerror or one_line(exc)}){_ADVICE}") from None

    def close(self) -> None:
        fh = self._lock_fh
        if fh is not None:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            self._lock_fh = None

    def __enter__(self) -> PatchCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ADVICE = "; pass --cache DIR elsewhere or --no-cache"
DEFAULT_MAX_GB = CACHE_MAX_GB


def checksums(patches: np.ndarray) -> np.ndarray:
    """CRC-32 of each patch's bytes."""
    arr = np.ascontiguousarray(patches)
    return np.fromiter((zlib.crc32(p.data) for p in arr), dtype=np.uint32, count=len(arr))


@contextmanager
def open_cache(root: str | Path | None, slide_path: Path, identity: SlideIdentity, *, size: int, mpp: float,
               enabled: bool = True, max_gb: float | None = DEFAULT_MAX_GB) -> Iterator[PatchCache]:
    """The slide's cache under ``root`` (default: the user cache); ``enabled=False``: no cache at all. After
    the run, slides least recently used are evicted until the cache holds at most ``max_gb`` (None or 0: no
    bound)."""
    base = Path(root) if root is not None else default_cache_dir()
    cache = PatchCache(base, slide_path, identity, size=size, mpp=mpp, mode="rw" if enabled else "none")
    try:
        yield cache
    finally:
        cache.close()
    if cache.keeps and max_gb:
        evict(base, int(max_gb * 1e9), keep=cache.slide_dir)


def _size(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


def evict(root: Path, max_bytes: int, *, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used slides' caches under ``root`` until it holds at most ``max_bytes``; a
    slide in use (its lock held) and ``keep`` stay. Returns the folders deleted."""
    try:
        slides = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return []
    sizes = {d: _size(d) for d in slides}
    total = sum(sizes.values())
    if total <= max_bytes:
        return []

    def last_used(d: Path) -> float:
        try:
            return (root / f".{d.name}.lock").stat().st_mtime
        except OSError:
            return 0.0

    removed = []
    for d in sorted(slides, key=last_used):
        if total <= max_bytes:
            break
        if keep is not None and d.resolve() == keep.resolve():
            continue
        try:
            with open(root / f".{d.name}.lock", "w") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use by another run: leave it
                shutil.rmtree(d, ignore_errors=True)
                fcntl.flock(fh, fcntl.LOCK_UN)
        except OSError:
            continue
        total -= sizes[d]
        removed.append(d)
        log.info("patch cache %s: evicted %s (%.1f MB, least recently used) to stay within %.1f GB", root, d.name,
                 sizes[d] / 1e6, max_bytes / 1e9)
    return removed


def read_cached(group_path: str | Path, identity: SlideIdentity, xy: np.ndarray) -> dict[int, np.ndarray]:
    """Read-only lookup of the patches of level-0 points in the cache group at ``group_path``.

    Returns ``{i: uint8 [S, S, 3]}`` for the points ``xy[i]`` whose patch is cached, filled and matches its
    checksum; nothing when
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
        g: Any = zarr.open_group(str(path), mode="r")  # its members are arrays
        filled = np.asarray(g["filled"][:]).astype(bool)
        coords = np.asarray(g["coords"][:], dtype=np.float64).reshape(-1, 2)
        index = {_key(x, y): i for i, (x, y) in enumerate(coords[: len(filled)]) if filled[i]}  # as PatchCache.locate
        where = {i: index[k] for i, (x, y) in enumerate(xy) if (k := _key(x, y)) in index}
        if not where:
            return {}
        wanted = np.unique(np.fromiter(where.values(), dtype=np.int64))
        block = np.asarray(g["patches"].get_orthogonal_selection((wanted,)))
        good = checksums(block) == np.asarray(g["crc"].get_orthogonal_selection((wanted,)), dtype=np.uint32)
        if not good.all():
            log.warning("patch cache %s: %d patch(es) fail their checksum; they come from the slide", path, int((~good).sum()))
        at = {i: int(np.searchsorted(wanted, j)) for i, j in where.items()}
        return {i: block[at[i]] for i in where if good[at[i]]}
    except Exception as exc:  # a missing or damaged cache: the caller reads the patches from the slide
        log.info("patch cache %s: not readable (%s); patches come from the slide", path, exc)
        return {}


def _key(x: float, y: float) -> tuple[float, float]:
    return (round(float(x), 6) + 0.0, round(float(y), 6) + 0.0)  # + 0.0: -0.0 and 0.0 are one key
