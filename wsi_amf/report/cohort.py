"""The cohort report of ``batch``: ``OUT/cohort.html`` from ``OUT/cohort.json``.

A sortable table of the slides (status, counts, AMF ratio and interval, hotspot counts from each slide's
summary, time), a plot of every slide's AMF ratio with its 95 % interval (the pooled ratio as a reference
line), and links to the slide reports (``<stem>.report.html``) that exist beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import ReportError
from ..stats import wilson_interval
from ..text import estimate, interval_range
from . import html as h
from .plots import IntervalRow, interval_svg
from .slide import REPORT_SUFFIX, read_json

COHORT_JSON = "cohort.json"
COHORT_HTML = "cohort.html"
_HEADERS = ("Slide", "Status", "Candidates", "Classified", "Called atypical", "Called normal", "Share of calls",
            "Estimated AMF ratio", "95% CI", "Atypical : normal (est.)", "Hotspot MF", "Hotspot AMF calls", "Seconds",
            "Note")


def cohort_report(out_dir: str | Path) -> Path:
    """Write ``cohort.html`` for the batch output folder ``out_dir`` (which holds ``cohort.json``)."""
    root = Path(out_dir)
    data = read_json(root / COHORT_JSON, "cohort table")
    slides = data.get("slides")
    if not isinstance(slides, list) or not all(isinstance(e, Mapping) for e in slides):
        raise ReportError(f"cohort table {root / COHORT_JSON}: no 'slides' list")
    rows, intervals = [], []
    for entry in slides:
        name = Path(str(entry.get("slide") or entry.get("stem") or "?")).name
        href = _report_href(root, entry)
        hotspot = _hotspot(root, entry)
        status = str(entry.get("status") or "?")
        rows.append([
            h.Cell(f'<a href="{h.esc(href)}">{h.esc(name)}</a>' if href else h.esc(name), sort=name.lower()),
            h.Cell(f'<span class="status-{h.esc(status)}">{h.esc(status)}</span>', sort=status),
            entry.get("n_candidates"), entry.get("n_classified"), entry.get("n_atypical"), entry.get("n_normal"),
            h.cell(entry.get("called_amf_ratio"), key="called_amf_ratio"),
            h.cell(entry.get("amf_ratio"), key="amf_ratio"),
            _ci(entry),
            entry.get("atypical_to_normal_ratio"),
            hotspot.get("n_mf"), hotspot.get("n_amf"),
            h.cell(entry.get("seconds"), digits=1),
            h.Cell(h.esc(entry.get("error") or entry.get("ratio_warning") or entry.get("domain_warning") or "")),
        ])
        ci = entry.get("amf_ratio_ci95")
        if status == "ok" and entry.get("amf_ratio") is not None and ci:
            note = f"; {entry.get('n_atypical')} of {entry.get('n_classified')} classified called atypical"
            intervals.append(IntervalRow(name, float(entry["amf_ratio"]), float(ci[0]), float(ci[1]), href, note))
    intervals.sort(key=lambda r: -r.value)
    pooled = _pooled(data, slides)
    sections = [
        h.section("Cohort", _overview(data, slides, pooled), ident="overview"),
        h.section("AMF ratio per slide", interval_svg(intervals, reference=pooled[0]) if intervals
                  else '<p class="note">No slide with classified candidates yet.</p>', ident="ratios",
                  note="Dot: the slide's estimated share of atypical figures; bar: its 95 % interval; dashed line: "
                       "the pooled estimate. Click a name to open the slide report."),
        h.section("Slides", h.table(_HEADERS, rows, sortable=True), ident="slides",
                  note="Click a column header to sort. Slide names link to their reports."),
    ]
    model = data.get("model") or {}
    subtitle = (f"{len(slides)} slides: {data.get('n_ok', '?')} ok, {data.get('n_failed', '?')} failed, "
                f"{data.get('n_skipped', '?')} skipped \u00b7 model {model.get('name', '?')}")
    return h.write_page(root / COHORT_HTML, h.page("wsi-amf cohort report", subtitle, sections, scripts=(h.SORT_JS,)))


def _report_href(root: Path, entry: Mapping[str, Any]) -> str | None:
    """The slide report's path relative to ``root``, when that file exists."""
    candidates = [entry.get("report"), f"{entry['stem']}{REPORT_SUFFIX}" if entry.get("stem") else None]
    return next((str(c) for c in candidates if c and (root / str(c)).is_file()), None)


def _hotspot(root: Path, entry: Mapping[str, Any]) -> Mapping[str, Any]:
    if not entry.get("summary"):
        return {}
    try:
        summary = json.loads((root / str(entry["summary"])).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary.get("hotspot") or {} if isinstance(summary, dict) else {}


def _ci(entry: Mapping[str, Any]) -> h.Cell:
    """The interval as text, sorted by its lower end."""
    ci = entry.get("amf_ratio_ci95")
    if not (isinstance(ci, list) and len(ci) == 2):
        return h.cell(None)
    return h.Cell(interval_range(ci), sort=ci[0], numeric=True)


def _pooled(data: Mapping[str, Any], slides: list) -> tuple[float | None, tuple[float, float] | None, int, int]:
    """The pooled estimate of ``cohort.json`` (a table written before it: the ok slides' share of calls)."""
    pooled = data.get("pooled")
    if isinstance(pooled, Mapping) and "amf_ratio" in pooled:
        ci = pooled.get("amf_ratio_ci95")
        return pooled.get("amf_ratio"), tuple(ci) if ci else None, int(pooled.get("n_atypical") or 0), \
            int(pooled.get("n_classified") or 0)
    ok = [e for e in slides if e.get("status") == "ok" and e.get("n_classified")]
    n_amf = sum(int(e.get("n_atypical") or 0) for e in ok)
    n_cls = sum(int(e["n_classified"]) for e in ok)
    return (n_amf / n_cls if n_cls else None), wilson_interval(n_amf, n_cls), n_amf, n_cls


def _overview(data: Mapping[str, Any], slides: list, pooled: tuple) -> str:
    model = data.get("model") or {}
    options = data.get("options") or {}
    ratio, ci, n_amf, n_cls = pooled
    rows: list[tuple[str, Any]] = [
        ("Slides", h.cell(data.get("n_slides", len(slides)), key="n_slides")),
        ("Screened (ok)", h.cell(data.get("n_ok"), key="n_ok")),
        ("Failed", h.cell(data.get("n_failed"), key="n_failed")),
        ("Skipped", h.cell(data.get("n_skipped"), key="n_skipped")),
        ("All slides: called atypical / classified", h.Cell(h.esc(f"{n_amf} / {n_cls}"))),
        ("Pooled estimated AMF ratio", h.Cell(h.esc(estimate(ratio, ci)),
                                    attrs={"data-key": "pooled_amf_ratio", "data-value": "" if ratio is None else ratio})),
        ("Model", h.Cell(h.esc(f"{model.get('name', '?')} ({model.get('members', '?')} \u00d7 {model.get('architecture', '?')})"))),
        ("Created", h.Cell(h.esc(data.get("created") or ""))),
    ]
    rows += [(f"Option {k}", h.Cell(h.esc(v))) for k, v in options.items() if v not in (None, False, "", [], {})]
    return h.kv_table(rows)
