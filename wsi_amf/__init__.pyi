# The names ``wsi_amf/__init__.py`` loads on first use, for type checkers.
from ._version import __version__ as __version__
from .batch import BatchResult as BatchResult
from .batch import screen_batch as screen_batch
from .bundle import BundleConfig as BundleConfig
from .bundle import ModelBundle as ModelBundle
from .bundle import load_bundle as load_bundle
from .ensemble import Ensemble as Ensemble
from .ensemble import open_ensemble as open_ensemble
from .errors import BundleError as BundleError
from .errors import CacheError as CacheError
from .errors import DatasetError as DatasetError
from .errors import ManifestError as ManifestError
from .errors import OptionError as OptionError
from .errors import OutputError as OutputError
from .errors import PointsError as PointsError
from .errors import ReportError as ReportError
from .errors import RoiError as RoiError
from .errors import SlideError as SlideError
from .errors import WsiAmfError as WsiAmfError
from .options import ScreenOptions as ScreenOptions
from .points import Points as Points
from .points import PointsOptions as PointsOptions
from .points import read_points as read_points
from .results import ScreenResult as ScreenResult
from .roi import Roi as Roi
from .roi import read_roi as read_roi
from .screen import screen as screen
from .slide import Slide as Slide

__all__: list[str]
