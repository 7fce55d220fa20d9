"""Classifier (patches at mapped centres, batched inference) and the typing pipelines."""

import json

import numpy as np
import pytest
from PIL import Image

from nucleikit.errors import InputError, WeightsError
from nucleikit.export import DEFAULT_CLASS_COLORS
from nucleikit.infer.classify import Classifier, PatchInferenceConfig, to_uint8
from nucleikit.infer.pipelines import analyze_file, analyze_image, classify_file
from nucleikit.infer.predict import Detector, InferenceConfig
from nucleikit.models import build_model
from nucleikit.models.weights import save_weights
from nucleikit.targets import extract_patches
from nucleikit.transforms import resample, scale_points

CLASSES = ("epithelial", "fibroblast", "inflammatory", "others")
KWARGS = {"growth": 4, "stem_width": 8, "layers": [1, 1, 1, 1]}


def _meta(**extra):
    meta = {
        "name": "tiny_classifier",
        "model": "densenet",
        "model_kwargs": KWARGS,
        "task": "classification",
        "classes": list(CLASSES),
        "mpp": 0.5,
        "patch": 16,
        "mean": [0.5, 0.4, 0.6],
        "std": [0.2, 0.25, 0.3],
    }
    meta.update(extra)
    return meta


def _model(seed=0):
    import torch

    torch.manual_seed(seed)
    model = build_model("densenet", **KWARGS)
    # Non-trivial batch-norm statistics, so normalisation mistakes change the output.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny_classifier.safetensors"
    return save_weights(path, _model(), _meta())


@pytest.fixture(scope="module")
def clf(weights):
    return Classifier.from_weights(weights, config=PatchInferenceConfig(threads=1))


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = build_model("micronet", width=4)
    path = tmp_path_factory.mktemp("w") / "tiny_detector.safetensors"
    meta = {
        "name": "tiny", "model": "micronet", "model_kwargs": {"width": 4}, "task": "detection",
        "target": "proximity", "mpp": 0.5, "mean": [0.5] * 3, "std": [0.25] * 3,
        "postprocess": {"threshold_rel": 0.5, "min_distance": 3}, "halo": 32,
    }
    return save_weights(path, model, meta)


@pytest.fixture
def image8():
    return np.random.default_rng(1).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def test_classify_equals_reference_patches_through_the_plain_model(clf, image8):
    from nucleikit.train.classify import predict_patches

    xy = np.array([[0.0, 0.0], [39.0, 29.0], [12.4, 7.6], [20.0, 15.0]])
    labels, probs = clf.classify(image8.astype(np.float32) / 255.0, xy)
    meta = _meta()
    reference = predict_patches(_model(), extract_patches(image8, xy, 16), meta["mean"], meta["std"])
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    assert probs.shape == (4, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert labels.tolist() == [CLASSES[k] for k in reference.argmax(axis=1)]


def test_uint8_and_float_images_give_the_same_patches(clf, image8):
    xy = np.array([[5.0, 5.0], [30.2, 20.7]])
    np.testing.assert_array_equal(clf.patches(image8, xy), clf.patches(image8 / 255.0, xy))


def test_patches_are_cut_from_the_image_resampled_to_the_model_resolution(clf, image8):
    pixels = image8.astype(np.float32) / 255.0
    xy = np.array([[0.0, 0.0], [39.4, 29.4], [17.3, 11.8]])
    got = clf.patches(pixels, xy, mpp=0.25)  # model at 0.5 um/px: the image shrinks by 2
    small = resample(pixels, 0.5)
    assert small.shape[:2] == (15, 20)
    mapped = scale_points(xy, 0.5)
    mapped = np.column_stack([np.clip(mapped[:, 0], 0, 19), np.clip(mapped[:, 1], 0, 14)])
    np.testing.assert_array_equal(got, extract_patches(to_uint8(small), mapped, 16))
    # (17.3, 11.8) at 0.25 um/px is (8.4, 5.65) at 0.5 um/px: the centre pixel is (row 6, col 8).
    assert got[2, 8, 8].tolist() == to_uint8(small)[6, 8].tolist()


def test_resolution_within_tolerance_is_not_resampled(clf, image8):
    xy = np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(clf.patches(image8, xy, mpp=0.505), clf.patches(image8, xy))


def test_points_on_the_outer_half_pixel_belong_to_the_border_pixel(clf, image8):
    patches = clf.patches(image8, np.array([[-0.5, -0.5], [39.5, 29.5]]))
    assert patches[0, 8, 8].tolist() == image8[0, 0].tolist()
    assert patches[1, 8, 8].tolist() == image8[29, 39].tolist()


def test_points_outside_the_image_raise(clf, image8):
    with pytest.raises(ValueError, match=r"1 of 2 centres lie outside the 40 x 30 .* \(41\.6, 3\)"):
        clf.classify(image8, np.array([[1.0, 1.0], [41.6, 3.0]]))


def test_no_points_gives_empty_results(clf, image8):
    labels, probs = clf.classify(image8, np.zeros((0, 2)))
    assert labels.shape == (0,) and probs.shape == (0, 4)


def test_channels_last_and_bn_folding_do_not_change_the_output(weights, image8):
    xy = np.array([[10.0, 10.0], [25.0, 5.0]])
    plain = Classifier.from_weights(weights, config=PatchInferenceConfig(channels_last=False, fold_bn=False))
    fast = Classifier.from_weights(weights, config=PatchInferenceConfig(channels_last=True, fold_bn=True))
    np.testing.assert_allclose(fast.classify(image8, xy)[1], plain.classify(image8, xy)[1], atol=1e-6)


def test_batches_of_one_equal_one_batch(weights, image8):
    xy = np.random.default_rng(2).uniform(0, 29, size=(7, 2))
    one = Classifier.from_weights(weights, config=PatchInferenceConfig(batch_size=1))
    all_ = Classifier.from_weights(weights, config=PatchInferenceConfig(batch_size=256))
    np.testing.assert_allclose(one.classify(image8, xy)[1], all_.classify(image8, xy)[1], atol=1e-6)


def test_bf16_is_close_to_fp32(weights, image8):
    xy = np.array([[10.0, 10.0], [25.0, 5.0]])
    bf16 = Classifier.from_weights(weights, config=PatchInferenceConfig(bf16=True))
    fp32 = Classifier.from_weights(weights)
    np.testing.assert_allclose(bf16.classify(image8, xy)[1], fp32.classify(image8, xy)[1], atol=0.03)


def test_bottleneck_features_have_the_model_width(clf, image8):
    feats = clf.patch_features(clf.patches(image8, np.array([[3.0, 3.0], [9.0, 9.0], [20.0, 20.0]])))
    assert feats.shape == (3, 8) == (3, clf.model.feature_dim)  # 8 -> 12 -> 6 -> 10 -> 5 -> 9 -> 4 -> 8


def test_stain_normalise_matches_the_image_patches_to_the_training_stain(tmp_path, image8):
    from nucleikit.transforms import lab_moments, reinhard_normalise

    target = ([65.0, 25.0, -20.0], [15.0, 9.0, 10.0])
    path = save_weights(tmp_path / "stained.safetensors", _model(), _meta(lab_mean=target[0], lab_std=target[1]))
    plain = Classifier.from_weights(path, config=PatchInferenceConfig(threads=1))
    normed = Classifier.from_weights(path, config=PatchInferenceConfig(threads=1, stain_normalise=True))
    xy = np.array([[5.0, 5.0], [30.0, 20.0], [20.0, 10.0]])
    patches = plain.patches(image8, xy)
    expected = plain.predict_patches(reinhard_normalise(patches, *target))
    _, probs = normed.classify(image8, xy)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert np.abs(probs - plain.classify(image8, xy)[1]).max() > 1e-5  # the input did change
    assert lab_moments(reinhard_normalise(patches, *target))[0] == pytest.approx(target[0], abs=1.0)
    labels, probs = normed.classify(image8, np.zeros((0, 2)))  # no centre: nothing to normalise
    assert probs.shape == (0, 4)


def test_stain_normalise_needs_the_training_stain_in_the_weights(weights):
    with pytest.raises(WeightsError, match="no training stain"):
        Classifier.from_weights(weights, config=PatchInferenceConfig(stain_normalise=True))


def test_metadata_of_another_task_is_refused():
    with pytest.raises(WeightsError, match="holds a detection model, not a nucleus classifier"):
        Classifier(_model(), _meta(task="detection"))


def test_metadata_without_classes_is_refused():
    meta = _meta()
    del meta["classes"]
    with pytest.raises(WeightsError, match="lacks classes"):
        Classifier(_model(), meta)


def test_class_count_must_match_the_model():
    with pytest.raises(WeightsError, match="4 outputs but the metadata names 3 classes"):
        Classifier(_model(), _meta(classes=["a", "b", "c"]))


# --------------------------------------------------------------------------- pipelines


@pytest.fixture
def image_file(tmp_path, image8):
    path = tmp_path / "tile.png"
    Image.fromarray(image8).save(path)
    return path


def test_classify_file_writes_one_row_per_point_in_order(clf, image_file, tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("x,y,score\n3,4,0.9\n39,29,0.5\n10.5,20.25,0.1\n")
    res = classify_file(image_file, points, clf, tmp_path / "out", mpp=0.5)
    lines = (tmp_path / "out" / "tile_classified.csv").read_text().splitlines()
    assert lines[0] == "x,y,class,class_prob"
    rows = [line.split(",") for line in lines[1:]]
    assert [(float(r[0]), float(r[1])) for r in rows] == [(3.0, 4.0), (39.0, 29.0), (10.5, 20.25)]
    assert all(r[2] in CLASSES for r in rows)
    np.testing.assert_allclose([float(r[3]) for r in rows], res.typed.probs.max(axis=1), atol=5e-5)
    np.testing.assert_allclose(res.typed.probs.sum(axis=1), 1.0, atol=1e-6)
    assert res.count == 3 and res.mpp_source == "option"


def test_classify_file_point_outside_names_the_points_file_and_writes_nothing(clf, image_file, tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("x,y\n3,4\n41.2,5\n")
    with pytest.raises(InputError, match=r"points\.csv: 1 point lies outside the 40 x 30 image"):
        classify_file(image_file, points, clf, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_classify_file_without_points_is_an_error(clf, image_file, tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("x,y\n")
    with pytest.raises(InputError, match="file holds no points"):
        classify_file(image_file, points, clf, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_classify_file_refuses_to_overwrite_its_points_file(clf, image_file, tmp_path):
    points = tmp_path / "tile_classified.csv"  # an earlier classify output given back as the points
    points.write_text("x,y\n3,4\n")
    with pytest.raises(InputError, match="would overwrite this points file"):
        classify_file(image_file, points, clf, tmp_path)
    assert points.read_text() == "x,y\n3,4\n"


def test_analyze_file_writes_typed_csv_geojson_and_overlay(clf, detector_weights, image_file, tmp_path):
    det = Detector.from_weights(detector_weights, config=InferenceConfig(threads=1))
    res = analyze_file(image_file, det, clf, tmp_path / "out", mpp=0.5)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["tile_typed.csv", "tile_typed.geojson", "tile_typed_overlay.png"]
    lines = (out / "tile_typed.csv").read_text().splitlines()
    assert lines[0] == "x,y,score,class,class_prob"
    assert len(lines) - 1 == res.count == len(res.typed)
    features = json.loads((out / "tile_typed.geojson").read_text())["features"]
    assert len(features) == res.count
    for line, f in zip(lines[1:], features):
        name = line.split(",")[3]
        props = f["properties"]
        assert props["classification"] == {"name": name, "color": list(DEFAULT_CLASS_COLORS[name])}
        m = props["measurements"]
        assert sorted(m) == sorted(["tiny score"] + [f"{c} probability" for c in CLASSES])
        assert abs(sum(m[f"{c} probability"] for c in CLASSES) - 1.0) < 1e-5


def test_analyze_image_types_exactly_the_detected_centres(clf, detector_weights, image8):
    det = Detector.from_weights(detector_weights, config=InferenceConfig(threads=1))
    pixels = image8.astype(np.float32) / 255.0
    typed = analyze_image(pixels, det, clf, mpp=0.25)
    found = det.detect(pixels, mpp=0.25)
    np.testing.assert_array_equal(typed.xy, found.xy)
    np.testing.assert_array_equal(typed.probs, clf.classify(pixels, found.xy, mpp=0.25)[1])


# --------------------------------------------------------------------------- real data


@pytest.mark.data
def test_typed_scoring_end_to_end_on_two_crchisto_images(crchisto_dir, clf, detector_weights):
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.metrics import classification_report, evaluate_typed_points

    samples = CRCHisto(crchisto_dir, split="fixed", subset="test", task="classification")[:2]
    det = Detector.from_weights(detector_weights, config=InferenceConfig(threads=1))
    images = [s.load_image() for s in samples]
    truth_xy = [s.points for s in samples]
    truth_cls = [s.classes for s in samples]

    # Detector + classifier, PROTOCOL.md's typed scoring: the counts add up.
    typed = [analyze_image(im, det, clf, mpp=s.mpp) for im, s in zip(images, samples)]
    report = evaluate_typed_points([t.xy for t in typed], [t.labels for t in typed], truth_xy, truth_cls, 6.0, CLASSES)
    d = report["detection"]
    assert report["n_images"] == 2
    assert d["tp"] + d["fp"] == sum(len(t) for t in typed)
    assert d["tp"] + d["fn"] == sum(len(p) for p in truth_xy)
    assert sum(r["support"] for r in report["per_class"].values()) == sum(len(p) for p in truth_xy)

    # Typed at the truth centres: every nucleus is found, and the type accuracy
    # is the patch accuracy of the same predictions.
    at_truth = [clf.classify(im, s.points, mpp=s.mpp)[0] for im, s in zip(images, samples)]
    report = evaluate_typed_points(truth_xy, at_truth, truth_xy, truth_cls, 6.0, CLASSES)
    patches = classification_report(np.concatenate(truth_cls), np.concatenate(at_truth), None, CLASSES)
    assert report["f_d"] == 1.0
    assert report["type_accuracy"] == pytest.approx(patches["accuracy"], abs=1e-12)


def test_centres_less_than_a_pixel_outside_are_clipped_not_refused(clf, image8):
    # CRCHisto's img8 has y = -0.85 (issue 16): typed as the point on the image's edge
    labels, _ = clf.classify(image8, np.array([[5.0, -0.85], [5.0, 0.0]]))
    assert labels[0] == labels[1]


# --------------------------------------------------------------------------- test-time augmentation


def _pooled_net(corner: bool):
    """A 4-class network on each channel's mean over the patch (invariant under every flip and rotation) or
    over its top-left quadrant (not invariant: each symmetry shows it another corner)."""
    import torch

    class Net(torch.nn.Module):
        n_classes = 4
        feature_dim = 3

        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.head = torch.nn.Linear(3, 4)
            with torch.no_grad():
                self.head.weight.mul_(5.0)

        def features(self, x):
            if corner:
                x = x[..., : x.shape[-2] // 2, : x.shape[-1] // 2]
            return x.mean(dim=(-2, -1))

        def forward(self, x):
            return self.head(self.features(x))

    return Net()


def test_tta_of_an_orientation_invariant_model_changes_nothing(image8):
    clf = Classifier(_pooled_net(corner=False), _meta(), config=PatchInferenceConfig(tta=8, fold_bn=False))
    patches = clf.patches(image8, np.array([[3.0, 3.0], [20.0, 12.0], [39.0, 29.0]]))
    np.testing.assert_allclose(clf.predict_patches(patches), clf.predict_patches(patches, tta=1), atol=1e-6)


def test_tta_averages_the_eight_symmetries_of_each_patch(image8):
    clf = Classifier(_pooled_net(corner=True), _meta(), config=PatchInferenceConfig(tta=8, fold_bn=False))
    patches = clf.patches(image8, np.array([[3.0, 3.0], [20.0, 12.0], [30.0, 25.0]]))
    views = [np.rot90(p, k, axes=(1, 2)) for p in (patches, patches[:, :, ::-1]) for k in range(4)]
    expected = np.mean([clf.predict_patches(np.ascontiguousarray(v), tta=1) for v in views], axis=0)
    got = clf.predict_patches(patches)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    # the network is not invariant, so the views matter
    assert np.abs(got - clf.predict_patches(patches, tta=1)).max() > 1e-2
    flips = [patches, patches[:, :, ::-1]]  # 2 views: the patch and its left-right mirror
    np.testing.assert_allclose(clf.predict_patches(patches, tta=2),
                               np.mean([clf.predict_patches(np.ascontiguousarray(v), tta=1) for v in flips], 0),
                               atol=1e-6)


def test_tta_of_no_patch_is_zero_by_k(weights, image8):
    clf = Classifier.from_weights(weights, config=PatchInferenceConfig(tta=4))
    labels, probs = clf.classify(image8, np.zeros((0, 2)))
    assert labels.shape == (0,) and probs.shape == (0, 4) and probs.dtype == np.float32


def test_tta_default_is_the_weights_own_and_config_overrides_it(tmp_path):
    path = save_weights(tmp_path / "tta.safetensors", _model(), _meta(tta=4))
    assert Classifier.from_weights(path).tta == 4
    assert Classifier.from_weights(path, config=PatchInferenceConfig(tta=1)).tta == 1
    assert Classifier(_model(), _meta()).tta == 1  # weights without a record: one view
    with pytest.raises(WeightsError, match="tta"):
        Classifier(_model(), _meta(tta=3))
    with pytest.raises(ValueError, match="tta"):
        PatchInferenceConfig(tta=5)


#: Probabilities of the bundled weights on patches 0, 2, ..., 14 of img1 (fixed-split test image), computed by
#: ``nucleikit.train.classify.predict_patches`` before the classifiers moved onto the one training loop.
BUNDLED_PROBS = {
    "dcrn": [[0.0336, 0.8449, 0.0122, 0.1093], [0.0666, 0.6853, 0.0542, 0.1939], [0.0242, 0.1733, 0.5575, 0.2450],
             [0.0344, 0.8782, 0.0115, 0.0759], [0.0326, 0.3064, 0.1251, 0.5360], [0.0615, 0.6229, 0.0518, 0.2638],
             [0.0157, 0.0959, 0.6622, 0.2262], [0.0005, 0.0038, 0.8875, 0.1082]],
    "densenet": [[0.0404, 0.8022, 0.0150, 0.1424], [0.0730, 0.6982, 0.0255, 0.2034],
                 [0.0314, 0.3490, 0.3906, 0.2291], [0.0421, 0.8486, 0.0088, 0.1005],
                 [0.0301, 0.3959, 0.0468, 0.5272], [0.0753, 0.6372, 0.0354, 0.2520],
                 [0.0501, 0.2106, 0.3906, 0.3488], [0.0030, 0.0144, 0.6902, 0.2925]],
}


@pytest.mark.data
@pytest.mark.parametrize("name", ["dcrn", "densenet"])
def test_bundled_classifiers_predict_as_before_the_refactor(crchisto_dir, name):
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.models.weights import load_weights, resolve_weights
    from nucleikit.train.classify import predict_patches
    from nucleikit.train.patches import PatchSet

    sample = next(iter(CRCHisto(crchisto_dir, split="fixed", subset="test", task="classification")))
    assert sample.id == "img1"
    patches = PatchSet.from_samples([sample], patch=32, mpp=0.55).patches[0:16:2]
    clf = Classifier.from_weights(name, config=PatchInferenceConfig(threads=1))
    assert clf.tta == 1 and clf.patch == 32 and clf.mpp == 0.55
    probs = clf.predict_patches(patches)
    np.testing.assert_allclose(probs, BUNDLED_PROBS[name], atol=1e-4)
    model, meta = load_weights(resolve_weights(name))  # the training-side wrapper gives the same
    np.testing.assert_allclose(predict_patches(model, patches, meta["mean"], meta["std"]), probs, atol=1e-6)
    labels, _ = clf.classify(sample.load_image(), sample.points[0:16:2], mpp=sample.mpp)
    assert labels.tolist() == [CLASSES[k] for k in np.argmax(BUNDLED_PROBS[name], axis=1)]
