"""Labelled patch datasets, read by training and by evaluation.

Formats: ``midog25``, ``amibr``, ``folder``, ``csv`` (detected, or named with ``format=``; see ``tables``).

Modules: ``tables`` (detection, parsing), ``images`` (decoding into ``uint8 [N, S, S, 3]``, S = 128 by
default; other sizes are resized and a log line says so), ``patches`` (``PatchDataset``, digests),
``load`` (``load_dataset``).
"""

from __future__ import annotations

from .images import IMAGE_SUFFIXES, load_images
from .load import load_dataset
from .patches import PatchDataset, patch_digest, training_overlap
from .tables import FORMATS, MIDOG_DOMAINS, detect_format

__all__ = [
    "FORMATS",
    "IMAGE_SUFFIXES",
    "MIDOG_DOMAINS",
    "PatchDataset",
    "detect_format",
    "load_dataset",
    "load_images",
    "patch_digest",
    "training_overlap",
]
