"""The cohort table: one row per slide, as ``OUT/cohort.json`` and ``OUT/cohort.csv`` (written atomically).

The contract (read by the cohort report)::

    {"version": 1, "created", "model", "options", "n_slides", "n_ok", "n_failed", "n_skipped",
     "pooled": {"n_slides", "n_classified", "n_atypical", "called_amf_ratio", "amf_ratio", "amf_ratio_ci95",
                "amf_ratio_method", "estimated_n_atypical", "atypical_to_normal_ratio", "atypical_to_normal_ratio_ci95"},
     "slides": [{"slide", "stem", "points", "roi", "status": "ok" | "failed" | "skipped", "reused", "error",
                 "n_candidates", "n_classified", "n_atypical", "n_normal", "called_amf_ratio",
                 "amf_ratio", "amf_ratio_ci95", "amf_ratio_method", "estimated_n_atypical",
                 "atypical_to_normal_ratio", "atypical_to_normal_ratio_ci95", "domain_warning", "ratio_warning",
                 "summary", "geojson", "csv", "report", "seconds", "node", "worker"}]}

``reused``: the row of a slide finished by an earlier run (up to date), kept as that run recorded it.
``node`` / ``worker``: the Ray node and actor that screened the slide (last tried it, for a failed one); None
in a local run.
``n_atypical`` / ``n_normal`` count the calls; ``amf_ratio`` is the estimated share of atypical figures
(``wsi_amf.quantify``). The pooled entry treats every slide with a summary as one set of candidates (their
score histograms added), estimated like a slide. Paths of per-slide outputs are relative to OUT. The CSV has
the same rows, each interval as ``<key>_low`` / ``<key>_high``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..files import atomic_write_text
from ..quantify import Reference, ScoreHistogram, estimate, pool
from ..stats import wilson_interval
from .jobs import SlideJob

VERSION = 1
STATUSES = ("ok", "failed", "skipped")
COUNTS = ("n_candidates", "n_classified", "n_atypical", "n_normal", "called_amf_ratio", "amf_ratio", "amf_ratio_ci95",
          "amf_ratio_method", "estimated_n_atypical", "atypical_to_normal_ratio", "atypical_to_normal_ratio_ci95",
          "domain_warning", "ratio_warning")
INTERVALS = ("amf_ratio_ci95", "atypical_to_normal_ratio_ci95")
OUTPUT_KINDS = ("summary", "geojson", "csv", "report")
ROW_KEYS = ("slide", "stem", "points", "roi", "status", "reused", "error", *COUNTS, *OUTPUT_KINDS, "seconds", "node",
            "worker")
CSV_COLUMNS = tuple(c for k in ROW_KEYS for c in ((f"{k}_low", f"{k}_high") if k in INTERVALS else (k,)))
HISTOGRAM = "_histogram"  # a row's score histogram (for the pooled ratio; not written)


def slide_row(job: SlideJob, *, status: str, error: str | None = None, summary: Mapping[str, Any] | None = None,
              outputs: Mapping[str, str] | None = None, seconds: float | None = None, node: str | None = None,
              worker: str | None = None) -> dict[str, Any]:
    """A row of the table; counts come from the slide's summary (None for a slide without one)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    summary = summary or {}
    outputs = outputs or {}
    row: dict[str, Any] = {
        "slide": str(job.slide), "stem": job.stem,
        "points": str(job.points) if job.points is not None else None,
        "roi": str(job.roi) if job.roi is not None else None,
        "status": status, "reused": False, "error": error,
    }
    row.update({k: summary.get(k) for k in COUNTS})
    row.update({k: outputs.get(k) for k in OUTPUT_KINDS})
    row["seconds"] = None if seconds is None else round(float(seconds), 3)
    row["node"], row["worker"] = node, worker
    if summary.get("score_histogram"):
        row[HISTOGRAM] = ScoreHistogram.from_json(summary["score_histogram"])
    return row


def pooled_entry(rows: Sequence[Mapping[str, Any]], reference: Reference | None) -> dict[str, Any]:
    """The cohort's pooled ratio: every slide with a summary as one set of candidates."""
    with_hist = [r for r in rows if r.get(HISTOGRAM) is not None]
    hist = pool([r[HISTOGRAM] for r in with_hist])
    n_cls = sum(int(r.get("n_classified") or 0) for r in with_hist)
    n_amf = sum(int(r.get("n_atypical") or 0) for r in with_hist)
    entry: dict[str, Any] = {"n_slides": len(with_hist), "n_classified": n_cls, "n_atypical": n_amf,
                             "called_amf_ratio": n_amf / n_cls if n_cls else None,
                             "called_amf_ratio_ci95": _listed(wilson_interval(n_amf, n_cls))}
    if hist is None:
        return {**entry, "amf_ratio": None, "amf_ratio_ci95": None, "amf_ratio_method": None}
    unlike = any(r.get("domain_warning") for r in with_hist)
    return {**entry, **estimate(hist, reference, unlike=unlike).to_json()}


def read_summary(out: Path, outputs: Mapping[str, str]) -> dict[str, Any]:
    return json.loads((out / outputs["summary"]).read_text(encoding="utf-8"))


def _listed(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else list(ci)


def cohort_dict(rows: Sequence[Mapping[str, Any]], *, created: str, model: Mapping[str, Any],
                options: Mapping[str, Any], reference: Reference | None = None) -> dict[str, Any]:
    n = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    return {"version": VERSION, "created": created, "model": dict(model), "options": dict(options),
            "n_slides": len(rows), "n_ok": n["ok"], "n_failed": n["failed"], "n_skipped": n["skipped"],
            "pooled": pooled_entry(rows, reference),
            "slides": [{k: r.get(k) for k in ROW_KEYS} for r in rows]}


def cohort_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        flat = dict(r)
        for k in INTERVALS:
            flat[f"{k}_low"], flat[f"{k}_high"] = r.get(k) or (None, None)
        writer.writerow(["" if flat.get(c) is None else flat[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def write_cohort(out: Path, rows: Sequence[Mapping[str, Any]], *, created: str, model: Mapping[str, Any],
                 options: Mapping[str, Any], reference: Reference | None = None) -> dict[str, Path]:
    """Write ``cohort.json`` and ``cohort.csv`` atomically (each is whole, before or after, at any moment)."""
    paths = {"json": out / "cohort.json", "csv": out / "cohort.csv"}
    data = cohort_dict(rows, created=created, model=model, options=options, reference=reference)
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
