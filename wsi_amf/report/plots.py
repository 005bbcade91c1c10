"""Every figure of the reports, as hand-written inline SVG (no plotting library, crisp at any zoom).

Histograms of P(atypical), AMF ratios with their intervals, ROC curves, confusion matrices, and images
with vector overlays (candidates, the hotspot field). Elements carry classes (``bar-amf``, ``marker-nmf``,
``interval`` ...) so that tests can count what is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .html import AMF_HEX, HOTSPOT_HEX, NMF_HEX, esc, fmt

_FONT = 'font-family="system-ui, DejaVu Sans, sans-serif" font-size="12"'
GREY_HEX = "#8a8f98"


@dataclass(frozen=True)
class _Frame:
    """A plot area inside an SVG: data ranges mapped to pixels (y grows upwards)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        return self.height - self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    return [round(start + i * step, 10) for i in range(math.ceil((hi - start) / step - 1e-9) + 1)]


def _svg(width: int, height: int, body: Sequence[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{esc(label)}" {_FONT}>{"".join(body)}</svg>')


def _axes(f: _Frame, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str, *, xfmt: str = "{:g}",
          yfmt: str = "{:g}") -> list[str]:
    out = []
    for t in yticks:
        y = f.y(t)
        out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ef"/>')
        out.append(f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{esc(yfmt.format(t))}</text>')
    for t in xticks:
        x = f.x(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.height - f.bottom}" y2="{f.height - f.bottom + 4}" stroke="#444"/>')
        out.append(f'<text x="{x:.1f}" y="{f.height - f.bottom + 17}" text-anchor="middle" fill="#444">{esc(xfmt.format(t))}</text>')
    out.append(f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" height="{f.height - f.top - f.bottom}" '
               'fill="none" stroke="#444"/>')
    out.append(f'<text x="{(f.left + f.width - f.right) / 2:.1f}" y="{f.height - 6}" text-anchor="middle">{esc(xlabel)}</text>')
    cy = (f.top + f.height - f.bottom) / 2
    out.append(f'<text x="14" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 14 {cy:.1f})">{esc(ylabel)}</text>')
    return out


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for i, (color, text) in enumerate(items):
        yy = y + 16 * i
        out.append(f'<rect x="{x}" y="{yy - 9}" width="11" height="11" fill="{color}"/>')
        out.append(f'<text x="{x + 16}" y="{yy}">{esc(text)}</text>')
    return out


def histogram_svg(p: np.ndarray, positive: np.ndarray, *, threshold: float | None, bins: int = 20,
                  labels: tuple[str, str] = ("atypical", "normal"), xlabel: str = "P(atypical)") -> str:
    """Counts of ``p`` in ``bins`` bins over [0, 1], stacked by ``positive`` (red) and not (blue), with the threshold."""
    p = np.asarray(p, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    pos = np.histogram(p[positive], bins=edges)[0]
    neg = np.histogram(p[~positive], bins=edges)[0]
    top = max(1, int((pos + neg).max()) if len(p) else 1)
    yticks = [t for t in nice_ticks(0, top, 4) if float(t).is_integer()] or [0.0, float(top)]
    f = _Frame(720, 300, 52, 16, 26, 44, 0.0, 1.0, 0.0, max(yticks[-1], top))
    body = _axes(f, [0, 0.2, 0.4, 0.6, 0.8, 1.0], yticks, xlabel, "candidates")
    for i in range(bins):
        x0, x1 = f.x(edges[i]) + 0.5, f.x(edges[i + 1]) - 0.5
        for cls, color, lo, n in (("bar-nmf", NMF_HEX, 0, neg[i]), ("bar-amf", AMF_HEX, neg[i], pos[i])):
            if n:
                y_hi, y_lo = f.y(lo + n), f.y(lo)
                body.append(f'<rect class="{cls}" data-count="{int(n)}" x="{x0:.1f}" y="{y_hi:.1f}" width="{x1 - x0:.1f}" '
                            f'height="{y_lo - y_hi:.1f}" fill="{color}"><title>{esc(labels[cls == "bar-nmf"])}: {int(n)} '
                            f'in [{edges[i]:.2f}, {edges[i + 1]:.2f})</title></rect>')
    if threshold is not None:
        x = f.x(threshold)
        body.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.height - f.bottom}" stroke="#111" '
                    'stroke-width="2" stroke-dasharray="6 4"/>')
        body.append(f'<text x="{x + 4:.1f}" y="{f.top - 8}" fill="#111">threshold {threshold:.3f}</text>')
    body += _legend(f.width - f.right - 110, f.top + 16, [(AMF_HEX, labels[0]), (NMF_HEX, labels[1])])
    return _svg(f.width, f.height, body, f"histogram of {xlabel}")


@dataclass(frozen=True)
class IntervalRow:
    label: str
    value: float
    low: float
    high: float
    href: str | None = None
    note: str = ""


def interval_svg(rows: Sequence[IntervalRow], *, xlabel: str = "AMF ratio (atypical / classified)",
                 reference: float | None = None) -> str:
    """One row per item: the value as a dot, its 95 % interval as a bar (a forest plot); labels link to ``href``."""
    row_h, label_w = 22, 230
    hi = max([r.high for r in rows] + [r.value for r in rows] + [reference or 0.0, 0.05])
    xticks = nice_ticks(0.0, min(1.0, hi * 1.05), 5)
    height = 50 + row_h * max(1, len(rows))
    f = _Frame(820, height, label_w, 24, 12, 38, 0.0, xticks[-1], 0.0, 1.0)
    body = _axes(f, xticks, [], xlabel, "")
    if reference is not None:
        x = f.x(reference)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.height - f.bottom}" stroke="{GREY_HEX}" '
                    'stroke-dasharray="4 4"/>')
    for i, r in enumerate(rows):
        y = f.top + row_h * (i + 0.5) + 2
        text = esc(r.label if len(r.label) <= 32 else r.label[:30] + "\u2026")
        label = f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        body.append(f'<a href="{esc(r.href)}">{label}</a>' if r.href else label)
        tip = f"{esc(r.label)}: {fmt(r.value)} (95% CI {fmt(r.low)}\u2013{fmt(r.high)}){esc(r.note)}"
        body.append(f'<g class="interval" data-value="{r.value!r}"><title>{tip}</title>'
                    f'<line x1="{f.x(r.low):.1f}" x2="{f.x(r.high):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#333" stroke-width="2"/>'
                    f'<circle cx="{f.x(r.value):.1f}" cy="{y:.1f}" r="4.5" fill="{AMF_HEX}"/></g>')
    return _svg(f.width, f.height, body, "AMF ratio per slide with 95% interval")


def roc_svg(fpr: np.ndarray, tpr: np.ndarray, *, auc: float | None,
            points: Sequence[tuple[str, float, float]] = ()) -> str:
    """The ROC curve, the chance diagonal, and named operating points ``(name, fpr, tpr)``."""
    f = _Frame(420, 400, 52, 16, 28, 44, 0.0, 1.0, 0.0, 1.0)
    ticks = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    body = _axes(f, ticks, ticks, "false positive rate (1 \u2212 specificity)", "true positive rate (sensitivity)")
    body.append(f'<line x1="{f.x(0)}" y1="{f.y(0)}" x2="{f.x(1)}" y2="{f.y(1)}" stroke="{GREY_HEX}" stroke-dasharray="4 4"/>')
    path = " ".join(f"{f.x(a):.1f},{f.y(b):.1f}" for a, b in zip(fpr, tpr))
    body.append(f'<polyline class="roc" points="{path}" fill="none" stroke="{AMF_HEX}" stroke-width="2.5"/>')
    merged: dict[tuple[float, float], list[str]] = {}
    for name, a, b in points:  # thresholds giving the same calls share one point
        merged.setdefault((round(a, 9), round(b, 9)), []).append(name)
    for i, ((a, b), names) in enumerate(merged.items()):
        name = " = ".join(names)
        body.append(f'<circle class="operating-point" cx="{f.x(a):.1f}" cy="{f.y(b):.1f}" r="5" fill="#111">'
                    f'<title>{esc(name)}: FPR {a:.3f}, TPR {b:.3f}</title></circle>')
        body.append(f'<text x="{f.x(a) + 8:.1f}" y="{f.y(b) + 14 + 13 * i:.1f}">{esc(name)}</text>')
    title = "AUC undefined (one class)" if auc is None else f"ROC AUC = {auc:.3f}"
    body.append(f'<text x="{f.left}" y="18" font-weight="600">{esc(title)}</text>')
    return _svg(f.width, f.height, body, "ROC curve")


def confusion_svg(tp: int, fp: int, tn: int, fn: int, *, threshold: float) -> str:
    """The 2 x 2 confusion matrix (rows: truth, columns: prediction), shaded by row fraction."""
    size, left, top = 120, 120, 56
    cells = [("normal", "normal", tn, tn + fp), ("normal", "atypical", fp, tn + fp),
             ("atypical", "normal", fn, tp + fn), ("atypical", "atypical", tp, tp + fn)]
    body = [f'<text x="{left + size}" y="18" text-anchor="middle" font-weight="600">predicted (threshold {threshold:.3f})</text>',
            f'<text x="{left + size / 2}" y="{top - 8}" text-anchor="middle">normal</text>',
            f'<text x="{left + 1.5 * size}" y="{top - 8}" text-anchor="middle">atypical</text>',
            f'<text x="{left - 10}" y="{top + size / 2 + 4}" text-anchor="end">true normal</text>',
            f'<text x="{left - 10}" y="{top + 1.5 * size + 4}" text-anchor="end">true atypical</text>']
    for i, (truth, pred, n, row) in enumerate(cells):
        x, y = left + size * (i % 2), top + size * (i // 2)
        frac = n / row if row else 0.0
        rgb = ",".join(str(round(lo + (hi - lo) * frac)) for lo, hi in zip((243, 246, 251), (30, 90, 168)))
        ink = "#fff" if frac > 0.5 else "#111"
        body.append(f'<g class="confusion-cell" data-truth="{truth}" data-predicted="{pred}" data-count="{n}">'
                    f'<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="rgb({rgb})" '
                    f'stroke="#fff" stroke-width="2"/><text x="{x + size / 2}" y="{y + size / 2}" text-anchor="middle" '
                    f'font-size="22" fill="{ink}">{n}</text><text x="{x + size / 2}" y="{y + size / 2 + 22}" '
                    f'text-anchor="middle" fill="{ink}">{100 * frac:.1f}% of row</text></g>')
    return _svg(left + 2 * size + 20, top + 2 * size + 10, body, "confusion matrix")


@dataclass(frozen=True)
class Marker:
    """A candidate on an image: position in image pixels, class (``amf`` | ``nmf`` | ``skipped``), tooltip."""

    x: float
    y: float
    kind: str
    title: str


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    label: str


_MARKER_COLORS = {"amf": AMF_HEX, "nmf": NMF_HEX, "skipped": GREY_HEX}


def overlay_svg(uri: str, width: int, height: int, markers: Sequence[Marker], boxes: Sequence[Box] = (), *,
                radius: float, ring: bool = False, label: str = "slide", layer_uri: str | None = None) -> str:
    """An embedded image in its own pixel space with candidates as dots (or rings) and boxes on top; with
    ``layer_uri``, a transparent image of candidates (``dot_layer``) over it, below the markers."""
    stroke = max(1.0, radius / 3)
    body = [f'<image href="{uri}" x="0" y="0" width="{width}" height="{height}"/>']
    if layer_uri is not None:
        body.append(f'<image class="candidate-layer" href="{layer_uri}" x="0" y="0" width="{width}" height="{height}"/>')
    for m in markers:
        color = _MARKER_COLORS[m.kind]
        paint = (f'fill="none" stroke="{color}" stroke-width="{stroke:.1f}"' if ring
                 else f'fill="{color}" stroke="#fff" stroke-width="{stroke / 2:.1f}"')
        body.append(f'<circle class="marker-{m.kind}" cx="{m.x:.1f}" cy="{m.y:.1f}" r="{radius:.1f}" {paint}>'
                    f'<title>{esc(m.title)}</title></circle>')
    for b in boxes:
        w = max(2.0, width / 300)
        body.append(f'<g class="hotspot-box"><rect x="{b.x0:.1f}" y="{b.y0:.1f}" width="{b.x1 - b.x0:.1f}" '
                    f'height="{b.y1 - b.y0:.1f}" fill="none" stroke="#000" stroke-width="{w * 2:.1f}"/>'
                    f'<rect x="{b.x0:.1f}" y="{b.y0:.1f}" width="{b.x1 - b.x0:.1f}" height="{b.y1 - b.y0:.1f}" fill="none" '
                    f'stroke="{HOTSPOT_HEX}" stroke-width="{w:.1f}"><title>{esc(b.label)}</title></rect></g>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{esc(label)}">{"".join(body)}</svg>')


def dot_layer(width: int, height: int, groups: Sequence[tuple[str, np.ndarray]], *, radius: float,
              ring: bool = False, chunk: int = 20000) -> np.ndarray:
    """A transparent RGBA image (``height`` x ``width``) with a dot (or a ring) at every position of each
    ``(kind, xy)`` group in its kind's colour (``amf`` | ``nmf`` | ``skipped``; dots with a white rim), the
    groups drawn in order, the last on top: what ``overlay_svg`` draws as markers, for more candidates than
    a page should hold as elements."""
    layer = np.zeros((height, width, 4), dtype=np.uint8)
    r = max(1.0, float(radius))
    reach = int(math.ceil(r + 1))
    dy, dx = (a.ravel() for a in np.mgrid[-reach : reach + 1, -reach : reach + 1])
    d2 = dx * dx + dy * dy
    band = max(1.0, r / 3)
    fill = (d2 <= r * r) & (d2 >= (r - band) ** 2) if ring else d2 <= r * r
    rim = np.zeros_like(fill) if ring else (d2 <= (r + 1) ** 2) & ~fill
    for kind, xy in groups:
        centres = np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
        for stencil, rgb in ((rim, (255, 255, 255)), (fill, _rgb(_MARKER_COLORS[kind]))):
            if not stencil.any():
                continue
            for start in range(0, len(centres), chunk):  # bounded memory: chunk x stencil pixels at a time
                c = centres[start : start + chunk]
                px = (c[:, 0:1] + dx[stencil]).ravel()
                py = (c[:, 1:2] + dy[stencil]).ravel()
                on = (px >= 0) & (px < width) & (py >= 0) & (py < height)
                layer[py[on], px[on]] = (*rgb, 255)
    return layer


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)
