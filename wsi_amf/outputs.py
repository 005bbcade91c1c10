"""Outputs of a screening: QuPath GeoJSON, a per-candidate CSV table, a summary JSON. All written atomically.

A file is first written beside its destination under a temporary name and then renamed over it, so a
reader (or an interrupted run) never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .exports import EXPORTS, check_exports, row_chunks
from .files import remove_leftovers, temp_file
from .results import ScreenResult

log = logging.getLogger(__name__)
AMF_CLASS = "Atypical mitotic figure"
NMF_CLASS = "Normal mitotic figure"
AMF_COLOR = [220, 20, 60]
NMF_COLOR = [30, 144, 255]
_UUID_NAMESPACE = uuid.UUID("6d1c9a5e-3b7e-4f0a-9a51-2f1d0c7a6b11")


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def feature_id(stem: str, x: float, y: float) -> str:
    """A UUID stable across runs for the same slide and position (re-runs give identical files)."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{stem}:{x!r}:{y!r}"))


_OWN_COLUMNS = ("x", "y", "p_atypical", "label", "status", "model_score")


def carried_columns(result: ScreenResult) -> list[str]:
    """The input columns carried through to the outputs (ids, labels, classes): all but the table's own."""
    return [c for c in result.points.columns if c not in _OWN_COLUMNS]


def geojson_chunks(result: ScreenResult) -> Iterator[str]:
    """A QuPath-ready FeatureCollection, chunk by chunk: one Point detection per classified candidate. The
    carried-through input columns (non-empty values, as strings) go into ``properties.metadata``, which
    QuPath 0.5+ shows per object and older versions ignore."""
    pts = result.points
    carried = carried_columns(result)
    atypical_calls, p_cal = result.atypical, result.p_calibrated
    yield '{"type": "FeatureCollection", "features": ['
    for start, rows in row_chunks(np.flatnonzero(result.classified)):
        features = []
        for i in rows:
            x, y = (float(v) for v in pts.xy[i])
            atypical = bool(atypical_calls[i])
            measurements = {"AMF probability": float(p_cal[i])}
            if pts.score is not None and _finite(pts.score[i]) is not None:
                measurements[f"Detector {pts.score_name or 'score'}"] = float(pts.score[i])
            properties: dict[str, Any] = {
                "objectType": "detection",
                "classification": {
                    "name": AMF_CLASS if atypical else NMF_CLASS,
                    "color": list(AMF_COLOR if atypical else NMF_COLOR),
                },
                "measurements": measurements,
            }
            metadata = {c: pts.columns[c][i] for c in carried if pts.columns[c][i] != ""}
            if metadata:
                properties["metadata"] = metadata
            features.append(json.dumps({"type": "Feature", "id": feature_id(result.stem, x, y),
                                        "geometry": {"type": "Point", "coordinates": [x, y]},
                                        "properties": properties}, allow_nan=False))
        yield (", " if start else "") + ", ".join(features)
    yield "]}\n"


def geojson_text(result: ScreenResult) -> str:
    """The whole GeoJSON document (``geojson_chunks`` joined)."""
    return "".join(geojson_chunks(result))


def table_chunks(result: ScreenResult) -> Iterator[str]:
    """One row per candidate, chunk by chunk: position, calibrated P(atypical), label (the call), status, the
    ensemble's own score (what the threshold applies to), then the carried-through input columns."""
    pts = result.points
    carried = carried_columns(result)
    header = list(_OWN_COLUMNS)
    if pts.score is not None:
        header.append("score")
    header += carried
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    classified, atypical, p_cal, score = result.classified, result.atypical, result.p_calibrated, result.p_atypical
    for _, rows in row_chunks(np.arange(len(pts))):
        for i in rows:
            ok = bool(classified[i])
            row: list[Any] = [
                _num(pts.xy[i, 0]),
                _num(pts.xy[i, 1]),
                f"{p_cal[i]:.6f}" if ok else "",
                ("atypical" if atypical[i] else "normal") if ok else "",
                result.status[i],
                f"{score[i]:.6f}" if ok else "",
            ]
            if pts.score is not None:
                row.append(_num(pts.score[i]))
            row += [pts.columns[c][i] for c in carried]
            writer.writerow(row)
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue()  # the header of an empty table


def table_text(result: ScreenResult) -> str:
    """The whole CSV table (``table_chunks`` joined)."""
    return "".join(table_chunks(result))


def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def write_outputs(result: ScreenResult, out_dir: str | Path, *, export: Iterable[str] = (),
                  timings: dict[str, float] | None = None) -> dict[str, Path]:
    """Write ``<stem>.geojson``, ``<stem>.csv``, ``<stem>.summary.json`` and the ``export`` files into ``out_dir``
    as one set: the summary records every other file's SHA-256 and is replaced last.

    Every file is rendered, then written under a temporary name beside its destination (so a failure leaves no
    file behind); the old summary is removed, the files are renamed into place and the summary comes last. A
    run killed at any moment leaves the old set whole, or files without a summary (no set), or the new set:
    never a summary beside files of another run (``check_output_set`` tells). Temporary files left by a killed
    run are removed by the next one. ``timings`` gets the seconds spent on the summary (``summary``), on
    rendering each file (by kind) and on writing the set (``write``).
    """
    clock = _Clock(timings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    renderers = {"geojson": (".geojson", geojson_chunks), "csv": (".csv", table_chunks),
                 **{name: EXPORTS[name] for name in check_exports(export)}}
    staged: dict[str, tuple[Path, str, str]] = {}  # kind -> (destination, temporary file, SHA-256)
    try:
        for kind, (suffix, render) in renderers.items():
            with clock(kind):
                dest = out / f"{result.stem}{suffix}"
                staged[kind] = (dest, *_stage(dest, render(result)))
        with clock("summary"):
            summary = {**result.summary(timings), "files": {kind: {"name": dest.name, "sha256": digest}
                                                    for kind, (dest, _, digest) in staged.items()}}
            text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
        with clock("write"):
            dest = out / f"{result.stem}.summary.json"
            staged["summary"] = (dest, *_stage(dest, [text]))
            _rename_set([(tmp, dest) for dest, tmp, _ in staged.values()])
    except BaseException:
        for _, tmp, _ in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return {kind: dest for kind, (dest, _, _) in staged.items()}


class _Clock:
    """``with clock(key):`` adds the block's seconds to ``timings[key]`` (nothing without timings)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.timings is not None:
                self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start


def _rename_set(staged: list[tuple[str, Path]]) -> None:
    """Remove the old summary (the last of ``staged``), then rename the staged files into place in order."""
    staged[-1][1].unlink(missing_ok=True)  # from here on, until the last rename, no set is complete
    for i, (tmp, path) in enumerate(staged):
        os.replace(tmp, path)
        if _KILL_AFTER_RENAMES is not None and i + 1 == _KILL_AFTER_RENAMES:  # tests: kill -9 mid-set
            os.kill(os.getpid(), 9)


_KILL_AFTER_RENAMES = int(os.environ["WSI_AMF_TEST_KILL_AFTER_RENAMES"]) if os.environ.get(
    "WSI_AMF_TEST_KILL_AFTER_RENAMES") else None


def _stage(dest: Path, chunks: Iterable[str]) -> tuple[str, str]:
    """The text ``chunks`` written and synced under a temporary name beside ``dest`` (tagged with this
    process's id): the temporary file and the text's SHA-256 (UTF-8)."""
    digest = hashlib.sha256()
    with temp_file(dest, "wb") as (fh, tmp):
        for chunk in chunks:
            data = chunk.encode("utf-8")
            digest.update(data)
            fh.write(data)
    return tmp, digest.hexdigest()


def check_output_set(summary_path: str | Path) -> str | None:
    """Why the outputs named by a summary are not the set it was written with (None when they are): a file
    missing or with another SHA-256 than the summary records (a run killed between renames, a hand edit)."""
    path = Path(summary_path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"summary {path} is not readable ({exc})"
    recorded = summary.get("files") if isinstance(summary, dict) else None
    if not isinstance(recorded, dict):
        return None  # written before output sets were recorded: nothing to check
    for kind, entry in recorded.items():
        f = path.parent / str(entry.get("name", ""))
        try:
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
        except OSError:
            return f"{kind} file {f} of summary {path} is missing"
        if digest != entry.get("sha256"):
            return f"{kind} file {f} is not the one summary {path} was written with (another run's, or edited)"
    return None
