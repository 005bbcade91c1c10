"""HTML building blocks of the reports: one self-contained page (inline CSS and JS, images as data URIs,
no network), escaped text, tables (optionally sortable), number formatting.

Every text that comes from data (file names, model names, column values) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..files import atomic_write_text
from ..outputs import AMF_COLOR, NMF_COLOR

AMF_HEX = "#{:02x}{:02x}{:02x}".format(*AMF_COLOR)  # the GeoJSON classes' colours
NMF_HEX = "#{:02x}{:02x}{:02x}".format(*NMF_COLOR)
HOTSPOT_HEX = "#ffb000"

CSS = """
:root { --amf: %(amf)s; --nmf: %(nmf)s; --hot: %(hot)s; --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #f4f6f9; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; } header p { margin: 4px 0 0; color: #c6ccd8; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 28px 40px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 10px; } h3 { font-size: 15px; margin: 14px 0 6px; }
p.note { color: var(--muted); margin: 4px 0 10px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%%; font-size: 13px; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 30%%; background: none; font-weight: 500; color: var(--muted); }
table.kv td.num { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9aa3b2; }
table.sortable th[data-dir="asc"]::after { content: " \\2191"; color: var(--ink); }
table.sortable th[data-dir="desc"]::after { content: " \\2193"; color: var(--ink); }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.grid > * { flex: 1 1 360px; min-width: 0; }
svg { max-width: 100%%; height: auto; display: block; }
.amf { color: var(--amf); font-weight: 600; } .nmf { color: var(--nmf); font-weight: 600; }
.status-failed { color: #b00020; font-weight: 600; } .status-skipped { color: var(--muted); }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure { margin: 0; width: 150px; font-size: 12px; color: var(--muted); }
.gallery img { width: 150px; height: 150px; image-rendering: auto; border: 3px solid var(--line); border-radius: 4px; }
.gallery figure.amf img { border-color: var(--amf); } .gallery figure.nmf img { border-color: var(--nmf); }
.gallery figcaption b { color: var(--ink); }
.zoom { position: relative; overflow: hidden; border: 1px solid var(--line); border-radius: 6px; background: #fff;
        cursor: grab; touch-action: none; max-width: 900px; }
.zoom > .zoom-inner { transform-origin: 0 0; }
.zoom:active { cursor: grabbing; }
.legend span { display: inline-block; margin-right: 16px; }
.dot { display: inline-block; width: 11px; height: 11px; border-radius: 50%%; vertical-align: -1px; margin-right: 4px; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 0 0 24px; }
""" % {"amf": AMF_HEX, "nmf": NMF_HEX, "hot": HOTSPOT_HEX}  # noqa: UP031 - CSS is full of braces

# Click a header to sort by it; numbers sort by their data-sort value, blanks last.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? "desc" : "asc";
      table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) { var c = row.cells[col]; var v = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent;
                          var n = parseFloat(v); return v === "" ? null : (isNaN(n) || !/^[-+0-9.eE]+$/.test(v) ? v.toLowerCase() : n); }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var r = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return dir === "asc" ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

# Wheel to zoom about the cursor, drag to pan, double-click to reset.
ZOOM_JS = """
document.querySelectorAll(".zoom").forEach(function (box) {
  var inner = box.querySelector(".zoom-inner"), s = 1, tx = 0, ty = 0, drag = null;
  function apply() { inner.style.transform = "translate(" + tx + "px," + ty + "px) scale(" + s + ")"; }
  box.addEventListener("wheel", function (e) {
    e.preventDefault();
    var r = box.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    var f = Math.exp(-e.deltaY * 0.0015), ns = Math.min(16, Math.max(1, s * f));
    tx = mx - (mx - tx) * ns / s; ty = my - (my - ty) * ns / s; s = ns;
    if (s === 1) { tx = 0; ty = 0; } apply();
  }, { passive: false });
  box.addEventListener("pointerdown", function (e) { drag = [e.clientX - tx, e.clientY - ty]; box.setPointerCapture(e.pointerId); });
  box.addEventListener("pointermove", function (e) { if (drag) { tx = e.clientX - drag[0]; ty = e.clientY - drag[1]; apply(); } });
  box.addEventListener("pointerup", function () { drag = null; });
  box.addEventListener("dblclick", function () { s = 1; tx = 0; ty = 0; apply(); });
});
"""


def esc(value: Any) -> str:
    """Text for HTML and SVG (quotes escaped too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for display: integers as they are, floats with ``digits`` decimals, None/NaN as 'n/a'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def image_uri(image: np.ndarray, *, fmt_name: str = "PNG", quality: int = 88) -> str:
    """A ``data:`` URI of an RGB image: PNG (lossless: patches; RGBA too) or JPEG (photographic overviews, smaller)."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if fmt_name == "JPEG":
        img.save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, format="PNG", optimize=True)
    return f"data:image/{fmt_name.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


@dataclass(frozen=True)
class Cell:
    """A table cell: ``html`` (already escaped markup), a value to sort by, and data attributes for tests."""

    html: str
    sort: Any = None
    numeric: bool = False
    attrs: Mapping[str, Any] | None = None


def cell(value: Any, *, digits: int = 3, key: str | None = None) -> Cell:
    """A cell for a plain value: formatted, sorted by the raw value, ``data-key``/``data-value`` when keyed."""
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    attrs = {"data-key": key, "data-value": "" if value is None else value} if key else None
    return Cell(esc(fmt(value, digits)), sort="" if value is None else value, numeric=numeric, attrs=attrs)


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell | Any]], *, sortable: bool = False, cls: str = "") -> str:
    """An HTML table; plain values in ``rows`` are wrapped by :func:`cell`."""
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    out = [f'<table class="{classes}">' if classes else "<table>", "<thead><tr>"]
    out += [f"<th>{esc(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(_td(c if isinstance(c, Cell) else cell(c)) for c in row) + "</tr>")
    out.append("</tbody></table>")
    return f'<div class="scroll">{"".join(out)}</div>'


def kv_table(rows: Iterable[tuple[str, Cell | Any]]) -> str:
    """A two-column table of labelled values (the summary tables)."""
    body = "".join(f"<tr><th>{esc(k)}</th>{_td(v if isinstance(v, Cell) else cell(v))}</tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _td(c: Cell) -> str:
    attrs = dict(c.attrs or {})
    if c.sort is not None:
        attrs["data-sort"] = c.sort
    text = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return f'<td{" class=num" if c.numeric else ""}{text}>{c.html}</td>'


def section(title: str, body: str, *, note: str | None = None, ident: str | None = None) -> str:
    head = f"<h2>{esc(title)}</h2>" + (f'<p class="note">{esc(note)}</p>' if note else "")
    return f'<section{f" id={esc(ident)}" if ident else ""}>{head}{body}</section>'


def page(title: str, subtitle: str, sections: Iterable[str], *, scripts: Sequence[str] = ()) -> str:
    """The whole document: everything inline, nothing fetched."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    js = "".join(f"<script>{s}</script>" for s in scripts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>{''.join(sections)}</main>"
        f"<footer>wsi-amf {esc(__version__)} \u00b7 {esc(when)} \u00b7 research software, not for diagnosis</footer>"
        f"{js}</body></html>\n"
    )


def write_page(path: str | Path, text: str) -> Path:
    atomic_write_text(path, text)
    return Path(path)
