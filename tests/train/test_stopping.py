"""Early stopping: the plateau rule by hand, and the loop stopping (and staying stopped on resume)."""

import json

import pytest

from nucleikit.errors import ConfigError
from nucleikit.experiments.cells import Cell, TrainSet
from nucleikit.train.stopping import (plateaued, rounds_since_improvement, scores_from_log, stop_reason,
                                     stopped_reason)
from tests.train.test_loop import disc_image, tiny_config

from nucleikit.train.loop import train_detector


@pytest.mark.parametrize("scores, delta, expected", [
    ([], 0.0, 0),
    ([0.5], 0.0, 0),
    ([0.5, 0.6, 0.7], 0.0, 0),            # improving every round
    ([0.5, 0.6, 0.6], 0.0, 1),            # a tie is no gain
    ([0.5, 0.6, 0.59, 0.58], 0.0, 2),
    ([0.5, 0.6, 0.604, 0.603], 0.005, 2),  # +0.004 is below the delta: the last gain is round 1
    ([0.5, 0.6, 0.606, 0.603], 0.005, 1),
    ([0.8, 0.1, 0.2, 0.3, 0.79], 0.0, 4),  # recovering is not improving on the best
])
def test_rounds_since_improvement_by_hand(scores, delta, expected):
    assert rounds_since_improvement(scores, delta) == expected


def test_plateaued_needs_patience_rounds():
    scores = [0.5, 0.6, 0.59, 0.58]
    assert plateaued(scores, 2, 0.0)
    assert not plateaued(scores, 3, 0.0)
    assert not plateaued(scores, None, 0.0)
    assert not plateaued([], 1, 0.0)


def test_scores_from_log_keeps_the_last_record_of_a_step_and_skips_cut_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join([
        json.dumps({"step": 2, "score": 0.4}),
        json.dumps({"step": 4, "score": 0.5}),
        json.dumps({"step": 4, "score": 0.55}),  # validated again after a resume
        json.dumps({"step": 6, "score": 0.7}),
        '{"step": 8, "sco',                       # cut short by a kill
    ]))
    assert scores_from_log(log, up_to_step=4) == [0.4, 0.55]
    assert scores_from_log(log, up_to_step=100) == [0.4, 0.55, 0.7]
    assert scores_from_log(tmp_path / "missing.jsonl", 10) == []


@pytest.mark.parametrize("bad", [{"stop_patience": 0}, {"stop_patience": 1.5}, {"stop_patience": True},
                                 {"stop_min_delta": -0.1}, {"stop_min_delta": "x"}])
def test_bad_stopping_options_are_refused(bad):
    with pytest.raises(ConfigError, match="stop_"):
        tiny_config(**bad)


def test_the_loop_stops_on_a_plateau_and_a_resume_stays_stopped(tmp_path):
    # no gain of 0.99 is possible after the first validation: the second one stops the run
    cfg = tiny_config(steps=12, val_every=2, stop_patience=1, stop_min_delta=0.99)
    res = train_detector([disc_image(0)], [disc_image(2)], cfg, tmp_path, progress=False)
    assert res.steps_done == 4
    records = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert "plateau" in records[-1]["stopped"] and "stopped" not in records[0]
    again = train_detector([disc_image(0)], [disc_image(2)], cfg, tmp_path, progress=False)
    assert again.steps_done == 4
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    # a run that had plateaued before it knew early stopping says so once, in a record without a score
    plain = tmp_path / "plain"
    train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=4, val_every=2), plain, progress=False)
    resumed = train_detector([disc_image(0)], [disc_image(2)], cfg, plain, progress=False)
    assert resumed.steps_done == 4
    train_detector([disc_image(0)], [disc_image(2)], cfg, plain, progress=False)
    lines = [json.loads(l) for l in (plain / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and lines[-1] == {"step": 4, "stopped": stop_reason(1, 0.99)}
    assert stopped_reason(plain / "log.jsonl") == stop_reason(1, 0.99)
    assert scores_from_log(plain / "log.jsonl", 4) == [r["score"] for r in lines[:2]]
    # without early stopping the same folder trains on to the end
    done = train_detector([disc_image(0)], [disc_image(2)], tiny_config(steps=6, val_every=2), tmp_path,
                          progress=False)
    assert done.steps_done == 6


def test_early_stopping_is_not_part_of_an_experiment_cell_key():
    def cell(**kw):
        return Cell("c", (TrainSet("a", 1.0, 1.0),), "a", tiny_config(**kw))

    assert cell().key() == cell(stop_patience=3).key() == cell(stop_patience=5, stop_min_delta=0.0).key()
    assert cell().key() != cell(steps=8).key()


def test_a_classifier_stops_on_a_plateau_of_weighted_f1_and_stays_stopped(tmp_path):
    from nucleikit.train.classify import train_classifier
    from tests.train.test_classify import synthetic
    from tests.train.test_classify import tiny_config as classify_config

    train, val = synthetic(32, 1), synthetic(16, 2)
    cfg = classify_config(epochs=6, stop_patience=1, stop_min_delta=0.99)
    res = train_classifier(train, val, cfg, tmp_path, progress=False)
    assert res.epochs_done == 2 and len(res.history) == 2 and "plateau" in res.history[-1]["stopped"]
    # a resumed run may change the stopping options (they decide where it ends, not its path)
    again = train_classifier(train, val, classify_config(epochs=6, stop_patience=1), tmp_path, progress=False)
    assert again.epochs_done >= 2
    with pytest.raises(ConfigError, match="stop_patience"):
        classify_config(stop_patience=0)
