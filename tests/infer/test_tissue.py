"""Tissue masks: glass vs tissue, morphology, mask files, and the summed-area tile test."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from nucleikit.errors import InputError
from nucleikit.infer.tiling import TileGrid, Window
from nucleikit.infer.tissue import (
    load_mask,
    save_mask_png,
    slide_tissue_mask,
    tile_has_tissue,
    tiles_with_tissue,
    tissue_fractions,
    tissue_mask,
)
from nucleikit.io.slides import open_slide

PINK = np.array([0.85, 0.45, 0.65], dtype=np.float32)  # eosin-like, saturation 0.47
GLASS = np.array([0.95, 0.95, 0.96], dtype=np.float32)


def _disk_image(size: int = 256, radius: int = 60, *, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2
    image = np.where(disk[:, :, None], PINK, GLASS)
    image = image + np.random.default_rng(0).normal(0, noise, image.shape)
    return np.clip(image, 0, 1).astype(np.float32), disk


# --- tissue_mask ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["otsu", "fixed"])
def test_white_image_gives_empty_mask(method):
    assert not tissue_mask(np.ones((64, 80, 3), np.float32), method=method).any()


def test_noisy_glass_gives_empty_mask():
    glass = np.clip(GLASS + np.random.default_rng(1).normal(0, 0.02, (128, 128, 3)), 0, 1)
    assert not tissue_mask(glass.astype(np.float32)).any()  # Otsu splits noise; the floors refuse it


@pytest.mark.parametrize("method", ["otsu", "fixed"])
def test_pink_disk_on_glass(method):
    image, disk = _disk_image()
    mask = tissue_mask(image, method=method)
    iou = (mask & disk).sum() / (mask | disk).sum()
    assert mask.shape == disk.shape and mask.dtype == np.bool_
    assert iou > 0.97


def test_uniform_tissue_is_all_tissue():
    assert tissue_mask(np.broadcast_to(PINK, (40, 40, 3)).copy()).all()


def test_grey_dark_blob_is_not_tissue():
    image = np.broadcast_to(GLASS, (128, 128, 3)).copy()
    image[40:90, 40:90] = 0.2  # pen mark or dust: dense but not coloured
    assert not tissue_mask(image).any()


def test_morphology_fills_small_holes_drops_specks_keeps_large_holes():
    image, disk = _disk_image(noise=0.0)
    image[126:130, 126:130] = GLASS  # 4x4 hole: under (8 units)^2 = 64 px -> filled
    image[10:13, 10:13] = PINK  # 3x3 speck: dropped
    mask = tissue_mask(image, mpp=8.0)  # one unit = 1 px
    assert mask[127, 127] and not mask[11, 11]
    big, _ = _disk_image(noise=0.0)
    big[108:148, 108:148] = GLASS  # 40x40 hole: kept
    assert not tissue_mask(big, mpp=8.0)[128, 128]


def test_tissue_mask_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        tissue_mask(np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match="method"):
        tissue_mask(np.ones((8, 8, 3), np.float32), method="kmeans")


# --- tiles ---------------------------------------------------------------------------


def _quarter_mask() -> np.ndarray:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    return mask


def test_tissue_fractions_hand_computed():
    mask = _quarter_mask()  # window frame 8x8 at scale 0.5
    windows = [
        Window(0, 0, 4, 4),  # mask [0:2, 0:2]: all tissue
        Window(0, 0, 8, 8),  # whole mask: 4 / 16
        Window(4, 4, 8, 8),  # no tissue
        Window(3, 3, 5, 5),  # mask [1:3, 1:3]: one of four
        Window(100, 100, 108, 108),  # outside the mask
        Window(-4, -4, 2, 2),  # clipped to mask [0:1, 0:1]
    ]
    np.testing.assert_array_equal(tissue_fractions(mask, 0.5, windows), [1.0, 0.25, 0.0, 0.25, 0.0, 1.0])
    np.testing.assert_array_equal(
        tiles_with_tissue(mask, 0.5, windows, min_fraction=0.3), [True, False, False, False, False, True]
    )
    np.testing.assert_array_equal(
        tiles_with_tissue(mask, 0.5, windows, min_fraction=0.0), [True, True, False, True, False, True]
    )
    assert tile_has_tissue(mask, 0.5, Window(3, 3, 5, 5), min_fraction=0.25)
    assert not tile_has_tissue(mask, 0.5, Window(3, 3, 5, 5), min_fraction=0.26)


def test_tiles_use_their_core():
    grid = TileGrid((8, 8), tile=4, halo=2, align=1)  # read windows overlap the tissue, cores do not
    np.testing.assert_array_equal(tiles_with_tissue(_quarter_mask(), 0.5, grid), [True, False, False, False])


def test_summed_area_table_equals_brute_force(rng):
    mask = rng.random((37, 53)) < 0.3
    scale = 0.37
    windows = []
    for _ in range(300):
        y0, x0 = rng.integers(-20, 160, size=2)
        h, w = rng.integers(1, 60, size=2)
        windows.append(Window(int(y0), int(x0), int(y0 + h), int(x0 + w)))
    fractions = tissue_fractions(mask, scale, windows)
    for window, fraction in zip(windows, fractions):
        r0 = min(max(int(np.floor(window.y0 * scale)), 0), 37)
        r1 = min(max(int(np.ceil(window.y1 * scale)), 0), 37)
        c0 = min(max(int(np.floor(window.x0 * scale)), 0), 53)
        c1 = min(max(int(np.ceil(window.x1 * scale)), 0), 53)
        block = mask[r0:r1, c0:c1]
        assert fraction == (block.mean() if block.size else 0.0)


def test_empty_tile_list():
    assert tiles_with_tissue(_quarter_mask(), 1.0, []).shape == (0,)


# --- mask files ----------------------------------------------------------------------


def test_save_and_load_round_trip_and_resize(tmp_path):
    mask = np.array([[True, False, False], [False, True, True]])
    path = save_mask_png(tmp_path / "sub" / "mask.png", mask)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["mask.png"]  # no temporary left
    assert np.asarray(Image.open(path)).tolist() == [[255, 0, 0], [0, 255, 255]]
    np.testing.assert_array_equal(load_mask(path, (2, 3)), mask)
    np.testing.assert_array_equal(load_mask(path, (4, 6)), np.kron(mask, np.ones((2, 2), bool)))


def test_load_mask_accepts_grey_as_rgb_and_16_bit(tmp_path):
    grey = np.array([[0, 7], [0, 0]], np.uint8)
    Image.fromarray(np.repeat(grey[:, :, None], 3, 2)).save(tmp_path / "rgb.png")
    Image.fromarray(grey.astype(np.uint16) * 1000).save(tmp_path / "deep.png")
    expected = np.array([[False, True], [False, False]])
    np.testing.assert_array_equal(load_mask(tmp_path / "rgb.png", (2, 2)), expected)
    np.testing.assert_array_equal(load_mask(tmp_path / "deep.png", (2, 2)), expected)


def test_load_mask_refuses_colour_image(tmp_path):
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)).save(tmp_path / "thumb.png")
    with pytest.raises(InputError, match="colour"):
        load_mask(tmp_path / "thumb.png", (1, 2))


def test_load_mask_refuses_text_missing_and_wrong_aspect(tmp_path):
    (tmp_path / "mask.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot be read"):
        load_mask(tmp_path / "mask.png", (10, 10))
    with pytest.raises(InputError, match="not found"):
        load_mask(tmp_path / "none.png", (10, 10))
    save_mask_png(tmp_path / "square.png", np.ones((50, 50), bool))
    with pytest.raises(InputError, match="aspect ratio"):
        load_mask(tmp_path / "square.png", (100, 200))


# --- slides --------------------------------------------------------------------------


def test_blank_slide_gives_empty_mask(tmp_path):
    path = tmp_path / "blank.tif"
    tifffile.imwrite(path, np.full((256, 256, 3), 245, np.uint8), photometric="rgb", tile=(64, 64))
    with open_slide(path) as slide:
        mask, scale = slide_tissue_mask(slide, max_side=64)
    assert mask.shape == (64, 64) and scale == 0.25 and not mask.any()


def test_cmu_tissue_mask(slides_dir):
    with open_slide(slides_dir / "CMU-1-Small-Region.svs") as slide:
        mask, scale = slide_tissue_mask(slide)  # 8 µm/px
    h, w = mask.shape
    assert (h, w) == (186, 140) and scale == pytest.approx(186 / 2967)
    assert 0.30 < mask.mean() < 0.70  # about half the field is glass (README)
    assert not mask[: h // 5, -w // 5 :].any()  # top-right corner: glass
    assert mask[int(0.85 * h) :, int(0.3 * w) : int(0.5 * w)].mean() > 0.9  # lower stroma and epidermis
    # A level-0 tile in the glass has no tissue; one in the lower tissue has.
    keep = tiles_with_tissue(mask, scale, [Window(0, 1900, 256, 2156), Window(2600, 700, 2856, 956)])
    np.testing.assert_array_equal(keep, [False, True])


def test_tcga_tissue_mask_without_mpp(slides_dir):
    with open_slide(slides_dir / "TCGA-CR-7395-01A-01-TS1.svs") as slide:
        mask, scale = slide_tissue_mask(slide, max_side=512)
    assert mask.shape == (412, 512) and scale == pytest.approx(512 / 4443)
    assert 0.45 < mask.mean() < 0.80
    assert not mask[:40, :40].any() and mask[200, 250]  # glass corner; centre of the section
