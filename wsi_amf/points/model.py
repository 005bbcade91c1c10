"""What the points readers share: the `Points` result, the `Table` each format reader returns,
the column names shared across formats, and helpers for duplicates, warnings and messages."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# One logger for the whole package, named after the package, so that logging configuration (and caplog
# in the tests) that names "wsi_amf.points" sees every message of every format.
logger = logging.getLogger("wsi_amf.points")

#: Score column (CSV) or measurement (GeoJSON) names recognised (case-insensitive), in order of preference.
SCORE_COLUMNS: tuple[str, ...] = ("score", "probability", "prob", "confidence", "detection_score", "p")
#: CSV columns that `class_name` filters on, in order of preference (case-insensitive).
CLASS_COLUMNS: tuple[str, ...] = ("class", "classification", "label")


@dataclass(frozen=True)
class SlideContext:
    """The slide a points file belongs to, for formats that need it (millimetre coordinates, databases
    holding many slides): its file name, resolution in um/px and level-0 size in pixels, when known."""

    name: str
    mpp: float | None = None
    dimensions: tuple[int, int] | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Points:
    """Points read from one file, in file order (after filtering and merging duplicates).

    `score` is None when the file has no score; a NaN entry means the file gives no score for that point.
    `columns` holds, as strings, one entry per point: every other column (CSV); the Feature's `id`,
    `classification`, and `name` / `object_type` when present (GeoJSON); `class` and
    `below_detector_threshold` (gc-json); `class`, `annotation_uid`, `guid` (SlideRunner); `class`,
    `annotation_id` (MIDOG++).
    Arrays are copied on construction and read-only.
    """

    source: Path
    xy: np.ndarray
    score: np.ndarray | None = None
    columns: dict[str, list[str]] = field(default_factory=dict)
    score_name: str | None = None
    n_duplicates: int = 0
    n_filtered: int = 0

    def __post_init__(self) -> None:
        xy = np.array(self.xy, dtype=np.float64)
        if xy.size == 0:
            xy = xy.reshape(0, 2)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"Points.xy must have shape [N, 2], not {list(xy.shape)}")
        xy.flags.writeable = False
        object.__setattr__(self, "xy", xy)
        n = len(xy)
        if self.score is not None:
            score = np.array(self.score, dtype=np.float64).reshape(-1)
            if len(score) != n:
                raise ValueError(f"Points.score has {len(score)} entries for {n} points")
            score.flags.writeable = False
            object.__setattr__(self, "score", score)
        for name, values in self.columns.items():
            if len(values) != n:
                raise ValueError(f"Points column {name!r} has {len(values)} entries for {n} points")

    def __len__(self) -> int:
        return len(self.xy)

    def __repr__(self) -> str:
        return (
            f"Points(source={str(self.source)!r}, n={len(self)}, score_name={self.score_name!r}, "
            f"columns={list(self.columns)}, n_duplicates={self.n_duplicates}, n_filtered={self.n_filtered})"
        )

    def subset(self, mask_or_indices: Sequence[int] | Sequence[bool] | np.ndarray) -> Points:
        """The selected rows (a boolean mask of length N, or integer indices), other fields unchanged."""
        selector = np.asarray(mask_or_indices)
        if selector.dtype == np.bool_:
            if selector.shape != (len(self),):
                raise ValueError(f"mask has shape {list(selector.shape)}, expected [{len(self)}]")
            indices = np.flatnonzero(selector)
        elif selector.size == 0:
            indices = np.zeros(0, dtype=np.intp)
        elif np.issubdtype(selector.dtype, np.integer):
            indices = selector.reshape(-1)
        else:
            raise TypeError(f"subset takes a boolean mask or integer indices, not {selector.dtype} values")
        return Points(
            source=self.source,
            xy=self.xy[indices],
            score=None if self.score is None else self.score[indices],
            columns={name: [values[i] for i in indices] for name, values in self.columns.items()},
            score_name=self.score_name,
            n_duplicates=self.n_duplicates,
            n_filtered=self.n_filtered,
        )


@dataclass(frozen=True)
class Table:
    """What a format reader found, before filtering and merging duplicates.

    `columns` holds the carried-through columns, one string per point; `class_column` names the one
    that `class_name` filters on (None if the file has none).
    """

    xy: np.ndarray
    score: np.ndarray | None
    score_name: str | None
    columns: dict[str, list[str]]
    class_column: str | None

    @classmethod
    def of(cls, path: Path, xy: Any, *, columns: dict[str, list[str]], class_column: str | None,
           score: Any = None, score_name: str | None = None) -> Table:
        """A Table from plain lists: `xy` as an [N, 2] float array, `score` (None: the file has none) as floats,
        its missing (NaN) values logged."""
        scores = None if score is None else np.asarray(score, dtype=np.float64).reshape(-1)
        warn_missing_scores(path, scores, score_name)
        return cls(xy=np.asarray(xy, dtype=np.float64).reshape(-1, 2), score=scores,
                   score_name=score_name if scores is not None else None, columns=columns, class_column=class_column)


# ---------------------------------------------------------------- duplicates and warnings


def first_occurrences(xy: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct position, in file order."""
    if len(xy) == 0:
        return np.zeros(0, dtype=np.intp)
    _, first = np.unique(xy + 0.0, axis=0, return_index=True)  # + 0.0 folds -0.0 into 0.0
    return np.sort(first)


def warn_missing_scores(path: Path, score: np.ndarray | None, score_name: str | None) -> None:
    """Log how many points have no score (NaN), if any."""
    if score is not None and (missing := int(np.count_nonzero(np.isnan(score)))):
        logger.warning("points file %s: %d points have no %r score", path, missing, score_name)


# ---------------------------------------------------------------- message text


def one_line(text: str, limit: int = 60) -> str:
    """`text` on one line, shortened to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def quote(value: str) -> str:
    """A cell value for a message: quoted, escaped, shortened."""
    return repr(value if len(value) <= 40 else value[:37] + "...")


def quoted_list(names: Any, limit: int = 20) -> str:
    """Names for a message: quoted, comma-separated, the first `limit` of them; 'none' if empty."""
    listed = list(names)
    text = ", ".join(quote(str(name)) for name in listed[:limit])
    return (text + f", ... ({len(listed)} in all)") if len(listed) > limit else (text or "none")
