"""Read candidate points (positions of possible mitotic figures) from CSV or QuPath GeoJSON files.

`read_points` returns a `Points`: level-0 pixel positions, an optional detector score, and the file's
other columns carried through as strings. Every problem with the file's content raises `PointsError`
with a one-line message naming the file and the place (row or feature) of the problem.

Layout: `model` holds `Points`, the `Table` every format reader returns, and the helpers the formats
share; `reader` holds `read_points` (format detection, file checks, filters, duplicates); each file
format has its own module (`csv_format`, `geojson_format`) with a `read_table(path, text, ...)`.
"""

from .csv_format import COORDINATE_COLUMNS
from .model import CLASS_COLUMNS, SCORE_COLUMNS, Points, SlideContext
from .reader import PointsOptions, read_points

__all__ = ["CLASS_COLUMNS", "COORDINATE_COLUMNS", "SCORE_COLUMNS", "Points", "PointsOptions", "SlideContext", "read_points"]
