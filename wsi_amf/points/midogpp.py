"""MIDOG++ annotations: COCO-like JSON holding many slides,
`{"images": [{"id", "file_name", "width", "height"}], "categories": [{"id", "name"}],
"annotations": [{"id", "image_id", "category_id", "bbox": [x1, y1, x2, y2]}]}`.

Unlike COCO, `bbox` is two corners (MIDOG++ draws a 50 x 50 px box around each figure); the point is its
midpoint, in level-0 pixels (a figure cut by the image's edge can lie just outside it, at a negative
coordinate: it is kept, and screening reports it as outside the slide). The slide is found by `file_name` (or
`db_slide`). Columns carried: `class` (the category's name: `mitotic figure` or the hard negative `not mitotic figure`) and `annotation_id`.
A numeric `score` (a detector's COCO-style output) is the detector score.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from wsi_amf.errors import PointsError
from wsi_amf.files import is_number, json_float

from .json_values import identifier, list_of, object_of, optional_score, text_field
from .matching import choose_slide
from .model import SlideContext, Table, logger, quote

SCORE_KEY = "score"


def is_midogpp(data: Any) -> bool:
    """Whether parsed JSON looks like MIDOG++ (COCO-like) annotations."""
    return isinstance(data, dict) and "images" in data and "annotations" in data


def read_table(
    path: Path, data: Any, *, slide: SlideContext | None, db_slide: str | None, score_col: str | None
) -> Table:
    """The annotations of one slide of a parsed MIDOG++ file."""
    where = f"points file {path}"
    top = object_of(where, "the top level", data)
    images = list_of(where, "'images'", top.get("images"))
    annotations = list_of(where, "'annotations'", top.get("annotations"))
    category_names = _categories(where, top.get("categories"))

    entries: list[tuple[int | str, str]] = []
    sizes: dict[int | str, tuple[Any, Any]] = {}
    for number, image in enumerate(images, start=1):
        at = f"{where} image {number}"
        image = object_of(at, "the entry", image)
        key = identifier(at, "'id'", image.get("id"))
        if key in sizes:
            raise PointsError(f"{at}: id {quote(str(key))} is used by an earlier image too")
        entries.append((key, text_field(at, "'file_name'", image.get("file_name"))))
        sizes[key] = (image.get("width"), image.get("height"))
    if not entries:
        raise PointsError(f"{where}: 'images' is empty")
    key, name = choose_slide(path, entries, slide=slide, db_slide=db_slide)
    size = sizes[key]
    if slide is not None and slide.dimensions is not None and all(map(is_number, size)) and size != slide.dimensions:
        logger.warning("points file %s: it gives slide %r as %s x %s px, but the slide is %d x %d px",
                       path, name, *size, *slide.dimensions)

    score_key = SCORE_KEY if score_col is None else score_col
    xy: list[tuple[float, float]] = []
    carried: dict[str, list[str]] = {"class": [], "annotation_id": []}
    scores: list[float] = []
    has_score = False
    for number, annotation in enumerate(annotations, start=1):
        annotation = object_of(f"{where} annotation {number}", "the entry", annotation)
        image_id = annotation.get("image_id")
        if image_id != key or type(image_id) is not type(key):  # (True == 1, but bool is not int)
            continue
        at = f"{where} annotation {number}"
        xy.append(_centre(at, annotation.get("bbox")))
        category = annotation.get("category_id")
        label = text_field(at, "'category_id'", category)  # a string, a number or null by now: hashable
        carried["class"].append(label if category is None else category_names.get(category, label))
        carried["annotation_id"].append(text_field(at, "'id'", annotation.get("id")))
        has_score |= score_key in annotation
        scores.append(optional_score(at, quote(score_key), annotation.get(score_key)))
    if score_col is not None and xy and not has_score:
        raise PointsError(f"{where}: no annotation of slide {quote(name)} has a {quote(score_col)} value")
    if not xy:
        logger.warning("points file %s: no annotations for slide %r", path, name)
    return Table.of(path, xy, columns=carried, class_column="class", score=scores if has_score else None,
                    score_name=score_key)


def _categories(where: str, value: Any) -> dict[int | str, str]:
    names: dict[int | str, str] = {}
    for number, category in enumerate(list_of(where, "'categories'", [] if value is None else value), start=1):
        at = f"{where} category {number}"
        category = object_of(at, "the entry", category)
        names[identifier(at, "'id'", category.get("id"))] = text_field(at, "'name'", category.get("name"))
    return names


def _centre(at: str, bbox: Any) -> tuple[float, float]:
    """The midpoint of `[x1, y1, x2, y2]`."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
        raise PointsError(f"{at}: 'bbox' is not four numbers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (json_float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise PointsError(f"{at}: 'bbox' is not finite")
    if x2 < x1 or y2 < y1:
        raise PointsError(
            f"{at}: 'bbox' [{x1:g}, {y1:g}, {x2:g}, {y2:g}] has a second corner above or left of the first; "
            "MIDOG++ boxes are [x1, y1, x2, y2], not COCO's [x, y, width, height]"
        )
    x, y = x1 + (x2 - x1) / 2, y1 + (y2 - y1) / 2
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointsError(f"{at}: 'bbox' is not finite")
    return x, y  # a figure cut by the image's edge may have its centre just outside (MIDOG++ has two)
