"""Read candidate points (positions of possible mitotic figures) from a points file.

Formats: CSV, QuPath GeoJSON (0.2 to 0.7; also `.geojson.gz` and `.zip`), grand-challenge "Multiple points"
JSON (millimetres, MIDOG track 1 output), SlideRunner / EXACT SQLite databases and MIDOG++ JSON (many slides
per file). `read_points` returns a `Points`: level-0 pixel positions, an optional detector score, and the
file's other columns (class names, ids, ...) carried through as strings. Every problem with the file's
content raises `PointsError` with a one-line message naming the file and the place (row, feature, point,
annotation) of the problem.

Layout: `model` holds `Points`, `SlideContext`, the `Table` every format reader returns, and the helpers the
formats share; `files` gets at the content (SQLite, gzip, zip, UTF-8); `reader` holds `read_points`
(format detection, filters, duplicates); each format has its own module with a `read_table(...)`:
`csv_format`, `geojson_format`, `gc_json`, `sliderunner`, `midogpp` (`json_values` checks JSON values,
`matching` finds a slide's entry in a many-slide file).
"""

from .csv_format import COORDINATE_COLUMNS
from .model import CLASS_COLUMNS, SCORE_COLUMNS, Points, SlideContext
from .reader import FORMATS, PointsOptions, read_points

__all__ = ["CLASS_COLUMNS", "COORDINATE_COLUMNS", "FORMATS", "SCORE_COLUMNS", "Points", "PointsOptions",
           "SlideContext", "read_points"]
