"""Labelled patch datasets, read by training and by evaluation.

Formats (detected, or named with ``format=``):

- ``midog25``: the MIDOG 2025 track 2 table (``image_id, filename, ..., Tumor, Scanner, Species, majority``
  with ``AMF`` / ``NMF``) beside a folder of the patch images named by ``image_id``; group = ``filename``
  (the source image), domains = ``Tumor``, ``Scanner``, ``Species``. Tables with only
  ``image_id, filename, majority`` (OMG-Octo) read the same way.
- ``amibr``: AMi-Br, ``AMI-BR.csv`` + ``patches/{atypical,normal}/<dataset>_<uid>.png``; label =
  ``majority_atypical``, group = ``dataset`` + ``slide``, domain = ``dataset``.
- ``folder``: one sub-folder per class (``atypical`` / ``normal``, or ``AMF`` / ``NMF``); no source-slide
  information, so every image is its own group.
- ``csv``: a generic table ``path,label[,group][,domain]`` (paths relative to the table).

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
