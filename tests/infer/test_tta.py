"""Test-time augmentation: views of the dihedral group, inverted exactly, averaged."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.infer.tta import TTA_SIZES, apply_transform, average_over_transforms, dihedral_transforms, invert_transform


def test_views_are_distinct_identity_first_and_shape_preserving_up_to_four():
    assert dihedral_transforms(1) == [(False, False, False)]
    for n in TTA_SIZES:
        views = dihedral_transforms(n)
        assert len(set(views)) == n and views[0] == (False, False, False)
    assert not any(t for t, _, _ in dihedral_transforms(4))  # flips only: tiles stay the same
    assert sum(t for t, _, _ in dihedral_transforms(8)) == 4
    for bad in (0, 3, 16, 2.5):
        with pytest.raises(ValueError):
            dihedral_transforms(bad)


def test_each_view_is_undone_exactly_on_a_non_square_image():
    image = np.arange(5 * 7 * 2, dtype=np.float32).reshape(5, 7, 2)
    for view in dihedral_transforms(8):
        seen = apply_transform(image, view)
        assert seen.flags.c_contiguous
        assert seen.shape == ((7, 5, 2) if view[0] else (5, 7, 2))
        maps = np.moveaxis(seen, 2, 0)  # (K, H', W') maps "predicted" on the view
        assert np.array_equal(invert_transform(maps, view), np.moveaxis(image, 2, 0))
    # by hand: transpose then flip left-right of [[0, 1], [2, 3]] is [[2, 0], [3, 1]]
    small = np.array([[0, 1], [2, 3]], np.float32)[:, :, None]
    assert apply_transform(small, (True, False, True))[:, :, 0].tolist() == [[2, 0], [3, 1]]


def test_an_equivariant_predictor_is_unchanged_and_a_biased_one_is_symmetrised():
    rng = np.random.default_rng(0)
    image = rng.random((6, 9, 3)).astype(np.float32)

    def equivariant(x):  # per-pixel: commutes with every flip and transpose
        return np.stack([x.sum(axis=2), x[:, :, 0] ** 2])

    for n in TTA_SIZES:
        assert np.allclose(average_over_transforms(equivariant, image, n), equivariant(image), atol=1e-6)

    def leans_right(x):  # the column index of the view: not equivariant
        return np.broadcast_to(np.arange(x.shape[1], dtype=np.float32), x.shape[:2])[None].copy()

    calls = []
    out = average_over_transforms(lambda x: calls.append(x.shape) or leans_right(x), image, 2)
    assert len(calls) == 2 and out.shape == (1, 6, 9)
    assert np.allclose(out, 4.0)  # (j + (8 - j)) / 2 in every pixel
    out8 = average_over_transforms(leans_right, image, 8)
    # columns: (j + 8 - j) * 2 / 8 = 2; rows of the transposed views: (i + 5 - i) * 2 / 8 = 1.25
    assert np.allclose(out8, 2.0 + 1.25)
    assert average_over_transforms(leans_right, image, 1).dtype == np.float32
