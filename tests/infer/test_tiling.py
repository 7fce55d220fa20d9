"""Tests of the tiling engine: tiled output equals untiled output exactly.

The forwards are small deterministic NumPy functions with a known receptive field:
``box(r)`` (a (2r+1)^2 mean with zero padding at the window border, like a convolution) and
``pool_box(r, s)`` (box, then s x s mean pooling, then nearest upsampling), which emulates a
network downsampling by ``s``: its output depends on where the pooling lattice lies. Inputs
hold small integers so every sum is exact and outputs can be compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nucleikit.infer.tiling import (
    MAX_HALO_OVERHEAD,
    TileGrid,
    Window,
    aligned_window,
    halo_overhead,
    plan_tiles,
    tile_for_memory,
    tile_for_overhead,
    lattice_halo,
    lattice_margin,
    measure_halo,
    predict_aligned,
    predict_tiled,
    predict_tiles,
    read_window,
)


def box(r: int):
    """(B, C, h, w) -> (B, 2C, h, w): the (2r+1)^2 box mean of each channel and its square."""

    def forward(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        w = np.ones(2 * r + 1)
        y = ndimage.correlate1d(x, w, axis=2, mode="constant")
        y = ndimage.correlate1d(y, w, axis=3, mode="constant") / (2 * r + 1) ** 2
        return np.concatenate([y, y**2], axis=1)

    return forward


def pool_box(r: int, s: int):
    """box(r), then s x s mean pooling from the window origin, then nearest upsampling."""
    inner = box(r)

    def forward(x: np.ndarray) -> np.ndarray:
        b, c, h, w = x.shape
        assert h % s == 0 and w % s == 0, (h, w, s)
        y = inner(x)
        # Explicit sum over the s*s phases: the same additions in the same order everywhere.
        pooled = sum(y[:, :, i::s, j::s] for i in range(s) for j in range(s)) / (s * s)
        return np.repeat(np.repeat(pooled, s, axis=2), s, axis=3)

    return forward


def int_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    return rng.integers(0, 16, size=(h, w, c)).astype(np.float32)


# ----------------------------------------------------------------------------- TileGrid


def test_grid_example_windows():
    grid = TileGrid((100, 40), tile=48, halo=8, align=16)
    assert grid.core_shape == (48, 48)
    assert grid.read_shape == (64, 64)
    assert grid.grid_shape == (3, 1)
    tiles = list(grid)
    assert [t.core for t in tiles] == [Window(0, 0, 48, 40), Window(48, 0, 96, 40), Window(96, 0, 100, 40)]
    assert [t.read for t in tiles] == [Window(-8, -8, 56, 56), Window(40, -8, 104, 56), Window(88, -8, 152, 56)]
    assert tiles[2].core_in_read == (slice(8, 12), slice(8, 48))
    assert [t.index for t in tiles] == [0, 1, 2]
    assert tiles[1].position == (1, 0)


def test_grid_rounds_tile_and_halo_up():
    grid = TileGrid((1000, 1000), tile=100, halo=5, align=16)
    assert grid.core_shape == (112, 112)  # 100 -> multiple of 16
    assert grid.read_halo == 8  # 5 -> multiple of 16 / 2
    assert grid.read_shape == (128, 128)
    odd = TileGrid((50, 50), tile=10, halo=4, align=3)
    assert odd.core_shape == (12, 12)
    assert odd.read_halo == 6  # odd align: halo rounds to a multiple of align itself
    assert odd.read_shape[0] % 3 == 0


def test_grid_small_image_is_one_tile_capped_to_image():
    grid = TileGrid((17, 300), tile=512, halo=16, align=16)
    assert len(grid) == 1
    assert grid.core_shape == (32, 304)
    (t,) = grid
    assert t.core == Window(0, 0, 17, 300)
    assert t.read == Window(-16, -16, 48, 320)


@pytest.mark.parametrize("seed", range(4))
def test_cores_partition_image_and_windows_share_size_and_lattice(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(1, 200, size=2))
        align = int(rng.choice([1, 2, 4, 8, 16]))
        tile = (int(rng.integers(1, 120)), int(rng.integers(1, 120)))
        halo = int(rng.integers(0, 40))
        grid = TileGrid((h, w), tile=tile, halo=halo, align=align)
        cover = np.zeros((h, w), dtype=np.int32)
        for t in grid:
            cover[t.core.slices] += 1
            assert t.read.shape == grid.read_shape
            assert t.read.height % align == 0 and t.read.width % align == 0
            # the alignment lattice: every origin congruent to -halo (the untiled origin)
            assert (t.read.y0 + grid.read_halo) % align == 0
            assert (t.read.x0 + grid.read_halo) % align == 0
            assert t.read.y0 <= t.core.y0 - grid.read_halo and t.core.y1 + grid.read_halo <= t.read.y1
            assert t.read.x0 <= t.core.x0 - grid.read_halo and t.core.x1 + grid.read_halo <= t.read.x1
        assert (cover == 1).all(), (h, w, tile, halo, align)
        assert grid.read_halo >= halo


@pytest.mark.parametrize(
    ("halo", "align", "read", "margin"),
    [(0, 16, 0, 0), (1, 16, 8, 16), (8, 16, 8, 16), (90, 16, 96, 96), (97, 32, 112, 128), (5, 3, 6, 6), (7, 1, 7, 7)],
)
def test_lattice_rules(halo, align, read, margin):
    assert lattice_halo(halo, align) == read
    assert lattice_margin(halo, align) == margin
    # the grid reads with the first; a window grown by the second stays on the lattice
    assert TileGrid((40, 40), tile=align, halo=halo, align=align).read_halo == read
    assert (2 * read) % align == 0 and margin % align == 0


def test_lattice_rules_reject_bad_arguments():
    with pytest.raises(ValueError, match="align"):
        lattice_halo(8, 0)
    with pytest.raises(ValueError, match="context"):
        lattice_margin(-1, 16)


def test_a_halo_grown_off_the_lattice_breaks_tiled_equals_untiled(rng):
    """Why the whole-slide path grows a halo only by lattice_margin: one grown by half a cell shifts
    the pooling cells of every window."""
    image = int_image(rng, 37, 45)
    untiled = predict_tiled(pool_box(1, 8), image, tile=1024, halo=8, align=8)  # receptive field 1 + 7
    on = predict_tiled(pool_box(1, 8), image, tile=16, halo=lattice_halo(8, 8) + lattice_margin(3, 8), align=8)
    off = predict_tiled(pool_box(1, 8), image, tile=16, halo=lattice_halo(8, 8) + 4, align=8)
    np.testing.assert_array_equal(on, untiled)
    assert np.abs(off - untiled).max() > 0


def test_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="height"):
        TileGrid((0, 5), tile=16, halo=0, align=16)
    with pytest.raises(ValueError, match="tile"):
        TileGrid((5, 5), tile=0, halo=0, align=16)
    with pytest.raises(ValueError, match="halo"):
        TileGrid((5, 5), tile=16, halo=-1, align=16)
    with pytest.raises(ValueError, match="align"):
        TileGrid((5, 5), tile=16, halo=0, align=0)
    with pytest.raises(IndexError):
        TileGrid((5, 5), tile=16, halo=0, align=16)[1]


def test_ownership_each_point_owned_by_exactly_one_tile(rng):
    grid = TileGrid((70, 90), tile=16, halo=8, align=16)
    points = rng.uniform(-0.5, 89.49, size=(500, 2))
    points[:, 1] = rng.uniform(-0.5, 69.49, size=500)
    seams = np.array([[15.5, 3.0], [15.49, 3.0], [16.0, 31.5], [-0.5, -0.5]])
    points = np.vstack([points, seams])
    owners = np.stack([t.owns(points) for t in grid])
    assert (owners.sum(axis=0) == 1).all()
    # x = 15.5 lies in pixel 16 (second column of tiles); 15.49 in pixel 15
    assert grid[1].owns(seams[:1])[0] and grid[0].owns(seams[1:2])[0]
    assert grid[grid.grid_shape[1] * 2 + 1].owns(seams[2:3])[0]  # y = 31.5 -> row 32 -> tile row 2


# ----------------------------------------------------------------------------- read_window


def test_read_window_inside_is_a_copy_of_the_pixels():
    image = np.arange(5 * 6 * 2).reshape(5, 6, 2)
    out = read_window(image, Window(1, 2, 4, 5))
    np.testing.assert_array_equal(out, image[1:4, 2:5])
    out[:] = -1
    assert image.min() == 0


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge", "constant"])
def test_read_window_padding_matches_numpy_pad(mode):
    image = np.arange(4 * 5).reshape(4, 5).astype(np.float32)
    pad = 3  # < size, where numpy.pad's modes are unambiguous
    padded = np.pad(image, pad, mode=mode)
    for window in [Window(-3, -3, 2, 2), Window(1, 2, 7, 8), Window(-3, -3, 7, 8), Window(-1, 4, 3, 8)]:
        expected = padded[window.y0 + pad : window.y1 + pad, window.x0 + pad : window.x1 + pad]
        np.testing.assert_array_equal(read_window(image, window, pad_mode=mode), expected)


def test_read_window_reflect_corner_by_hand():
    image = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    out = read_window(image, Window(-2, -2, 1, 1))
    np.testing.assert_array_equal(out, [[8, 7, 6], [5, 4, 3], [2, 1, 0]])


def test_read_window_pad_larger_than_image():
    rng = np.random.default_rng(3)
    image = rng.random((20, 20, 3)).astype(np.float32)
    out = read_window(image, Window(-118, -118, 138, 138))
    assert out.shape == (256, 256, 3)
    # reflection is periodic with period 2 * (20 - 1) = 38; numpy.pad agrees for any pad
    np.testing.assert_array_equal(out, np.pad(image, ((118, 118), (118, 118), (0, 0)), mode="reflect"))
    assert out[118 - 38, 118 - 38, 0] == image[0, 0, 0]
    assert out[118 - 1, 118, 1] == image[1, 0, 1]


def test_read_window_one_pixel_image_and_constant_outside():
    image = np.full((1, 1, 2), 7.0)
    assert (read_window(image, Window(-5, -5, 6, 6)) == 7.0).all()
    out = read_window(np.ones((3, 3)), Window(5, 5, 8, 9), pad_mode="constant")
    assert out.shape == (3, 4) and not out.any()
    with pytest.raises(ValueError, match="pad_mode"):
        read_window(image, Window(0, 0, 1, 1), pad_mode="wrap")


# ----------------------------------------------------------------------------- predict_tiled


def test_tiled_equals_untiled_box_filter_random_shapes():
    rng = np.random.default_rng(11)
    for _ in range(12):
        r = int(rng.integers(0, 9))
        h, w = (int(v) for v in rng.integers(1, 90, size=2))
        image = int_image(rng, h, w)
        forward = box(r)
        untiled = predict_tiled(forward, image, tile=max(h, w), halo=r, align=1)
        tile = int(rng.integers(1, 40))
        tiled = predict_tiled(forward, image, tile=tile, halo=r, align=1, batch_size=int(rng.integers(1, 5)))
        assert tiled.dtype == np.float32 and tiled.shape == (6, h, w)
        np.testing.assert_array_equal(tiled, untiled)


def test_tiled_equals_untiled_with_downsampling():
    rng = np.random.default_rng(12)
    s = 4
    for _ in range(12):
        r = int(rng.integers(0, 6))
        h, w = (int(v) for v in rng.integers(1, 100, size=2))
        image = int_image(rng, h, w, c=2)
        forward = pool_box(r, s)
        halo = r + s - 1  # the receptive field of box(r) + pooling
        untiled = predict_tiled(forward, image, tile=10_000, halo=halo, align=s)
        tiled = predict_tiled(forward, image, tile=int(rng.integers(1, 50)), halo=halo, align=s)
        np.testing.assert_array_equal(tiled, untiled)


def test_untiled_pass_is_the_plain_forward_with_reflect_padding(rng):
    image = int_image(rng, 24, 32)
    halo = 6
    out = predict_tiled(box(3), image, tile=512, halo=halo, align=4)
    padded = np.pad(image, ((halo, halo), (halo, halo), (0, 0)), mode="reflect")
    direct = box(3)(padded.transpose(2, 0, 1)[None])[0, :, halo:-halo, halo:-halo]
    np.testing.assert_array_equal(out, direct.astype(np.float32))


@pytest.mark.parametrize(("shape", "halo", "align", "window"), [
    ((256, 250), 96, 16, Window(0, 0, 256, 256)),  # the bundled U-Nets: padded bottom/right only
    ((256, 256), 96, 16, Window(0, 0, 256, 256)),  # already aligned: no padding at all
    ((100, 1), 8, 16, Window(-8, -8, 104, 8)),  # halo 8 = half a cell: the tiled pass's lattice
    ((5, 7), 0, 1, Window(0, 0, 5, 7)),
])
def test_aligned_window_pads_only_to_the_lattice(shape, halo, align, window):
    got = aligned_window(shape, halo=halo, align=align)
    assert got == window
    assert got.y0 % align == got.x0 % align == -lattice_halo(halo, align) % align  # same lattice as tiles
    assert (got.y1 - got.y0) % align == (got.x1 - got.x0) % align == 0
    assert got.y1 - got.y0 - shape[0] < align + (-got.y0) and got.x1 - got.x0 - shape[1] < align + (-got.x0)


def test_predict_aligned_is_one_forward_over_the_aligned_image(rng):
    image = int_image(rng, 21, 30)
    out = predict_aligned(pool_box(2, 4), image, halo=12, align=4)
    padded = np.pad(image, ((0, 3), (0, 2), (0, 0)), mode="reflect")  # to 24 x 32: no halo
    direct = pool_box(2, 4)(padded.transpose(2, 0, 1)[None])[0, :, :21, :30]
    np.testing.assert_array_equal(out, direct.astype(np.float32))
    # Beyond the receptive field of the border it is the halo pass; nearer, it is not.
    tiled = predict_tiled(pool_box(2, 4), image, tile=512, halo=12, align=4)
    r = 2 + 4 - 1
    np.testing.assert_array_equal(out[:, r:-r, r:-r], tiled[:, r:-r, r:-r])
    assert not np.array_equal(out, tiled)
    with pytest.raises(ValueError, match="image must be"):
        predict_aligned(box(1), np.zeros((0, 4, 1)), halo=0, align=1)


def test_tiled_differs_when_halo_too_small(rng):
    # The property tests above could not fail if the forward ignored context; this one shows
    # they would: with no halo, seams differ from the untiled pass.
    image = int_image(rng, 40, 40)
    untiled = predict_tiled(box(3), image, tile=64, halo=4, align=1)
    seamed = predict_tiled(box(3), image, tile=16, halo=0, align=1)
    assert not np.array_equal(seamed, untiled)


def test_pool_forward_is_lattice_sensitive(rng):
    # Misaligned window origins change the pooled output: why read origins share one lattice.
    x = int_image(rng, 32, 32).transpose(2, 0, 1)[None]
    a = pool_box(0, 4)(x[:, :, :28, :28])
    b = pool_box(0, 4)(x[:, :, 1:29, 1:29])
    assert not np.array_equal(a[:, :, 1:27, 1:27], b[:, :, :26, :26])


def test_tiny_and_thin_images(rng):
    for h, w in [(1, 1), (17, 300), (300, 17)]:
        image = int_image(rng, h, w)
        untiled = predict_tiled(pool_box(2, 4), image, tile=1024, halo=6, align=4)
        tiled = predict_tiled(pool_box(2, 4), image, tile=8, halo=6, align=4)
        assert tiled.shape == (6, h, w)
        np.testing.assert_array_equal(tiled, untiled)
    one = predict_tiled(box(1), np.full((1, 1, 3), 5.0, dtype=np.float32), tile=512, halo=8, align=16)
    np.testing.assert_array_equal(one[:3, 0, 0], [5.0, 5.0, 5.0])


def test_progress_and_batches(rng):
    image = int_image(rng, 40, 50)
    calls, batches = [], []

    def forward(x):
        batches.append(x.shape)
        assert x.dtype == np.float32 and x.flags.c_contiguous
        return x[:, :1] * 2

    out = predict_tiled(
        forward, image, tile=16, halo=4, align=8, batch_size=4, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(k, 12) for k in range(1, 13)]  # 3 x 4 tiles
    assert batches == [(4, 3, 24, 24)] * 3
    np.testing.assert_array_equal(out[0], image[:, :, 0] * 2)


def test_predict_tiles_streams_a_subset(rng):
    image = int_image(rng, 30, 30)
    grid = TileGrid(image.shape, tile=16, halo=4, align=4)
    full = predict_tiled(box(2), image, tile=16, halo=4, align=4)
    got = list(predict_tiles(box(2), image, [grid[3], grid[1]], batch_size=1))
    assert [t.index for t, _ in got] == [3, 1]
    for t, core in got:
        np.testing.assert_array_equal(core, full[(slice(None),) + t.core.slices])


def test_predict_tiled_rejects_bad_input_and_output():
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        predict_tiled(box(1), np.zeros((8, 8)), tile=8, halo=0, align=1)
    with pytest.raises(ValueError, match="forward must map"):
        predict_tiled(lambda x: x[:, :, 1:-1, 1:-1], np.zeros((8, 8, 1)), tile=8, halo=2, align=1)


# ----------------------------------------------------------------------------- measure_halo


@pytest.mark.parametrize("r", [0, 1, 5, 12])
def test_measure_halo_box_exact_radius(r):
    assert measure_halo(box(r), in_channels=2, size=64, align=1, multiple=1) == r


@pytest.mark.parametrize(("r", "expected"), [(5, 16), (16, 16), (17, 32)])
def test_measure_halo_rounds_up_to_16(r, expected):
    assert measure_halo(box(r), in_channels=1, size=96, align=1) == expected


@pytest.mark.parametrize("r", [4, 5, 6, 7])
def test_measure_halo_downsampling_all_phases(r):
    # For s x s pooling after box(r), the farthest dependency is r + s - 1, reached only at
    # some positions in the pooling cell (a single impulse at r = 6 would report 8, not 9).
    assert measure_halo(pool_box(r, 4), in_channels=1, size=64, align=4, multiple=1) == r + 3


def test_measured_halo_makes_tiling_exact(rng):
    forward = pool_box(5, 4)
    halo = measure_halo(forward, in_channels=3, size=64, align=4, multiple=4)
    image = int_image(rng, 45, 61)
    np.testing.assert_array_equal(
        predict_tiled(forward, image, tile=12, halo=halo, align=4),
        predict_tiled(forward, image, tile=64, halo=halo, align=4),
    )


def test_measure_halo_global_context_warns_and_constant_raises():
    def global_mean(x):
        return np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), x.shape).copy()

    with pytest.warns(UserWarning, match="global context"):
        assert measure_halo(global_mean, in_channels=1, size=32, align=1, multiple=1) >= 15
    with pytest.raises(ValueError, match="does not depend"):
        measure_halo(lambda x: np.zeros_like(x), in_channels=1, size=32, align=1)


def test_measure_halo_grown_uses_a_bigger_probe_when_needed():
    from scipy import ndimage

    from nucleikit.infer.tiling import measure_halo_grown

    def box(batch, r=40):  # receptive-field radius 40: too wide for a 64 px probe
        return ndimage.uniform_filter(batch, size=(1, 1, 2 * r + 1, 2 * r + 1), mode="constant")

    assert measure_halo_grown(box, in_channels=1, sizes=(64, 128), tol=1e-6, align=16) == 48
    with pytest.raises(ValueError):
        measure_halo_grown(box, in_channels=1, sizes=(32, 64), tol=1e-6, align=16)


# ----------------------------------------------------------------------------- tile plans (issue 15)

GIB = 2 ** 30


@pytest.mark.parametrize("halo, align", [(96, 16), (112, 16), (144, 16), (256, 16), (96, 32), (40, 8), (0, 16)])
def test_tile_for_overhead_is_the_smallest_aligned_core_meeting_the_target(halo, align):
    core = tile_for_overhead(halo, align)
    h = lattice_halo(halo, align)
    assert core % align == 0
    assert (core + 2 * h) ** 2 <= MAX_HALO_OVERHEAD * core**2
    assert core == align or (core - align + 2 * h) ** 2 > MAX_HALO_OVERHEAD * (core - align) ** 2
    if h:
        assert core > 8 * h  # 8 halos give 1.56x: not enough for 1.3x


@pytest.mark.parametrize("bpp", [300.0, 774.0 * 1.5, 2000.0])
def test_tile_for_memory_is_the_largest_aligned_window_in_the_budget(bpp):
    core = tile_for_memory(112, 16, bytes_per_pixel=bpp, budget=GIB)
    assert core % 16 == 0
    assert (core + 224) ** 2 * bpp <= GIB < (core + 16 + 224) ** 2 * bpp


@pytest.mark.parametrize("shape", [(10000, 10000), (20000, 9000), (40000, 31000), (12345, 70001)])
@pytest.mark.parametrize("halo", [96, 112, 144, 256])
def test_large_images_get_at_most_the_target_overhead_when_the_budget_allows(shape, halo):
    # a budget holding windows 1.5x the side of the target core (module docstring)
    side = int(1.5 * tile_for_overhead(halo, 16)) + 2 * lattice_halo(halo, 16)
    budget = side * side * 300
    plan = plan_tiles(shape, halo=halo, align=16, bytes_per_pixel=300, budget=budget)
    grid = TileGrid(shape, tile=plan.tile, halo=halo, align=16)
    assert plan.rule == "budget"
    assert plan.overhead == pytest.approx(halo_overhead(grid)) and plan.overhead <= MAX_HALO_OVERHEAD
    assert all(c % 16 == 0 for c in plan.tile) and all(r % 16 == 0 for r in plan.read_shape)
    assert grid.read_shape == plan.read_shape
    assert plan.read_shape[0] * plan.read_shape[1] * 300 * plan.batch_size <= budget  # the budget holds
    # balanced: the last row and column of cores are not slivers
    for side, core in zip(shape, plan.tile):
        assert side - (-(-side // core) - 1) * core > core - 16 * -(-side // core)
    # against the 512 px cores used before: far less halo per pixel
    assert plan.overhead < halo_overhead(TileGrid(shape, tile=512, halo=halo, align=16)) - 0.4


def test_the_rule_says_whether_the_target_was_met():
    # a budget that only just holds the target core: equal cores cut from 10,000 px fall below it
    plan = plan_tiles((10000, 10000), halo=112, align=16, bytes_per_pixel=300, budget=GIB)
    assert plan.rule == "memory" and MAX_HALO_OVERHEAD < plan.overhead < 1.4
    assert plan_tiles((40000, 31000), halo=96, align=16, bytes_per_pixel=300, budget=GIB).rule == "budget"


def test_memory_wins_over_the_overhead_target_and_says_so():
    # MicroNet in fp32 (~1.1 KiB per window pixel): 1.3x would need ~3.4 MP windows, 3.7 GiB
    plan = plan_tiles((2014, 2692), halo=112, align=16, bytes_per_pixel=1161, budget=GIB)
    assert plan.rule == "memory" and plan.batch_size == 1
    assert plan.window_bytes <= GIB
    assert plan.overhead < halo_overhead(TileGrid((2014, 2692), tile=512, halo=112, align=16))
    assert tile_for_overhead(112, 16) > tile_for_memory(112, 16, bytes_per_pixel=1161, budget=GIB)


def test_an_image_that_fits_runs_in_one_window_and_a_given_tile_is_kept():
    plan = plan_tiles((500, 500), halo=96, align=16, bytes_per_pixel=1161, budget=GIB)
    assert (plan.rule, plan.tile, plan.read_shape, plan.batch_size) == ("one window", (512, 512), (704, 704), 1)
    # a 2000 x 2000 mosaic: one 2192 px window when the budget holds it, not 16 windows of 704
    assert plan_tiles((2000, 2000), halo=96, align=16, bytes_per_pixel=200, budget=GIB).tile == (2000, 2000)
    given = plan_tiles((2000, 2000), halo=96, align=16, bytes_per_pixel=200, budget=GIB, tile=64)
    assert given.rule == "given" and given.tile == (64, 64) and given.read_shape == (256, 256)


@pytest.mark.parametrize("bpp, budget", [(1000, GIB), (300, GIB), (300, 256 * 2**20), (50, GIB)])
def test_batch_size_fills_the_budget_and_no_more(bpp, budget):
    plan = plan_tiles((5000, 5000), halo=96, align=16, bytes_per_pixel=bpp, budget=budget, tile=256)
    one = plan.read_shape[0] * plan.read_shape[1] * bpp
    assert plan.batch_size >= 1 and plan.window_bytes == plan.batch_size * one
    assert plan.batch_size == 1 or plan.window_bytes <= budget
    assert plan.batch_size == 8 or (plan.batch_size + 1) * one > budget  # as many as fit, at most 8
    assert plan_tiles((5000, 5000), halo=96, align=16, bytes_per_pixel=bpp, budget=budget, tile=256,
                      batch_size=3).batch_size == 3
    # never more windows per pass than there are tiles
    assert plan_tiles((100, 100), halo=8, align=16, bytes_per_pixel=1, budget=GIB, tile=64).batch_size == 4


def test_planned_tiling_equals_untiled(rng):
    # the plan only moves seams: a pooling forward tiled by the plan equals its one-window pass
    img = int_image(rng, 300, 230)
    plan = plan_tiles(img.shape, halo=10, align=4, bytes_per_pixel=100, budget=100 * 60 * 60 * 3)
    assert plan.rule in ("budget", "memory") and plan.tile[0] < 300
    tiled = predict_tiled(pool_box(5, 4), img, tile=plan.tile, halo=10, align=4, batch_size=plan.batch_size)
    untiled = predict_tiled(pool_box(5, 4), img, tile=1024, halo=10, align=4)
    np.testing.assert_array_equal(tiled, untiled)


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError):
        plan_tiles((100, 100), halo=8, align=16, bytes_per_pixel=0, budget=GIB)
    with pytest.raises(ValueError):
        plan_tiles((100, 100), halo=8, align=16, bytes_per_pixel=10, budget=-1)
    with pytest.raises(ValueError):
        tile_for_overhead(96, 16, max_overhead=1.0)
