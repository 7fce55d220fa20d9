"""Pure helpers of the cells and the cross-dataset summary."""

import numpy as np
import pytest

from nucleikit.experiments.cells import Cell, TrainSet, validation_steps
from nucleikit.experiments.cross_dataset import same_vs_other
from nucleikit.train.config import TrainConfig


def test_validation_steps_end_at_the_budget():
    assert validation_steps(400, 100) == (100, 200, 300, 400)
    assert validation_steps(250, 100) == (100, 200, 250)
    assert validation_steps(50, 100) == (50,)


def test_same_vs_other_uses_the_column_without_the_diagonal():
    m = np.array([[0.8, 0.5, 0.1], [0.6, 0.7, 0.3], [0.2, 0.1, 0.9]])
    same, other = same_vs_other(m)
    np.testing.assert_allclose(same, [0.8, 0.7, 0.9])
    np.testing.assert_allclose(other, [0.4, 0.3, 0.2])


def test_cell_key_ignores_threads_but_not_data_or_gamma():
    cfg = TrainConfig(steps=10)
    a = Cell("x", (TrainSet("a"),), "a", cfg)
    assert a.key() == Cell("y", (TrainSet("a"),), "a", TrainConfig(steps=10, threads=1)).key()
    assert a.key() != Cell("x", (TrainSet("a", weight=2.0),), "a", cfg).key()
    assert a.key() != Cell("x", (TrainSet("a", fraction=0.5),), "a", cfg).key()
    assert a.key(lambda n: "one") != a.key(lambda n: "two")
    ft = Cell("f", (TrainSet("b"),), "b", cfg, init=a)
    assert ft.key() != Cell("f", (TrainSet("b"),), "b", cfg, init=a, init_file="snapshot_5.safetensors").key()


def test_a_staged_cell_ends_where_the_uninterrupted_run_ends(make_config, tmp_path):
    import dataclasses

    import torch

    from nucleikit.experiments.cells import CellRunner, scratch_cell
    from nucleikit.experiments.config import load_config, prepare

    config = load_config(make_config("lambda", {"datasets": ["a"]}, steps=4))
    runner = CellRunner(prepare(config), tmp_path / "runs", log=lambda _: None)
    cfg = dataclasses.replace(config.train, augment=dataclasses.replace(config.train.augment, flip=True))
    whole = scratch_cell("a", cfg)
    staged = scratch_cell("a", cfg, stages=(2, 4))
    runner.run(whole, [])
    results = runner.run_staged(staged, ["a"])
    assert [r["steps"] for r in results] == [2, 4]
    a = torch.load(runner.folder(whole) / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(runner.folder(staged) / "checkpoint.pt", weights_only=True)["model"]
    assert runner.folder(whole) != runner.folder(staged)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_scoring_at_the_common_resolution_pairs_as_in_native_pixels():
    from nucleikit.experiments.cells import _to_common
    from nucleikit.infer.evaluate import DetectionRun, score_run

    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 200, (40, 2))
    pred = truth + rng.normal(0, 9, truth.shape)  # many pairs near the 16 px (4 um at 0.25 um/px) radius
    run = DetectionRun(["i"], [pred], [np.ones(len(pred))], [truth], 0.0)
    native = score_run(run, xi=0.5, radii=(16.0,))["radius"]["16"]
    common = score_run(_to_common(run, [0.25 / 0.5]), xi=0.5, radii=(8.0,))["radius"]["8"]
    assert 0 < native["tp"] < 40
    assert (native["tp"], native["fp"], native["fn"]) == (common["tp"], common["fp"], common["fn"])
    assert common["ed"] == pytest.approx(native["ed"] / 2)


def test_a_warm_start_is_keyed_by_its_tensors_not_its_path(tmp_path):
    import shutil

    from nucleikit.experiments.cells import Cell, TrainSet
    from nucleikit.models.weights import resolve_weights
    from nucleikit.train.config import TrainConfig

    bundled = resolve_weights("micronet")
    copy = tmp_path / "elsewhere.safetensors"
    shutil.copy(bundled, copy)

    def key(init):
        return Cell("c", (TrainSet("a", 1.0, 1.0),), "a", TrainConfig(), init_weights=str(init)).key()

    assert key(bundled) == key(copy)  # another checkout, the same network
    assert key(bundled) != key(resolve_weights("micronet_he"))
    assert key(bundled) != Cell("c", (TrainSet("a", 1.0, 1.0),), "a", TrainConfig()).key()
