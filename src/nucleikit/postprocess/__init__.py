"""From dense model outputs to objects: points for detection, instances for segmentation.

Two concepts, three modules:

- :mod:`~nucleikit.postprocess.peaks` (points): :func:`find_peaks` turns a
  probability / proximity / density map into nucleus centres,
  :func:`relative_threshold` and :func:`peak_threshold` give the ``xi * max``
  rule with its absolute floor, :func:`points_in_window` /
  :func:`filter_points_in_window` the ownership rule of tiled inference;
- :mod:`~nucleikit.postprocess.instances` (maps to a label image):
  :func:`instances_from_probability` (threshold, components, seeded
  watershed) and :func:`instances_from_maps` (an instance head's
  marker-controlled watershed);
- :mod:`~nucleikit.postprocess.regions` (a label image to tables):
  :func:`label_outlines` (an (x, y) polygon per instance) and
  :func:`label_measurements` (centroid, area, mean intensity), each one pass
  over the whole image.

Conventions: maps are (H, W) float arrays indexed [row, col]; points are
(N, 2) float64 arrays of (x, y) = (col, row), 0-based pixel centres, x to the
right, y down; label images are (H, W) integer arrays, 0 = background. This
package never imports torch. Import from here: ``from nucleikit.postprocess
import find_peaks, label_outlines``.
"""

from __future__ import annotations

from .instances import MARKER_KINDS, instances_from_maps, instances_from_probability
from .peaks import filter_points_in_window, find_peaks, peak_threshold, points_in_window, relative_threshold
from .regions import label_measurements, label_outlines

__all__ = [
    "find_peaks",
    "relative_threshold",
    "peak_threshold",
    "points_in_window",
    "filter_points_in_window",
    "instances_from_probability",
    "instances_from_maps",
    "MARKER_KINDS",
    "label_outlines",
    "label_measurements",
]
