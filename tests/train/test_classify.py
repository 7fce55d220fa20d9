"""Classification training on synthetic patches: data, augmentation, scores, loop, resume."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nucleikit.errors import ConfigError, InputError
from nucleikit.losses import LOSSES, class_weights, cross_entropy
from nucleikit.metrics import classification_report
from nucleikit.models.weights import load_weights, read_weights_meta
from nucleikit.train.patches import epoch_order as _epoch_order
from nucleikit.train.classify import (
    ClassifyConfig,
    PatchAugment,
    PatchSet,
    augment_patches,
    patch_features,
    patch_stats,
    predict_patches,
    scheduled_lr,
    train_classifier,
)

TINY_MODEL = {"growth": 4, "stem_width": 4, "layers": (1, 1)}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class FakeSample:
    """A PointSample look-alike holding its image in memory."""

    id: str
    points: np.ndarray
    classes: np.ndarray | None
    pixels: np.ndarray
    mpp: float = 0.55

    @property
    def image_path(self) -> Path:
        return Path(f"{self.id}.png")

    def load_image(self, mode="rgb"):
        return self.pixels


def synthetic(n: int, seed: int, size: int = 16) -> PatchSet:
    """Two classes: dark noise ("a") and noise with a bright central disc ("b")."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    patches = rng.integers(0, 60, size=(n, size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= 16)[None, :, :, None]
    patches[labels == 1] += (disc * 150).astype(np.uint8)
    ids = np.array([f"im{seed}_{i % 3}" for i in range(n)])
    return PatchSet(patches, labels.astype(np.int64), ("a", "b"), ids, np.zeros((n, 2)), 0.55)


def tiny_config(**kw) -> ClassifyConfig:
    base = dict(
        model="densenet", model_kwargs=TINY_MODEL, classes=("a", "b"), epochs=2, batch_size=8, patch=16, threads=1
    )
    base.update(kw)
    return ClassifyConfig(**base)


# PatchSet -------------------------------------------------------------------


def test_patch_set_from_samples_cuts_labels_and_keeps_uint8():
    pixels = (np.arange(8 * 8 * 3).reshape(8, 8, 3) % 256 / 255.0).astype(np.float32)
    samples = [
        FakeSample("s1", np.array([[2.0, 3.0], [7.0, 0.0]]), np.array(["b", "a"]), pixels),
        FakeSample("s2", np.zeros((0, 2)), np.zeros(0, dtype=str), pixels),  # no point: skipped
        FakeSample("s3", np.array([[4.0, 4.0]]), np.array(["a"]), pixels),
    ]
    ps = PatchSet.from_samples(samples, classes=("a", "b"), patch=3)
    assert ps.patches.shape == (3, 3, 3, 3) and ps.patches.dtype == np.uint8
    assert ps.labels.tolist() == [1, 0, 0] and ps.image_ids.tolist() == ["s1", "s1", "s3"]
    assert ps.counts().tolist() == [2, 1]
    image8 = np.arange(8 * 8 * 3).reshape(8, 8, 3) % 256
    assert np.array_equal(ps.patches[0], image8[2:5, 1:4])  # centred on row 3, column 2
    assert ps.patches[1, 1, 1].tolist() == image8[0, 7].tolist()


def test_patch_set_resamples_to_the_requested_resolution():
    pixels = np.full((8, 8, 3), 0.5, np.float32)
    sample = FakeSample("s1", np.array([[7.0, 0.0], [2.0, 5.0]]), np.array(["a", "b"]), pixels, mpp=0.275)
    ps = PatchSet.from_samples([sample], classes=("a", "b"), patch=3, mpp=0.55)
    # 8x8 at 0.275 um/px -> 4x4 at 0.55: x -> (x + 0.5) / 2 - 0.5, then clipped into [0, 3]
    assert ps.points.tolist() == [[3.0, 0.0], [0.75, 2.25]]
    assert ps.mpp == 0.55 and np.all(ps.patches == 128)


def test_patch_set_refuses_unknown_classes():
    sample = FakeSample("s1", np.array([[1.0, 1.0]]), np.array(["tumour"]), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"s1.png: unknown class 'tumour'"):
        PatchSet.from_samples([sample], classes=("a", "b"), patch=3)


def test_patch_set_refuses_detection_only_samples():
    sample = FakeSample("s1", np.array([[1.0, 1.0]]), None, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="no classes"):
        PatchSet.from_samples([sample], classes=("a", "b"), patch=3)


def test_patch_set_names_the_image_of_a_point_outside():
    sample = FakeSample("s9", np.array([[9.0, 1.0]]), np.array(["a"]), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"s9.png: 1 of 1 points lie outside"):
        PatchSet.from_samples([sample], classes=("a", "b"), patch=3)


def test_patch_stats_are_exact():
    patches = np.zeros((2, 2, 2, 3), np.uint8)
    patches[0] = 255  # channel values: half 0, half 1
    patches[..., 2] = 51  # constant 0.2
    mean, std = patch_stats(patches)
    assert mean.tolist() == pytest.approx([0.5, 0.5, 0.2])
    assert std.tolist() == pytest.approx([0.5, 0.5, 1e-6])


# augmentation and sampling ----------------------------------------------------------


def test_augment_none_only_rescales():
    x = np.random.default_rng(0).integers(0, 256, size=(4, 5, 5, 3)).astype(np.uint8)
    out = augment_patches(np.random.default_rng(1), x, PatchAugment.none())
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32) / 255)


def test_augment_geometry_stays_among_the_eight_symmetries():
    x = np.random.default_rng(0).integers(0, 256, size=(64, 5, 5, 1)).astype(np.uint8)
    cfg = PatchAugment(flip=True, rotate90=True, brightness=0.0, contrast=0.0, channel_shift=0.0)
    out = augment_patches(np.random.default_rng(2), x, cfg) * 255
    seen = set()
    for original, got in zip(x.astype(np.float32), out):
        variants = [np.rot90(v, k, axes=(0, 1)) for v in (original, original[:, ::-1]) for k in range(4)]
        hits = [i for i, v in enumerate(variants) if np.allclose(v, got)]
        assert hits, "an augmented patch is no symmetry of its original"
        seen.add(hits[0])
    assert seen == set(range(8))


def test_augment_colour_jitter_stays_in_range_and_changes_values():
    x = np.full((8, 4, 4, 3), 128, np.uint8)
    cfg = PatchAugment(flip=False, rotate90=False, brightness=0.1, contrast=0.2, channel_shift=0.05)
    out = augment_patches(np.random.default_rng(3), x, cfg)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - 128 / 255).max() > 0.01
    assert np.abs(out - 128 / 255).max() <= 0.15 + 1e-6  # uniform patch: only the offsets act


def test_augment_hed_jitter_changes_stained_patches_within_range():
    x = np.tile(np.array([150, 90, 170], np.uint8), (16, 6, 6, 1))
    cfg = PatchAugment(flip=False, rotate90=False, brightness=0.0, contrast=0.0, channel_shift=0.0, hed=0.05)
    out = augment_patches(np.random.default_rng(5), x, cfg)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    change = np.abs(out - x / 255.0).max(axis=(1, 2, 3))
    assert (change > 1e-3).all() and change.max() < 0.15
    # the geometry draws come first, so turning the stain jitter on moves no pixel
    geo = PatchAugment(flip=True, rotate90=True, brightness=0.0, contrast=0.0, channel_shift=0.0)
    y = np.random.default_rng(0).integers(0, 256, size=(8, 5, 5, 3)).astype(np.uint8)
    a = augment_patches(np.random.default_rng(6), y, geo)
    b = augment_patches(np.random.default_rng(6), y, PatchAugment(**{**geo.__dict__, "hed": 0.0}))
    assert np.array_equal(a, b)
    grey = augment_patches(np.random.default_rng(6), y[..., :1], PatchAugment(hed=0.05, brightness=0.0, contrast=0.0,
                                                                              channel_shift=0.0))
    assert grey.shape == (8, 5, 5, 1)  # stain jitter needs RGB; grey patches pass untouched by it


def test_patch_augment_refuses_out_of_range_hed():
    with pytest.raises(ConfigError, match="hed"):
        PatchAugment(hed=1.5)


def test_scheduled_lr_hand_computed():
    assert scheduled_lr(0.01, "constant", 7, 10) == 0.01
    assert scheduled_lr(0.01, "cosine", 0, 10) == pytest.approx(0.01)
    assert scheduled_lr(0.01, "cosine", 5, 10) == pytest.approx(0.005)
    assert scheduled_lr(0.01, "cosine", 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert scheduled_lr(0.02, "cosine", 1, 4) == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ConfigError, match="lr_schedule"):
        scheduled_lr(0.01, "step", 0, 10)
    with pytest.raises(ConfigError, match="lr_schedule"):
        ClassifyConfig(lr_schedule="linear")


def test_cosine_schedule_is_applied_every_step_and_reproduces(tmp_path):
    train, val = synthetic(48, 1), synthetic(24, 2)
    cfg = tiny_config(lr_schedule="cosine", lr=0.01, augment=PatchAugment(hed=0.05))
    whole = train_classifier(train, val, cfg, tmp_path / "whole", progress=False)
    # 6 steps per epoch, 12 in all: the last step of epoch 1 is step 5, of epoch 2 step 11
    assert [h["lr"] for h in whole.history] == pytest.approx(
        [scheduled_lr(0.01, "cosine", 5, 12), scheduled_lr(0.01, "cosine", 11, 12)])
    # the schedule spans `epochs`: a run of 1 epoch anneals to 0 within it, so
    # resuming it to 2 epochs is not the 2-epoch run (documented on lr_schedule)
    short = train_classifier(train, val, tiny_config(lr_schedule="cosine", lr=0.01, augment=PatchAugment(hed=0.05),
                                                     epochs=1), tmp_path / "short", progress=False)
    assert short.history[0]["lr"] == pytest.approx(scheduled_lr(0.01, "cosine", 5, 6))
    again = train_classifier(train, val, cfg, tmp_path / "again", progress=False)
    a, b = _final_state(tmp_path / "whole"), _final_state(tmp_path / "again")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same schedule: same weights
    meta = read_weights_meta(whole.best_weights)
    assert meta["train_config"]["lr_schedule"] == "cosine" and meta["train_config"]["augment"]["hed"] == 0.05


def test_balanced_sampling_draws_classes_equally():
    labels = np.array([0] * 90 + [1] * 10)
    weights = class_weights(np.bincount(labels))
    order = _epoch_order(np.random.default_rng(0), labels, weights, "balanced")
    assert len(order) == 100 and 0.35 <= labels[order].mean() <= 0.65
    shuffled = _epoch_order(np.random.default_rng(0), labels, weights, "shuffle")
    assert sorted(shuffled.tolist()) == list(range(100))


# losses and scores ------------------------------------------------------------------


def test_class_weights_inverse_frequency_mean_one():
    w = class_weights([10, 30, 0, 60])
    assert w.tolist() == pytest.approx([2.0, 2 / 3, 0.0, 1 / 3])
    assert class_weights([5, 5, 5]).tolist() == [1.0, 1.0, 1.0]


def test_class_weights_refuse_all_zero_counts():
    with pytest.raises(ValueError, match="all zero"):
        class_weights([0, 0])


def test_cross_entropy_weighted_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    target = torch.tensor([0, 1])
    # losses log 2 and log 4; weights 1 and 3 -> (log 2 + 3 log 4) / 4 = 7/4 log 2
    assert float(cross_entropy(logits, target, weight=[1.0, 3.0])) == pytest.approx(1.75 * math.log(2))
    assert float(cross_entropy(logits, target)) == pytest.approx(1.5 * math.log(2))
    assert LOSSES["cross_entropy"] is cross_entropy


# training -----------------------------------------------------------------------------


def test_training_writes_checkpoint_log_and_described_best_weights(tmp_path):
    train, val = synthetic(48, 1), synthetic(24, 2)
    res = train_classifier(train, val, tiny_config(), tmp_path, progress=False)
    assert res.epochs_done == 2 and len(res.history) == 2
    assert (tmp_path / "checkpoint.pt").exists()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    meta = read_weights_meta(res.best_weights)
    assert meta["model"] == "densenet" and meta["task"] == "classification"
    assert meta["classes"] == ["a", "b"] and meta["patch"] == 16 and meta["mpp"] == 0.55
    assert meta["model_kwargs"]["n_classes"] == 2 and meta["model_kwargs"]["layers"] == [1, 1]
    assert meta["epoch"] == res.best_epoch
    assert meta["validation"]["weighted_f1"] == res.best["weighted_f1"]
    assert meta["validation"]["images"] == ["im2_0", "im2_1", "im2_2"]
    assert meta["train_counts"] == [24, 24] and meta["class_weights"] == [1.0, 1.0]
    assert meta["train_config"]["lr"] == 1e-3 and meta["train_config"]["momentum"] == 0.9
    model, _ = load_weights(res.best_weights)
    probs = predict_patches(model, val.patches, meta["mean"], meta["std"], batch_size=5)
    assert probs.shape == (24, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    names = np.array(["a", "b"])
    scores = classification_report(names[val.labels], names[probs.argmax(axis=1)], probs, ("a", "b"))
    assert scores["weighted_f1"] == pytest.approx(res.best["weighted_f1"])
    assert res.best["confusion_matrix"] == scores["confusion_matrix"] and res.best["loss"] > 0


def _final_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def test_resume_continues_exactly_and_seeds_reproduce(tmp_path):
    train, val = synthetic(48, 1), synthetic(24, 2)
    whole = train_classifier(train, val, tiny_config(), tmp_path / "whole", progress=False)
    train_classifier(train, val, tiny_config(epochs=1), tmp_path / "split", progress=False)
    resumed = train_classifier(train, val, tiny_config(epochs=2), tmp_path / "split", progress=False)
    assert resumed.epochs_done == 2 and [h["epoch"] for h in resumed.history] == [1, 2]
    a, b = _final_state(tmp_path / "whole"), _final_state(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[1]["train_loss"] == whole.history[1]["train_loss"]
    other = train_classifier(train, val, tiny_config(seed=1, epochs=1), tmp_path / "seed1", progress=False)
    assert other.history[0]["train_loss"] != whole.history[0]["train_loss"]


def test_resume_refuses_a_different_configuration(tmp_path):
    train, val = synthetic(16, 1), synthetic(8, 2)
    train_classifier(train, val, tiny_config(epochs=1), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different seed"):
        train_classifier(train, val, tiny_config(seed=5), tmp_path, progress=False)


def test_balanced_sampling_trains_with_an_unweighted_loss(tmp_path):
    train = synthetic(24, 1)
    keep = np.r_[np.flatnonzero(train.labels == 0), np.flatnonzero(train.labels == 1)[:4]]  # 12 "a", 4 "b"
    train = PatchSet(train.patches[keep], train.labels[keep], train.classes, train.image_ids[keep],
                     train.points[keep], train.mpp)
    res = train_classifier(train, synthetic(8, 2), tiny_config(epochs=1, sampling="balanced"), tmp_path,
                           progress=False)
    meta = read_weights_meta(res.best_weights)
    assert meta["train_config"]["weighted_loss"] is False
    assert meta["train_counts"] == [12, 4] and meta["class_weights"] == [0.5, 1.5]


def test_detector_is_not_a_classifier(tmp_path):
    with pytest.raises(ConfigError, match="not a classifier"):
        train_classifier(synthetic(8, 1), synthetic(8, 2), tiny_config(model="micronet", model_kwargs={}), tmp_path)


def test_patch_features_are_the_models_bottleneck():
    from nucleikit.models import build_model

    model = build_model("densenet", n_classes=2, **TINY_MODEL)
    val = synthetic(10, 2)
    feats = patch_features(model, val.patches, [0.2, 0.2, 0.2], [0.3, 0.3, 0.3], batch_size=4)
    assert feats.shape == (10, model.feature_dim) and feats.dtype == np.float32
    x = torch.from_numpy(((val.patches / 255.0 - 0.2) / 0.3).astype(np.float32).transpose(0, 3, 1, 2))
    with torch.no_grad():
        assert np.allclose(feats, model.eval().features(x).numpy(), atol=1e-5)


def test_predict_patches_wants_uint8():
    from nucleikit.models import build_model

    model = build_model("densenet", n_classes=2, **TINY_MODEL)
    with pytest.raises(ValueError, match="uint8"):
        predict_patches(model, np.zeros((2, 16, 16, 3), np.float32), [0, 0, 0], [1, 1, 1])


# the one loop: Classifier, checkpoints, options beyond the paper ---------------------------


def test_predict_patches_of_no_patch_is_zero_by_k():
    from nucleikit.models import build_model

    model = build_model("densenet", n_classes=3, **TINY_MODEL)
    probs = predict_patches(model, np.zeros((0, 16, 16, 3), np.uint8), [0.5] * 3, [0.2] * 3)
    assert probs.shape == (0, 3) and probs.dtype == np.float32


def test_validation_goes_through_the_classifier(tmp_path):
    from nucleikit.infer.classify import Classifier

    train, val = synthetic(48, 1), synthetic(24, 2)
    res = train_classifier(train, val, tiny_config(epochs=1), tmp_path, progress=False)
    clf = Classifier.from_weights(res.best_weights)
    names = np.array(["a", "b"])
    probs = clf.predict_patches(val.patches)
    scores = classification_report(names[val.labels], names[probs.argmax(axis=1)], probs, ("a", "b"))
    assert scores["weighted_f1"] == pytest.approx(res.best["weighted_f1"], abs=1e-9)
    assert scores["confusion_matrix"] == res.best["confusion_matrix"]


def test_checkpoint_keeps_the_keys_runs_in_progress_were_written_with(tmp_path):
    from nucleikit.train.classify import CHECKPOINT_KEYS

    train_classifier(synthetic(16, 1), synthetic(8, 2), tiny_config(epochs=1), tmp_path, progress=False)
    ck = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    # the keys of nucleikit 0.1's classification checkpoints, plus the training clock
    assert set(ck) == {"model", "optimizer", "epoch", "best", "best_epoch", "history", "elapsed", "mean", "std",
                       "torch_rng", "config", "train_s"}
    assert set(CHECKPOINT_KEYS) == set(ck) - {"train_s"} and ck["epoch"] == 1 and ck["best_epoch"] == 1


def test_checkpoint_without_the_training_clock_resumes_exactly(tmp_path):
    # a run started before the classifiers moved onto the Trainer: no "train_s", no "score" in "best"
    train, val = synthetic(48, 1), synthetic(24, 2)
    whole = train_classifier(train, val, tiny_config(sampling="balanced"), tmp_path / "whole", progress=False)
    train_classifier(train, val, tiny_config(epochs=1, sampling="balanced"), tmp_path / "old", progress=False)
    path = tmp_path / "old" / "checkpoint.pt"
    ck = torch.load(path, map_location="cpu", weights_only=True)
    del ck["train_s"]
    ck["best"].pop("score")
    ck["config"] = {k: v for k, v in ck["config"].items() if k not in ("label_smoothing", "tta")}
    torch.save(ck, path)
    resumed = train_classifier(train, val, tiny_config(sampling="balanced"), tmp_path / "old", progress=False)
    a, b = _final_state(tmp_path / "whole"), _final_state(tmp_path / "old")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert resumed.best_epoch == whole.best_epoch


def test_a_detection_checkpoint_is_refused_in_one_line(tmp_path):
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "step": 4, "config": {"model": "micronet"}},
               tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError) as err:
        train_classifier(synthetic(8, 1), synthetic(8, 2), tiny_config(epochs=1), tmp_path, progress=False)
    message = str(err.value)
    assert "not a classification checkpoint" in message and "\n" not in message


def test_cross_entropy_label_smoothing_hand_computed():
    logits = torch.tensor([[math.log(3.0), 0.0]])
    # e = 0.2, K = 2: target (0.9, 0.1) against softmax (3/4, 1/4)
    expected = -(0.9 * math.log(0.75) + 0.1 * math.log(0.25))
    assert float(cross_entropy(logits, torch.tensor([0]), label_smoothing=0.2)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, torch.tensor([0]), label_smoothing=1.0)


def test_label_smoothing_is_off_by_default_recorded_and_trains(tmp_path):
    train, val = synthetic(48, 1), synthetic(24, 2)
    assert ClassifyConfig().label_smoothing == 0.0
    plain = train_classifier(train, val, tiny_config(epochs=1), tmp_path / "plain", progress=False)
    smooth = train_classifier(train, val, tiny_config(epochs=1, label_smoothing=0.1), tmp_path / "smooth",
                              progress=False)
    assert smooth.history[0]["train_loss"] != plain.history[0]["train_loss"]
    assert read_weights_meta(smooth.best_weights)["train_config"]["label_smoothing"] == 0.1
    with pytest.raises(ConfigError, match="label_smoothing"):
        ClassifyConfig(label_smoothing=1.0)


def test_tta_validation_is_recorded_and_measures_one_view_too(tmp_path):
    from nucleikit.infer.classify import Classifier

    train, val = synthetic(48, 1), synthetic(24, 2)
    assert ClassifyConfig().tta == 1
    res = train_classifier(train, val, tiny_config(epochs=1, tta=8), tmp_path, progress=False)
    record = res.history[0]
    assert 0.0 <= record["val_weighted_f1_one_view"] <= 1.0
    meta = read_weights_meta(res.best_weights)
    assert meta["tta"] == 8 and meta["train_config"]["tta"] == 8
    clf = Classifier.from_weights(res.best_weights)
    assert clf.tta == 8  # the weights classify as they were validated
    names = np.array(["a", "b"])
    probs = clf.predict_patches(val.patches)
    assert classification_report(names[val.labels], names[probs.argmax(1)], probs, ("a", "b"))["weighted_f1"] == \
        pytest.approx(record["val_weighted_f1"], abs=1e-9)
    with pytest.raises(ConfigError, match="tta"):
        ClassifyConfig(tta=3)


def test_larger_context_patch_trains_and_is_recorded(tmp_path):
    from nucleikit.infer.classify import Classifier

    train, val = synthetic(24, 1, size=64), synthetic(8, 2, size=64)
    res = train_classifier(train, val, tiny_config(epochs=1, patch=64), tmp_path, progress=False)
    clf = Classifier.from_weights(res.best_weights)
    assert clf.patch == 64 and clf.meta["train_config"]["patch"] == 64
    image = np.random.default_rng(0).integers(0, 256, size=(80, 90, 3), dtype=np.uint8)
    labels, probs = clf.classify(image, np.array([[5.0, 5.0], [60.0, 40.0]]), mpp=0.55)
    assert probs.shape == (2, 2) and set(labels) <= {"a", "b"}
    with pytest.raises(ConfigError, match="16 px"):  # patches of another size than the configuration
        train_classifier(synthetic(8, 1), synthetic(8, 2), tiny_config(epochs=1, patch=64), tmp_path / "x")


def test_classifiers_train_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process"):
        train_classifier(synthetic(8, 1), synthetic(8, 2), tiny_config(epochs=1), tmp_path, progress=False)
