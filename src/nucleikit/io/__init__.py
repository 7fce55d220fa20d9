"""Reading images and annotations from disk.

- :mod:`nucleikit.io.images`: PNG/TIFF/BMP/JPEG tiles as (H, W, C) float32 in
  [0, 1] with their µm/px (:func:`read_image`), and the bundled sample image.
- :mod:`nucleikit.io.points`: point annotations (CSV, ``.mat``, QuPath
  GeoJSON) as a :class:`PointSet` of 0-based (x, y) pixel centres.
- :mod:`nucleikit.io.mat`: MATLAB v5 point arrays, 1-based -> 0-based.
- :mod:`nucleikit.io.datasets`: one reader per data set, yielding shared records.

Every user-caused failure is an :class:`~nucleikit.errors.InputError` naming the file.
"""

from nucleikit.io.images import ImageData, read_image, sample_image_path
from nucleikit.io.mat import read_mat_points
from nucleikit.io.points import PointSet, check_points_in_image, read_points

__all__ = [
    "ImageData",
    "PointSet",
    "check_points_in_image",
    "read_image",
    "read_mat_points",
    "read_points",
    "sample_image_path",
]
