"""Scoring and tuning a segmenter on stored probability maps (nucleikit.infer.segment_eval)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from nucleikit.infer.predict import InferenceConfig
from nucleikit.infer.segment import Segmenter
from nucleikit.infer.segment_eval import SegmentationRun, score_instances, tune_instances


def _discs(h=40, w=60, centres=((22, 20), (36, 20)), r2=64, value=0.9):
    yy, xx = np.mgrid[0:h, 0:w]
    prob = np.zeros((h, w), np.float32)
    truth = np.zeros((h, w), np.int32)
    for k, (x, y) in enumerate(centres, start=1):
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= r2
        prob[inside] = value
        truth[inside & (truth == 0)] = k
    return prob, truth


@pytest.fixture
def segmenter(make_segmenter_weights):
    return Segmenter.from_weights(make_segmenter_weights(), InferenceConfig(threads=1))


def test_score_counts_split_and_merged_discs(segmenter):
    prob, truth = _discs()
    run = SegmentationRun(["a"], [prob], [prob.shape], [truth], [np.array([[22.0, 20.0]])], 0.0)
    split = score_instances(segmenter, run, seeds="distance", threshold=0.5, min_distance=3)
    assert split["dice"] == 1.0 and split["images"] == 1
    assert split["ap50"] == 1.0  # two discs, two instances
    merged = score_instances(segmenter, run, seeds="detector", threshold=0.5, min_distance=3)
    # one seed: one blob; it matches the first disc (which owns the overlap: IoU > 0.5), the
    # second disc is missed: TP 1, FP 0, FN 1
    assert merged["dice"] == 1.0 and merged["ap50"] == 0.5


def test_tuning_prefers_the_values_that_split(segmenter):
    prob, truth = _discs()
    prob = prob.copy()
    prob[prob > 0] = 0.6
    run = SegmentationRun(["a"], [prob], [prob.shape], [truth], None, 0.0)
    t = tune_instances(segmenter, run, seeds="distance", thresholds=[0.5, 0.7], min_distances=[3, 30])
    assert t.threshold == 0.5 and t.min_distance == 3  # 0.7 leaves nothing; distance 30 merges the discs
    assert t.figures["ap50"] == 1.0 and len(t.grid) == 4


def test_detector_seeds_need_a_run_with_seeds(segmenter):
    prob, truth = _discs()
    run = SegmentationRun(["a"], [prob], [prob.shape], [truth], None, 0.0)
    with pytest.raises(ValueError, match="detector seeds"):
        score_instances(segmenter, run, seeds="detector", threshold=0.5, min_distance=3)


def test_run_segmenter_on_samples(segmenter, rng):
    from nucleikit.infer.segment_eval import run_segmenter

    @dataclass
    class Sample:
        id: str
        mpp: None = None

        def load_image(self, mode="rgb"):
            return rng.random((30, 40, 3)).astype(np.float32)

        def load_labels(self):
            return np.zeros((30, 40), np.int32)

    run = run_segmenter(segmenter, [Sample("x"), Sample("y")])
    assert run.ids == ["x", "y"] and run.shapes == [(30, 40), (30, 40)] and run.seeds is None
    assert run.probs[0].shape == (30, 40) and run.probs[0].dtype == np.float32


# --- instance heads ----------------------------------------------------------------------------


def _instance_run(truth, factor=1.0):
    from nucleikit.targets import instance_targets

    maps = np.moveaxis(instance_targets(truth), -1, 0)
    return SegmentationRun(["a"], [maps[0]], [truth.shape], [truth], None, 0.0, [maps], [factor])


def test_instance_head_scoring_and_tuning_on_stored_maps(make_segmenter_weights):
    from nucleikit.infer.segment_eval import head_labels, score_postprocess, tune_postprocess

    seg = Segmenter.from_weights(make_segmenter_weights(model="unet_instance"), InferenceConfig(threads=1))
    _, truth = _discs()
    run = _instance_run(truth)
    (labels,) = head_labels(seg, run, markers="distance", marker_threshold=0.5)
    assert labels.max() == 2
    perfect = score_postprocess(seg, run, markers="distance", marker_threshold=0.5)
    assert perfect["aji"] > 0.95 and perfect["pq"] > 0.95
    # a marker threshold above every distance value leaves one unmarked blob: the two discs merge
    merged = score_postprocess(seg, run, markers="distance", marker_threshold=1.5)
    assert merged["aji"] < 0.7
    grid = [{"markers": "distance", "marker_threshold": 1.5}, {"markers": "distance", "marker_threshold": 0.5}]
    tuned = tune_postprocess(seg, run, grid, criterion="aji")
    assert tuned.post == grid[1] and len(tuned.grid) == 2 and tuned.criterion == "aji"
    with pytest.raises(ValueError):
        tune_postprocess(seg, run, [])
    with pytest.raises(ValueError, match="instance-head"):
        head_labels(Segmenter.from_weights(make_segmenter_weights(), InferenceConfig(threads=1)), run)


def test_summarise_by_organ_means_by_hand():
    from nucleikit.infer.segment_eval import SCORE_KEYS, summarise_by_organ

    recs = [{"id": i, **{k: v for k in SCORE_KEYS}} for i, v in (("a", 0.2), ("b", 0.4), ("c", 0.9))]
    plain = summarise_by_organ(recs)
    assert set(plain) == {"mean"} and plain["mean"]["aji"] == pytest.approx(0.5)
    by = summarise_by_organ(recs, {"a": "lung", "b": "lung", "c": "breast"})
    assert by["per_organ"]["lung"]["pq"] == pytest.approx(0.3) and by["per_organ"]["breast"]["dice"] == 0.9
    assert [r["organ"] for r in by["per_image"]] == ["lung", "lung", "breast"]
