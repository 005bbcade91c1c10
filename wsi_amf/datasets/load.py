"""``load_dataset``: a labelled patch dataset read from its table (or class folders) into a ``PatchDataset``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .images import load_images
from .patches import PatchDataset
from .tables import Rows, add_domain_column, find_table, parse_rows

log = logging.getLogger(__name__)


def load_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    group_column: str | None = None,
    domain_column: str | None = None,
    images: str | Path | None = None,
    patch_size: int = 128,
    workers: int = 4,
    quiet: bool = True,
) -> PatchDataset:
    """Detect (or take) the format of ``path``, parse labels, groups and domains, and load the images.

    ``group_column`` names the table column that identifies the source slide / image (default per format);
    ``domain_column`` adds a table column to the format's domain columns (``Tumor`` ... are read anyway).
    ``images`` is the MIDOG 2025 image folder when it is not beside the table (or one level below).
    """
    root = Path(path)
    fmt, table = find_table(root, format)
    rows = parse_rows(fmt, table, group_column, Path(images) if images else None)
    if domain_column:
        add_domain_column(rows, domain_column, root)
    log.info("dataset %s: format %s, %d patches (%d atypical)", root, fmt, len(rows.labels), sum(rows.labels))
    pixels = load_images(rows.paths, size=patch_size, workers=workers, quiet=quiet)
    return _dataset(rows, pixels, fmt, root)


def _dataset(rows: Rows, pixels: np.ndarray, fmt: str, root: Path) -> PatchDataset:
    return PatchDataset(
        images=pixels,
        labels=np.asarray(rows.labels, dtype=np.int64),
        groups=np.asarray(rows.groups, dtype=str),
        paths=tuple(str(p) for p in rows.paths),
        domains={k: np.asarray(v, dtype=str) for k, v in rows.domains.items()},
        format=fmt,
        source=str(root),
        group_by=rows.group_by,
    )
