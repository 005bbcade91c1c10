"""Writers of points files in the formats wsi-amf reads, for the tests (built from ../shared/FORMATS.md)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The tables of a SlideRunner / EXACT database, as SlideRunner creates them.
SLIDERUNNER_SCHEMA = """
CREATE TABLE `Slides` (`uid` INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, `filename` TEXT, `width` INTEGER,
    `height` INTEGER, `directory` TEXT, `uuid` TEXT, `exactImageID` TEXT, `EXACTUSER` INTEGER DEFAULT 0);
CREATE TABLE `Classes` (`uid` INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, `name` TEXT, `color` TEXT);
CREATE TABLE `Persons` (`uid` INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, `name` TEXT, `isExactUser` INTEGER DEFAULT 0);
CREATE TABLE `Annotations` (`uid` INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, `slide` INTEGER, `guid` TEXT,
    `lastModified` REAL DEFAULT 0, `deleted` INTEGER DEFAULT 0, `type` INTEGER, `agreedClass` INTEGER,
    `description` TEXT, `clickable` INTEGER DEFAULT 1);
CREATE TABLE `Annotations_coordinates` (`uid` INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, `coordinateX` INTEGER,
    `coordinateY` INTEGER, `coordinateZ` INTEGER DEFAULT 0, `slide` INTEGER, `annoId` INTEGER, `orderIdx` INTEGER);
CREATE TABLE `Annotations_label` (`uid` INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, `person` INTEGER,
    `class` INTEGER, `exact_id` INTEGER, `annoId` INTEGER);
"""


@dataclass
class Annotation:
    slide: int
    coordinates: list[tuple[Any, Any]]
    agreed_class: Any = 1
    type: Any = 1  # 1 spot, 2 rectangle, 3 polygon, 4 special spot, 5 circle
    deleted: Any = 0
    guid: Any = None
    labels: list[tuple[int, int]] = field(default_factory=list)  # (person, class)


def write_sliderunner(path: Path, slides: list[tuple[str, int | None, int | None]], classes: list[str],
                      annotations: list[Annotation]) -> Path:
    """A SlideRunner database: slides (file name, width, height) get uids 1, 2, ...; classes too."""
    with sqlite3.connect(path) as db:
        db.executescript(SLIDERUNNER_SCHEMA)
        db.executemany("INSERT INTO Slides (filename, width, height) VALUES (?, ?, ?)", slides)
        db.executemany("INSERT INTO Classes (name) VALUES (?)", [(name,) for name in classes])
        db.executemany("INSERT INTO Persons (name) VALUES (?)", [("expert 1",), ("expert 2",)])
        for number, a in enumerate(annotations, start=1):
            guid = a.guid if a.guid is not None else f"00000000-0000-4000-8000-{number:012d}"
            cursor = db.execute(
                "INSERT INTO Annotations (slide, guid, deleted, type, agreedClass) VALUES (?, ?, ?, ?, ?)",
                (a.slide, guid, a.deleted, a.type, a.agreed_class),
            )
            uid = cursor.lastrowid
            db.executemany(
                "INSERT INTO Annotations_coordinates (coordinateX, coordinateY, slide, annoId, orderIdx) "
                "VALUES (?, ?, ?, ?, ?)",
                [(x, y, a.slide, uid, order) for order, (x, y) in enumerate(a.coordinates, start=1)],
            )
            db.executemany("INSERT INTO Annotations_label (person, class, annoId) VALUES (?, ?, ?)",
                           [(person, cls, uid) for person, cls in a.labels])
    db.close()
    return path


def gc_points(points: list[dict[str, Any]], *, kind: str = "Multiple points") -> dict[str, Any]:
    """A grand-challenge "Multiple points" document (MIDOG track 1 detector output)."""
    return {"name": "Points of interest", "type": kind, "points": points, "version": {"major": 1, "minor": 0}}


def gc_point(x_mm: float, y_mm: float, probability: float | None = None,
             name: str = "mitotic figure") -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "point": [x_mm, y_mm, 0]}
    if probability is not None:
        entry["probability"] = probability
    return entry


def midogpp(images: list[tuple[int, str, int, int]], annotations: list[tuple[int, int, list[float]]]) -> dict[str, Any]:
    """MIDOG++ JSON: images (id, file name, width, height), annotations (image id, category id, [x1, y1, x2, y2])."""
    return {
        "info": {"description": "test"},
        "images": [{"license": 1, "file_name": name, "id": i, "width": w, "height": h, "tumor_type": "test"}
                   for i, name, w, h in images],
        "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "not mitotic figure"}],
        "annotations": [{"bbox": bbox, "category_id": cat, "image_id": image, "labels": [cat, cat], "id": n}
                        for n, (image, cat, bbox) in enumerate(annotations, start=1)],
    }


def box(x: float, y: float, half: float = 25) -> list[float]:
    """The MIDOG++ box around (x, y): [x1, y1, x2, y2]."""
    return [x - half, y - half, x + half, y + half]


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
