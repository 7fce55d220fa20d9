"""Tests for nucleikit.io.datasets.monuseg: helpers on hand-built arrays, the reader on the shared data.

The reader tests use ../shared/data/monuseg (skip without it, fail under
NUCLEIKIT_REQUIRE_DATA=1) and check the counts of its README.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.datasets.base import PointSample
from nucleikit.io.datasets.monuseg import (
    AUXILIARY,
    MPP,
    PER_ORGAN,
    MoNuSeg,
    check_centroids,
    label_centroids,
    read_monuseg_split,
)

# --- helpers ----------------------------------------------------------------------


def test_label_centroids_are_x_column_y_row_means():
    labels = np.zeros((5, 6), np.int32)
    labels[1, 2:5] = 1  # row 1, columns 2..4 -> (3, 1)
    labels[3:5, 0] = 2  # rows 3, 4, column 0 -> (0, 3.5)
    np.testing.assert_allclose(label_centroids(labels), [[3.0, 1.0], [0.0, 3.5]])


def test_label_without_pixels_gives_nan_and_fails_the_check(tmp_path):
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0] = 2
    c = label_centroids(labels)
    assert np.isnan(c[0]).all() and c[1].tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="label 1"):
        check_centroids(np.array([[0.0, 0.0], [0.0, 0.0]]), labels, tmp_path / "x.csv")


def test_check_centroids_rejects_a_wrong_count_and_a_shifted_point(tmp_path):
    labels = np.zeros((4, 4), np.int32)
    labels[1, 1] = 1
    labels[2, 3] = 2
    check_centroids(np.array([[1.0, 1.0], [3.0, 2.0]]), labels, "ok.csv")
    with pytest.raises(InputError, match="2 centroids|1 centroids"):
        check_centroids(np.array([[1.0, 1.0]]), labels, "short.csv")
    with pytest.raises(InputError, match="label 2"):
        check_centroids(np.array([[1.0, 1.0], [3.0, 2.01]]), labels, "moved.csv")


def test_split_refuses_liver_with_a_hint_and_auxiliary_test_images(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"per_organ": {}, "auxiliary_only": {"colon": ["a", "b"]}}))
    with pytest.raises(ConfigError, match="lung"):
        read_monuseg_split(f, "liver")
    assert read_monuseg_split(f, "colon") == {"train": ("a", "b"), "all": ("a", "b")}
    with pytest.raises(InputError, match="per_organ|breast"):
        read_monuseg_split(f, "breast")


# --- the shared data --------------------------------------------------------------

# instances per image (README "Per image" table)
COUNTS = {"TCGA-A7-A13E-01Z-00-DX1": 314, "TCGA-HE-7130-01Z-00-DX1": 1862, "TCGA-50-5931-01Z-00-DX1": 444}


@pytest.fixture(scope="module")
def root(monuseg_dir):
    return monuseg_dir


@pytest.mark.parametrize("organ", PER_ORGAN)
def test_per_organ_split_is_3_1_2_and_disjoint(root, organ):
    parts = [MoNuSeg(root, organ=organ, subset=s) for s in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [3, 1, 2]
    stems = [s for p in parts for s in p.ids]
    assert len(set(stems)) == 6


def test_lung_holds_the_challenges_liver_images(root):
    stems = MoNuSeg(root, organ="lung", subset="all").ids
    assert "TCGA-18-5592-01Z-00-DX1" in stems and "TCGA-50-5931-01Z-00-DX1" in stems
    with pytest.raises(ConfigError, match="lung"):
        MoNuSeg(root, organ="liver")


def test_every_centroid_file_agrees_with_its_label_image_and_the_readme_counts(root):
    n = 0
    seen = {}
    for organ in PER_ORGAN:
        for sample in MoNuSeg(root, organ=organ, subset="all", verify_labels=True):
            seen[sample.id] = len(sample.points)
    for organ in AUXILIARY:
        for sample in MoNuSeg(root, organ=organ, subset="all", verify_labels=True):
            seen[sample.id] = len(sample.points)
    n = sum(seen.values())
    assert len(seen) == 30 and n == 16958  # README: 30 training images, 16,958 instances
    for stem, count in COUNTS.items():
        assert seen[stem] == count


def test_samples_are_point_samples_at_40x_inside_the_image(root):
    s = MoNuSeg(root, organ="kidney", subset="test")[0]
    assert isinstance(s, PointSample) and s.mpp == MPP == 0.25  # the 20x-looking HE images keep 0.25
    img = s.load_image()
    assert img.shape == (1000, 1000, 3)
    assert s.points.min() >= 0 and s.points.max() <= 999


def test_auxiliary_organs_have_two_training_images_only(root):
    for organ in AUXILIARY:
        assert len(MoNuSeg(root, organ=organ, subset="train")) == 2
    with pytest.raises(ConfigError, match="auxiliary"):
        MoNuSeg(root, organ="colon", subset="test")


def test_mpp_override_is_applied_to_the_named_image_only(root):
    ds = MoNuSeg(root, organ="kidney", subset="test", mpp_overrides={"TCGA-HE-7128-01Z-00-DX1": 0.5})
    assert {s.id: s.mpp for s in ds} == {"TCGA-HE-7128-01Z-00-DX1": 0.5, "TCGA-HE-7130-01Z-00-DX1": 0.25}


def test_label_samples_read_the_instance_labels_with_the_20x_override(root):
    from nucleikit.io.datasets.base import LabelSample
    from nucleikit.io.datasets.monuseg import LOOKS_20X, LOOKS_20X_MPP, MoNuSegLabels

    ds = MoNuSegLabels(root, organ="kidney", subset="test", mpp_overrides=LOOKS_20X_MPP)
    assert "kidney" in repr(ds) and ds.ids == ("TCGA-HE-7128-01Z-00-DX1", "TCGA-HE-7130-01Z-00-DX1")
    s = ds[0]
    assert isinstance(s, LabelSample) and s.id in LOOKS_20X and s.mpp == 0.5
    labels = s.load_labels()
    assert labels.shape == (1000, 1000) and labels.dtype == np.int32
    assert len(np.unique(labels)) - 1 == 1073  # README: TCGA-HE-7128 has 1,073 instances
    breast = MoNuSegLabels(root, organ="breast", subset="validation")[0]
    assert breast.mpp == MPP and breast.load_image().shape == (1000, 1000, 3)


def test_per_organ_labels_cover_the_four_organs_in_order(root):
    from nucleikit.io.datasets.monuseg import per_organ_labels

    test, organ_of = per_organ_labels(root, "test")
    assert len(test) == 8 and [organ_of[s.id] for s in test] == [o for o in PER_ORGAN for _ in range(2)]
    val, _ = per_organ_labels(root, "validation", mpp_overrides={"TCGA-B0-5710-01Z-00-DX1": 0.5})
    assert {s.id: s.mpp for s in val}["TCGA-B0-5710-01Z-00-DX1"] == 0.5 and len(val) == 4
