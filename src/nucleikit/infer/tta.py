"""Test-time augmentation: a dense network's maps averaged over flips and 90-degree rotations.

Nuclei have no preferred orientation, so a network's maps of a flipped image, flipped back,
are as good an estimate as the maps of the image itself; their mean has less of the network's
orientation-dependent noise. The maps must be orientation-equivariant scalar fields
(probabilities, boundary and distance maps, proximity and density maps): none holds a
direction (no x/y offsets), so a map is transformed back exactly as the image was transformed.

The transforms are elements of the dihedral group of the square: ``TTA_SIZES`` says which
subsets are used. 2 and 4 use flips only and keep the image's (H, W), so a tiled predictor cuts
the same tiles; 8 adds the transposes (rotations by 90 and 270 degrees), which swap H and W.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["TTA_SIZES", "dihedral_transforms", "apply_transform", "invert_transform", "average_over_transforms"]

#: Allowed numbers of views: 1 (none), 2 (+ left-right flip), 4 (+ up-down flip and both),
#: 8 (the whole dihedral group: the 4 flips of the image and of its transpose).
TTA_SIZES = (1, 2, 4, 8)


def dihedral_transforms(n: int) -> list[tuple[bool, bool, bool]]:
    """The first ``n`` views as ``(transpose, flip_up_down, flip_left_right)``, identity first.

    Parameters
    ----------
    n : {1, 2, 4, 8}

    Returns
    -------
    list of (bool, bool, bool)
        Applied in that order: transpose (swap rows and columns), then the flips.
    """
    if n not in TTA_SIZES:
        raise ValueError(f"test-time augmentation takes {', '.join(map(str, TTA_SIZES))} views, got {n!r}")
    flips = [(False, False), (False, True), (True, False), (True, True)]
    views = [(False, ud, lr) for ud, lr in flips] + [(True, ud, lr) for ud, lr in flips]
    return views[:n]


def apply_transform(image: np.ndarray, view: tuple[bool, bool, bool]) -> np.ndarray:
    """An (H, W, C) image seen as ``view`` (transpose, then flips); contiguous."""
    transpose, ud, lr = view
    out = np.swapaxes(image, 0, 1) if transpose else image
    if ud:
        out = out[::-1]
    if lr:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def invert_transform(maps: np.ndarray, view: tuple[bool, bool, bool]) -> np.ndarray:
    """(K, H', W') maps of a transformed image, brought back to the image's orientation.

    The inverse of :func:`apply_transform` on the last two axes: undo the flips, then the
    transpose.
    """
    transpose, ud, lr = view
    out = maps
    if lr:
        out = out[:, :, ::-1]
    if ud:
        out = out[:, ::-1]
    if transpose:
        out = np.swapaxes(out, 1, 2)
    return out


def average_over_transforms(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``predict``'s maps over ``n`` views of ``image``, each brought back.

    Parameters
    ----------
    predict : callable
        (H, W, C) float32 image -> (K, H, W) float32 maps (a dense predictor).
    image : (H, W, C) array
    n : {1, 2, 4, 8}
        Number of views (:data:`TTA_SIZES`); 1 calls ``predict`` once, unchanged.

    Returns
    -------
    (K, H, W) float32
        The mean maps; views are summed one at a time, so memory is two sets of maps.
    """
    views = dihedral_transforms(n)
    total = None
    for view in views:
        maps = invert_transform(np.asarray(predict(apply_transform(image, view)), np.float32), view)
        total = maps.copy() if total is None else total + maps
    return np.ascontiguousarray(total / np.float32(len(views)))
