"""Slide, cohort and evaluation reports: what they show equals what the screening / evaluation wrote."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from wsi_amf import screen
from wsi_amf.cli import main
from wsi_amf.errors import OptionError, ReportError
from wsi_amf.inference.reports import metrics_report
from wsi_amf.options import ScreenOptions
from wsi_amf.report import cohort_report, evaluation_report, evaluation_report_dir, slide_report, write_reports
from wsi_amf.slide import Slide
from wsi_amf.stats import roc_curve


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.tags if (tag is None or t == tag) and all(a.get(k) == v for k, v in want.items())]

    def with_class(self, cls: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if cls in a.get("class", "").split()]

    def values(self) -> dict[str, str]:
        return {a["data-key"]: a.get("data-value", "") for _, a in self.tags if "data-key" in a}


def section(text: str, ident: str) -> Elements:
    match = re.search(rf'<section id={ident}>(.*?)</section>', text, re.S)
    assert match, f"no section {ident}"
    return Elements(match.group(1))


def assert_self_contained(text: str) -> None:
    """Nothing is fetched: every image is a data URI, no stylesheet or script is linked, no http(s) URL but SVG's xmlns."""
    doc = Elements(text)
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            if key in attrs and tag in ("img", "image", "script", "link", "iframe"):
                assert attrs[key].startswith("data:"), (tag, attrs[key][:60])
    assert not doc.find("link") and all("src" not in a for a in doc.find("script"))
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", text)


def decode_image(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory, hotspot_slide, tiny_bundle):
    root = tmp_path_factory.mktemp("screened")
    first = screen(hotspot_slide.path, hotspot_slide.points, ScreenOptions(cache_dir=root / "cache"),
                   model=tiny_bundle, progress=False)
    threshold = float(np.median(first.p_atypical))  # a random model: split its calls so that both classes show
    r = screen(hotspot_slide.path, hotspot_slide.points,
               ScreenOptions(cache_dir=root / "cache", report=True,
                             threshold=threshold), model=tiny_bundle, out=root / "out", progress=False)
    assert 0 < r.n_atypical < r.n_classified
    return r, root


def test_screen_report_shows_the_screening(screened) -> None:
    r, _ = screened
    s = json.loads(r.outputs["summary"].read_text())
    rows = list(csv.DictReader(r.outputs["csv"].open()))
    text = r.outputs["report"].read_text()
    assert r.outputs["report"].name == "planted.report.html"
    assert_self_contained(text)

    # The summary table holds the summary's own numbers.
    values = section(text, "summary").values()
    for key in ("n_candidates", "n_classified", "n_skipped", "n_atypical", "n_normal", "amf_ratio", "threshold",
                "atypical_to_normal_ratio"):
        assert values[key] == ("" if s[key] is None else str(s[key])), key
    for key in ("n_mf", "n_amf", "amf_ratio"):
        assert values[f"hotspot.{key}"] == str(s["hotspot"][key])
    assert "95% CI" in text and f"{s['amf_ratio_ci95'][0]:.3f}" in text

    # The thumbnail: one dot per classified candidate, coloured by class, and the hotspot frame.
    thumb = section(text, "slide")
    assert len(thumb.with_class("marker-amf")) == s["n_atypical"]
    assert len(thumb.with_class("marker-nmf")) == s["n_normal"]
    assert len(thumb.with_class("hotspot-box")) == 1
    image = decode_image(thumb.find("image")[0]["href"])
    assert image.shape[1] == 1200 and image.std() > 5  # the slide itself, not a blank

    # The hotspot view: exactly the figures of the field.
    hot = section(text, "hotspot")
    assert len(hot.with_class("marker-amf")) == s["hotspot"]["n_amf"]
    assert len(hot.with_class("marker-nmf")) + len(hot.with_class("marker-amf")) == s["hotspot"]["n_mf"] == 14
    assert "zoom" in text and "wheel" in text

    # The histogram: bar counts add up to the classes, the threshold is drawn.
    hist = section(text, "histogram")
    assert sum(int(a["data-count"]) for a in hist.with_class("bar-amf")) == s["n_atypical"]
    assert sum(int(a["data-count"]) for a in hist.with_class("bar-nmf")) == s["n_normal"]
    assert len(hist.with_class("threshold")) == 1 and f"threshold {s['threshold']:.3f}" in text

    # Galleries: the most confident of each class and the most uncertain, with their probabilities.
    gal = section(text, "gallery")
    groups = gal.find("div", **{"class": "gallery"})
    assert [g["data-gallery"] for g in groups] == ["Most confident atypical", "Most confident normal", "Most uncertain"]
    figures = [a for t, a in gal.tags if t == "figure"]
    p_all = sorted(float(row["p_atypical"]) for row in rows if row["status"] == "ok")
    n_amf, n_nmf = s["n_atypical"], s["n_normal"]
    amf_p = [float(f["data-p"]) for f in figures[: min(12, n_amf)]]
    nmf_p = [float(f["data-p"]) for f in figures[min(12, n_amf): min(12, n_amf) + min(12, n_nmf)]]
    assert amf_p == pytest.approx(sorted(p_all, reverse=True)[: len(amf_p)], abs=1e-6)
    assert nmf_p == pytest.approx(p_all[: len(nmf_p)], abs=1e-6)
    unsure = [float(f["data-p"]) for f in figures[len(amf_p) + len(nmf_p):]]
    assert len(unsure) == 12 and np.all(np.diff(np.abs(np.array(unsure) - s["threshold"])) >= -1e-9)
    assert all(f["class"] == ("amf" if float(f["data-p"]) >= s["threshold"] else "nmf") for f in figures)


def test_gallery_patches_come_from_the_cache_or_the_slide_alike(screened, hotspot_slide, tmp_path) -> None:
    r, _ = screened
    s = json.loads(r.outputs["summary"].read_text())
    cached = Elements(r.outputs["report"].read_text()).find("img")
    first = cached[0]
    x, y = (float(v) for v in re.findall(r"[\d.]+", first["alt"]))
    # The patch shown is the one the model saw: the slide's patch at the model's resolution.
    with Slide(hotspot_slide.path) as sl:
        row = next(rw for rw in csv.DictReader(r.outputs["csv"].open()) if round(float(rw["x"])) == x and round(float(rw["y"])) == y)
        patch = sl.read_patch(float(row["x"]), float(row["y"]), size=s["model"]["patch_size"], target_mpp=s["patch_mpp"])
    assert np.array_equal(decode_image(first["src"]), patch)
    # Without the cache the same patches are read from the slide; the cache is not created.
    moved = tmp_path / "no-cache"
    again = slide_report(r.outputs["summary"], out=moved, cache=tmp_path / "missing-cache")
    assert not (tmp_path / "missing-cache").exists()
    assert [a["src"] for a in Elements(again.read_text()).find("img")] == [a["src"] for a in cached]


def test_report_command_roi_block_and_escaping(screened, hotspot_slide, tmp_path) -> None:
    r, root = screened
    out = tmp_path / "results"
    shutil.copytree(r.outputs["summary"].parent, out)
    weird = tmp_path / "slides" / "a&b <i>.tif"
    weird.parent.mkdir()
    weird.symlink_to(hotspot_slide.path)
    summary = json.loads((out / "planted.summary.json").read_text())
    summary["roi"] = {"n_regions": 2, "area_mm2": 3.5, "density_per_mm2": {"mf": 6.0, "amf": 1.25}}
    summary["slide"] = str(tmp_path / "elsewhere" / weird.name)  # the slide moved since screening
    (out / "planted.summary.json").write_text(json.dumps(summary))
    (out / "planted.report.html").unlink()

    failed = CliRunner().invoke(main, ["report", str(out)])
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert "slide" in failed.output and "not found" in failed.output and "--slides" in failed.output
    assert not (out / "planted.report.html").exists()

    done = CliRunner().invoke(main, ["report", str(out), "--slides", str(weird.parent), "--cache", str(root / "cache")])
    assert done.exit_code == 0, done.output
    assert str(out / "planted.report.html") in done.output
    text = (out / "planted.report.html").read_text()
    values = section(text, "summary").values()
    assert values["roi.n_regions"] == "2" and values["roi.area_mm2"] == "3.5"
    assert values["roi.density_per_mm2.mf"] == "6.0" and values["roi.density_per_mm2.amf"] == "1.25"
    assert "a&amp;b &lt;i&gt;.tif" in text and "<i>.tif" not in text


def test_report_errors_are_one_line(tmp_path, screened) -> None:
    r, _ = screened
    res = CliRunner().invoke(main, ["report", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and res.output.strip() == f"Error: results folder {tmp_path / 'nowhere'}: no such folder"
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "nothing to report" in res.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.summary.json").write_text("{not json")
    res = CliRunner().invoke(main, ["report", str(bad)])
    assert res.exit_code == 1 and "not readable JSON" in res.output and len(res.output.strip().splitlines()) == 1
    shutil.copy(r.outputs["summary"], bad / "y.summary.json")  # the files of its set are missing
    with pytest.raises(ReportError, match="of summary .*y.summary.json is missing: the outputs are not one run's set"):
        slide_report(bad / "y.summary.json")
    with pytest.raises(OptionError, match="--report"):
        screen(r.slide_path, r.points, ScreenOptions(report=True))


def test_screen_cli_report_flag(tmp_path, slide025, mitosis_points, tiny_bundle) -> None:
    args = ["-q", "screen", str(slide025.path), "--points", str(mitosis_points), "--model", str(tiny_bundle.path),
            "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--report"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    text = (tmp_path / "o" / "scene_0.25.report.html").read_text()
    s = json.loads((tmp_path / "o" / "scene_0.25.summary.json").read_text())
    thumb = section(text, "slide")
    assert len(thumb.with_class("marker-amf")) + len(thumb.with_class("marker-nmf")) == s["n_classified"] == 8
    assert "--report" in CliRunner().invoke(main, ["screen", "--help"]).output


def write_cohort(out: Path, entries: list[dict]) -> None:
    n = {k: sum(e["status"] == k for e in entries) for k in ("ok", "failed", "skipped")}
    (out / "cohort.json").write_text(json.dumps({
        "version": 1, "created": "2025-01-01T00:00:00+00:00", "model": {"name": "tiny", "members": 2, "architecture": "resnet10t"},
        "options": {"tta": False, "threshold": None}, "n_slides": len(entries), "n_ok": n["ok"], "n_failed": n["failed"],
        "n_skipped": n["skipped"], "slides": entries}))


def cohort_entry(out: Path, summary_path: Path, seconds: float) -> dict:
    s = json.loads(summary_path.read_text())
    stem = summary_path.name[: -len(".summary.json")]
    keys = ("n_candidates", "n_classified", "n_atypical", "n_normal", "amf_ratio", "amf_ratio_ci95", "atypical_to_normal_ratio")
    return {"slide": s["slide"], "stem": stem, "points": s["points"], "roi": None, "status": "ok", "error": None,
            **{k: s[k] for k in keys}, "summary": summary_path.name, "geojson": f"{stem}.geojson", "csv": f"{stem}.csv",
            "report": None, "seconds": seconds}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, screened, slide025, tiny_bundle):
    """A batch folder: two screened slides, one failed, one skipped, cohort.json as ``batch`` writes it."""
    from conftest import MITOSES_UM, write_points_csv

    r, _ = screened
    tmp_path = tmp_path_factory.mktemp("cohort")
    out = tmp_path / "batch"
    shutil.copytree(r.outputs["summary"].parent, out)
    (out / "planted.report.html").unlink()
    points = write_points_csv(tmp_path / "det.csv", [slide025.px(x, y) for x, y in MITOSES_UM])
    second = screen(slide025.path, points, ScreenOptions(cache_dir=tmp_path / "c"), model=tiny_bundle, out=out,
                    progress=False)
    empty = dict.fromkeys(("points", "roi", "n_candidates", "n_classified", "n_atypical", "n_normal", "amf_ratio",
                           "amf_ratio_ci95", "atypical_to_normal_ratio", "summary", "geojson", "csv", "report", "seconds"))
    entries = [cohort_entry(out, out / "planted.summary.json", 3.5), cohort_entry(out, second.outputs["summary"], 1.25),
               {"slide": "/data/broken<1>.svs", "stem": "broken_1_", "status": "failed", "error": "slide broken<1>.svs: no mpp",
                **empty},
               {"slide": "/data/nopoints.svs", "stem": "nopoints", "status": "skipped", "error": "no points file", **empty}]
    write_cohort(out, entries)
    return out, entries, write_reports(out)


def test_cohort_report(cohort) -> None:
    out, entries, done = cohort
    assert {p.name for p in done.written} == {"planted.report.html", "scene_0.25.report.html", "cohort.html"}
    assert done.errors == ()
    text = (out / "cohort.html").read_text()
    assert_self_contained(text)
    doc = section(text, "slides")
    rows = re.findall(r"<tr>(.*?)</tr>", re.search(r"<tbody>(.*)</tbody>", text[text.index("id=slides"):], re.S).group(1))
    assert len(rows) == 4
    assert [a["href"] for a in doc.find("a")] == ["planted.report.html", "scene_0.25.report.html"]  # links to existing reports
    assert "table class=\"sortable\"" in text and "dataset.dir" in text
    assert "broken&lt;1&gt;.svs" in text and "broken<1>" not in text
    # One interval per screened slide, at its ratio; the pooled ratio over the cohort.
    plot = section(text, "ratios")
    ratios = sorted(float(a["data-value"]) for a in plot.with_class("interval"))
    assert ratios == sorted(e["amf_ratio"] for e in entries[:2])
    overview = section(text, "overview").values()
    n_amf = sum(e["n_atypical"] for e in entries[:2])
    n_cls = sum(e["n_classified"] for e in entries[:2])
    assert float(overview["pooled_amf_ratio"]) == pytest.approx(n_amf / n_cls)
    assert overview["n_ok"] == "2" and overview["n_failed"] == "1" and overview["n_skipped"] == "1"
    assert f">{json.loads((out / 'planted.summary.json').read_text())['hotspot']['n_mf']}<" in rows[0]  # hotspot column

    bad = out.parent / "bad"
    bad.mkdir()
    (bad / "cohort.json").write_text('{"slides": 3}')
    with pytest.raises(ReportError, match="no 'slides' list"):
        cohort_report(bad)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    y = (rng.random(120) < 0.3).astype(int)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 120), 0, 1)
    domains = {"scanner": np.array(["A", "B", "C<x>"])[rng.integers(0, 3, 120)]}
    m = metrics_report(y, p, 0.45, domains=domains)
    m["per_fold"] = [{"fold": k, "n_train": 80, "n_val": 40, "n_val_atypical": 12, "best_epoch": 2, "best_val_loss": 0.41,
                      "balanced_accuracy": 0.7 + k / 100, "roc_auc": 0.8 + k / 100, "sensitivity": 0.6, "specificity": 0.8,
                      "accuracy": 0.75, "seconds": 3.0, "resumed": False} for k in (1, 2, 3)]
    root = tmp_path_factory.mktemp("eval")
    path = evaluation_report(root / "report.html", m, y, p, title="test evaluation")
    return path, m, y, p


def test_evaluation_report(evaluation) -> None:
    path, m, y, p = evaluation
    text = path.read_text()
    assert_self_contained(text)
    roc = section(text, "roc")
    cells = {(a["data-truth"], a["data-predicted"]): int(a["data-count"]) for a in roc.with_class("confusion-cell")}
    assert cells == {("atypical", "atypical"): m["tp"], ("normal", "atypical"): m["fp"], ("normal", "normal"): m["tn"],
                     ("atypical", "normal"): m["fn"]}
    fpr, _ = roc_curve(y, p)
    assert len(roc.with_class("roc")[0]["points"].split()) == len(fpr)
    rates = {(q["fp"] / (q["fp"] + q["tn"]), q["tp"] / (q["tp"] + q["fn"])) for q in (m, m["at_0.5"], m["at_otsu"])}
    assert len(roc.with_class("operating-point")) == len(rates) == 2  # Otsu's threshold is the selected one here
    assert "selected = Otsu: FPR" in text and "0.5: FPR" in text and f"ROC AUC = {m['roc_auc']:.3f}" in text
    values = Elements(text).values()
    assert float(values["overall.balanced_accuracy"]) == pytest.approx(m["balanced_accuracy"])
    for value, sub in m["per_domain"]["scanner"].items():
        assert float(values[f"domain.scanner.{value}.roc_auc"]) == pytest.approx(sub["roc_auc"])
    assert "C&lt;x&gt;" in text
    for fold in m["per_fold"]:
        assert float(values[f"fold.{fold['fold']}.roc_auc"]) == pytest.approx(fold["roc_auc"])
    hist = section(text, "histogram")
    assert sum(int(a["data-count"]) for a in hist.with_class("bar-amf")) == int(y.sum())


def test_evaluation_report_from_a_folder(evaluation, tmp_path) -> None:
    from wsi_amf.inference.reports import write_json, write_predictions

    _, m, y, p = evaluation
    write_json(tmp_path / "metrics.json", m)
    write_predictions(tmp_path / "predictions.csv", paths=[f"p{i}.png" for i in range(len(y))], p=p, threshold=0.45, labels=y)
    path = evaluation_report_dir(tmp_path)
    values = Elements(path.read_text()).values()
    assert float(values["overall.sensitivity"]) == pytest.approx(m["sensitivity"])
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 0 and "report.html" in res.output


SORT_PROBE = """
var th = Array.prototype.find.call(document.querySelectorAll("#slides th"), function (t) { return t.textContent === "Classified"; });
function order() { return Array.prototype.map.call(document.querySelectorAll("#slides tbody tr"),
                                                function (r) { return r.cells[0].textContent; }).join("|"); }
th.click(); var up = order(); th.click();
probe(up + " / " + order());
"""
ZOOM_PROBE = """
var box = document.querySelector(".zoom"), r = box.getBoundingClientRect();
box.dispatchEvent(new WheelEvent("wheel", {deltaY: -400, clientX: r.left + 50, clientY: r.top + 50, bubbles: true, cancelable: true}));
probe(box.querySelector(".zoom-inner").style.transform);
"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser (session-scoped, so that a missing one skips before the reports are built)."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return exe


def run_chromium(exe: str, page: Path, tmp_path: Path, *args: str) -> str:
    import os
    import subprocess

    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
           *args, page.resolve().as_uri()]
    done = subprocess.run(cmd, check=True, timeout=180, capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)})
    return done.stdout


def run_probe(exe: str, page: Path, script: str, tmp_path: Path) -> str:
    """Run ``script`` in the loaded page; what it passes to ``probe()`` comes back (through the DOM)."""
    probed = tmp_path / f"probe-{page.name}"
    helper = "function probe(t) { var p = document.createElement('pre'); p.id = 'probe'; p.textContent = t; document.body.appendChild(p); }"
    probed.write_text(page.read_text().replace("</body>", f"<script>{helper}{script}</script></body>"))
    dom = run_chromium(exe, probed, tmp_path, "--dump-dom")
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, dom[-500:]
    return html.unescape(match.group(1))


def test_report_scripts_sort_and_zoom_in_chromium(chromium, screened, cohort, tmp_path) -> None:
    orders = run_probe(chromium, cohort[0] / "cohort.html", SORT_PROBE, tmp_path)
    assert orders == ("scene_0.25.tif|planted.tif|broken<1>.svs|nopoints.svs / "
                      "planted.tif|scene_0.25.tif|broken<1>.svs|nopoints.svs")  # 8 < 21 classified; blanks last
    transform = run_probe(chromium, screened[0].outputs["report"], ZOOM_PROBE, tmp_path)
    scale = float(re.search(r"scale\(([\d.]+)\)", transform).group(1))
    assert scale > 1.5


def test_reports_render_in_chromium(chromium, screened, cohort, evaluation, tmp_path) -> None:
    """Each report, opened in headless Chromium, paints a page that is not blank. Set WSI_AMF_SCREENSHOTS=DIR to
    keep the screenshots."""
    import os

    keep = os.environ.get("WSI_AMF_SCREENSHOTS")
    pages = {"slide": screened[0].outputs["report"], "cohort": cohort[0] / "cohort.html", "evaluation": evaluation[0]}
    for name, page in pages.items():
        shot = tmp_path / f"{name}.png"
        run_chromium(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000")
        img = np.asarray(Image.open(shot).convert("RGB"))
        assert img.shape[:2] == (2000, 1200)
        colours = np.unique(img.reshape(-1, 3)[::7], axis=0)
        background = (np.abs(img.astype(int) - img[-1, -1].astype(int)).sum(axis=2) > 30).mean()
        assert img.std() > 20 and len(colours) > 100 and background > 0.03, (name, img.std(), len(colours), background)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / shot.name)
