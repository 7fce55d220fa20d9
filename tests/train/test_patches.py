"""The patch-level split protocol (Alom et al.) beside PROTOCOL.md's image-level one."""

from __future__ import annotations

import numpy as np
import pytest

from nucleikit.errors import ConfigError
from nucleikit.train.patches import (
    PATCH_SPLIT_FRACTIONS,
    PATCH_SPLIT_SEED,
    PROTOCOLS,
    PatchSet,
    crchisto_patch_split,
    patch_split,
)


def _labels(n=1000, seed=3):
    # unbalanced like CRCHisto: 40 / 22 / 30 / 8 %
    return np.random.default_rng(seed).choice(4, size=n, p=[0.4, 0.22, 0.3, 0.08])


def test_split_is_disjoint_and_covers_every_patch_once():
    parts = patch_split(_labels())
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(1000))
    assert set(parts) == {"train", "validation", "test"}
    for part in parts.values():
        assert np.all(np.diff(part) > 0)  # sorted, no repeat


def test_split_keeps_the_class_balance_of_each_part():
    labels = _labels()
    parts = patch_split(labels)
    for c in range(4):
        n_c = int(np.sum(labels == c))
        for name, share in zip(("train", "validation", "test"), PATCH_SPLIT_FRACTIONS):
            assert abs(int(np.sum(labels[parts[name]] == c)) - share * n_c) <= 1.0


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    labels = _labels()
    a, b = patch_split(labels), patch_split(labels, seed=PATCH_SPLIT_SEED)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = patch_split(labels, seed=PATCH_SPLIT_SEED + 1)
    assert not np.array_equal(a["test"], other["test"])


def test_split_mixes_the_patches_of_one_image():
    # 10 images of 100 patches each: under the patch protocol an image sits on both sides
    labels = _labels()
    image_ids = np.repeat([f"img{k}" for k in range(10)], 100)
    parts = patch_split(labels)
    in_train, in_test = set(image_ids[parts["train"]]), set(image_ids[parts["test"]])
    assert in_train & in_test == set(image_ids)


def test_split_refuses_bad_fractions():
    with pytest.raises(ConfigError, match="three positive shares"):
        patch_split(_labels(), fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ConfigError, match="three positive shares"):
        patch_split(_labels(), fractions=(1.0, 0.0, 0.0))


def test_subset_keeps_every_field_in_order():
    patches = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    ps = PatchSet(patches, np.array([0, 1, 0, 1, 1]), ("a", "b"), np.array(list("vwxyz")),
                  np.arange(10.0).reshape(5, 2), 0.55)
    sub = ps.subset(np.array([3, 0]))
    assert np.array_equal(sub.patches, patches[[3, 0]]) and sub.labels.tolist() == [1, 0]
    assert sub.image_ids.tolist() == ["y", "v"] and sub.points.tolist() == [[6.0, 7.0], [0.0, 1.0]]
    assert sub.classes == ("a", "b") and sub.mpp == 0.55


def test_protocols_image_first():
    assert PROTOCOLS == ("image", "patch")  # the first is the default everywhere


@pytest.mark.data
def test_crchisto_patch_split_mixes_images_and_is_independent_of_the_patch_size(crchisto_dir):
    parts, meta = crchisto_patch_split(crchisto_dir, patch=16, limit_images=6)
    n = sum(len(p) for p in parts.values())
    assert meta["protocol"] == "patch" and meta["split_patches"] == n and meta["split_images"] == 6
    assert meta["split_fractions"] == list(PATCH_SPLIT_FRACTIONS) and "Alom" in meta["split"]
    # every (image, centre) once
    keys = [(i, tuple(p)) for part in parts.values() for i, p in zip(part.image_ids, part.points)]
    assert len(set(keys)) == n
    assert set(parts["train"].image_ids) & set(parts["test"].image_ids)  # images on both sides
    wider, _ = crchisto_patch_split(crchisto_dir, patch=24, limit_images=6)
    for name in parts:  # the same nuclei whatever the context
        assert np.array_equal(parts[name].points, wider[name].points)
        assert np.array_equal(parts[name].labels, wider[name].labels)
        assert wider[name].patch_size == 24
