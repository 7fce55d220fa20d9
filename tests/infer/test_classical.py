"""The classical Otsu + watershed floor."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.infer.classical import nucleus_channel, otsu_watershed


def _stained(shape, discs, *, nucleus=(0.35, 0.25, 0.55), background=(0.92, 0.85, 0.9)):
    """An H&E-like RGB image: purple discs (x, y, r) on pink."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = np.empty(shape + (3,), np.float32)
    img[:] = background
    for x, y, r in discs:
        img[(cols - x) ** 2 + (rows - y) ** 2 <= r * r] = nucleus
    return img


def test_haematoxylin_is_bright_on_nuclei_and_grey_on_fluorescence():
    img = _stained((20, 20), [(10, 10, 4)])
    h = nucleus_channel(img, "haematoxylin")
    assert h.shape == (20, 20) and h[10, 10] > h[0, 0]
    g = nucleus_channel(1.0 - img, "grey")  # inverted: bright nuclei on dark, like fluorescence
    assert g[10, 10] > g[0, 0]
    dark = nucleus_channel(np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2), "dark")
    assert dark[10, 10] > dark[0, 0]  # grey bright field: dark nuclei become bright
    # auto: haematoxylin for the stained image, luminance for fluorescence, negated for grey bright field
    assert np.allclose(nucleus_channel(img, "auto"), h)
    assert np.allclose(nucleus_channel(1.0 - img.mean(axis=2, keepdims=True).repeat(3, 2), "auto"),
                       nucleus_channel(1.0 - img.mean(axis=2, keepdims=True).repeat(3, 2), "grey"))
    grey_bf = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    assert np.allclose(nucleus_channel(grey_bf, "auto"), nucleus_channel(grey_bf, "dark"))
    with pytest.raises(ValueError):
        nucleus_channel(img, "dapi")
    with pytest.raises(ValueError):
        nucleus_channel(img[..., 0], "grey")


def test_otsu_watershed_finds_separate_and_touching_discs():
    img = _stained((48, 80), [(12, 12, 7), (40, 24, 8), (55, 24, 8)])
    labels = otsu_watershed(img, min_size=20, min_distance=5)
    assert labels.dtype == np.int32 and labels.max() == 3
    # the lone disc is one instance; the touching pair is split in two
    assert len(np.unique(labels[labels > 0])) == 3
    assert labels[12, 12] != labels[24, 40] != labels[24, 55] and labels[24, 40] != labels[24, 55]
    assert not otsu_watershed(np.full((10, 10, 3), 0.5, np.float32)).any()  # flat image: nothing
