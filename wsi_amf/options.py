"""The options of a screening as one frozen, typed object: ``screen``, ``screen_batch``, the batch workers, the
resume fingerprint and the CLI all take a :class:`ScreenOptions`.

The slide, its points file, the model, the output folder and the output stem are not options: they are the
inputs of one screening. Values are checked when the object is made (one-line ``OptionError``), so that a
batch refuses a bad option before its first slide.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import DEFAULT_MAX_GB
from .errors import OptionError
from .exports import check_exports
from .points import PointsOptions
from .roi import Roi
from .slide import check_mpp_option

#: Options that change only speed or where work happens, not results (left out of the resume fingerprint).
NEUTRAL_OPTIONS = frozenset({"device", "engine", "batch_size", "workers", "cache_dir", "cache", "cache_max_gb"})


def check_model_run(batch_size: int, threshold: float | None) -> None:
    """OptionError for a batch size or decision threshold no model run can use (screening and patch inference)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise OptionError(f"--batch-size {batch_size}: must be at least 1")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise OptionError(f"--threshold {threshold}: must be between 0 and 1")


@dataclass(frozen=True)
class ScreenOptions:
    """How to screen a slide (the same for every slide of a batch).

    ``points``: how to read the points file. ``cache_dir``: the patch cache (default: the user cache directory,
    ``$WSI_AMF_CACHE``); ``cache=False`` reads every patch from the slide and keeps nothing; ``cache_max_gb``
    bounds the cache (None or 0: no bound). ``mpp`` overrides (or supplies) the slide's resolution. ``roi``:
    a region of interest (a QuPath annotation GeoJSON file, or a :class:`~wsi_amf.roi.Roi`); a batch
    manifest's ``roi`` cell replaces it for its slide. ``export``: extra output files (``gc-json``).
    ``device``, ``engine``, ``batch_size``, ``tta``: how the ensemble runs; ``threshold``: the decision threshold
    (default: the bundle's); ``workers``: slide reader threads; ``report``: also write the HTML slide report.
    """

    points: PointsOptions = field(default_factory=PointsOptions)
    cache_dir: Path | None = None
    cache: bool = True
    cache_max_gb: float | None = DEFAULT_MAX_GB
    mpp: float | None = None
    roi: Roi | Path | None = None
    export: tuple[str, ...] = ()
    device: str = "auto"
    engine: str = "auto"
    batch_size: int = 64
    tta: bool = False
    threshold: float | None = None
    workers: int = 4
    report: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "export", check_exports(self.export))
        if isinstance(self.cache_dir, str):
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if isinstance(self.roi, str):
            object.__setattr__(self, "roi", Path(self.roi))
        check_model_run(self.batch_size, self.threshold)
        if self.workers < 1:
            raise OptionError(f"--workers {self.workers}: must be at least 1")
        check_mpp_option(self.mpp)

    def replace(self, **changes: Any) -> ScreenOptions:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The options by name (the points options as ``points_options``), for the cohort table's record."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["points_options"] = values.pop("points")
        return values

    def result_key(self) -> dict[str, Any]:
        """The options that change results (the resume fingerprint's)."""
        return {k: v for k, v in self.record().items() if k not in NEUTRAL_OPTIONS}
