"""grand-challenge "Multiple points" JSON, the output of MIDOG track 1 detectors:
`{"type": "Multiple points", "points": [{"name": "mitotic figure", "point": [x_mm, y_mm, 0], "probability": 0.93}]}`.

Coordinates are millimetres from the top-left: pixel = mm * 1000 / (slide um per pixel), so reading needs the
slide's resolution. `probability` is the detector score. A point named `non-mitotic figure` (the detector put
it below its own threshold) is kept and flagged in the column `below_detector_threshold`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from wsi_amf.errors import PointsError

from .json_values import list_of, object_of, optional_score, position, text_field
from .model import SlideContext, Table, logger, quote, quoted_list

#: The file's `type` (the misspelling is found in the wild).
TYPES = ("Multiple points", "Mulitple points")
SCORE_KEY = "probability"
FLAG_COLUMN = "below_detector_threshold"
#: With no slide size known, a coordinate beyond this many millimetres (a glass slide is 75 x 25 mm) is pixels.
MAX_SLIDE_MM = 80.0
_NON_MITOTIC = re.compile(r"non[\s_-]*mitotic[\s_-]*figure", re.IGNORECASE)


def is_gc_json(data: Any) -> bool:
    """Whether parsed JSON looks like a grand-challenge points file."""
    return isinstance(data, dict) and data.get("type") in TYPES


def read_table(path: Path, data: Any, *, slide: SlideContext | None, score_col: str | None) -> Table:
    """The points of a parsed "Multiple points" file, converted to level-0 pixels of `slide`."""
    where = f"points file {path}"
    if slide is None or slide.mpp is None:
        raise PointsError(
            f"{where} is a grand-challenge 'Multiple points' file (millimetres): converting it to pixels needs "
            "the slide's resolution (screen it with its slide, or pass slide=SlideContext(name, mpp=...))"
        )
    top = object_of(where, "the top level", data)
    kind = top.get("type")
    if kind is not None and kind not in TYPES:
        raise PointsError(f"{where}: the top level has type {quote(str(kind))}, expected 'Multiple points'")
    entries = list_of(where, "'points'", top.get("points"))
    score_key = SCORE_KEY if score_col is None else score_col

    mm: list[tuple[float, float]] = []
    names: list[str] = []
    scores: list[float] = []
    has_score = False
    for number, entry in enumerate(entries, start=1):
        at = f"{where} point {number}"
        entry = object_of(at, "the entry", entry)
        if "point" not in entry:
            raise PointsError(f"{at} has no 'point' (keys: {quoted_list(entry, limit=8)})")
        mm.append(position(at, entry["point"]))
        names.append(text_field(at, "'name'", entry.get("name")))
        has_score |= score_key in entry
        scores.append(optional_score(at, quote(score_key), entry.get(score_key)))
    if score_col is not None and entries and not has_score:
        raise PointsError(f"{where}: no point has a {quote(score_col)} value")

    xy_mm = np.array(mm, dtype=np.float64).reshape(-1, 2)
    _check_millimetres(where, xy_mm, slide)
    flagged = [bool(_NON_MITOTIC.fullmatch(name.strip())) for name in names]
    if any(flagged):
        logger.warning(
            "points file %s: %d of %d points are named 'non-mitotic figure' (below the detector's threshold): "
            "kept and flagged in '%s'; --class 'mitotic figure' or --min-score leaves them out",
            path, sum(flagged), len(names), FLAG_COLUMN,
        )
    columns = {"class": names, FLAG_COLUMN: ["yes" if f else "no" for f in flagged]}
    return Table.of(path, xy_mm * (1000.0 / slide.mpp), columns=columns, class_column="class",
                    score=scores if has_score else None, score_name=score_key)


def _check_millimetres(where: str, xy_mm: np.ndarray, slide: SlideContext) -> None:
    """PointsError if a coordinate lies far beyond the slide: the file then holds pixels, not millimetres."""
    if slide.dimensions is not None and slide.mpp is not None:
        size_mm = np.array(slide.dimensions, dtype=np.float64) * slide.mpp / 1000.0
        limit = 2.0 * size_mm
        extent = f"the slide ({size_mm[0]:.2f} x {size_mm[1]:.2f} mm)"
    else:
        limit = np.array([MAX_SLIDE_MM, MAX_SLIDE_MM])
        extent = f"any glass slide ({MAX_SLIDE_MM:g} mm)"
    beyond = np.flatnonzero((xy_mm > limit).any(axis=1))
    if len(beyond):
        i = int(beyond[0])
        raise PointsError(
            f"{where} point {i + 1}: ({xy_mm[i, 0]:g}, {xy_mm[i, 1]:g}) lies far beyond {extent}; grand-challenge "
            f"'Multiple points' coordinates are millimetres and these look like pixels (save pixel positions as "
            f"CSV x,y instead)"
        )

