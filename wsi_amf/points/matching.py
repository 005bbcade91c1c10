"""Finding the slide's entry in a file that holds the points of many slides (a SlideRunner / EXACT
database, a MIDOG++ JSON): by the slide's file name, or by the name (or number) given as `db_slide`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import TypeVar

from wsi_amf.errors import PointsError

from .model import SlideContext, logger, quote, quoted_list

K = TypeVar("K", bound=Hashable)


def choose_slide(
    path: PurePath, entries: Sequence[tuple[K, str]], *, slide: SlideContext | None, db_slide: str | None
) -> tuple[K, str]:
    """The `(key, file name)` of the entry that names the slide.

    `entries` are `(key, file name)` pairs. The wanted name is `db_slide` if given, else the slide's file
    name; it matches an entry's file name exactly, else ignoring case, else by its base name (an entry may
    hold a directory), else by its stem (`001.svs` finds `001.tiff`), else (`db_slide` only) by the key.
    Without either, a file holding a single slide gives that one.
    """
    if db_slide is None and slide is None:
        if len(entries) == 1:
            return entries[0]
        raise PointsError(
            f"points file {path} holds the points of {len(entries)} slides "
            f"({quoted_list((name for _, name in entries), limit=8)}); name one with --db-slide (Python: db_slide=)"
        )
    wanted = db_slide if db_slide is not None else slide.name  # type: ignore[union-attr]
    for level, test in enumerate(_TESTS):
        found = [(key, name) for key, name in entries if test(name, wanted)]
        if len(found) > 1:
            raise PointsError(
                f"points file {path}: {len(found)} slides match {quote(wanted)} "
                f"({quoted_list(name for _, name in found)}); name one with --db-slide"
            )
        if found:
            if level:
                logger.info("points file %s: slide %r taken for %r", path, found[0][1], wanted)
            return found[0]
    if db_slide is not None:
        by_key = [(key, name) for key, name in entries if str(key) == db_slide.strip()]
        if len(by_key) == 1:
            return by_key[0]
    advice = "check --db-slide" if db_slide is not None else "name the slide's entry with --db-slide"
    raise PointsError(
        f"points file {path} has no slide named {quote(wanted)} "
        f"(slides: {quoted_list((name for _, name in entries), limit=8)}); {advice}"
    )


def _base(name: str) -> str:
    return PureWindowsPath(name).name if "\\" in name else PurePosixPath(name).name


def _stem(name: str) -> str:
    return PurePosixPath(_base(name)).stem.lower()


_TESTS = (
    lambda name, wanted: name == wanted,
    lambda name, wanted: name.lower() == wanted.lower(),
    lambda name, wanted: _base(name).lower() == _base(wanted).lower(),
    lambda name, wanted: bool(_stem(wanted)) and _stem(name) == _stem(wanted),
)
