"""Reports a person opens in a browser: self-contained HTML pages (images embedded, inline CSS/JS, no network).

- ``slide_report(summary)``: ``<stem>.report.html`` of one screened slide (``screen(..., report=True)``,
  ``wsi-amf screen --report``, ``wsi-amf report RESULTS_DIR``).
- ``cohort_report(out_dir)``: ``cohort.html`` of a ``batch`` output folder (from its ``cohort.json``).
- ``evaluation_report(...)``: ``report.html`` beside ``metrics.json`` of ``evaluate`` and ``train``.
- ``write_reports(directory)``: all the reports a folder's files allow.

Modules: ``html`` (page, tables, escaping), ``plots`` (every figure, as SVG), ``slide``, ``cohort``,
``evaluation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReportError, SlideError, WsiAmfError
from .cohort import COHORT_HTML, COHORT_JSON, cohort_report
from .evaluation import REPORT_HTML, evaluation_report, evaluation_report_dir
from .slide import SUMMARY_SUFFIX, report_path, slide_report

__all__ = ["COHORT_HTML", "REPORT_HTML", "Reports", "cohort_report", "evaluation_report", "evaluation_report_dir",
           "report_path", "slide_report", "write_reports"]


@dataclass(frozen=True)
class Reports:
    """What :func:`write_reports` wrote, and one line per report it could not write."""

    written: tuple[Path, ...] = ()
    errors: tuple[str, ...] = field(default_factory=tuple)


def write_reports(directory: str | Path, *, slides: str | Path | None = None, cache: str | Path | None = None) -> Reports:
    """Every report the files of ``directory`` allow: one per ``*.summary.json``, ``cohort.html`` when there is
    a ``cohort.json`` (after the slide reports, so that it links them), ``report.html`` when there is a
    ``metrics.json``. A slide that fails does not stop the others. ``slides``/``cache``: see :func:`slide_report`.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ReportError(f"results folder {root}: no such folder")
    written: list[Path] = []
    errors: list[str] = []
    for summary in sorted(root.glob(f"*{SUMMARY_SUFFIX}")):
        try:
            written.append(slide_report(summary, slide=slides, cache=cache))
        except (ReportError, SlideError) as exc:
            errors.append(str(exc))
        except WsiAmfError as exc:
            errors.append(f"summary {summary}: {exc}")
    if (root / COHORT_JSON).is_file():
        written.append(cohort_report(root))
    if (root / "metrics.json").is_file():
        written.append(evaluation_report_dir(root))
    if not written and not errors:
        raise ReportError(f"results folder {root}: nothing to report (no *{SUMMARY_SUFFIX}, {COHORT_JSON} or metrics.json)")
    return Reports(tuple(written), tuple(errors))
