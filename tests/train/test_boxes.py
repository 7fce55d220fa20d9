"""Training the box detector (nucleikit.train.boxes): point targets through the crops, a tiny run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from nucleikit.errors import ConfigError
from nucleikit.infer.predict import Detector, InferenceConfig
from nucleikit.models.weights import read_weights_meta
from nucleikit.train.augment import AugmentConfig, random_crop
from nucleikit.train.boxes import point_blobs, points_from_blobs
from nucleikit.train.config import TrainConfig
from nucleikit.train.loop import train_detector

from .test_loop import disc_image


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_blobs_peak_at_the_points():
    m = point_blobs(np.array([[3.0, 4.0], [10.0, 2.0], [-5.0, 0.0]]), (8, 12))
    assert m.shape == (8, 12) and m.dtype == np.float32
    assert m[4, 3] == 1.0 and m[2, 10] == 1.0 and m.max() == 1.0
    assert m[4, 4] == pytest.approx(np.exp(-0.5), rel=1e-6)  # one pixel away, sigma 1
    np.testing.assert_allclose(points_from_blobs(m), [[10.0, 2.0], [3.0, 4.0]], atol=0.05)  # ties: row order
    assert points_from_blobs(np.zeros((5, 5))).shape == (0, 2)


def test_sub_pixel_and_close_points_are_recovered():
    rng = np.random.default_rng(0)
    pts = rng.uniform(3, 60, size=(25, 2))
    pts = pts[[all(np.hypot(*(p - q)) >= 4 or i == j for j, q in enumerate(pts)) for i, p in enumerate(pts)]]
    found = points_from_blobs(point_blobs(pts, (64, 64)))
    assert len(found) == len(pts)
    d = np.hypot(*(found[:, None] - pts[None]).transpose(2, 0, 1)).min(axis=1)
    assert d.max() < 0.3
    # a point between two pixels makes a plateau: counted once
    assert len(points_from_blobs(point_blobs(np.array([[5.5, 5.0]]), (12, 12)))) == 1


def test_points_follow_the_crop_through_rotation_zoom_and_warp():
    """The crop resamples coordinate maps like the image: where a crop point lands, they name its source."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(8, 88, size=(30, 2))
    pts = pts[[all(np.hypot(*(p - q)) >= 5 or i == j for j, q in enumerate(pts)) for i, p in enumerate(pts)]]
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32)
    coords = np.stack([xx, yy, np.zeros_like(xx)], axis=-1)  # "image" channels: source x, source y
    cfg = AugmentConfig(rotate=True, flip=True, elastic_alpha=2.0, scale=0.1, brightness=0.0, contrast=0.0,
                        channel_shift=0.0)
    checked = 0
    for seed in range(10):
        src, blobs = random_crop(np.random.default_rng(seed), coords, point_blobs(pts, (96, 96)), 48, cfg)
        for x, y in points_from_blobs(blobs):
            r, c = int(round(y)), int(round(x))
            if 1 <= r < 47 and 1 <= c < 47:
                source = src[r, c, :2] + (x - c) * (src[r, min(c + 1, 47), :2] - src[r, c, :2]) \
                    + (y - r) * (src[min(r + 1, 47), c, :2] - src[r, c, :2])
                assert np.hypot(*(pts - source).T).min() < 0.6
                checked += 1
    assert checked > 20


def tiny_box_config(**kw):
    base = dict(model="faster_rcnn", model_kwargs={"width": 4, "hidden": 32, "box_um": 4.0}, steps=6, val_every=3,
                batch_size=2, crop=64, threads=1, optimizer="adam", lr=2e-3, xi_grid=(0.3, 0.5),
                min_distance_grid=(2, 3))
    base.update(kw)
    return TrainConfig(**base)


def test_a_tiny_training_run_learns_saves_and_detects(tmp_path):
    train, val = [disc_image(0), disc_image(1)], [disc_image(2)]
    res = train_detector(train, val, tiny_box_config(), tmp_path, progress=False, extra_meta={"dataset": "discs"})
    assert res.steps_done == 6 and (tmp_path / "checkpoint.pt").exists()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6]
    assert all(np.isfinite(r["loss"]) and 0 <= r["val_f1"] <= 1 for r in log)
    meta = read_weights_meta(res.best_weights)
    assert (meta["model"], meta["target"], meta["mpp"]) == ("faster_rcnn", "boxes", 0.55)
    assert meta["model_kwargs"]["mpp"] == 0.55 and meta["target_params"]["box_px"] == pytest.approx(4.0 / 0.55)
    assert meta["halo"] == res.model.halo
    # usable as any detector
    found = Detector.from_weights(res.best_weights, config=InferenceConfig(threads=1)).detect(
        disc_image(7).pixels, mpp=0.55)
    assert np.isfinite(found.scores).all() and np.all((found.scores > 0) & (found.scores <= 1))

    # a longer run in the same folder resumes from the checkpoint
    more = train_detector(train, val, tiny_box_config(steps=9), tmp_path, progress=False)
    assert more.steps_done == 9
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [3, 6, 9]


def test_loss_goes_down_and_tiled_detections_equal_untiled(tmp_path):
    cfg = tiny_box_config(steps=40, val_every=40, augment=AugmentConfig.none())
    from nucleikit.train.boxes import BoxTrainer

    trainer = BoxTrainer([disc_image(0), disc_image(1)], [disc_image(2)], cfg, tmp_path, resume=False)
    losses = []
    for step in range(cfg.steps):
        trainer.net.train()
        losses.append(trainer.step(trainer_batch(trainer, step)))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    # the halo the network states makes tiles agree with the whole image (once no cap binds)
    meta = {"mpp": 0.55, "mean": trainer.mean.tolist(), "std": trainer.std.tolist(), "halo": trainer.model.halo,
            "postprocess": {"threshold_rel": 0.3, "min_distance": 3}}
    image = disc_image(7, n=20, size=120).pixels
    whole = Detector(trainer.model, meta, config=InferenceConfig(threads=1)).detect(image)
    tiled = Detector(trainer.model, meta, config=InferenceConfig(threads=1, tile=64)).detect(image)
    assert 0 < len(whole) < trainer.model.settings.max_detections
    assert sorted(map(tuple, whole.xy.tolist())) == sorted(map(tuple, tiled.xy.tolist()))


def trainer_batch(trainer, step):
    from nucleikit.train.loop import _batch

    d = trainer.data
    return _batch(trainer.cfg.seed, step, d.train, trainer.cfg, d.probs)


def test_contradictory_resolution_and_freezing_are_refused(tmp_path):
    data = ([disc_image(0)], [disc_image(2)])
    with pytest.raises(ConfigError, match="differs from the training resolution"):
        train_detector(*data, tiny_box_config(model_kwargs={"mpp": 0.25}), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="no numbered blocks"):
        train_detector(*data, replace(tiny_box_config(), freeze_blocks=2), tmp_path, progress=False)
