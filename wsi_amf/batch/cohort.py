"""The cohort table: one row per slide, as ``OUT/cohort.json`` and ``OUT/cohort.csv`` (written atomically).

The contract (read by the cohort report)::

    {"version": 1, "created", "model", "options", "n_slides", "n_ok", "n_failed", "n_skipped",
     "slides": [{"slide", "stem", "points", "roi", "status": "ok" | "failed" | "skipped", "error",
                 "n_candidates", "n_classified", "n_atypical", "n_normal", "amf_ratio", "amf_ratio_ci95",
                 "atypical_to_normal_ratio", "summary", "geojson", "csv", "report", "seconds"}]}

Paths of per-slide outputs are relative to OUT. The CSV has the same rows, the interval as
``amf_ratio_ci95_low`` / ``amf_ratio_ci95_high``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..outputs import atomic_write_text
from .jobs import SlideJob

VERSION = 1
STATUSES = ("ok", "failed", "skipped")
COUNTS = ("n_candidates", "n_classified", "n_atypical", "n_normal", "amf_ratio", "amf_ratio_ci95",
          "atypical_to_normal_ratio")
OUTPUT_KINDS = ("summary", "geojson", "csv", "report")
ROW_KEYS = ("slide", "stem", "points", "roi", "status", "error", *COUNTS, *OUTPUT_KINDS, "seconds")
CSV_COLUMNS = tuple(c for k in ROW_KEYS for c in (("amf_ratio_ci95_low", "amf_ratio_ci95_high")
                                                  if k == "amf_ratio_ci95" else (k,)))


def slide_row(job: SlideJob, *, status: str, error: str | None = None, summary: Mapping[str, Any] | None = None,
              outputs: Mapping[str, str] | None = None, seconds: float | None = None) -> dict[str, Any]:
    """A row of the table; counts come from the slide's summary (None for a slide without one)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    summary = summary or {}
    outputs = outputs or {}
    row: dict[str, Any] = {
        "slide": str(job.slide), "stem": job.stem,
        "points": str(job.points) if job.points is not None else None,
        "roi": str(job.roi) if job.roi is not None else None,
        "status": status, "error": error,
    }
    row.update({k: summary.get(k) for k in COUNTS})
    row.update({k: outputs.get(k) for k in OUTPUT_KINDS})
    row["seconds"] = None if seconds is None else round(float(seconds), 3)
    return row


def read_summary(out: Path, outputs: Mapping[str, str]) -> dict[str, Any]:
    return json.loads((out / outputs["summary"]).read_text(encoding="utf-8"))


def cohort_dict(rows: Sequence[Mapping[str, Any]], *, created: str, model: Mapping[str, Any],
                options: Mapping[str, Any]) -> dict[str, Any]:
    n = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    return {"version": VERSION, "created": created, "model": dict(model), "options": dict(options),
            "n_slides": len(rows), "n_ok": n["ok"], "n_failed": n["failed"], "n_skipped": n["skipped"],
            "slides": [{k: r[k] for k in ROW_KEYS} for r in rows]}


def cohort_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        ci = r["amf_ratio_ci95"] or (None, None)
        flat = {**r, "amf_ratio_ci95_low": ci[0], "amf_ratio_ci95_high": ci[1]}
        writer.writerow(["" if flat[c] is None else flat[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def write_cohort(out: Path, rows: Sequence[Mapping[str, Any]], *, created: str, model: Mapping[str, Any],
                 options: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``cohort.json`` and ``cohort.csv`` atomically (each is whole, before or after, at any moment)."""
    paths = {"json": out / "cohort.json", "csv": out / "cohort.csv"}
    data = cohort_dict(rows, created=created, model=model, options=options)
    atomic_write_text(paths["json"], json.dumps(data, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["csv"], cohort_csv_text(rows))
    return paths


def jsonable(value: Any, *, path: Callable[[Path], Any] = str) -> Any:
    """Options as JSON values (dataclasses as dicts, tuples as lists); ``path`` turns a Path into one."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), path=path)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, path=path) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, path=path) for v in value]
    if isinstance(value, Path):
        return path(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
