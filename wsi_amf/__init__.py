"""wsi-amf: classify candidate mitotic figures on whole-slide images as normal or atypical.

The data flow, one module per step: ``slide`` -> ``points`` -> ``cache`` -> ``ensemble`` (``bundle``,
``preprocess``) -> ``screen`` -> ``outputs``.

The public names are loaded on first use (``from wsi_amf import screen`` imports ``wsi_amf.screen`` then), so
that importing the package, and the command line's ``--help``, loads no numerical library.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from ._version import __version__
from .errors import (
    BundleError,
    CacheError,
    DatasetError,
    ManifestError,
    OptionError,
    OutputError,
    PointsError,
    ReportError,
    RoiError,
    SlideError,
    WsiAmfError,
)

#: public name -> the submodule defining it, imported when the name is first used
_LAZY = {
    "BatchResult": "batch", "screen_batch": "batch",
    "BundleConfig": "bundle", "ModelBundle": "bundle", "load_bundle": "bundle",
    "Ensemble": "ensemble", "open_ensemble": "ensemble",
    "Points": "points", "PointsOptions": "points", "read_points": "points",
    "Roi": "roi", "read_roi": "roi",
    "ScreenOptions": "options", "ScreenResult": "results", "screen": "screen",
    "Slide": "slide",
}

__all__ = [
    "BatchResult", "BundleConfig", "BundleError", "CacheError", "DatasetError", "Ensemble", "ManifestError",
    "ModelBundle", "OptionError", "OutputError", "Points", "PointsError", "PointsOptions", "ReportError", "Roi",
    "RoiError", "ScreenOptions", "ScreenResult", "Slide", "SlideError", "WsiAmfError", "load_bundle", "open_ensemble", "read_points",
    "read_roi", "screen", "screen_batch", "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package module, keeping ``wsi_amf.screen`` the function: importing the submodule ``wsi_amf.screen``
    would otherwise bind its name on the package to the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
