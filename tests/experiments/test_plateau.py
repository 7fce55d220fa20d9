"""The plateau probe on hand-written logs."""

from __future__ import annotations

import json

import pytest

from nucleikit.experiments.plateau import main, plateau, plateau_of_log, plateau_rows, read_history, stopped_early


def _log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_first_step_after_which_f1_stays_within_the_tolerance(tmp_path):
    f1 = {100: 0.50, 200: 0.70, 300: 0.795, 400: 0.80, 500: 0.78, 600: 0.792, 700: 0.799}
    log = _log(tmp_path / "log.jsonl", [{"step": s, "loss": 1.0, "val_f1": v} for s, v in f1.items()])
    p = plateau_of_log(log)
    # best 0.80 at 400; 500 drops to 0.78 (> 0.01 below), so the plateau starts at 600
    assert (p.step, p.best_step, p.best_f1, p.last_step, p.validations, p.reached) == (600, 400, 0.80, 700, 7, True)
    assert plateau_of_log(log, tol=0.03).step == 300


def test_a_run_still_climbing_has_not_plateaued():
    p = plateau([(100, 0.5), (200, 0.6), (300, 0.7)])
    assert (p.step, p.reached) == (300, False)
    assert plateau([(100, 0.7)]).reached is False
    with pytest.raises(ValueError, match="no validations"):
        plateau([])


def test_a_resumed_log_keeps_the_last_record_of_a_step(tmp_path):
    log = _log(tmp_path / "log.jsonl", [{"step": 100, "val_f1": 0.5}, {"step": 200, "val_f1": 0.6},
                                        {"step": 200, "val_f1": 0.65}, {"step": 300, "loss": 1.0}])
    assert read_history(log) == [(100, 0.5), (200, 0.65)]
    assert plateau_of_log(tmp_path / "missing.jsonl") is None


def test_rows_of_the_cells_and_the_command_line(tmp_path, capsys):
    (tmp_path / "train-a-123").mkdir()
    _log(tmp_path / "train-a-123" / "log.jsonl", [{"step": 2, "val_f1": 0.8}, {"step": 4, "val_f1": 0.805}])
    cells = [{"label": "train-a", "key": "123", "steps": 4, "best_step": 4, "cell": {"config": {"seed": 7}}},
             {"label": "train-a", "key": "123", "steps": 4, "best_step": 4, "cell": {"config": {"seed": 7}}},
             {"label": "train-b", "key": "456", "steps": 4, "best_step": 2, "cell": {"config": {"seed": 7}}}]
    rows = plateau_rows(tmp_path, cells)
    assert rows == [{"training": "train-a", "seed": 7, "steps": 4, "best_step": 4, "plateau_step": 2,
                     "plateaued": "yes", "stopped_early": False, "best_val_f1": 0.805},
                    {"training": "train-b", "seed": 7, "steps": 4, "best_step": 2, "plateau_step": None,
                     "plateaued": None, "stopped_early": False, "best_val_f1": None}]
    assert main([str(tmp_path / "train-a-123" / "log.jsonl")]) == 0
    assert "plateaued: within 0.01 of the best F1 0.805 from step 2" in capsys.readouterr().out
    assert main([str(tmp_path / "nothing.jsonl")]) == 2


def test_a_run_stopped_early_by_the_loop_counts_as_plateaued(tmp_path):
    # noisy validation: never within 0.01 of the best for the rest of the run, but the loop's rule stopped it
    (tmp_path / "noisy-1").mkdir()
    log = _log(tmp_path / "noisy-1" / "log.jsonl", [
        {"step": 2, "val_f1": 0.80, "score": 0.80}, {"step": 4, "val_f1": 0.78, "score": 0.78},
        {"step": 6, "val_f1": 0.805, "score": 0.805, "stopped": "plateau: 2 validations without a gain of 0.01"}])
    assert stopped_early(log) and not stopped_early(tmp_path / "missing.jsonl")
    assert not plateau_of_log(log).reached
    row = plateau_rows(tmp_path, [{"label": "noisy", "key": "1", "steps": 10, "cell": {"config": {"seed": 0}}}])[0]
    assert row["plateaued"] == "yes" and row["stopped_early"] is True and row["steps"] == 10
