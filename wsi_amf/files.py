"""Reading a user's input file (text, JSON) with one-line errors that name the file and the problem, and
naming JSON values in such messages.

``what`` names the kind of file in messages ("ROI file", ...); ``error`` is the error type to raise.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .errors import WsiAmfError, one_line


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
    return {str: "a string", list: "a list"}.get(type(value), "an object")


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
