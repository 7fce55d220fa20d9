"""Tests of nucleikit.models.weights_meta: typed metadata, checked once, round-tripped exactly."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from safetensors import safe_open

from nucleikit.errors import WeightsError
from nucleikit.models import build_model, load_weights, read_weights_meta, save_weights
from nucleikit.models.weights import META_KEY, bundled_weights_dir
from nucleikit.models.weights_meta import (
    Calibration,
    DetectionPost,
    SegmentationPost,
    WeightsMeta,
    as_weights_meta,
)

BUNDLED = sorted(bundled_weights_dir().glob("*.safetensors"))
PATH = "runs/x/best.safetensors"
#: A detector's metadata as a file holds it (every typed key of a detector set).
DETECTOR = {
    "model": "micronet", "model_kwargs": {"width": 4, "in_channels": 3, "out_channels": 1, "dropout": 0.5},
    "format_version": 1, "num_params": 10, "storage": "float16", "task": "detection", "target": "proximity",
    "target_params": {"d_microns": 3.75, "alpha": 3.0}, "name": "tiny", "mpp": 0.5, "mean": [0.5, 0.4, 0.6],
    "std": [0.2, 0.2, 0.25], "colour": "rgb", "intensity": "none", "halo": 96, "bf16_ok": True,
    "postprocess": {"threshold_rel": 0.5, "min_distance": 7.0, "threshold_abs": 0.06},
    "calibration": {"map_values": [0.1, 0.5], "probabilities": [0.2, 0.9], "n_peaks": 40, "fitted_on": "val"},
    "test": {"f1": 0.8}, "training": {"command": "nucleikit train detection"},
}
SEGMENTER = {
    "model": "unet", "model_kwargs": {}, "format_version": 1, "task": "segmentation", "target": "mask",
    "mpp": None, "mean": [0.5] * 3, "std": [0.2] * 3, "intensity": "percentile",
    "postprocess": {"threshold": 0.6, "min_distance": 7, "min_size": 10, "seeds": "detector",
                    "seed_detector": "micronet_he", "tuned": {"distance": {"threshold": 0.6}}},
}
CLASSIFIER = {
    "model": "densenet", "model_kwargs": {}, "format_version": 1, "task": "classification", "target": "label",
    "classes": ["a", "b"], "patch": 32, "tta": 4, "mpp": 0.55, "mean": [0.5] * 3, "std": [0.2] * 3,
    "lab_mean": [60.0, 20.0, -20.0], "lab_std": [15.0, 9.0, 11.0],
}


def _raw(path: Path) -> dict:
    with safe_open(path, framework="pt") as handle:
        return json.loads(handle.metadata()[META_KEY])


def _same_json(a, b) -> bool:
    """Equal as JSON text: 7 and 7.0 differ, key order does not."""
    return json.dumps(a, sort_keys=True, allow_nan=False) == json.dumps(b, sort_keys=True, allow_nan=False)


# --- the bundled weights ------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_metadata_round_trips_exactly(path):
    raw = _raw(path)
    meta = read_weights_meta(path)
    assert _same_json(meta.to_dict(), raw)
    assert meta == raw and dict(meta) == raw and sorted(meta) == sorted(raw)
    # the post-processing and calibration records give back their own objects too
    if "postprocess" in raw and meta.postprocess is not None:
        assert _same_json(meta.postprocess.to_dict(), raw["postprocess"])
    if "calibration" in raw:
        assert _same_json(meta.calibration.to_dict(), raw["calibration"])


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_every_bundled_file_loads_typed(path):
    model, meta = load_weights(path)
    assert isinstance(meta, WeightsMeta) and meta.name == path.stem and meta.model == _raw(path)["model"]
    assert meta.task in ("detection", "segmentation", "classification")
    assert meta.num_params == sum(p.numel() for p in model.parameters())
    assert len(meta.mean) == len(meta.std) == 3
    post_type = {"detection": DetectionPost, "segmentation": SegmentationPost}.get(meta.task, type(None))
    assert isinstance(meta.postprocess, post_type)
    if meta.task == "classification":
        assert meta.classes and meta.patch and meta.lab_mean is not None


# --- typed values and exact round trip of what nucleikit writes ---------------------------------


def test_typed_attributes_of_a_detector():
    meta = WeightsMeta.from_dict(DETECTOR, PATH)
    assert (meta.model, meta.task, meta.target, meta.name, meta.mpp, meta.halo) == ("micronet", "detection",
                                                                                   "proximity", "tiny", 0.5, 96)
    assert meta.mean == (0.5, 0.4, 0.6) and meta.storage == "float16" and meta.bf16_ok is True
    assert meta.postprocess == DetectionPost(threshold_rel=0.5, min_distance=7.0, threshold_abs=0.06)
    assert meta.calibration.map_values == (0.1, 0.5) and meta.calibration.n_peaks == 40
    assert meta.model_kwargs["width"] == 4 and meta.target_params["d_microns"] == 3.75
    assert set(meta.extra) == {"test", "training"}
    assert _same_json(meta.to_dict(), DETECTOR)


@pytest.mark.parametrize("d", [SEGMENTER, CLASSIFIER], ids=["segmenter", "classifier"])
def test_segmenter_and_classifier_round_trip(d):
    meta = WeightsMeta.from_dict(d, PATH)
    assert _same_json(meta.to_dict(), d)


def test_typed_attributes_of_a_segmenter_and_a_classifier():
    seg = WeightsMeta.from_dict(SEGMENTER, PATH)
    assert seg.postprocess.seeds == "detector" and seg.postprocess.seed_detector == "micronet_he"
    assert seg.postprocess.min_distance == 7 and seg.postprocess.markers == "distance"  # an instance key: default
    assert seg.postprocess.extra["tuned"]["distance"]["threshold"] == 0.6
    assert seg.intensity == "percentile" and seg.mpp is None and seg.recorded("mpp")
    clf = WeightsMeta.from_dict(CLASSIFIER, PATH)
    assert (clf.classes, clf.patch, clf.tta, clf.postprocess) == (("a", "b"), 32, 4, None)
    assert clf.lab_std == (15.0, 9.0, 11.0)


def test_save_weights_writes_what_it_read(tmp_path):
    net = build_model("micronet", width=4)
    first = save_weights(tmp_path / "a.safetensors", net, {**DETECTOR, "num_params": 0})
    meta = read_weights_meta(first)
    second = save_weights(tmp_path / "b.safetensors", net, meta)  # a WeightsMeta is written as its JSON
    assert _same_json(_raw(second), _raw(first))


def test_another_tasks_postprocess_stays_in_extra():
    d = {**CLASSIFIER, "postprocess": None}
    meta = WeightsMeta.from_dict(d, PATH)
    assert meta.postprocess is None and "postprocess" in meta.extra
    assert _same_json(meta.to_dict(), d)


# --- legacy defaults ----------------------------------------------------------------------------


def test_legacy_defaults_of_a_bare_detector_file():
    bare = {"model": "micronet", "model_kwargs": {}, "format_version": 1}
    meta = WeightsMeta.from_dict(bare, PATH)
    assert meta.task == "detection"  # the registry's task of the model, as save_weights writes it
    assert (meta.storage, meta.colour, meta.intensity, meta.tta) == ("float32", "rgb", "none", 1)
    # a converted state dict records no post-processing: the values such weights always ran with
    assert meta.postprocess == DetectionPost(threshold_rel=0.3, min_distance=3, threshold_abs=0.0)
    assert (meta.mpp, meta.mean, meta.halo, meta.bf16_ok, meta.calibration, meta.target) == (None,) * 6
    assert meta.to_dict() == bare  # no default is written
    for key in ("task", "storage", "colour", "intensity", "tta", "postprocess", "mpp"):
        assert not meta.recorded(key) and key not in meta


def test_a_detector_without_a_floor_has_floor_zero_and_keeps_no_key():
    d = {**DETECTOR, "postprocess": {"threshold_rel": 0.525, "min_distance": 7.0}}
    meta = WeightsMeta.from_dict(d, PATH)
    assert meta.postprocess.threshold_abs == 0.0 and not meta.postprocess.recorded("threshold_abs")
    assert _same_json(meta.to_dict(), d)


def test_legacy_defaults_of_a_segmenter():
    meta = WeightsMeta.from_dict({"model": "unet", "model_kwargs": {}, "format_version": 1}, PATH)
    assert meta.task == "segmentation" and meta.target == "mask"  # binary heads predate the key
    assert meta.postprocess == SegmentationPost()
    assert (meta.postprocess.threshold, meta.postprocess.min_distance, meta.postprocess.min_size) == (0.5, 5, 10)
    assert (meta.postprocess.seeds, meta.postprocess.seed_detector) == ("distance", "micronet")
    assert (meta.postprocess.markers, meta.postprocess.marker_threshold) == ("distance", 0.5)
    assert "target" not in meta and "postprocess" not in meta


def test_metadata_built_in_memory_takes_its_users_task():
    meta = as_weights_meta({"mpp": 0.5, "mean": [0.5] * 3, "std": [0.2] * 3}, task="classification")
    assert meta.task == "classification" and meta.model is None and meta.model_kwargs == {}
    assert as_weights_meta(meta) is meta
    with pytest.raises(WeightsError, match="^weights: metadata names no model$"):
        WeightsMeta.from_dict({"mpp": 0.5}, "weights")  # a file's metadata must name one
    with pytest.raises(WeightsError, match="^tiny: metadata halo"):  # named by its name
        as_weights_meta({"name": "tiny", "halo": -1}, task="detection")


# --- refusals: one bad value each, named with the file ------------------------------------------

BAD = [
    ("model", 3, "metadata names no model"),
    ("model_kwargs", [1], "metadata has no model_kwargs object"),
    ("format_version", 2, "format version 2 is not readable"),
    ("format_version", True, "format version True is not readable"),
    ("num_params", -1, "num_params must be a whole number"),
    ("storage", "int8", "storage must be one of float32, float16"),
    ("task", "tracking", "task must be one of detection"),
    ("target", "blobs", "target must be one of proximity"),
    ("target_params", [1], "target_params must be an object"),
    ("name", 7, "name must be a string"),
    ("mpp", -1, "mpp must be a positive number"),
    ("mpp", "0.5", "mpp must be a positive number"),
    ("mean", [0.5, 0.5], "mean and std must be lists of numbers of one length"),
    ("std", [0.2, 0.0, 0.2], "std must be positive"),
    ("colour", "cmyk", "unknown colour 'cmyk'"),
    ("intensity", "zscore", "unknown intensity normalisation 'zscore'"),
    ("halo", 9.5, "halo must be a whole number"),
    ("bf16_ok", "yes", "bf16_ok must be true, false or absent"),
    ("postprocess", [0.3], "postprocess must be an object"),
    ("postprocess", {"min_distance": 3}, "postprocess has no threshold_rel"),
    ("postprocess", {"threshold_rel": 0.3}, "postprocess has no min_distance"),
    ("postprocess", {"threshold_rel": 1.5, "min_distance": 3}, "postprocess threshold_rel must be a number in"),
    ("postprocess", {"threshold_rel": 0.3, "min_distance": -3}, "postprocess min_distance must be a number"),
    ("postprocess", {"threshold_rel": 0.3, "min_distance": 3, "threshold_abs": float("nan")},
     "postprocess threshold_abs must be a finite number >= 0"),
    ("calibration", {"map_values": [0.5, 0.1], "probabilities": [0.1, 0.2]},
     "bad score calibration in the metadata: calibration: map_values must be strictly increasing"),
    ("calibration", {"map_values": [0.1]}, "calibration: needs map_values and probabilities"),
    ("classes", [], "classes must be a non-empty list of names"),
    ("patch", 0, "patch must be a whole number of pixels >= 1"),
    ("tta", 3, "records tta = 3; expected one of 1, 2, 4, 8"),
    ("lab_mean", [60.0, 20.0], "lab_mean must be three numbers"),
    ("lab_std", ["a", 1, 2], "lab_std must be three numbers"),
]


@pytest.mark.parametrize("key, value, message", BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_one_bad_value_is_one_line_naming_the_file(key, value, message):
    with pytest.raises(WeightsError) as info:
        WeightsMeta.from_dict({**DETECTOR, key: value}, PATH)
    assert info.value.path == PATH
    assert message in str(info.value) and "\n" not in str(info.value)


SEGMENTER_BAD = [
    ({"threshold": 2}, "postprocess threshold must be a number in [0, 1]"),
    ({"min_distance": 2.5}, "postprocess min_distance must be a whole number"),
    ({"min_size": -1}, "postprocess min_size must be a whole number"),
    ({"seeds": "peaks"}, "postprocess seeds must be one of distance, detector"),
    ({"seed_detector": ""}, "postprocess seed_detector must be a weights name or path"),
    ({"markers": "peaks"}, "unknown watershed markers 'peaks'"),
    ({"marker_threshold": -0.1}, "postprocess marker_threshold must be a number in [0, 1]"),
]


@pytest.mark.parametrize("post, message", SEGMENTER_BAD, ids=[next(iter(p)) for p, _ in SEGMENTER_BAD])
def test_one_bad_segmentation_value_is_refused(post, message):
    with pytest.raises(WeightsError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        WeightsMeta.from_dict({**SEGMENTER, "postprocess": post}, PATH)
    assert info.value.path == PATH


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", build_model("micronet", width=4),
                        {**DETECTOR, "model_kwargs": {"width": 4}, "colour": "cmyk"})
    with pytest.raises(WeightsError, match=r"w\.safetensors: unknown colour 'cmyk' in the metadata$"):
        read_weights_meta(path)
    with pytest.raises(WeightsError, match="unknown colour"):
        load_weights(path)


# --- frozen, and the Mapping view ---------------------------------------------------------------


def test_metadata_is_frozen_and_its_values_read_only():
    meta = WeightsMeta.from_dict(DETECTOR, PATH)
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.mpp = 0.25
    with pytest.raises(TypeError):
        meta.model_kwargs["width"] = 8
    with pytest.raises(TypeError):
        meta.extra["test"]["f1"] = 1.0
    copy_ = meta["test"]  # the Mapping view hands out fresh copies
    copy_["f1"] = 1.0
    assert meta["test"] == {"f1": 0.8}


def test_mapping_access_reads_the_json_object():
    meta = WeightsMeta.from_dict(DETECTOR, PATH)
    assert meta["postprocess"] == DETECTOR["postprocess"] and meta["mean"] == [0.5, 0.4, 0.6]
    assert meta.get("absent", 1) == 1 and "test" in meta and "tta" not in meta
    assert {**meta, "note": 1} == {**DETECTOR, "note": 1}
    assert dict(meta, name="other")["name"] == "other"
    with pytest.raises(KeyError):
        meta["tta"]  # a default is not a key of the file


def test_replace_records_a_changed_default_and_from_dict_checks_the_input_unchanged():
    meta = WeightsMeta.from_dict({"model": "micronet", "model_kwargs": {}, "format_version": 1}, PATH)
    assert dataclasses.replace(meta, mpp=0.25).to_dict()["mpp"] == 0.25
    assert "tta" not in dataclasses.replace(meta, tta=1).to_dict()  # still the default: still absent
    d = copy.deepcopy(DETECTOR)
    WeightsMeta.from_dict(d, PATH)
    assert d == DETECTOR


def test_the_vocabularies_match_the_modules_that_use_them():
    from nucleikit.infer import segment, tta
    from nucleikit.models import weights_meta
    from nucleikit.postprocess import MARKER_KINDS

    assert weights_meta.MARKER_KINDS == MARKER_KINDS
    assert weights_meta.TTA_SIZES == tta.TTA_SIZES
    assert weights_meta.INTENSITY_MODES == segment.INTENSITY_MODES
    assert weights_meta.SEED_KINDS == segment.SEED_KINDS
    assert weights_meta.DEFAULT_SEED_DETECTOR == segment.DEFAULT_SEED_DETECTOR


def test_calibration_record_feeds_the_score_calibration():
    from nucleikit.infer.calibration import ScoreCalibration

    record = Calibration.from_dict(DETECTOR["calibration"], PATH)
    cal = ScoreCalibration.from_record(record)
    assert cal == ScoreCalibration.from_meta(DETECTOR["calibration"])


@pytest.mark.parametrize("d", [DETECTOR, SEGMENTER, CLASSIFIER], ids=["detector", "segmenter", "classifier"])
def test_metadata_pickles_and_copies(d):
    import pickle

    meta = WeightsMeta.from_dict({k: v for k, v in d.items() if k != "tta"}, PATH)
    for other in (pickle.loads(pickle.dumps(meta)), copy.deepcopy(meta), copy.copy(meta)):
        assert type(other) is WeightsMeta and other == meta and other.postprocess == meta.postprocess
        assert _same_json(other.to_dict(), meta.to_dict()) and not other.recorded("tta")
