"""Getting at a points file's content: file checks, SQLite recognition, gzip and zip unwrapping, UTF-8 text.

`load(path)` gives a `Content`: either an SQLite database (read in place by `sliderunner`) or one or more
texts. A `.gz` file is decompressed (its inner name, `det.geojson` for `det.geojson.gz`, then tells the
format); a `.zip` archive gives the text of each of its `.geojson` / `.json` members, as QuPath reads it.
What can be read only once (`-`, standard input; a pipe, process substitution's `/dev/fd/N`; a FIFO) is read
once, into memory (`-` and `/dev/fd/N` have no extension: their content tells the format).
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wsi_amf.errors import PointsError
from wsi_amf.files import decode_text, is_stream, read_bytes

from .model import one_line, quote

SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"
#: Decompressed text larger than this is refused (a points file is far smaller; guards against zip bombs).
MAX_DECOMPRESSED = 1 << 30


@dataclass(frozen=True)
class Content:
    """A points file's content: `sqlite` (read it from the path), else `texts` as `(where, text)` pairs, where
    `where` names the file (or the zip member) in messages; `name` is the name that tells the format."""

    name: str
    sqlite: bool = False
    texts: tuple[tuple[str, str], ...] = ()
    archive: bool = False


def load(path: Path) -> Content:
    """The content of `path`; PointsError if it is missing, unreadable, not UTF-8 text or empty.

    `-` (standard input), a pipe or a FIFO is read once, into memory; an SQLite database cannot come that way.
    """
    where = f"points file {path}"
    stream = is_stream(path)
    if not stream and _read_bytes(path, len(SQLITE_MAGIC)) == SQLITE_MAGIC:
        return Content(name=path.name, sqlite=True)  # read in place: no need to load a large database
    data = _read_bytes(path)
    if stream and data.startswith(SQLITE_MAGIC):
        raise PointsError(f"{where} is an SQLite database coming through a pipe, which SQLite cannot read; "
                          "save it to a file and pass that file")
    name = path.name
    if data.startswith(_GZIP_MAGIC):
        data = _gunzip(path, data)
        name = name[:-3] if name.lower().endswith(".gz") else name
        if data.startswith(SQLITE_MAGIC):
            raise PointsError(f"{where} is a compressed SQLite database; decompress it first")
    elif data.startswith((_ZIP_MAGIC, _EMPTY_ZIP)):
        return Content(name=name, texts=_zip_members(path, data), archive=True)
    return Content(name=name, texts=((where, decode(where, data)),))


def decode(where: str, data: bytes) -> str:
    """UTF-8 text (a BOM dropped); PointsError if it is not UTF-8 or holds nothing but white space."""
    return decode_text(data, where=where, error=PointsError, hint="; save it as UTF-8")


def _read_bytes(path: Path, size: int = -1) -> bytes:
    """The file's first `size` bytes (all of them by default); `-` is standard input."""
    return read_bytes(path, what="points file", error=PointsError, size=size, stdin=True)


def _gunzip(path: Path, data: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            out = fh.read(MAX_DECOMPRESSED + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise PointsError(f"points file {path}: not a valid gzip file ({one_line(str(err))})") from None
    if len(out) > MAX_DECOMPRESSED:
        raise PointsError(f"points file {path}: decompresses to more than {MAX_DECOMPRESSED >> 20} MiB")
    return out


def _zip_members(path: Path, data: bytes) -> tuple[tuple[str, str], ...]:
    """The texts of the archive's GeoJSON members (`.geojson` / `.json`, in name order)."""
    texts: list[tuple[str, str]] = []
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = sorted(archive.infolist(), key=lambda info: info.filename)
            # (a damaged central directory can hold an empty name, on which ZipInfo.is_dir raises)
            members = [info for info in infos if not info.filename.endswith("/") and _is_geojson_member(info.filename)]
            if not members:
                raise PointsError(
                    f"points file {path}: the zip archive holds no .geojson or .json file "
                    f"(files: {', '.join(quote(i.filename) for i in infos[:10]) or 'none'})"
                )
            for info in members:
                where = f"points file {path} member {quote(info.filename)}"
                with archive.open(info) as fh:
                    content = fh.read(MAX_DECOMPRESSED + 1 - total)
                total += len(content)
                if total > MAX_DECOMPRESSED:
                    raise PointsError(f"points file {path}: decompresses to more than {MAX_DECOMPRESSED >> 20} MiB")
                texts.append((where, decode(where, content)))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, OSError,
            ValueError, zlib.error) as err:
        raise PointsError(f"points file {path}: cannot read the zip archive ({one_line(str(err))})") from None
    return tuple(texts)


def _is_geojson_member(name: str) -> bool:
    member = PurePosixPath(name)
    hidden = member.name.startswith(".") or "__MACOSX" in member.parts
    return not hidden and member.suffix.lower() in (".geojson", ".json")
