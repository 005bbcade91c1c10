"""The error tree: one base the CLI catches, a few precise subclasses.

Every message names the file (or option) and the problem, so that it can be shown to a user as one line.
"""

from __future__ import annotations


class WsiAmfError(Exception):
    """Base of every error wsi-amf raises on bad input or a failed step."""


class SlideError(WsiAmfError):
    """A slide cannot be opened or read, or its resolution is unknown."""


class PointsError(WsiAmfError):
    """A points file cannot be parsed."""


class BundleError(WsiAmfError):
    """A model bundle is missing, malformed or cannot be loaded."""


class CacheError(WsiAmfError):
    """The patch cache cannot be opened or written."""


class DatasetError(WsiAmfError):
    """A training / evaluation dataset cannot be parsed."""


class ReportError(WsiAmfError):
    """A results directory (summary, table, cohort) cannot be read into a report."""


class OutputError(WsiAmfError):
    """An output file cannot be written (a full disk, no permission)."""


class ManifestError(WsiAmfError):
    """A batch manifest cannot be used."""


class OptionError(WsiAmfError):
    """An option has a value that cannot be used (the CLI maps it to exit code 2)."""


class RoiError(WsiAmfError):
    """A region-of-interest file cannot be parsed or does not fit the slide."""


def one_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (its type name when empty), for a one-line error."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]
