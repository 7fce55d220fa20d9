"""Helpers of tools/ship_weights.py (the script is not a package: loaded from its path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_weights", REPO / "tools" / "ship_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_trainable_task_has_a_recipe(ship):
    from nucleikit.models import get_spec, list_models

    tasks = {get_spec(name).task for name in list_models()}
    assert tasks <= set(ship.SHIPPERS)
    assert {"detection", "segmentation", "classification"} <= set(ship.SHIPPERS)


def test_training_summary_picks_the_best_record(ship):
    log = [{"step": 100, "score": 0.5, "elapsed_s": 60.0}, {"step": 200, "score": 0.7, "elapsed_s": 120.0},
           {"step": 300, "score": 0.6, "elapsed_s": 183.0}]
    s = ship.training_summary(log, score_key="score", count_key="step", name="r2unet", command="nucleikit train")
    assert s == {"steps": 300, "best_step": 200, "wall_time_min": 3.0, "command": "nucleikit train",
                 "log": "docs/training/r2unet.log.jsonl"}
    epochs = [{"epoch": 1, "val_weighted_f1": 0.8, "elapsed_s": 30.0}, {"epoch": 2, "val_weighted_f1": 0.7, "elapsed_s": 60.0}]
    assert ship.training_summary(epochs, score_key="val_weighted_f1", count_key="epoch", name="d",
                                 command="")["best_epoch"] == 1
    with pytest.raises(ValueError, match="empty"):
        ship.training_summary([], score_key="score", count_key="step", name="x", command="")


def test_limited_runs_are_labelled_and_kept_out_of_the_package(ship, tmp_path):
    assert ship.limited(range(10), 3) == [0, 1, 2] and ship.limited(range(4), None) == [0, 1, 2, 3]
    full = ship.figures_label("dsb2018 stage1_test", 65, None)
    quick = ship.figures_label("dsb2018 stage1_test", 3, 3)
    assert full["protocol"] is True and "65 images" in full["split"]
    assert quick["protocol"] is False and "not a PROTOCOL.md figure" in quick["note"]
    assert ship.output_path(tmp_path, "r2unet", 3, None) == tmp_path / "r2unet.limited.safetensors"
    assert ship.output_path(tmp_path, "r2unet", None, None).parent.name == "weights"
    assert ship.output_path(tmp_path, "r2unet", None, tmp_path / "x.safetensors") == tmp_path / "x.safetensors"


def test_float16_round_trip_changes_outputs_little(ship, make_segmenter_weights, tmp_path):
    from nucleikit.models.weights import load_weights

    model, meta = load_weights(make_segmenter_weights(model="r2unet"))
    shipped, diff = ship.float16_round_trip(model, meta, tmp_path)
    assert 0 < diff < 1e-2  # float16 rounds (so not 0) but keeps the output
    assert not list(tmp_path.iterdir())  # the temporary file is gone
    weights = dict(shipped.named_parameters())
    original = dict(model.named_parameters())
    name = next(iter(weights))
    w16 = original[name].detach().numpy().astype(np.float16).astype(np.float32)
    assert np.array_equal(weights[name].detach().numpy(), w16)


def test_score_calibration_of_maps_gives_loadable_monotone_metadata(ship):
    import numpy as np

    from nucleikit.infer.calibration import ScoreCalibration

    m = np.zeros((40, 40), np.float32)
    m[10, 10], m[30, 30], m[10, 30] = 1.0, 0.8, 0.2  # two nuclei and a faint false peak
    truth = np.array([[10.0, 10.0], [30.0, 30.0]])
    meta = ship.score_calibration([m, m], [truth, truth], [3.0, 3.0], min_distance=3, lowest_xi=0.05,
                                  fitted_on="test")
    cal = ScoreCalibration.from_meta(meta)
    assert cal.n_peaks == 6 and meta["fitted_on"] == "test"
    np.testing.assert_allclose(cal([0.2, 0.8, 1.0]), [0.0, 1.0, 1.0])
