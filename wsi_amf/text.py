"""Numbers in words, the same in the command line's lines and in the HTML reports: an estimate with its 95%
interval, and a summary's AMF ratio. This module imports nothing of wsi-amf and no third-party library."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

#: The dash between the ends of an interval: an en dash in the reports, a hyphen on the terminal.
EN_DASH = "\u2013"


def number(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; None and NaN/infinity as 'n/a'."""
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def interval_range(ci: Sequence[float], digits: int = 3, dash: str = EN_DASH) -> str:
    """'0.100–0.200': the two ends of an interval."""
    return f"{number(ci[0], digits)}{dash}{number(ci[1], digits)}"


def interval(ci: Sequence[float] | None, digits: int = 3, dash: str = EN_DASH) -> str:
    """'95% CI 0.100–0.200'; '' without an interval."""
    return f"95% CI {interval_range(ci, digits, dash)}" if ci else ""


def estimate(value: Any, ci: Sequence[float] | None = None, *, method: str = "", digits: int = 3,
             dash: str = EN_DASH) -> str:
    """'0.150 (acc, 95% CI 0.100–0.200)': an estimate, then its method and interval where known."""
    inside = ", ".join(part for part in (method, interval(ci, digits, dash)) if part)
    return number(value, digits) + (f" ({inside})" if inside else "")


def amf_ratio_text(d: Mapping[str, Any]) -> str:
    """A summary's (or cohort row's) AMF ratio in words: the estimate with its interval, then the share of calls
    (left out when the estimate is that share)."""
    est = d.get("amf_ratio")
    if est is None:
        return "AMF ratio n/a"
    method = str(d.get("amf_ratio_method") or "")
    called = d.get("called_amf_ratio")
    called_text = "" if called is None or method.startswith("cc") else f"; share of calls {number(called)}"
    return f"estimated AMF ratio {estimate(est, d.get('amf_ratio_ci95'), method=method, dash='-')}{called_text}"
