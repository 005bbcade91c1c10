"""The slide report: one self-contained HTML page per screened slide, from the files of a results directory.

Inputs: ``<stem>.summary.json`` (slide path, cache path, model, threshold, counts, hotspot), ``<stem>.csv``
(x, y, p_atypical, label, status per candidate), the slide itself (thumbnail, hotspot view, patches the
cache lacks) and the patch cache (gallery patches, read-only). Output: ``<stem>.report.html`` holding the
slide thumbnail with every classified candidate coloured by class and the hotspot field, a zoomable view
of the hotspot, the histogram of P(atypical) with the threshold, galleries (most confident atypical, most
confident normal, most uncertain), and the summary table (with the ROI block when the summary has one).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import ReportError
from ..hotspot import find_hotspot
from ..outputs import check_output_set
from ..slide import Slide
from ..text import estimate
from . import html as h
from .plots import Box, Marker, dot_layer, histogram_svg, overlay_svg

SUMMARY_SUFFIX = ".summary.json"
REPORT_SUFFIX = ".report.html"
GALLERY = 12
THUMBNAIL = 1200
ZOOM_MAX = 1536
MARKER_LIMIT = 3000  # more candidates than this in a view are drawn as one image (a page of 200,000 stays small)
FIGURE_RADIUS_UM = 12.0  # ring drawn around a figure in the hotspot view


@dataclass(frozen=True)
class Candidates:
    """The per-candidate table of a screening (``<stem>.csv``)."""

    xy: np.ndarray  # float64 [N, 2], level-0 pixels
    p: np.ndarray  # float64 [N], NaN when not classified
    atypical: np.ndarray  # bool [N]
    classified: np.ndarray  # bool [N]

    @classmethod
    def read(cls, path: Path) -> Candidates:
        """The columns the report uses, read row by row (no per-row objects kept: 200,000 rows stay small)."""
        x: list[float] = []
        y: list[float] = []
        p: list[float] = []
        atypical: list[bool] = []
        classified: list[bool] = []
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = csv.reader(fh)
                header = next(rows, [])
                ix, iy, ip, il, st = (header.index(c) for c in ("x", "y", "p_atypical", "label", "status"))
                for row in rows:
                    x.append(float(row[ix]))
                    y.append(float(row[iy]))
                    ok = row[st] == "ok"
                    classified.append(ok)
                    p.append(float(row[ip]) if ok else math.nan)
                    atypical.append(ok and row[il] == "atypical")
        except FileNotFoundError:
            raise ReportError(f"table {path}: no such file (the report needs the screening's CSV beside its summary)") from None
        except (IndexError, ValueError, TypeError, csv.Error) as exc:
            raise ReportError(f"table {path}: not a wsi-amf candidate table ({type(exc).__name__}: {exc})") from None
        xy = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)]).reshape(-1, 2)
        return cls(xy, np.asarray(p, dtype=np.float64), np.asarray(atypical, dtype=bool), np.asarray(classified, dtype=bool))


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{what} {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{what} {path}: expected a JSON object")
    return data


def output_stem(summary_path: Path) -> str:
    name = summary_path.name
    return name[: -len(SUMMARY_SUFFIX)] if name.endswith(SUMMARY_SUFFIX) else summary_path.stem


def report_path(summary_path: str | Path, out: str | Path | None = None) -> Path:
    """Where the report of ``<stem>.summary.json`` goes: ``<stem>.report.html`` in ``out`` (default: beside it)."""
    summary_path = Path(summary_path)
    return Path(out if out is not None else summary_path.parent) / f"{output_stem(summary_path)}{REPORT_SUFFIX}"


def slide_report(
    summary: str | Path,
    *,
    out: str | Path | None = None,
    slide: str | Path | None = None,
    cache: str | Path | None = None,
    gallery: int = GALLERY,
) -> Path:
    """Write the HTML report of one screened slide and return its path.

    ``summary``: a ``<stem>.summary.json`` (its ``<stem>.csv`` must sit beside it). ``slide``: the slide file
    (or a folder holding it) when it moved since screening; ``cache``: the cache root (``--cache``) when it
    differs from the one recorded. ``out``: the output folder (default: the summary's).
    """
    summary_path = Path(summary)
    s = read_json(summary_path, "summary")
    if "slide" not in s or "threshold" not in s:
        raise ReportError(f"summary {summary_path}: not a wsi-amf screening summary (no 'slide' / 'threshold')")
    problem = check_output_set(summary_path)
    if problem is not None:
        raise ReportError(f"{problem}: the outputs are not one run's set; screen the slide again")
    cands = Candidates.read(summary_path.with_name(f"{output_stem(summary_path)}.csv"))
    slide_path = _slide_path(s, summary_path, slide)
    with Slide(slide_path, mpp=s.get("mpp") if s.get("mpp_source") == "option" else None) as sl:
        hotspot = s.get("hotspot")
        if hotspot is None and cands.classified.any():  # a summary written before hotspots existed
            found = find_hotspot(cands.xy[cands.classified], cands.atypical[cands.classified], mpp=sl.mpp, dimensions=sl.dimensions)
            hotspot = found.to_json() if found is not None else None
        sections = [
            h.section("Summary", _summary_table(s, sl, summary_path), ident="summary"),
            h.section("Slide", _thumbnail_view(sl, cands, hotspot), ident="slide",
                      note="Every classified candidate, coloured by class; the hotspot field framed in amber. "
                           + ("Hover a dot for its probability and position." if cands.classified.sum() <= MARKER_LIMIT
                              else f"More than {MARKER_LIMIT:,} candidates: drawn as one image, without hover details "
                                   "(the hotspot view and the CSV table have them).")),
            h.section("Hotspot", _hotspot_view(sl, cands, hotspot), ident="hotspot"),
            h.section("P(atypical)", histogram_svg(cands.p[cands.classified], cands.atypical[cands.classified],
                                                   threshold=float(s.get("threshold_calibrated", s["threshold"]))),
                      ident="histogram",
                      note="Classified candidates by (calibrated) probability of being atypical; right of the dashed "
                           "line = called atypical."),
            h.section("Gallery", _galleries(sl, cands, s, slide_path, cache, gallery), ident="gallery",
                      note="The patches the model classified (from the patch cache), with P(atypical) and level-0 position."),
        ]
    ratio = estimate(s.get("amf_ratio"), s.get("amf_ratio_ci95"))
    subtitle = (f"{s.get('n_atypical', 0)} called atypical and {s.get('n_normal', 0)} called normal; estimated share "
                f"of atypical figures {ratio} \u00b7 model {s.get('model', {}).get('name', '?')}")
    text = h.page(f"wsi-amf slide report: {slide_path.name}", subtitle, sections, scripts=(h.ZOOM_JS,))
    return h.write_page(report_path(summary_path, out), text)


def _slide_path(s: Mapping[str, Any], summary_path: Path, override: str | Path | None) -> Path:
    recorded = Path(s["slide"])
    path = recorded if override is None else Path(override)
    if path.is_dir():
        path = path / recorded.name
    if not path.exists():
        raise ReportError(f"summary {summary_path}: slide {path} not found; pass the slide's new place "
                          "(wsi-amf report --slides DIR)")
    return path


def _thumbnail_view(sl: Slide, c: Candidates, hotspot: Mapping[str, Any] | None) -> str:
    thumb = sl.thumbnail(THUMBNAIL)
    th, tw = thumb.shape[:2]
    sx, sy = tw / sl.dimensions[0], th / sl.dimensions[1]
    radius = max(3.0, tw / 250)
    markers, layer = _overlay(c, lambda xy: xy * (sx, sy), tw, th, radius=radius)
    boxes = []
    if hotspot is not None:
        x0, y0, x1, y1 = _on_slide(hotspot["box_px"], sl.dimensions)
        boxes.append(Box(x0 * sx, y0 * sy, x1 * sx, y1 * sy, _hotspot_line(hotspot)))
    svg = overlay_svg(h.image_uri(thumb, fmt_name="JPEG"), tw, th, markers, boxes, radius=radius,
                      label="slide thumbnail with candidates", layer_uri=layer)
    legend = (f'<p class="legend"><span><i class="dot" style="background:{h.AMF_HEX}"></i>atypical ({int(c.atypical.sum())})</span>'
              f'<span><i class="dot" style="background:{h.NMF_HEX}"></i>normal ({int((c.classified & ~c.atypical).sum())})</span>'
              f'<span><i class="dot" style="background:{h.HOTSPOT_HEX};border-radius:0"></i>hotspot field</span></p>')
    return legend + svg


def _overlay(c: Candidates, to_image: Callable[[np.ndarray], np.ndarray], width: int, height: int, *,
             radius: float, ring: bool = False, inside: np.ndarray | None = None) -> tuple[list[Marker], str | None]:
    """The classified candidates (those ``inside`` only, when given) for ``overlay_svg``, atypical drawn on
    top: up to ``MARKER_LIMIT`` of them as markers with hover details, more as one image layer (its URI)."""
    keep = c.classified if inside is None else c.classified & inside
    order = np.r_[np.flatnonzero(keep & ~c.atypical), np.flatnonzero(keep & c.atypical)]
    where = to_image(c.xy[order])
    if len(order) > MARKER_LIMIT:
        groups = [(kind, where[c.atypical[order] == amf]) for kind, amf in (("nmf", False), ("amf", True))]
        return [], h.image_uri(dot_layer(width, height, groups, radius=radius, ring=ring))
    markers = []
    for i, (x, y) in zip(order.tolist(), where.tolist()):
        kind = "amf" if c.atypical[i] else "nmf"
        markers.append(Marker(x, y, kind, f"{'atypical' if kind == 'amf' else 'normal'} p={c.p[i]:.3f} "
                                          f"at ({c.xy[i, 0]:.0f}, {c.xy[i, 1]:.0f})"))
    return markers, None


def _hotspot_line(hs: Mapping[str, Any]) -> str:
    return (f"hotspot: {hs['n_mf']} mitotic figures, {hs['n_amf']} called atypical in {hs['area_mm2']:g} mm\u00b2 "
            f"({hs['shape']} of side {hs['side_um'] / 1000:.3f} mm); estimated share of atypical figures "
            f"{estimate(hs.get('amf_ratio'), hs.get('amf_ratio_ci95'))}")


def _on_slide(box: Iterable[float], dimensions: tuple[int, int]) -> tuple[float, float, float, float]:
    """The part of a level-0 box that lies on the slide (the field is larger than a small slide)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, hgt = dimensions
    return max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(hgt))


def _hotspot_view(sl: Slide, c: Candidates, hotspot: Mapping[str, Any] | None) -> str:
    if hotspot is None:
        return '<p class="note">No classified candidate: no hotspot.</p>'
    bx0, by0, bx1, by1 = (float(v) for v in hotspot["box_px"])
    side_px = bx1 - bx0
    n = int(min(ZOOM_MAX, math.ceil(side_px)))
    crop_mpp = side_px * sl.mpp / n  # micrometres per pixel of the view
    scale = n / side_px
    image = sl.read_patch((bx0 + bx1) / 2, (by0 + by1) / 2, size=n, target_mpp=crop_mpp)
    x0, y0, x1, y1 = _on_slide(hotspot["box_px"], sl.dimensions)  # show only the part on the slide
    j0, i0 = int((x0 - bx0) * scale), int((y0 - by0) * scale)
    image = image[i0 : max(i0 + 1, math.ceil((y1 - by0) * scale)), j0 : max(j0 + 1, math.ceil((x1 - bx0) * scale))]
    inside = (c.xy[:, 0] >= bx0) & (c.xy[:, 0] <= bx1) & (c.xy[:, 1] >= by0) & (c.xy[:, 1] <= by1)
    radius = FIGURE_RADIUS_UM / crop_mpp
    markers, layer = _overlay(c, lambda xy: (xy - (bx0, by0)) * scale - (j0, i0), image.shape[1], image.shape[0],
                              radius=radius, ring=True, inside=inside)
    svg = overlay_svg(h.image_uri(image, fmt_name="JPEG", quality=90), image.shape[1], image.shape[0], markers,
                      radius=radius, ring=True, label="hotspot field", layer_uri=layer)
    larger = " The field is larger than the slide: the view shows the part on it." if (x0, y0, x1, y1) != (bx0, by0, bx1, by1) else ""
    if layer is not None:
        larger += f" More than {MARKER_LIMIT:,} figures: drawn as one image, without hover details."
    note = (f"{h.esc(_hotspot_line(hotspot))}. Centre ({hotspot['centre_px'][0]:.0f}, {hotspot['centre_px'][1]:.0f}) "
            f"level-0 px; shown at {crop_mpp:.2f} \u00b5m/px.{larger} Scroll to zoom, drag to pan, double-click to reset.")
    return f'<p class="note">{note}</p><div class="zoom"><div class="zoom-inner">{svg}</div></div>'


def _galleries(sl: Slide, c: Candidates, s: Mapping[str, Any], slide_path: Path, cache: str | Path | None, k: int) -> str:
    ok = np.flatnonzero(c.classified)
    thr = float(s["threshold"])
    amf = ok[c.atypical[ok]]
    nmf = ok[~c.atypical[ok]]
    groups = [
        ("Most confident atypical", amf[np.argsort(-c.p[amf], kind="stable")][:k]),
        ("Most confident normal", nmf[np.argsort(c.p[nmf], kind="stable")][:k]),
        ("Most uncertain", ok[np.argsort(np.abs(c.p[ok] - thr), kind="stable")][:k]),
    ]
    wanted = np.unique(np.concatenate([g for _, g in groups])) if len(ok) else np.zeros(0, dtype=np.int64)
    patches = _patches(sl, c.xy[wanted], s, slide_path, cache)
    by_index = dict(zip(wanted.tolist(), patches))
    out = []
    for title, idx in groups:
        tiles = "".join(_tile(by_index[i], c, i) for i in idx.tolist()) or '<p class="note">none</p>'
        out.append(f'<h3>{h.esc(title)} ({len(idx)})</h3><div class="gallery" data-gallery="{h.esc(title)}">{tiles}</div>')
    return "".join(out)


def _tile(patch: np.ndarray, c: Candidates, i: int) -> str:
    kind = "amf" if c.atypical[i] else "nmf"
    x, y = c.xy[i]
    return (f'<figure class="{kind}" data-p="{float(c.p[i])!r}"><img src="{h.image_uri(patch)}" alt="candidate at ({x:.0f}, {y:.0f})">'
            f"<figcaption><b>p = {c.p[i]:.3f}</b> {'atypical' if kind == 'amf' else 'normal'}<br>"
            f"({x:.0f}, {y:.0f})</figcaption></figure>")


def _patches(sl: Slide, xy: np.ndarray, s: Mapping[str, Any], slide_path: Path, cache: str | Path | None) -> list[np.ndarray]:
    """The classified patches: from the (read-only) cache, else read from the slide as screening read them."""
    from ..cache import read_cached, slide_group_name

    size = int(s.get("model", {}).get("patch_size") or 128)
    mpp = float(s.get("patch_mpp") or s.get("model", {}).get("mpp") or 0.25)
    recorded = Path(s.get("cache", {}).get("path") or f"s{size}_mpp{mpp:g}")
    group = recorded if cache is None else Path(cache) / slide_group_name(slide_path) / recorded.name
    found = read_cached(group, sl.identity(), xy)
    return [found[i] if i in found else sl.read_patch(float(x), float(y), size=size, target_mpp=mpp)
            for i, (x, y) in enumerate(xy)]


def _summary_table(s: Mapping[str, Any], sl: Slide, summary_path: Path) -> str:
    model = s.get("model") or {}
    engine = s.get("engine") or {}
    hs = s.get("hotspot")
    rows: list[tuple[str, Any]] = [
        ("Slide", h.Cell(h.esc(s["slide"]))),
        ("Size (level 0)", h.Cell(f"{sl.dimensions[0]} \u00d7 {sl.dimensions[1]} px")),
        ("Resolution", h.Cell(f"{h.fmt(s.get('mpp'), 4)} \u00b5m/px ({h.esc(s.get('mpp_source'))})",
                              attrs={"data-key": "mpp", "data-value": s.get("mpp")})),
        ("Candidates", h.cell(s.get("n_candidates"), key="n_candidates")),
        ("Classified", h.cell(s.get("n_classified"), key="n_classified")),
        ("Skipped (outside the slide)", h.cell(s.get("n_skipped"), key="n_skipped")),
        ("Called atypical (AMF)", h.cell(s.get("n_atypical"), key="n_atypical")),
        ("Called normal (NMF)", h.cell(s.get("n_normal"), key="n_normal")),
        ("Share of calls (called atypical / classified)",
         _ratio_cell(s.get("called_amf_ratio"), s.get("called_amf_ratio_ci95"), "called_amf_ratio")),
        (f"Estimated share of atypical figures ({s.get('amf_ratio_method', '?')})",
         _ratio_cell(s.get("amf_ratio"), s.get("amf_ratio_ci95"), "amf_ratio")),
        ("Estimated atypical figures", h.cell(s.get("estimated_n_atypical"), key="estimated_n_atypical")),
        ("Atypical : normal (estimated)", _ratio_cell(s.get("atypical_to_normal_ratio"),
                                                      s.get("atypical_to_normal_ratio_ci95"), "atypical_to_normal_ratio")),
        ("Threshold on the model's score", h.cell(s.get("threshold"), key="threshold")),
        ("Model", h.Cell(h.esc(f"{model.get('name', '?')} ({model.get('members', '?')} \u00d7 {model.get('architecture', '?')}, "
                                f"{model.get('mpp', '?')} \u00b5m/px)"), attrs={"data-key": "model"})),
        ("Engine", h.Cell(h.esc(f"{engine.get('engine', '?')} on {engine.get('device', '?')}"
                                f"{', TTA' if s.get('tta') else ''}"))),
    ]
    if hs is not None:
        rows += [
            (f"Hotspot: mitotic figures in {hs['area_mm2']:g} mm\u00b2", h.cell(hs["n_mf"], key="hotspot.n_mf")),
            ("Hotspot: called atypical", h.cell(hs["n_amf"], key="hotspot.n_amf")),
            ("Hotspot: estimated share of atypical figures",
             _ratio_cell(hs.get("amf_ratio"), hs.get("amf_ratio_ci95"), "hotspot.amf_ratio")),
            ("Hotspot: field", h.Cell(h.esc(f"{hs['shape']} of side {hs['side_um']:.0f} \u00b5m centred at "
                                            f"({hs['centre_px'][0]:.0f}, {hs['centre_px'][1]:.0f}) px"))),
        ]
    for key in ("domain_warning", "ratio_warning"):
        if s.get(key):
            rows.append(("Warning", h.Cell(h.esc(s[key]), attrs={"data-key": key})))
    if isinstance(s.get("roi"), Mapping):
        rows += [(f"ROI: {key}", h.cell(value, key=f"roi.{key}")) for key, value in _flatten(s["roi"])]
    rows.append(("Summary file", h.Cell(h.esc(summary_path.name))))
    return h.kv_table(rows)


def _ratio_cell(value: float | None, ci: list[float] | None, key: str) -> h.Cell:
    return h.Cell(h.esc(estimate(value, ci)), attrs={"data-key": key, "data-value": "" if value is None else value})


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            yield name, ", ".join(h.fmt(v) for v in value)
        else:
            yield name, value
