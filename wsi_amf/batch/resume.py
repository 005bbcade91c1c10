"""Resume: a slide is skipped when its outputs exist and were made from the same inputs, model and options.

The fingerprint of a slide hashes what changes its results: the slide file (size and first MiB), the points
file, the ROI file, the model bundle (``bundle.json`` and every member file: architecture, weights, patch
size, resolution, preprocessing, threshold) and every screening option except those that only change speed
or where work happens (device, engine, batch size, reader threads, cache folder). It is stored, with the
names of the outputs, in ``OUT/.batch/<stem>.json``, written after the outputs and removed before a slide is
redone, so a slide interrupted half way is never taken for finished.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..bundle import BUNDLE_FILE, ModelBundle
from ..outputs import atomic_write_text
from ..slide import SlideIdentity
from .cohort import jsonable
from .jobs import SlideJob

FINGERPRINT_VERSION = 1
STATE_DIR = ".batch"
#: Screening options that do not change results.
NEUTRAL_OPTIONS = frozenset({"device", "engine", "batch_size", "workers", "cache_dir", "progress"})


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def bundle_digest(bundle: ModelBundle) -> str:
    """sha256 over ``bundle.json`` and every member file, in order."""
    h = hashlib.sha256()
    for path in [bundle.path / BUNDLE_FILE, *bundle.member_paths()]:
        h.update(path.name.encode() + b"\0" + file_digest(path).encode())
    return h.hexdigest()


def options_key(options: Mapping[str, Any]) -> dict[str, Any]:
    """The result-changing options as JSON values; an option naming an existing file stands for its content."""
    return jsonable({k: v for k, v in options.items() if k not in NEUTRAL_OPTIONS}, path=_path_key)


def _path_key(path: Path) -> Any:
    return {"sha256": file_digest(path)} if path.is_file() else str(path)


def fingerprint(job: SlideJob, *, model_digest: str, options: Mapping[str, Any]) -> str:
    """sha256 of everything that determines the slide's results (see the module docstring)."""
    try:
        ident = SlideIdentity.of(job.slide)
        slide: Any = {"size": ident.size, "head_sha256": ident.head_sha256}
    except OSError:
        slide = None  # unreadable: never up to date, the slide is tried (and fails with a message)
    key = {
        "version": FINGERPRINT_VERSION,
        "slide": slide,
        "points": file_digest(job.points) if job.points is not None and job.points.is_file() else None,
        "roi": file_digest(job.roi) if job.roi is not None and job.roi.is_file() else None,
        "model": model_digest,
        "options": options_key(options),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def state_path(out: Path, stem: str) -> Path:
    return out / STATE_DIR / f"{stem}.json"


def up_to_date(out: Path, stem: str, fp: str) -> dict[str, str] | None:
    """The outputs (kind -> path relative to ``out``) of a finished slide with this fingerprint, else None."""
    try:
        state = json.loads(state_path(out, stem).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    outputs = state.get("outputs") if isinstance(state, dict) else None
    if state.get("fingerprint") != fp or not isinstance(outputs, dict) or "summary" not in outputs:
        return None
    if not all(isinstance(p, str) and (out / p).exists() for p in outputs.values()):
        return None
    return outputs


def forget(out: Path, stem: str) -> None:
    """Mark a slide as not finished (before it is redone)."""
    state_path(out, stem).unlink(missing_ok=True)


def record(out: Path, stem: str, fp: str, outputs: Mapping[str, str]) -> None:
    """Mark a slide as finished with these outputs (after they are all written)."""
    from .. import __version__

    state = {"fingerprint": fp, "outputs": dict(outputs), "wsi_amf": __version__,
             "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(state_path(out, stem), json.dumps(state, indent=2) + "\n")
