"""Reading images and annotations from disk.

- :mod:`nucleikit.io.images`: PNG/TIFF/BMP/JPEG tiles as (H, W, C) float32 in
  [0, 1] with their µm/px (:func:`read_image`), and the bundled sample image.
- :mod:`nucleikit.io.points`: point annotations (CSV, ``.mat``, QuPath
  GeoJSON) as a :class:`PointSet` of 0-based (x, y) pixel centres.
- :mod:`nucleikit.io.mat`: MATLAB v5 point arrays, 1-based -> 0-based.
- :mod:`nucleikit.io.rle`, :mod:`nucleikit.io.labels`: run-length-encoded masks
  (Kaggle convention) and instance label images / mask folders / polygons.
- :mod:`nucleikit.io.slides`: whole-slide images (tiffslide), read on demand.
- :mod:`nucleikit.io.datasets`: one reader per data set, yielding shared records.

Every user-caused failure is an :class:`~nucleikit.errors.InputError` naming the file.
"""

from nucleikit.io.images import ImageData, read_image, sample_image_path
from nucleikit.io.labels import read_label_image
from nucleikit.io.mat import read_mat_points
from nucleikit.io.points import PointSet, check_points_in_image, read_points
from nucleikit.io.rle import rle_decode, rle_encode

__all__ = [
    "ImageData",
    "PointSet",
    "check_points_in_image",
    "read_image",
    "read_mat_points",
    "read_label_image",
    "read_points",
    "rle_decode",
    "rle_encode",
    "sample_image_path",
]
