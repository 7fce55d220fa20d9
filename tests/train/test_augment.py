import numpy as np

from nucleikit.targets import proximity_map
from nucleikit.train.augment import AugmentConfig, random_crop


def test_crop_shapes_and_ranges():
    rng = np.random.default_rng(1)
    img = rng.random((60, 50, 3)).astype(np.float32)
    tgt = rng.random((60, 50)).astype(np.float32)
    x, y = random_crop(rng, img, tgt, 32, AugmentConfig())
    assert x.shape == (32, 32, 3) and y.shape == (32, 32)
    assert x.min() >= 0 and x.max() <= 1
    assert y.min() >= 0 and y.max() <= 1


def test_image_and_target_stay_aligned():
    # A dark disc on a bright image with its proximity map: after any
    # augmentation the target's maximum stays on the dark pixels.
    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.ones((h, w, 3), np.float32)
    img[(yy - 30) ** 2 + (xx - 25) ** 2 <= 16] = 0.0
    tgt = proximity_map([(25.0, 30.0)], (h, w), d=8.0)
    cfg = AugmentConfig(brightness=0, contrast=0, channel_shift=0)
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(30):
        x, y = random_crop(rng, img, tgt, 48, cfg)
        if y.max() > 0.5:
            r, c = np.unravel_index(y.argmax(), y.shape)
            assert x[r, c].mean() < 0.5
            hits += 1
    assert hits > 5


def test_no_augmentation_is_a_plain_crop():
    rng = np.random.default_rng(0)
    img = np.arange(20 * 20 * 3, dtype=np.float32).reshape(20, 20, 3) / 1200
    tgt = img[..., 0].copy()
    x, y = random_crop(rng, img, tgt, 6, AugmentConfig.none())
    # the crop is a contiguous block (with possible border clipping): rows step by 20*3 units
    assert np.allclose(x[..., 0], y)
    steps = np.rint(np.diff(x[:, 0, 0]) * 1200)
    assert set(steps.tolist()) <= {0.0, 60.0}


def test_seed_determinism():
    img = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    tgt = img[..., 0]
    a = random_crop(np.random.default_rng(7), img, tgt, 16, AugmentConfig())
    b = random_crop(np.random.default_rng(7), img, tgt, 16, AugmentConfig())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
