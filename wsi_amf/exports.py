"""Exports besides the screening outputs, so that results feed other tools back (``--export NAME``).

- ``gc-json``: grand-challenge "Multiple points" JSON, ``<stem>.gc.json``: one point per classified candidate,
  ``point`` = ``[x_mm, y_mm, 0]`` with mm = level-0 px * mpp / 1000 (the slide's resolution), ``probability`` =
  the calibrated P(atypical), ``name`` = ``atypical mitotic figure`` when the candidate is called atypical
  (its ensemble score >= the threshold), else ``normal mitotic figure`` (keep both; filter on ``probability``).
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Iterator

import numpy as np

from .choices import EXPORT_SUFFIXES
from .errors import OptionError
from .results import ScreenResult

GC_ATYPICAL = "atypical mitotic figure"
GC_NORMAL = "normal mitotic figure"
#: Rows (features, points) rendered per chunk: renderers yield their text a chunk at a time, so that writing
#: an output holds one chunk in memory, not the whole file.
CHUNK_ROWS = 2000


def row_chunks(indices: np.ndarray) -> Iterator[tuple[int, list[int]]]:
    """``(position of the chunk's first, its indices)`` per chunk of ``CHUNK_ROWS`` of ``indices``."""
    for start in range(0, len(indices), CHUNK_ROWS):
        yield start, indices[start : start + CHUNK_ROWS].tolist()


def gc_json_chunks(result: ScreenResult) -> Iterator[str]:
    """The classified candidates as a grand-challenge "Multiple points" document (millimetres), chunk by chunk."""
    mm_per_px = result.slide_mpp / 1000.0
    p_cal, atypical = result.p_calibrated, result.atypical
    yield '{"name": "Points of interest", "type": "Multiple points", "points": ['
    for start, rows in row_chunks(np.flatnonzero(result.classified)):
        points = []
        for i in rows:
            x, y = (float(v) * mm_per_px for v in result.points.xy[i])
            points.append(json.dumps({"name": GC_ATYPICAL if atypical[i] else GC_NORMAL, "point": [x, y, 0],
                                      "probability": float(p_cal[i])}, allow_nan=False))
        yield (", " if start else "") + ", ".join(points)
    yield '], "version": {"major": 1, "minor": 0}}\n'


def gc_json_text(result: ScreenResult) -> str:
    """The whole grand-challenge document (``gc_json_chunks`` joined)."""
    return "".join(gc_json_chunks(result))


#: export name -> (file name suffix after the slide's stem, renderer yielding the text chunk by chunk)
EXPORTS: dict[str, tuple[str, Callable[[ScreenResult], Iterable[str]]]] = {
    "gc-json": (EXPORT_SUFFIXES["gc-json"], gc_json_chunks),
}


def check_exports(names: Iterable[str]) -> tuple[str, ...]:
    """The export names, validated (OptionError for an unknown one), duplicates dropped."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in EXPORTS:
            raise OptionError(f"--export {name!r}: expected one of {', '.join(EXPORTS)}")
    return names

