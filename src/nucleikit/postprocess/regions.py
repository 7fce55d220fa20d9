"""Regions of a label image: outlines and measurements, for the whole image at once.

:func:`label_measurements` gives every instance's centroid, area and mean
intensity from one pass over the foreground pixels (``numpy.bincount`` sums
per label: no loop over instances); :func:`label_outlines` gives each
instance's outline as an (x, y) polygon, traced inside its own bounding box
(one ``scipy.ndimage.find_objects`` pass finds them all, so no step touches
the whole image once per instance). Images (:func:`nucleikit.infer.pipelines.segment_file`)
and slides (:func:`nucleikit.infer.wsi_segment.tile_nuclei`) use the same two.

Both give exactly what ``skimage.measure.regionprops`` gives (the functions
they replace; the tests keep that implementation as the reference): areas and
centroids are sums of integers, exact in float64 in any order; a mean
intensity is a sum of float64 values, which the two add in different orders,
so they agree to the last bit whenever those sums are exact (intensities
that are multiples of a common ``2**-k`` with small enough totals, as any
8-bit image's BT.601 luminance in float32 over nuclei below 2**18 pixels) and
to a relative 1e-15 otherwise.

Label images are (H, W) integer arrays, 0 = background, labels >= 0 (not
necessarily consecutive). Coordinates are (x, y) = (col, row), 0-based pixel
centres. This module never imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["label_outlines", "label_measurements"]


def _check_label_image(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be an (H, W) label image, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"labels must hold integers, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"labels must be >= 0, got {arr.min()}")
    return arr


def _dense(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index image with labels 1..K, the K labels ascending): labels as they are when not sparse.

    Per-label tables are indexed by label value; a label image with a few huge
    values (e.g. hashes) is renumbered 1..K first so the tables stay K long.
    """
    top = int(arr.max(initial=0))
    if top <= 2 * arr.size + 1024:
        return arr, np.arange(top + 1)  # index k is label k (absent ones are filtered by the caller)
    values = np.unique(arr)
    values = values[values != 0]
    index = np.zeros(arr.shape, dtype=np.intp)
    fg = arr != 0
    index[fg] = np.searchsorted(values, arr[fg]) + 1
    return index, np.concatenate([[0], values])


def label_measurements(labels: Any, image: Any = None) -> dict[str, np.ndarray]:
    """Per-instance measurements, from one pass over the foreground pixels.

    Parameters
    ----------
    labels : (H, W) array_like of int
        Label image, 0 = background.
    image : (H, W) or (H, W, C) array_like of float, optional
        Intensities for ``mean_intensity``.

    Returns
    -------
    dict of (N,) ndarray
        One entry per label present, ascending label order:

        - ``label`` (int32);
        - ``x``, ``y`` (float64): centroid, 0-based pixel-centre coordinates
          (x = column, y = row): the mean of the instance's pixel positions;
        - ``area`` (int64): pixels;
        - ``mean_intensity`` (float64; (N, C) for a C-channel image): only
          when ``image`` is given.

    Raises
    ------
    ValueError
        ``labels`` not a 2-D non-negative integer image; ``image`` of another
        height and width.

    Notes
    -----
    Sums per label by ``numpy.bincount`` over the foreground pixels; the
    values equal ``skimage.measure.regionprops_table``'s (module docstring).

    Examples
    --------
    >>> m = label_measurements(np.array([[0, 2, 2], [0, 0, 2]]), np.array([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]))
    >>> m["label"].tolist(), m["x"].tolist(), m["y"].tolist(), m["area"].tolist(), m["mean_intensity"].tolist()
    ([2], [1.6666666666666667], [0.3333333333333333], [3], [0.5])
    """
    arr = _check_label_image(labels)
    intensity = None
    if image is not None:
        intensity = np.asarray(image, dtype=np.float64)
        if intensity.ndim not in (2, 3) or intensity.shape[:2] != arr.shape:
            raise ValueError(f"image must be (H, W) or (H, W, C) with (H, W) = {arr.shape}, got {intensity.shape}")
    index, values = _dense(arr)
    flat = index.ravel()
    pixels = np.flatnonzero(flat)  # raster order
    which = flat[pixels]
    n = len(values)
    area = np.bincount(which, minlength=n)
    present = np.flatnonzero(area)
    present = present[present != 0]
    count = area[present].astype(np.float64)
    rows, cols = np.divmod(pixels, arr.shape[1])
    result = {
        "label": values[present].astype(np.int32),
        "x": np.bincount(which, weights=cols, minlength=n)[present] / count,
        "y": np.bincount(which, weights=rows, minlength=n)[present] / count,
        "area": area[present].astype(np.int64),
    }
    if intensity is not None:
        channels = intensity.reshape(arr.size, -1)[pixels]
        means = [np.bincount(which, weights=channels[:, c], minlength=n)[present] / count
                 for c in range(channels.shape[1])]
        if intensity.ndim == 2:
            result["mean_intensity"] = means[0]
        else:
            result["mean_intensity"] = np.column_stack(means).reshape(-1, intensity.shape[2])
    return result


def label_outlines(labels: Any, which: Any = None) -> list[np.ndarray]:
    """Outline of every instance, as an (x, y) polygon.

    Parameters
    ----------
    labels : (H, W) array_like of int
        Label image, 0 = background.
    which : (M,) array_like of int, optional
        Trace only these labels (each must be present); default all.

    Returns
    -------
    list of (K, 2) ndarray of float64
        One polygon per label (per label of ``which``), in ascending label
        order (the order of :func:`label_measurements`). Vertices are (x, y) =
        (col, row), 0-based pixel centres, on the boundary between the
        instance's pixels and the rest (``skimage.measure.find_contours`` at
        level 0.5, so a vertex lies half a pixel from a boundary pixel's
        centre). The ring is closed implicitly: the last vertex is a neighbour
        of the first and is not repeated (:func:`nucleikit.export.qupath_features`
        closes it). Rasterising it again
        (:func:`nucleikit.io.labels.polygons_to_labels`) gives back the
        instance (for instances without holes).

    Raises
    ------
    ValueError
        ``labels`` not a 2-D non-negative integer image; a label of ``which``
        absent from ``labels``.

    Notes
    -----
    One ``scipy.ndimage.find_objects`` pass gives every instance's bounding
    box; each instance is traced inside its box, padded by one background
    pixel so that outlines close at the image edge. Foreground is taken
    8-connected (``fully_connected="high"``). An instance in several pieces
    gives the outline of its largest piece; holes are ignored.
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    arr = _check_label_image(labels)
    index, values = _dense(arr)
    boxes = ndimage.find_objects(index) if index.size else []
    present = np.array([k + 1 for k, box in enumerate(boxes) if box is not None], dtype=np.intp)
    if which is not None:
        wanted = np.unique(np.asarray(which).ravel())
        at = np.searchsorted(values[present], wanted) if present.size else np.zeros(wanted.shape, np.intp)
        found = at < present.size
        found[found] = values[present[at[found]]] == wanted[found]
        if not found.all():
            raise ValueError(f"labels {wanted[~found][:5].tolist()} are not in the label image")
        present = present[at]
    outlines = []
    for k in present:
        rows, cols = boxes[k - 1]
        mask = np.zeros((rows.stop - rows.start + 2, cols.stop - cols.start + 2), dtype=np.float64)
        mask[1:-1, 1:-1] = index[rows, cols] == k
        contours = find_contours(mask, level=0.5, fully_connected="high")
        ring = contours[0] if len(contours) == 1 else max(contours, key=_enclosed_area)
        if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
            ring = ring[:-1]
        outlines.append(np.column_stack([ring[:, 1] + (cols.start - 1), ring[:, 0] + (rows.start - 1)]))
    return outlines


def _enclosed_area(ring: np.ndarray) -> float:
    """Area enclosed by a (K, 2) ring (shoelace formula), unsigned."""
    y, x = ring[:, 0], ring[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
