"""Tests for nucleikit.io.datasets.folder.label_folder: your own images with label images or QuPath outlines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.errors import InputError
from nucleikit.io.datasets.folder import label_folder

H, W = 40, 48
CENTRES = [(12, 12), (34, 26)]  # (x, y)


def _discs(h: int = H, w: int = W, centres=CENTRES, radius: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image with dark discs and its (h, w) int32 instance labels (disc k has label k + 1)."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w, 3), 230, np.uint8)
    labels = np.zeros((h, w), np.int32)
    for k, (x, y) in enumerate(centres):
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        image[inside] = (90, 40, 120)
        labels[inside] = k + 1
    return image, labels


def _image(path: Path, h: int = H, w: int = W, **save) -> Path:
    Image.fromarray(_discs(h, w)[0]).save(path, **save)
    return path


def _geojson(path: Path, geometries: list[dict]) -> Path:
    features = [{"type": "Feature", "geometry": g, "properties": {"objectType": "annotation"}} for g in geometries]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """A closed GeoJSON ring of the box from (x0, y0) to (x1, y1), QuPath pixel-corner coordinates."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _polygon(ring: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": [ring]}


def _only(samples):
    assert len(samples) == 1
    return samples[0].load_labels()


# --- label images ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "dtype"), [("a_labels.tif", np.uint16), ("a_labels.tiff", np.int32),
                                             ("a_labels.png", np.uint8), ("a_labels.png", np.uint16)])
def test_label_image_beside_its_image_gives_int32_labels(tmp_path, name, dtype):
    _image(tmp_path / "a.png")
    labels = _discs()[1]
    if name.endswith(".png"):
        Image.fromarray(labels.astype(dtype)).save(tmp_path / name)
    else:
        tifffile.imwrite(tmp_path / name, labels.astype(dtype))
    samples = label_folder(tmp_path)
    assert [s.id for s in samples] == ["a"]  # the label image is not taken for a training image
    assert samples[0].image_path == tmp_path / "a.png" and samples[0].mpp is None
    got = samples[0].load_labels()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, labels)
    assert samples[0].load_image().shape == (H, W, 3)


def test_label_numbers_need_not_be_consecutive(tmp_path):
    _image(tmp_path / "a.tif")
    labels = _discs()[1] * 1000  # 1000 and 2000
    tifffile.imwrite(tmp_path / "a_labels.tif", labels.astype(np.uint16))
    assert set(np.unique(_only(label_folder(tmp_path)))) == {0, 1000, 2000}


def test_label_image_of_another_size_is_refused(tmp_path):
    _image(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", _discs(H, W + 2)[1].astype(np.uint16))
    with pytest.raises(InputError, match=r"a_labels\.tif: label image is 50 x 40 pixels but its image a\.png is 48 x 40"):
        label_folder(tmp_path)


def test_rgb_label_image_is_refused(tmp_path):
    _image(tmp_path / "a.png")
    Image.fromarray(np.repeat(_discs()[1][..., None].astype(np.uint8), 3, axis=2)).save(tmp_path / "a_labels.png")
    with pytest.raises(InputError, match=r"a_labels\.png: a label image needs one channel of integers"):
        label_folder(tmp_path)


def test_float_label_image_is_refused(tmp_path):
    _image(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", _discs()[1].astype(np.float32))
    with pytest.raises(InputError, match=r"a_labels\.tif: label image has float32 samples"):
        label_folder(tmp_path)


def test_binary_mask_is_refused_but_a_single_nucleus_is_not(tmp_path):
    _image(tmp_path / "a.png")
    mask = ((_discs()[1] > 0) * 255).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "a_labels.png")
    with pytest.raises(InputError, match=r"a_labels\.png: one value \(255\) over 2 separate blobs: a binary mask"):
        label_folder(tmp_path)
    one = (_discs(centres=CENTRES[:1])[1] * 255).astype(np.uint8)
    Image.fromarray(one).save(tmp_path / "a_labels.png")
    assert set(np.unique(_only(label_folder(tmp_path)))) == {0, 255}


def test_empty_label_image_is_refused_unless_allowed(tmp_path):
    _image(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", np.zeros((H, W), np.uint16))
    with pytest.raises(InputError, match=r"a_labels\.tif: no nucleus \(every pixel is 0\).*--allow-empty"):
        label_folder(tmp_path)
    assert not _only(label_folder(tmp_path, allow_empty=True)).any()


# --- which files -------------------------------------------------------------------


def test_image_without_annotation_is_refused_even_with_allow_empty(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", _discs()[1].astype(np.uint16))
    for allow_empty in (False, True):
        with pytest.raises(InputError, match=r"b\.png: no annotation: expected b_labels\.png\|tif\|tiff or b\.geojson"):
            label_folder(tmp_path, allow_empty=allow_empty)


def test_two_images_with_one_stem_are_refused(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "a.tif")
    tifffile.imwrite(tmp_path / "a_labels.tif", _discs()[1].astype(np.uint16))
    with pytest.raises(InputError, match=r"a\.tif: same name as a\.png: one image per stem"):
        label_folder(tmp_path)


def test_two_annotations_for_one_image_are_refused(tmp_path):
    _image(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", _discs()[1].astype(np.uint16))
    _geojson(tmp_path / "a.geojson", [_polygon(_square(2, 2, 8, 8))])
    with pytest.raises(InputError, match=r"a\.png: several annotations \(a_labels\.tif, a\.geojson\): keep one"):
        label_folder(tmp_path)


def test_annotation_without_an_image_beside_it_is_refused(tmp_path):
    _image(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "a_labels.tif", _discs()[1].astype(np.uint16))
    tifffile.imwrite(tmp_path / "ab_labels.tif", _discs()[1].astype(np.uint16))  # a misspelt name
    with pytest.raises(InputError, match=r"ab_labels\.tif: annotation without an image: no ab\.png"):
        label_folder(tmp_path)


def test_label_dir_takes_stem_named_labels_and_may_hold_more(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    _image(images / "a.png")
    _image(images / "b.jpg")
    tifffile.imwrite(labels / "a.tif", _discs()[1].astype(np.uint16))
    _geojson(labels / "b.geojson", [_polygon(_square(2, 2, 8, 8))])
    _geojson(labels / "other.geojson", [_polygon(_square(2, 2, 8, 8))])  # e.g. a validation image's outlines
    samples = label_folder(images, label_dir=labels)
    assert [s.id for s in samples] == ["a", "b"]
    np.testing.assert_array_equal(samples[0].load_labels(), _discs()[1])
    assert samples[1].load_labels().sum() == 36


def test_label_dir_with_both_names_is_ambiguous(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    _image(images / "a.png")
    tifffile.imwrite(labels / "a.tif", _discs()[1].astype(np.uint16))
    tifffile.imwrite(labels / "a_labels.tif", _discs()[1].astype(np.uint16))
    with pytest.raises(InputError, match=r"a\.png: several annotations"):
        label_folder(images, label_dir=labels)


def test_missing_label_dir_and_empty_image_folder(tmp_path):
    with pytest.raises(InputError, match="no images"):
        label_folder(tmp_path)
    _image(tmp_path / "a.png")
    with pytest.raises(InputError, match=r"nowhere: label folder not found"):
        label_folder(tmp_path, label_dir=tmp_path / "nowhere")


# --- resolution ---------------------------------------------------------------------


def test_mpp_from_the_argument_else_the_metadata_else_none(tmp_path):
    _image(tmp_path / "a.png", dpi=(25400 / 0.5, 25400 / 0.5))  # pHYs: 0.5 um/px
    _image(tmp_path / "b.png")
    for stem in "ab":
        tifffile.imwrite(tmp_path / f"{stem}_labels.tif", _discs()[1].astype(np.uint16))
    assert [s.mpp for s in label_folder(tmp_path)] == [pytest.approx(0.5, abs=1e-6), None]
    assert [s.mpp for s in label_folder(tmp_path, mpp=0.25)] == [0.25, 0.25]


# --- QuPath outlines -------------------------------------------------------------------


def test_outlines_use_qupath_pixel_corner_coordinates(tmp_path):
    _image(tmp_path / "a.png")
    # QuPath's box from (10, 4) to (20, 9) covers the pixel corners of columns 10-19 and rows 4-8.
    _geojson(tmp_path / "a.geojson", [_polygon(_square(10, 4, 20, 9))])
    expected = np.zeros((H, W), np.int32)
    expected[4:9, 10:20] = 1
    np.testing.assert_array_equal(_only(label_folder(tmp_path)), expected)


def test_qupath_cell_gives_its_nucleus(tmp_path):
    _image(tmp_path / "a.png")
    cell = {"type": "Feature", "geometry": _polygon(_square(0, 0, 30, 30)),
            "properties": {"objectType": "cell", "nucleusGeometry": _polygon(_square(5, 5, 10, 10))}}
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [cell]}))
    labels = _only(label_folder(tmp_path))
    assert labels.sum() == 25 and labels[5:10, 5:10].all()


def test_multipolygon_is_one_nucleus(tmp_path):
    _image(tmp_path / "a.png")
    multi = {"type": "MultiPolygon", "coordinates": [[_square(2, 2, 6, 6)], [_square(20, 20, 24, 24)]]}
    _geojson(tmp_path / "a.geojson", [_polygon(_square(30, 2, 34, 6)), multi])
    labels = _only(label_folder(tmp_path))
    assert labels[2:6, 30:34].tolist() == np.full((4, 4), 1).tolist()
    assert (labels[2:6, 2:6] == 2).all() and (labels[20:24, 20:24] == 2).all()
    assert set(np.unique(labels)) == {0, 1, 2}


def test_overlapping_outlines_the_later_feature_wins(tmp_path):
    _image(tmp_path / "a.png")
    _geojson(tmp_path / "a.geojson", [_polygon(_square(0, 0, 10, 10)), _polygon(_square(6, 0, 16, 10))])
    labels = _only(label_folder(tmp_path))
    assert (labels[0:10, 6:10] == 2).all()  # the shared columns
    assert (labels[0:10, 0:6] == 1).all() and (labels[0:10, 10:16] == 2).all()


def test_outline_partly_outside_is_clipped(tmp_path):
    _image(tmp_path / "a.png")
    _geojson(tmp_path / "a.geojson", [_polygon(_square(-5, 36, 4, 50))])  # over the bottom-left corner
    labels = _only(label_folder(tmp_path))
    expected = np.zeros((H, W), np.int32)
    expected[36:, :4] = 1
    np.testing.assert_array_equal(labels, expected)


def test_outline_entirely_outside_is_refused_naming_the_feature(tmp_path):
    _image(tmp_path / "a.png")
    # Feature 2 in whole-slide coordinates; feature 3 just beyond the right edge (x from 48 = W).
    _geojson(tmp_path / "a.geojson", [_polygon(_square(2, 2, 8, 8)), _polygon(_square(1200, 800, 1210, 812))])
    with pytest.raises(InputError, match=r"a\.geojson: feature 2 lies entirely outside the 48 x 40 image a\.png "
                                         r"\(x 1200\.\.1210, y 800\.\.812 in QuPath pixels\)"):
        label_folder(tmp_path)
    _geojson(tmp_path / "a.geojson", [_polygon(_square(2, 2, 8, 8)), _polygon(_square(1, 2, 5, 6)),
                                      _polygon(_square(W, 10, W + 6, 16))])
    with pytest.raises(InputError, match=r"feature 3 lies entirely outside"):
        label_folder(tmp_path)


def test_empty_outlines_are_refused_unless_allowed(tmp_path):
    _image(tmp_path / "a.png")
    _geojson(tmp_path / "a.geojson", [])
    with pytest.raises(InputError, match=r"a\.geojson: no nucleus outlines \(no features\).*--allow-empty"):
        label_folder(tmp_path)
    assert not _only(label_folder(tmp_path, allow_empty=True)).any()
    # A sliver thinner than a pixel holds no pixel centre: no nucleus either.
    _geojson(tmp_path / "a.geojson", [_polygon(_square(4.1, 4.1, 4.4, 9))])
    with pytest.raises(InputError, match="the outlines cover no pixel centre"):
        label_folder(tmp_path)


def test_point_features_are_refused(tmp_path):
    _image(tmp_path / "a.png")
    _geojson(tmp_path / "a.geojson", [{"type": "Point", "coordinates": [3, 4]}])
    with pytest.raises(InputError, match=r"a\.geojson: feature 1 has geometry 'Point', not a Polygon"):
        label_folder(tmp_path)
