"""Tests for nucleikit.io.datasets.dsb2018 against the counts of the data README.

The reader's rules (left-out ids, Height/Width check, Kaggle folders) are
first tested on a tiny fake data set in tmp_path; the real data set in
/work/shared/data/dsb2018 (fixture ``dsb2018_dir``: skips without it, fails
under NUCLEIKIT_REQUIRE_DATA=1) is then checked against its README.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.datasets.base import LabelSample
from nucleikit.io.datasets.dsb2018 import (
    DSB2018,
    FIXED_DROPPED_IDS,
    image_shape,
    read_kaggle_folder,
    read_split,
)
from nucleikit.io.labels import count_overlaps
from nucleikit.io.rle import read_rle_csv, rle_decode

# The ten ids that keep their masks/ folder in the shared copy (data README).
MASK_IDS = (
    "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552",
    "00ae65c1c6631ae6f2be1a449902976e6eb8483bf6b0740d00530220832c6d3e",
    "02903040e19ddf92f452907644ad3822918f54af41dd85e5a3fe3e1b6d6f9339",
    "0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd",
    "07fb37aafa6626608af90c1e18f6a743f29b6b233d2e427dcd1102df6a916cf5",
    "08275a5b1c2dfcd739e8c4888a5ee2d29f83eccfa75185404ced1dc0866ea992",
    "1400420310c9094361a8a243545187f1d4c2365e081b3bb08c5fa29c7491a55b",
    "20b20ab049372d184c705acebe7af026d3580f5fd5a72ed796e3622e1685af2f",
    "220b37f4ca7cab486d2b71cd87a46ee7411a5aa142799d96ed98015ab5ba538a",
    "c901794d1a421d52e5734500c0a2a8ca84651fb93b19cec2f411855e70cae339",
)
# Fixed images with overlapping masks and the overlap in pixels (data README).
FIXED_OVERLAPS = {"0a7d30b2": 2, "1609b1b8": 1, "175dbb36": 1, "547ef286": 2, "72e8c49d": 2, "f26f4c2c": 1}


def same_up_to_numbering(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the label images have the same background and a one-to-one label map."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def test_same_up_to_numbering_helper():
    a = np.array([[0, 1, 1, 2]])
    assert same_up_to_numbering(a, np.array([[0, 5, 5, 3]]))
    assert not same_up_to_numbering(a, np.array([[0, 5, 5, 5]]))  # merged
    assert not same_up_to_numbering(a, np.array([[0, 5, 6, 3]]))  # split
    assert not same_up_to_numbering(a, np.array([[4, 5, 5, 3]]))  # background differs


def test_label_sample_builds_int32_labels_on_demand_and_refuses_floats(tmp_path):
    calls = []

    def labels():
        calls.append(1)
        return np.array([[0, 2]], np.uint16)

    sample = LabelSample("a", str(tmp_path / "a.png"), labels)
    assert calls == [] and sample.image_path == tmp_path / "a.png" and sample.mpp is None
    out = sample.load_labels()
    assert out.dtype == np.int32 and out.tolist() == [[0, 2]] and calls == [1]
    with pytest.raises(ValueError, match="labels must be a 2-D integer array"):
        LabelSample("b", "b.png", lambda: np.zeros((2, 2))).load_labels()


# --- a tiny fake data set -------------------------------------------------------------------


def _image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _fake(tmp_path, *, solution_height=3, fixed_ids=("t1",)):
    """root with train ids t1, t2 (t2 stands for a dropped id) and test id s1."""
    root = tmp_path / "data" / "dsb2018"
    dropped = min(FIXED_DROPPED_IDS)
    for image_id in ("t1", dropped):
        _image(root / "stage1_train" / image_id / "images" / f"{image_id}.png", np.full((3, 4), 9, np.uint8))
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    _image(root / "stage1_test" / "s1" / "images" / "s1.png", rgba)
    (root / "stage1_train_labels.csv").write_text(f"ImageId,EncodedPixels\nt1,1 2\nt1,7 2\n{dropped},1 1\n")
    rows = "".join(f"{i},1 2\n" for i in fixed_ids)
    (root / "stage1_train_labels_fixed.csv").write_text("ImageId,EncodedPixels\n" + rows)
    solution = f"ImageId,EncodedPixels,Height,Width,Usage\ns1,2 3,{solution_height},4,Public\n"
    (root / "stage1_solution.csv").write_text(solution)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "dsb2018.json").write_text(json.dumps({"train": ["t1", dropped], "validation": [], "test": ["s1"]}))
    return root, dropped


def test_fixed_labels_leave_out_the_dropped_ids_and_say_so(tmp_path):
    root, dropped = _fake(tmp_path)
    fixed = DSB2018(root, subset="train")
    assert fixed.ids == ("t1",) and fixed.left_out == (dropped,)
    original = DSB2018(root, subset="train", labels="original")
    assert original.ids == tuple(sorted(("t1", dropped))) and original.left_out == ()
    t1 = original[original.ids.index("t1")]
    np.testing.assert_array_equal(t1.load_labels(), [[1, 0, 2, 0], [1, 0, 2, 0], [0, 0, 0, 0]])


def test_a_split_id_missing_from_the_fixed_file_for_no_known_reason_is_an_error(tmp_path):
    root, _ = _fake(tmp_path, fixed_ids=())
    with pytest.raises(InputError, match="no label rows for 1 ids of the train subset, e.g. t1"):
        DSB2018(root, subset="train")


def test_test_subset_uses_the_solution_and_gives_rgb(tmp_path):
    root, _ = _fake(tmp_path)
    test = DSB2018(root, subset="test", labels="original")  # labels does not apply to test
    assert test.labels_file.name == "stage1_solution.csv"
    sample = test[0]
    assert isinstance(sample, LabelSample) and sample.mpp is None
    np.testing.assert_array_equal(sample.load_labels(), [[0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    image = sample.load_image()
    assert image.shape == (3, 4, 3)  # RGBA with opaque alpha -> RGB
    np.testing.assert_allclose(image[0, 0], [200 / 255, 0, 0], rtol=1e-6)
    assert sample.load_image("grey").shape == (3, 4, 1)


def test_grey_image_is_replicated_to_rgb(tmp_path):
    root, _ = _fake(tmp_path)
    image = DSB2018(root, subset="train")[0].load_image()
    assert image.shape == (3, 4, 3)
    np.testing.assert_allclose(image, 9 / 255, rtol=1e-6)


def test_solution_height_width_must_match_the_image(tmp_path):
    root, _ = _fake(tmp_path, solution_height=5)
    sample = DSB2018(root, subset="test")[0]
    with pytest.raises(InputError, match="Height x Width 5 x 4 of s1 differ from the image's 3 x 4"):
        sample.load_labels()


def test_unknown_subset_is_a_config_error(tmp_path):
    root, _ = _fake(tmp_path)
    with pytest.raises(ConfigError, match="subset must be one of"):
        DSB2018(root, subset="val")


def test_unknown_label_set_is_a_config_error(tmp_path):
    root, _ = _fake(tmp_path)
    with pytest.raises(ConfigError, match="labels must be one of"):
        DSB2018(root, labels="corrected")


def test_missing_image_is_an_input_error(tmp_path):
    root, _ = _fake(tmp_path)
    (root / "stage1_train" / "t1" / "images" / "t1.png").unlink()
    with pytest.raises(InputError, match=r"t1\.png: image not found"):
        DSB2018(root, subset="train")


def test_split_with_an_id_in_train_and_validation(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["a"], "validation": ["a"], "test": []}))
    with pytest.raises(InputError, match="1 ids are in both train and validation, e.g. a"):
        read_split(path)


def test_kaggle_folder_without_masks_is_an_error(tmp_path):
    root, _ = _fake(tmp_path)
    with pytest.raises(InputError, match="no masks/ folder"):
        read_kaggle_folder(root / "stage1_train", ids=["t1"])


def test_kaggle_folder_masks_are_checked_against_the_image(tmp_path):
    root, _ = _fake(tmp_path)
    masks = root / "stage1_train" / "t1" / "masks"
    _image(masks / "m1.png", np.full((3, 4), 255, np.uint8))
    _image(masks / "m2.png", np.full((4, 4), 255, np.uint8))
    (sample,) = read_kaggle_folder(root / "stage1_train", ids=["t1"])
    with pytest.raises(InputError, match=r"m2\.png: mask is 4 x 4 \(W x H\), the image is 4 x 3"):
        sample.load_labels()


# --- the real data set ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def original_table(dsb2018_dir):
    return read_rle_csv(dsb2018_dir / "stage1_train_labels.csv")


@pytest.fixture(scope="module")
def fixed_table(dsb2018_dir):
    return read_rle_csv(dsb2018_dir / "stage1_train_labels_fixed.csv")


def test_label_files_hold_the_readme_counts(original_table, fixed_table):
    assert (len(original_table), original_table.n_rows) == (670, 29_461)
    assert (len(fixed_table), fixed_table.n_rows) == (664, 28_986)
    assert set(original_table) - set(fixed_table) == FIXED_DROPPED_IDS


def test_split_sizes(dsb2018_dir):
    original = {name: DSB2018(dsb2018_dir, subset=name, labels="original") for name in ("train", "validation")}
    assert (len(original["train"]), len(original["validation"])) == (536, 134)
    assert not set(original["train"].ids) & set(original["validation"].ids)
    fixed = [DSB2018(dsb2018_dir, subset=name) for name in ("train", "validation")]
    assert sum(len(d) for d in fixed) == 664
    assert {i for d in fixed for i in d.left_out} == FIXED_DROPPED_IDS


def test_test_subset_has_65_images_and_4152_nuclei(dsb2018_dir):
    test = DSB2018(dsb2018_dir, subset="test")
    assert len(test) == 65 and test.table.n_rows == 4_152
    # Every solution row is one label (no overlaps in the solution), and
    # every Height/Width matches its image (checked by load_labels).
    assert sum(len(np.unique(sample.load_labels())) - 1 for sample in test) == 4_152


def test_images_load_as_rgb_whatever_their_stored_mode(dsb2018_dir):
    test = DSB2018(dsb2018_dir, subset="test")
    modes = {Image.open(sample.image_path).mode for sample in test}
    assert modes == {"RGBA", "RGB"}
    rgba = next(s for s in test if Image.open(s.image_path).mode == "RGBA")
    image = rgba.load_image()
    assert image.shape == (*image_shape(rgba.image_path), 3) and image.dtype == np.float32
    grey_id = next(i for i in DSB2018(dsb2018_dir, subset="validation").ids if _stored_mode(dsb2018_dir, i) == "L")
    grey = DSB2018(dsb2018_dir, subset="validation")[DSB2018(dsb2018_dir, subset="validation").ids.index(grey_id)]
    pixels = grey.load_image()
    assert pixels.shape[2] == 3
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def _stored_mode(root, image_id):
    with Image.open(root / "stage1_train" / image_id / "images" / f"{image_id}.png") as image:
        return image.mode


def test_mask_folders_equal_their_rle_rows(dsb2018_dir, original_table):
    samples = read_kaggle_folder(dsb2018_dir / "stage1_train", ids=MASK_IDS)
    for sample in samples:
        from_masks = sample.load_labels()
        from_rle = original_table.labels(sample.id, from_masks.shape)
        assert same_up_to_numbering(from_masks, from_rle), sample.id
        assert from_masks.max() == len(original_table[sample.id])


def test_fixed_overlaps_are_the_readme_ones_and_lose_no_nucleus(dsb2018_dir, fixed_table):
    for prefix, pixels in FIXED_OVERLAPS.items():
        (image_id,) = [i for i in fixed_table if i.startswith(prefix)]
        shape = image_shape(dsb2018_dir / "stage1_train" / image_id / "images" / f"{image_id}.png")
        assert count_overlaps(rle_decode(e, shape) for e in fixed_table[image_id]) == pixels
        labels = fixed_table.labels(image_id, shape)
        assert len(np.unique(labels)) - 1 == len(fixed_table[image_id])
