"""What a batch screens: slides found in a folder (each paired with its points file by stem) or listed in a
manifest CSV (``slide,points[,roi]``), each with a unique output stem.

Output stems are the slides' file stems; slides whose stems collide (same name in two sub-folders, or one
slide listed twice in a manifest) are named after their path relative to the folder instead, so no slide's
outputs overwrite another's, and the names stay the same from one run to the next.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import ManifestError, OptionError

#: Extensions of the formats OpenSlide reads (Aperio, DICOM, Hamamatsu, Huron, Leica, MIRAX, Philips,
#: Sakura, Trestle, Ventana, Zeiss, generic tiled TIFF).
SLIDE_SUFFIXES = frozenset({".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif",
                            ".dcm", ".czi"})
DEFAULT_POINTS_PATTERNS = ("{stem}.csv", "{stem}.geojson")


@dataclass(frozen=True)
class SlideJob:
    """One slide of a batch: its file, its points file (None: none found), an optional ROI, the output stem."""

    slide: Path
    points: Path | None
    stem: str
    roi: Path | None = None
    missing_points: str | None = None  # where the points were looked for, when none was found


def find_slides(root: str | Path, *, recursive: bool = False, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Slide files under ``root`` (sorted; hidden entries and the ``exclude`` folders skipped).

    A DICOM slide is a folder of ``.dcm`` files: it is listed once, by its first file.
    """
    root = Path(root)
    if not root.is_dir():
        raise OptionError(f"slides folder {root}: no such directory")
    skip = [Path(p).absolute() for p in exclude]
    files = root.rglob("*") if recursive else root.iterdir()
    found: list[Path] = []
    dicom_dirs: set[Path] = set()
    for path in sorted(files):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in SLIDE_SUFFIXES:
            continue
        if any(path.absolute().is_relative_to(s) for s in skip) or not path.is_file():
            continue
        if path.suffix.lower() == ".dcm":
            if path.parent in dicom_dirs:
                continue
            dicom_dirs.add(path.parent)
        found.append(path)
    return found


def folder_jobs(root: str | Path, *, points_dir: str | Path | None = None,
                patterns: Sequence[str] = DEFAULT_POINTS_PATTERNS, recursive: bool = False,
                exclude: Iterable[str | Path] = ()) -> list[SlideJob]:
    """One job per slide under ``root``, paired with the first existing ``points_dir/<pattern>``.

    Patterns may use ``{stem}`` (the slide's file stem; a DICOM slide's folder name), ``{name}`` (file name)
    and ``{parent}`` (the slide's sub-folder relative to ``root``, ``.`` at the top).
    """
    root = Path(root)
    pdir = Path(points_dir) if points_dir is not None else root
    if not pdir.is_dir():
        raise OptionError(f"--points-dir {pdir}: no such directory")
    if not patterns:
        raise OptionError("--points-pattern: give at least one pattern")
    slides = find_slides(root, recursive=recursive, exclude=[*exclude, *([pdir] if pdir != root else [])])
    names = unique_stems([(_slide_stem(s), _slide_key(s).relative_to(root)) for s in slides])
    jobs = []
    for slide, stem in zip(slides, names):
        fields = {"stem": _slide_stem(slide), "name": slide.name, "parent": str(_slide_key(slide).parent.relative_to(root))}
        try:
            candidates = [pdir / p.format(**fields) for p in patterns]
        except (KeyError, IndexError, ValueError) as exc:
            raise OptionError(f"--points-pattern {patterns!r}: use {{stem}}, {{name}} or {{parent}} ({exc})") from None
        points = next((c for c in candidates if c.is_file()), None)
        missing = None if points else "no points file (looked for " + ", ".join(str(c) for c in candidates) + ")"
        jobs.append(SlideJob(slide=slide.absolute(), points=points.absolute() if points else None, stem=stem,
                             missing_points=missing))
    return jobs


def manifest_jobs(manifest: str | Path) -> list[SlideJob]:
    """One job per row of a CSV with the columns ``slide``, ``points`` and optionally ``roi`` (paths relative
    to the manifest's folder; an empty ``points`` cell: no points file, the slide is skipped)."""
    path = Path(manifest)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"manifest {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "slide" not in header or "points" not in header:
        raise ManifestError(f"manifest {path}: needs the columns slide and points (found: {', '.join(header) or 'none'})")
    base = path.parent
    rows: list[tuple[Path, Path | None, Path | None]] = []
    for n, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        if not row.get("slide"):
            raise ManifestError(f"manifest {path} row {n}: the slide cell is empty")
        rows.append((_path(base, row["slide"]), _resolve(base, row.get("points")), _resolve(base, row.get("roi"))))
    if not rows:
        raise ManifestError(f"manifest {path}: lists no slide")
    keys = [_slide_key(s) for s, _, _ in rows]
    common = Path(os.path.commonpath(keys)) if len(keys) > 1 else keys[0].parent
    stems = unique_stems([(_slide_stem(s), k.relative_to(common)) for (s, _, _), k in zip(rows, keys)])
    return [SlideJob(slide=s, points=p, stem=stem, roi=r, missing_points=None if p else f"no points file (manifest {path})")
            for (s, p, r), stem in zip(rows, stems)]


def unique_stems(items: Sequence[tuple[str, Path]]) -> list[str]:
    """Output stems: the plain stem where it is unique, else the relative path flattened (``a__b__slide``),
    then ``-2``, ``-3`` ... for what still collides (in the order given)."""
    counts = Counter(stem.lower() for stem, _ in items)
    names = [stem if counts[stem.lower()] == 1 else _flatten(rel) for stem, rel in items]
    seen: Counter[str] = Counter()
    taken = {n.lower() for n in names}
    out = []
    for name in names:
        seen[name.lower()] += 1
        k, unique = seen[name.lower()], name
        if k > 1:
            while f"{name}-{k}".lower() in taken:
                k += 1
            unique = f"{name}-{k}"
            taken.add(unique.lower())
        out.append(unique)
    return out


def _slide_key(path: Path) -> Path:
    """The path that names a slide: its file, or for DICOM its folder."""
    return path.parent if path.suffix.lower() == ".dcm" and path.parent.name else path


def _slide_stem(path: Path) -> str:
    key = _slide_key(path)
    return key.name if key != path else path.stem


def _flatten(rel: Path) -> str:
    parts = [p for p in rel.with_suffix("").parts if p not in ("", ".", "..")]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts)) or "slide"


def _resolve(base: Path, cell: str | None) -> Path | None:
    return _path(base, cell) if cell else None


def _path(base: Path, cell: str) -> Path:
    p = Path(cell).expanduser()
    return (p if p.is_absolute() else base / p).absolute()
