"""Resume: a slide is skipped when its outputs exist and were made from the same inputs, model and options.

The fingerprint of a slide hashes what changes its results: the slide file (size and first MiB), the points
file, the ROI file, the model bundle (``bundle.json`` and every member file: architecture, weights, patch
size, resolution, preprocessing, threshold) and every screening option except those that only change speed
or where work happens (device, engine, batch size, reader threads, cache folder). It is stored, with the
names of the outputs and the slide's cohort row, in ``OUT/.batch/<stem>.json``, written after the outputs and
removed before a slide is redone, so a slide interrupted half way is never taken for finished; a re-run reuses
the recorded row as it was. An output set whose files disagree with the hashes its summary records is not
finished either.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from .._version import __version__
from ..bundle import BUNDLE_FILE, ModelBundle
from ..errors import OutputError
from ..files import atomic_write_text
from ..options import ScreenOptions
from ..outputs import check_output_set
from ..slide import SlideIdentity
from .cohort import ROW_KEYS, jsonable
from .jobs import SlideJob

FINGERPRINT_VERSION = 1
STATE_DIR = ".batch"


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


def options_key(options: ScreenOptions) -> dict[str, Any]:
    """The result-changing options as JSON values; an option naming an existing file stands for its content."""
    return jsonable(options.result_key(), path=_path_key)


def _path_key(path: Path) -> Any:
    return {"sha256": file_digest(path)} if path.is_file() else str(path)


def fingerprint(job: SlideJob, *, model_digest: str, options: ScreenOptions) -> str:
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


def up_to_date(out: Path, stem: str, fp: str) -> tuple[dict[str, str], dict[str, Any] | None] | None:
    """A finished slide with this fingerprint: its outputs (kind -> path relative to ``out``) and its cohort row
    as recorded when it was screened (None for a record written before rows were kept); None when the slide
    must be screened: no record, another fingerprint, or an output set that is not whole (a file missing, or
    not the one its summary was written with)."""
    try:
        state = json.loads(state_path(out, stem).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    outputs = state.get("outputs") if isinstance(state, dict) else None
    if state.get("fingerprint") != fp or not isinstance(outputs, dict) or "summary" not in outputs:
        return None
    if not all(isinstance(p, str) and (out / p).exists() for p in outputs.values()):
        return None
    if check_output_set(out / outputs["summary"]) is not None:
        return None
    row = state.get("row")
    return outputs, (dict(row) if isinstance(row, dict) else None)


def forget(out: Path, stem: str) -> None:
    """Mark a slide as not finished (before it is redone)."""
    state_path(out, stem).unlink(missing_ok=True)


def record(out: Path, stem: str, fp: str, outputs: Mapping[str, str], row: Mapping[str, Any]) -> None:
    """Mark a slide as finished with these outputs and its cohort row (after they are all written)."""
    state = {"fingerprint": fp, "outputs": dict(outputs), "row": {k: row.get(k) for k in ROW_KEYS},
             "wsi_amf": __version__, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(state_path(out, stem), json.dumps(state, indent=2, allow_nan=False) + "\n")


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``OUT/.batch/lock`` for the duration of a batch; OutputError when another batch holds it."""
    path = out / STATE_DIR / "lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot be written ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise OutputError(f"--out {out}: another batch (pid {holder}) is writing into it; wait for it to finish "
                              "or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock
