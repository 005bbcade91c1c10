"""wsi-amf: classify candidate mitotic figures on whole-slide images as normal or atypical.

The data flow, one module per step: ``slide`` -> ``points`` -> ``cache`` -> ``ensemble`` (``bundle``,
``preprocess``) -> ``screen`` -> ``outputs``.
"""

from __future__ import annotations

from ._version import __version__
from .batch import BatchResult, screen_batch
from .bundle import BundleConfig, ModelBundle, load_bundle
from .errors import BundleError, CacheError, DatasetError, OptionError, PointsError, SlideError, WsiAmfError
from .options import ScreenOptions
from .points import Points, read_points
from .results import ScreenResult
from .screen import screen
from .slide import Slide

__all__ = [
    "BatchResult", "BundleConfig", "BundleError", "CacheError", "DatasetError", "ModelBundle", "OptionError", "Points",
    "PointsError", "ScreenOptions", "ScreenResult", "Slide", "SlideError", "WsiAmfError", "load_bundle", "read_points", "screen",
    "screen_batch", "__version__",
]
