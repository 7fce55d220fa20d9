"""The training loop on a synthetic disc image: mechanics, checkpoint, resume, metadata."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from nucleikit.models.weights import load_weights, read_weights_meta
from nucleikit.train.augment import AugmentConfig
from nucleikit.train.config import TrainConfig
from nucleikit.train.loop import train_detector


@dataclass
class Disc:
    id: str
    points: np.ndarray
    mpp: float
    pixels: np.ndarray

    def load_image(self, mode="rgb"):
        return self.pixels


def disc_image(seed, n=12, size=64):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(6, size - 6, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size, 3), 0.9, np.float32)
    for x, y in pts:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = (0.3, 0.2, 0.5)
    return Disc(f"disc{seed}", pts, 0.55, img)


def tiny_config(**kw):
    base = dict(
        model="micronet", model_kwargs={"width": 4}, steps=4, val_every=2, batch_size=2, crop=48,
        threads=1, augment=AugmentConfig.none(), xi_grid=(0.3, 0.5), min_distance_grid=(2, 3),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_writes_weights_checkpoint_and_log(tmp_path):
    res = train_detector([disc_image(0), disc_image(1)], [disc_image(2)], tiny_config(), tmp_path, progress=False,
                         extra_meta={"dataset": "synthetic discs"})
    assert res.steps_done == 4
    assert (tmp_path / "checkpoint.pt").exists()
    lines = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [2, 4]
    meta = read_weights_meta(res.best_weights)
    assert meta["model"] == "micronet" and meta["mpp"] == 0.55
    assert meta["dataset"] == "synthetic discs"
    assert meta["postprocess"]["threshold_rel"] in (0.3, 0.5)
    assert meta["postprocess"]["min_distance"] in (2, 3)
    assert len(meta["mean"]) == 3 and meta["halo"] > 0
    model, _ = load_weights(res.best_weights)
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]


def test_resume_continues_from_checkpoint(tmp_path):
    train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=2), tmp_path, progress=False)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 2
    res = train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=4), tmp_path, progress=False)
    assert res.steps_done == 4
    records = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]  # the resumed run did not start again from step 0
    # the optimisation-only clock carries over the resume and excludes validation
    assert 0 < records[0]["train_s"] < records[1]["train_s"]
    assert all(r["train_s"] < r["elapsed_s"] for r in records)


def test_same_seed_same_result(tmp_path):
    a = train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=2), tmp_path / "a", progress=False)
    b = train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=2), tmp_path / "b", progress=False)
    ma, _ = load_weights(a.best_weights)
    mb, _ = load_weights(b.best_weights)
    for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_rejects_segmentation_model_and_no_validation(tmp_path):
    from nucleikit.errors import ConfigError

    with pytest.raises(ConfigError):
        train_detector([disc_image(0)], [disc_image(2)], tiny_config(model="unet", model_kwargs={}), tmp_path,
                       progress=False)
    with pytest.raises(ConfigError):
        train_detector([disc_image(0)], [], tiny_config(), tmp_path, progress=False)


def test_fine_tune_with_frozen_blocks_keeps_them(tmp_path):
    base = train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=2), tmp_path / "base", progress=False)
    cfg = tiny_config(steps=2, init=str(base.best_weights), freeze_blocks=3, model_kwargs={})
    tuned = train_detector([disc_image(1)], [disc_image(2)], cfg, tmp_path / "ft", progress=False)
    m0, _ = load_weights(base.best_weights)
    m1, meta = load_weights(tuned.best_weights)
    for i in range(3):
        for (k, a), b in zip(m0.blocks[i].state_dict().items(), m1.blocks[i].state_dict().values()):
            assert torch.equal(a, b), f"block {i + 1} {k} changed"
    changed = any(not torch.equal(a, b) for a, b in zip(m0.blocks[9].state_dict().values(), m1.blocks[9].state_dict().values()))
    assert changed


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = tiny_config(steps=4, val_every=2, augment=AugmentConfig())
    full = train_detector([disc_image(0), disc_image(1)], [disc_image(2)], cfg, tmp_path / "full", progress=False)
    train_detector([disc_image(0), disc_image(1)], [disc_image(2)], tiny_config(steps=2, val_every=2,
                   augment=AugmentConfig()), tmp_path / "cut", progress=False)
    resumed = train_detector([disc_image(0), disc_image(1)], [disc_image(2)], cfg, tmp_path / "cut", progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.steps_done == resumed.steps_done == 4


@dataclass
class Blobs:
    """A label sample: touching and separate discs."""

    id: str
    labels: np.ndarray
    mpp: float | None = None

    def load_image(self, mode="rgb"):
        img = np.where(self.labels[..., None] > 0, 0.2, 0.9).astype(np.float32)
        img = np.repeat(img, 3, axis=2)
        return img if mode == "rgb" else img[..., :1]

    def load_labels(self):
        return self.labels


def blob_sample(seed, size=64):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    labels = np.zeros((size, size), np.int32)
    for k, (x, y) in enumerate(rng.uniform(8, size - 8, size=(5, 2)), start=1):
        labels[((xx - x) ** 2 + (yy - y) ** 2 <= 25) & (labels == 0)] = k
    return Blobs(f"blobs{seed}", labels)


def test_segmentation_training_uses_the_same_loop(tmp_path):
    from nucleikit.train.loop import train_segmenter

    cfg = TrainConfig(model="unet", model_kwargs={"widths": [4, 8, 8, 8, 8]}, steps=2, val_every=2, batch_size=2,
                      crop=48, threads=1, augment=AugmentConfig.none())
    res = train_segmenter([blob_sample(0), blob_sample(1)], [blob_sample(2)], cfg, tmp_path, progress=False)
    meta = read_weights_meta(res.best_weights)
    assert meta["task"] == "segmentation" and meta["colour"] == "rgb"
    assert set(meta["postprocess"]) == {"threshold", "min_distance", "min_size"}
    assert 0.0 <= meta["validation"]["dice"] <= 1.0 and "dsb" in meta["validation"]
    line = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert line["score"] == line["val_dice"]


def test_instance_head_trains_on_three_targets_and_tunes_the_marker_watershed(tmp_path):
    from nucleikit.train.loop import train_segmenter
    from nucleikit.train.tasks import instance_grid

    cfg = TrainConfig(model="unet_instance", model_kwargs={"widths": [4, 8, 8, 8, 8]}, steps=2, val_every=2,
                      batch_size=2, crop=48, threads=1, augment=AugmentConfig(hed=0.05))
    res = train_segmenter([blob_sample(0), blob_sample(1)], [blob_sample(2)], cfg, tmp_path, progress=False)
    meta = read_weights_meta(res.best_weights)
    assert meta["target"] == "instance" and meta["model"] == "unet_instance"
    post = meta["postprocess"]
    assert set(post) == {"threshold", "markers", "marker_threshold", "min_size"}
    assert {k: post[k] for k in ("threshold", "markers", "marker_threshold")} in [
        {k: g[k] for k in ("threshold", "markers", "marker_threshold")} for g in instance_grid(cfg.seg_min_size)]
    line = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert line["score"] == line["val_aji"] and 0.0 <= line["val_pq"] <= 1.0 and "val_dsb" in line


def test_fine_tuned_segmenter_inherits_colour_intensity_and_resolution(tmp_path):
    from nucleikit.train.loop import train_segmenter

    base = TrainConfig(model="unet", model_kwargs={"widths": [4, 8, 8, 8, 8]}, steps=1, val_every=1, batch_size=2,
                       crop=48, threads=1, intensity="percentile", mpp=0.5, augment=AugmentConfig.none())
    first = train_segmenter([blob_sample(0)], [blob_sample(2)], base, tmp_path / "a", progress=False)
    # the fine-tuning configuration names neither: both come from the initial weights
    tune = TrainConfig(model="unet", init=str(first.best_weights), steps=1, val_every=1, batch_size=2, crop=48,
                       threads=1, augment=AugmentConfig.none())
    res = train_segmenter([blob_sample(1)], [blob_sample(2)], tune, tmp_path / "b", progress=False)
    meta = read_weights_meta(res.best_weights)
    assert meta["intensity"] == "percentile" and meta["colour"] == "rgb" and meta["mpp"] == 0.5
    assert meta["init"] is not None


def test_detector_loop_refuses_a_segmenter(tmp_path):
    from nucleikit.errors import ConfigError
    from nucleikit.train.loop import train_segmenter

    with pytest.raises(ConfigError):
        train_segmenter([disc_image(0)], [disc_image(2)], tiny_config(), tmp_path, progress=False)


def test_resampled_training_labels_keep_their_numbers():
    # labels are resized by nearest neighbour only: no blended, made-up label numbers
    from nucleikit.train.tasks import SegmentationTask

    import dataclasses

    sample = dataclasses.replace(blob_sample(3, size=96), mpp=0.25)
    cfg = TrainConfig(model="unet_instance", mpp=0.5).resolved()
    (prepared,) = SegmentationTask("instance", cfg).prepare([sample])
    assert prepared.pixels.shape[:2] == (48, 48) and prepared.truth.shape == (48, 48)
    assert set(np.unique(prepared.truth)) <= set(np.unique(sample.labels))
    assert len(np.unique(prepared.truth)) == len(np.unique(sample.labels))
    assert prepared.target.shape == (48, 48, 3)


def test_a_task_adapter_plugs_into_the_trainer(tmp_path):
    """The Trainer's parts: a custom adapter is asked to validate at every val_every, step counts."""
    from nucleikit.train.loop import Trainer
    from nucleikit.train.tasks import DetectionTask

    class Counting(DetectionTask):
        def __init__(self, *args):
            super().__init__(*args)
            self.validated = []

        def validate(self, maps, images):
            self.validated.append([m.shape for m in maps])
            return super().validate(maps, images)

    cfg = tiny_config(steps=4, val_every=2)
    adapter = Counting("proximity", cfg.resolved())
    trainer = Trainer([disc_image(0)], [disc_image(2)], cfg, tmp_path, adapter=adapter)
    assert trainer.adapter is adapter and trainer.state.step == 0
    res = trainer.run(progress=False)
    assert res.steps_done == trainer.state.step == 4
    assert adapter.validated == [[(1, 64, 64)]] * 2  # steps 2 and 4, one map of the one validation image
    assert res.best_step in (2, 4) and res.best["score"] == max(
        json.loads(line)["score"] for line in (tmp_path / "log.jsonl").read_text().splitlines())
