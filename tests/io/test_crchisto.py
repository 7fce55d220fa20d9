"""Tests for nucleikit.io.datasets.crchisto against the counts of the data README.

The helpers (merge, attach, split parsing) are tested on hand-built inputs;
the reader is checked against /work/shared/data/crchisto (skips without it,
fails under NUCLEIKIT_REQUIRE_DATA=1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import loadmat

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.datasets.crchisto import (
    CLASSES,
    MPP,
    CRCHisto,
    attach_classes,
    class_points,
    detection_points,
    merge_class_points,
    read_split,
)
from nucleikit.io.mat import read_mat_points

FIXED_TEST = [1, 4, 9, 24, 30, 37, 39, 46, 48, 50, 56, 65, 78, 83, 89, 90, 91, 92, 99, 100]

# --- helpers on hand-built inputs -------------------------------------------------


def test_merge_keeps_the_first_class_of_a_doubly_labelled_point():
    xy, labels = merge_class_points(
        {
            "epithelial": np.array([[1.0, 1.0]]),
            "fibroblast": np.zeros((0, 2)),
            "others": np.array([[5.0, 5.0], [1.0, 1.0], [5.0, 5.0]]),
        }
    )
    np.testing.assert_array_equal(xy, [[1.0, 1.0], [5.0, 5.0]])
    assert labels.tolist() == ["epithelial", "others"]


def test_attach_pairs_one_to_one_within_tolerance():
    detections = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    classes = {
        "epithelial": np.array([[0.5, 0.0], [1.0, 0.0]]),  # both nearest to detection 0
        "others": np.array([[13.0, 0.0], [20.0, 3.01]]),  # 3.0 away (allowed), 3.01 away (not)
    }
    labels = attach_classes(detections, classes, tolerance=3.0)
    # Two classified points compete for detection 0 and only one gets it; (13, 0) labels
    # detection 1 at exactly 3 px; (20, 3.01) is too far from detection 2.
    assert labels.tolist() == ["epithelial", "others", "", ""]


def test_attach_prefers_more_pairs_over_shorter_ones():
    # Greedy nearest would pair c0 -> d1 (0.5 px) and leave c1 unpaired; the rule pairs both.
    detections = np.array([[0.0, 0.0], [2.0, 0.0]])
    classes = {"a": np.array([[2.5, 0.0]]), "b": np.array([[4.5, 0.0]])}
    assert attach_classes(detections, classes, tolerance=3.0).tolist() == ["a", "b"]


def test_attach_with_no_class_points():
    labels = attach_classes(np.array([[1.0, 2.0]]), {name: np.zeros((0, 2)) for name in CLASSES})
    assert labels.tolist() == [""]


def test_read_split_refuses_unknown_split(tmp_path):
    with pytest.raises(ConfigError, match="'fixed' or a fold number 0-4"):
        read_split(tmp_path / "crchisto.json", 5)


def test_read_split_missing_file(tmp_path):
    with pytest.raises(InputError, match="split list not found"):
        read_split(tmp_path / "crchisto.json", "fixed")


def test_read_split_checks_fold_label(tmp_path):
    path = tmp_path / "crchisto.json"
    path.write_text(json.dumps({"folds": [{"fold": 1, "train": [], "validation": [], "test": []}]}))
    with pytest.raises(InputError, match="labelled fold 1"):
        read_split(path, 0)


def test_missing_root(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        CRCHisto(tmp_path / "nowhere")


# --- the real data set ----------------------------------------------------------


@pytest.fixture(scope="module")
def all_detection(crchisto_dir):
    return CRCHisto(crchisto_dir, subset="all")


@pytest.fixture(scope="module")
def all_classification(crchisto_dir):
    return CRCHisto(crchisto_dir, subset="all", task="classification")


def test_raw_file_counts_match_the_readme(crchisto_dir):
    detections = [read_mat_points(crchisto_dir / f"Detection/img{n}/img{n}_detection.mat") for n in range(1, 101)]
    per_class = {name: 0 for name in CLASSES}
    empty = 0
    for number in range(1, 101):
        for name, points in class_points(crchisto_dir, number).items():
            per_class[name] += len(points)
            empty += len(points) == 0
    assert sum(len(points) for points in detections) == 29_756
    assert per_class == {"epithelial": 7_722, "fibroblast": 5_712, "inflammatory": 6_971, "others": 2_039}
    assert empty == 68
    assert min(len(points) for points in detections) == 1  # img76; no detection file is empty


def test_integer_files_are_cast_before_the_shift(crchisto_dir):
    raw = loadmat(crchisto_dir / "Classification/img95/img95_fibroblast.mat")["detection"]
    assert raw.dtype == np.uint8
    points = read_mat_points(crchisto_dir / "Classification/img95/img95_fibroblast.mat")
    np.testing.assert_array_equal(points, raw.astype(np.float64) - 1)
    raw16 = loadmat(crchisto_dir / "Detection/img73/img73_detection.mat")["detection"]
    assert raw16.dtype == np.uint16
    assert read_mat_points(crchisto_dir / "Detection/img73/img73_detection.mat").min() >= 0


def test_exact_duplicates_are_dropped(crchisto_dir, all_detection):
    dropped = {}
    for number, sample in zip(all_detection.image_numbers, all_detection):
        raw = read_mat_points(crchisto_dir / f"Detection/img{number}/img{number}_detection.mat")
        if len(raw) != len(sample.points):
            dropped[number] = len(raw) - len(sample.points)
    assert dropped == {8: 1, 12: 1, 26: 1, 29: 2, 33: 2, 44: 1}
    assert sum(len(sample.points) for sample in all_detection) == 29_748


@pytest.mark.parametrize(
    ("number", "clipped"),
    [(8, (370.04, 0.0)), (13, (0.0, 427.52)), (26, (168.50, 0.0)), (43, (0.0, 456.25)), (91, (31.0, 0.0))],
)
def test_points_below_half_a_pixel_are_clipped_to_zero(crchisto_dir, number, clipped):
    points = detection_points(crchisto_dir, number)
    distances = np.hypot(*(points - np.array(clipped)).T)
    assert distances.min() < 0.01  # README values are rounded to 2 decimals


def test_every_point_lies_on_the_image(all_detection, all_classification):
    for dataset in (all_detection, all_classification):
        for sample in dataset:
            assert sample.points.min() >= 0.0
            assert sample.points.max() <= 499.0


def test_classification_merges_duplicates_and_double_labels(all_classification):
    totals = {name: 0 for name in CLASSES}
    by_id = {}
    for sample in all_classification:
        by_id[sample.id] = sample
        names, counts = np.unique(sample.classes, return_counts=True)
        for name, count in zip(names, counts):
            totals[str(name)] += int(count)
    # 22,444 rows - img26's repeated "others" point - the "others" copy of two nuclei.
    assert totals == {"epithelial": 7_722, "fibroblast": 5_712, "inflammatory": 6_971, "others": 2_036}
    assert sum(totals.values()) == 22_441

    def label_at(sample_id, x, y):
        sample = by_id[sample_id]
        distances = np.hypot(sample.points[:, 0] - (x - 1), sample.points[:, 1] - (y - 1))
        assert (distances < 0.01).sum() == 1  # one point, not two
        return sample.classes[np.argmin(distances)]

    assert label_at("img8", 42.94, 330.02) == "epithelial"
    assert label_at("img12", 28.25, 326.88) == "inflammatory"
    assert label_at("img26", 119.41, 304.43) == "others"


def test_attach_classes_labels_detections_within_three_pixels(crchisto_dir):
    attached = 0
    for number in range(1, 101):
        labels = attach_classes(detection_points(crchisto_dir, number), class_points(crchisto_dir, number))
        attached += int((labels != "").sum())
    # README: 22,400 of 22,444 classified rows lie within 3 px of a detection point; the
    # 3 merged duplicates leave 22,397 one-to-one pairs (exact equality alone gives fewer).
    assert attached == 22_397


def test_fixed_split_is_fold_four(crchisto_dir):
    for subset in ("train", "validation", "test"):
        fixed = CRCHisto(crchisto_dir, split="fixed", subset=subset)
        assert fixed.image_numbers == CRCHisto(crchisto_dir, split=4, subset=subset).image_numbers
    assert list(CRCHisto(crchisto_dir, subset="test").image_numbers) == FIXED_TEST


def test_split_sizes_and_disjointness(crchisto_dir):
    test_union = set()
    for fold in range(5):
        parts = {
            subset: set(CRCHisto(crchisto_dir, split=fold, subset=subset).image_numbers)
            for subset in ("train", "validation", "test")
        }
        assert [len(parts[s]) for s in ("train", "validation", "test")] == [70, 10, 20]
        assert parts["train"] | parts["validation"] | parts["test"] == set(range(1, 101))
        both = CRCHisto(crchisto_dir, split=fold, subset="train+validation").image_numbers
        assert set(both) == parts["train"] | parts["validation"] and len(both) == 80
        test_union |= parts["test"]
    assert test_union == set(range(1, 101))  # each image is tested in exactly one fold


def test_samples_carry_ids_mpp_and_images(crchisto_dir):
    dataset = CRCHisto(crchisto_dir, subset="test", task="classification")
    assert len(dataset) == 20
    sample = dataset[0]
    assert sample.id == "img1" and dataset.ids[0] == "img1"
    assert sample.mpp == MPP == 0.55
    assert sample.classes is not None and len(sample.classes) == len(sample.points) == 20
    image = sample.load_image()
    assert image.shape == (500, 500, 3)
    assert [s.id for s in dataset[1:3]] == ["img4", "img9"]
    assert CRCHisto(crchisto_dir, subset="test")[0].classes is None


def test_bad_options(crchisto_dir):
    with pytest.raises(ConfigError, match="subset"):
        CRCHisto(crchisto_dir, subset="val")
    with pytest.raises(ConfigError, match="task"):
        CRCHisto(crchisto_dir, task="segmentation")
    with pytest.raises(ConfigError, match="fold number"):
        CRCHisto(crchisto_dir, split="4")


def test_missing_splits_file(crchisto_dir, tmp_path):
    with pytest.raises(InputError, match="split list not found"):
        CRCHisto(crchisto_dir, splits_file=tmp_path / "none.json")
