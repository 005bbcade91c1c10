"""Resumable cross-validation: each finished fold is kept under ``BUNDLE_DIR/.folds/``.

``.folds/run.json`` records the configuration of the run (hyper-parameters, data fingerprint, CV
scheme). A finished fold leaves ``<key>.safetensors`` (best weights) and then ``<key>.json`` (validation
indices and probabilities, history): the JSON is written last, atomically, and marks the fold done. A
rerun with the same configuration loads finished folds instead of training them again; a rerun with a
different one stops with an error unless ``force`` (which starts over).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import OptionError
from ..files import atomic_path, atomic_write_text
from .trainer import FoldOutcome

log = logging.getLogger(__name__)
FOLDS_DIR = ".folds"
RUN_FILE = "run.json"


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} -> {b!r}")
    return out


class FoldStore:
    """The ``.folds`` directory of one output folder."""

    def __init__(self, out: Path, run_config: Mapping[str, Any], *, force: bool = False) -> None:
        self.root = Path(out) / FOLDS_DIR
        config = json.loads(json.dumps(run_config))  # normalise tuples etc. to JSON types
        if force and self.root.exists():
            shutil.rmtree(self.root)
        run_file = self.root / RUN_FILE
        if run_file.is_file():
            try:
                old = json.loads(run_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = None
            if old != config:
                changes = _diff(old, config) if isinstance(old, Mapping) else ["unreadable run.json"]
                shown = "; ".join(changes[:3]) + (f"; and {len(changes) - 3} more" if len(changes) > 3 else "")
                raise OptionError(
                    f"{self.root} holds an interrupted run with another configuration ({shown}); "
                    "rerun with the same options to resume, or pass --force to start over"
                )
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_file, json.dumps(config, indent=2) + "\n")

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.safetensors", self.root / f"{key}.json"

    def load(self, key: str, val_idx: np.ndarray, predict_idx: np.ndarray | None = None) -> FoldOutcome | None:
        """The finished fold ``key``, or None when it has not finished (or does not match the split)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        weights, meta = self._paths(key)
        if not (weights.is_file() and meta.is_file()):
            return None
        try:
            rec = json.loads(meta.read_text(encoding="utf-8"))
            state = load_file(str(weights))
        except (OSError, ValueError, SafetensorError) as exc:
            log.warning("%s: unreadable saved fold (%s); training it again", meta, exc)
            return None
        pred = predict_idx if predict_idx is not None else np.zeros(0, dtype=np.int64)
        if rec.get("val_idx") != val_idx.tolist() or rec.get("predict_idx", []) != pred.tolist():
            log.warning("%s: saved fold is of another split; training it again", meta)
            return None
        return FoldOutcome(
            state_dict=state,
            val_probs=np.asarray(rec["val_probs"], dtype=np.float64),
            best_epoch=int(rec["best_epoch"]),
            best_val_loss=float(rec["best_val_loss"]),
            history=tuple(rec.get("history", ())),
            extra_probs=np.asarray(rec.get("extra_probs", []), dtype=np.float64),
            seconds=float(rec.get("seconds", 0.0)),
        )

    def save(self, key: str, outcome: FoldOutcome, val_idx: np.ndarray, predict_idx: np.ndarray | None = None) -> None:
        from safetensors.torch import save_file

        weights, meta = self._paths(key)
        with atomic_path(weights) as tmp:
            save_file({k: v.contiguous() for k, v in outcome.state_dict.items()}, str(tmp))
        rec = {
            "val_idx": val_idx.tolist(),
            "val_probs": outcome.val_probs.tolist(),
            "predict_idx": (predict_idx if predict_idx is not None else np.zeros(0, dtype=np.int64)).tolist(),
            "extra_probs": outcome.extra_probs.tolist(),
            "best_epoch": outcome.best_epoch,
            "best_val_loss": outcome.best_val_loss,
            "history": list(outcome.history),
            "seconds": outcome.seconds,
        }
        atomic_write_text(meta, json.dumps(rec) + "\n")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
