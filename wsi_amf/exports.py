"""Exports besides the screening outputs, so that results feed other tools back (``--export NAME``).

- ``gc-json``: grand-challenge "Multiple points" JSON, ``<stem>.gc.json``: one point per classified candidate,
  ``point`` = ``[x_mm, y_mm, 0]`` with mm = level-0 px * mpp / 1000 (the slide's resolution), ``probability`` =
  the calibrated P(atypical), ``name`` = ``atypical mitotic figure`` when the candidate is called atypical
  (its ensemble score >= the threshold), else ``normal mitotic figure`` (keep both; filter on ``probability``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .errors import OptionError

if TYPE_CHECKING:
    from .screen import ScreenResult

GC_ATYPICAL = "atypical mitotic figure"
GC_NORMAL = "normal mitotic figure"


def gc_json_text(result: ScreenResult) -> str:
    """The classified candidates as a grand-challenge "Multiple points" document (millimetres)."""
    mm_per_px = result.slide_mpp / 1000.0
    points = []
    p_cal, atypical = result.p_calibrated, result.atypical
    for i in np.flatnonzero(result.classified):
        x, y = (float(v) * mm_per_px for v in result.points.xy[i])
        points.append({
            "name": GC_ATYPICAL if atypical[i] else GC_NORMAL,
            "point": [x, y, 0],
            "probability": float(p_cal[i]),
        })
    doc = {"name": "Points of interest", "type": "Multiple points", "points": points, "version": {"major": 1, "minor": 0}}
    return json.dumps(doc, allow_nan=False) + "\n"


#: export name -> (file name suffix after the slide's stem, renderer)
EXPORTS: dict[str, tuple[str, Callable[[ScreenResult], str]]] = {
    "gc-json": (".gc.json", gc_json_text),
}


def check_exports(names: Iterable[str]) -> tuple[str, ...]:
    """The export names, validated (OptionError for an unknown one), duplicates dropped."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in EXPORTS:
            raise OptionError(f"--export {name!r}: expected one of {', '.join(EXPORTS)}")
    return names


def export_files(result: ScreenResult, out: Path, names: Iterable[str]) -> dict[str, tuple[Path, str]]:
    """Export name -> (destination path in ``out``, rendered text)."""
    files = {}
    for name in check_exports(names):
        suffix, render = EXPORTS[name]
        files[name] = (out / f"{result.stem}{suffix}", render(result))
    return files
