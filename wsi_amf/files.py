"""Files: reading a user's input file (text, JSON) with one-line errors that name the file and the problem,
naming JSON values in such messages, and writing every output atomically.

``what`` names the kind of file in messages ("ROI file", ...); ``error`` is the error type to raise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError, WsiAmfError, one_line

log = logging.getLogger(__name__)


def read_text(path: Path, *, what: str, error: type[WsiAmfError]) -> str:
    """The file's text (UTF-8, a BOM dropped); ``error`` if it is missing, a folder, unreadable, not text or empty."""
    return decode_text(read_bytes(path, what=what, error=error), where=f"{what} {path}", error=error)


#: The path that means standard input where a reader accepts it (``--points -``).
STDIN = Path("-")


def is_stream(path: Path) -> bool:
    """Whether ``path`` can be read only once: standard input (``-``), a pipe or FIFO (process substitution's
    ``/dev/fd/N`` too) or a character device. False for regular files, folders and paths that do not exist."""
    if path == STDIN:
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def read_bytes(path: Path, *, what: str, error: type[WsiAmfError], size: int = -1, stdin: bool = False) -> bytes:
    """The file's first ``size`` bytes (all by default); ``error`` if it is missing, a folder or unreadable.
    With ``stdin``, the path ``-`` is standard input, read to its end whatever ``size`` (it can be read once)."""
    if stdin and path == STDIN:
        data = _read_stdin(what=what, error=error)
        return data if size < 0 else data[:size]
    try:
        if path.is_dir():
            raise error(f"{what} {path} is a directory, not a file")
        with path.open("rb") as fh:
            return fh.read(size)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except PermissionError:
        raise error(f"{what} {path} cannot be read (permission denied)") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {path} cannot be read ({_reason(exc)})") from None


def _read_stdin(*, what: str, error: type[WsiAmfError]) -> bytes:
    where = f"{what} - (standard input)"
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise error(f"{where} cannot be read: standard input is closed")
    try:
        if stream.isatty():
            raise error(f"{where} is a terminal; pipe or redirect the file into it (... - < FILE)")
        return bytes(stream.read())
    except (OSError, ValueError) as exc:
        raise error(f"{where} cannot be read ({_reason(exc)})") from None


def _reason(exc: OSError | ValueError) -> str:
    return getattr(exc, "strerror", None) or one_line(exc)


def decode_text(data: bytes, *, where: str, error: type[WsiAmfError], hint: str = "") -> str:
    """UTF-8 text (a BOM dropped); ``error`` naming ``where`` if it is not UTF-8 (+ ``hint``) or only white space."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}){hint}") from None
    if not text.strip():
        raise error(f"{where} is empty")
    return text


def load_json(text: str, *, where: str, error: type[WsiAmfError]) -> Any:
    """``text`` parsed as JSON (NaN / Infinity tokens are let through: callers check numbers); ``error`` naming
    ``where`` (the file, or the file and the member of an archive) and the line and column otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{where}: not valid JSON ({one_line(exc)})") from None


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def json_float(value: Any) -> float:
    """A JSON number as a float (an integer too large for a float becomes infinite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def json_xy(value: Any) -> tuple[float, float] | None:
    """The x and y of a JSON position ``[x, y, ...]`` (possibly infinite); None when it is not one."""
    if not isinstance(value, list) or len(value) < 2 or not all(is_number(c) for c in value[:2]):
        return None
    return json_float(value[0]), json_float(value[1])


def json_snippet(value: Any, limit: int = 40) -> str:
    """A JSON value for a message, on one line and at most ``limit`` characters."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """What a JSON value is, for a message: "null", "a boolean", "a number", "a string", "a list", "an object"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_number(value):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "a list"}
    return names.get(type(value), "an object")


def geojson_features(data: Any, *, where: str, error: type[WsiAmfError], expected: str) -> list[Any]:
    """The objects of a GeoJSON document: a FeatureCollection's features, a list as it is, anything else
    (a Feature, a bare geometry) as a list of one; ``error`` naming ``where`` for other top levels."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise error(f"{where}: the top level is {json_type(data)}; {expected}")
    kind = data.get("type")
    if not isinstance(kind, (str, type(None))):
        raise error(f"{where}: the top level's 'type' is {json_type(kind)}, expected a string")
    if kind == "FeatureCollection" or (kind is None and "features" in data):
        features = data.get("features")
        if not isinstance(features, list):
            raise error(f"{where}: 'features' is {json_type(features)}, expected a list")
        return features
    return [data]


# Writing. Every file wsi-amf writes goes through these: a temporary file beside the destination, flushed and
# synced, renamed over it only when it is whole; removed on failure; an OSError becomes one OutputError line.


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    dest = Path(path)
    _make_parent(dest)
    with temp_file(dest, mode, **kwargs) as (fh, tmp):
        yield fh
    _replace(tmp, dest)


def atomic_write_text(path: str | Path, text: str) -> None:
    """``text`` written to ``path`` (UTF-8, newlines as given) atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` written to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that takes a file name (safetensors' ``save_file``): synced,
    given the usual permissions and renamed over ``path`` if the block succeeds, removed otherwise."""
    dest = Path(path)
    _make_parent(dest)
    with temp_file(dest, "r+b") as (_, tmp):
        yield Path(tmp)
        with open(tmp, "rb") as written:  # the writer may have replaced the file: sync and open up what is there now
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    _replace(tmp, dest)


@contextmanager
def temp_file(dest: Path, mode: str, **kwargs: Any) -> Iterator[tuple[Any, str]]:
    """``(file, its path)``: a temporary file beside ``dest``, flushed and synced when the block ends, removed
    when it fails (an OSError becomes a one-line OutputError naming ``dest``)."""
    try:
        fd, tmp = _temp_beside(dest)
    except OSError as exc:
        raise write_error(dest, exc) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh, tmp
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(dest, exc) from None
        raise


def _make_parent(dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(dest, exc) from None


def _replace(tmp: str, dest: Path) -> None:
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise write_error(dest, exc) from None


def _temp_beside(dest: Path) -> tuple[int, str]:
    """A new temporary file beside ``dest``, named ``.<name>.<pid>.<random>.tmp`` (``remove_leftovers`` knows
    it), with the usual permissions (mkstemp makes 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(dest: Path, exc: OSError) -> OutputError:
    """The one-line error for a file that cannot be written."""
    if exc.errno == errno.ENOSPC:
        return OutputError(f"output {dest}: the disk is full; free space or choose another --out")
    return OutputError(f"output {dest}: cannot be written ({exc.strerror or exc})")


_LEFTOVER = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files that runs killed half way left in ``folder`` (those of live processes stay)."""
    removed = []
    for path in folder.glob(".*.tmp"):
        m = _LEFTOVER.match(path.name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    if removed:
        log.info("%s: removed %d temporary file(s) left by an interrupted run", folder, len(removed))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
