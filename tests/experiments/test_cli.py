"""The command module through a parser built here (cli/main.py registers it separately)."""

import argparse
import json

from nucleikit.cli import experiment
from nucleikit.experiments.registry import STUDIES


def _parser():
    p = argparse.ArgumentParser(prog="nucleikit experiment")
    experiment.add_arguments(p)
    return p


def test_study_names_in_the_help_are_the_registry(make_config):
    assert set(experiment.STUDY_NAMES) == set(STUDIES)


def test_runs_a_study_with_budget_and_threads_from_the_command_line(make_config, tmp_path, capsys):
    cfg = make_config("lambda", {"datasets": ["a"], "lams": [5.0]}, steps=50)
    args = _parser().parse_args(["lambda", "--config", str(cfg), "-o", str(tmp_path / "o"), "--steps", "2",
                                 "--threads", "1", "--no-progress"])
    assert experiment.run(args) == 0
    assert "report" in capsys.readouterr().out
    text = (tmp_path / "o" / "report.md").read_text()
    assert "**2 steps**" in text and "1 thread(s)" in text


def test_studies_sharing_runs_share_the_base_model(make_config, tmp_path, capsys):
    runs = tmp_path / "runs"
    matrix = make_config("cross_dataset", {"datasets": ["a", "b"]}, name="m.json")
    ft = make_config("finetune", {"source": "a", "target": "b", "parts": ["iterations"]}, name="f.json")
    p = _parser()
    experiment.run(p.parse_args(["cross_dataset", "--config", str(matrix), "-o", str(tmp_path / "m"),
                                 "--runs", str(runs), "--no-progress"]))
    capsys.readouterr()
    experiment.run(p.parse_args(["finetune", "--config", str(ft), "-o", str(tmp_path / "f"),
                                 "--runs", str(runs), "--no-progress"]))
    out = capsys.readouterr().out
    assert "skip train-a-" in out  # the cross-dataset model of a is the base
    assert not (tmp_path / "m" / "runs").exists()
    assert f"--runs {runs}" in (tmp_path / "f" / "report.md").read_text()


def test_same_name_different_data_does_not_share_a_run(make_config, datasets, tmp_path, capsys):
    runs = tmp_path / "runs"
    cfg = make_config("lambda", {"datasets": ["a"], "lams": [5.0]}, name="one.json")
    experiment.run(_parser().parse_args(["lambda", "--config", str(cfg), "-o", str(tmp_path / "1"),
                                         "--runs", str(runs), "--no-progress"]))
    # the same name for data set b's images
    other = make_config("lambda", {"datasets": ["a"], "lams": [5.0]}, sets=["b"], name="two.json")
    doc = json.loads(other.read_text())
    doc["datasets"] = {"a": datasets["b"]}
    other.write_text(json.dumps(doc))
    capsys.readouterr()
    experiment.run(_parser().parse_args(["lambda", "--config", str(other), "-o", str(tmp_path / "2"),
                                         "--runs", str(runs), "--no-progress"]))
    assert "train train-a-" in capsys.readouterr().out
    assert len(list(runs.glob("train-a-*"))) == 2


def test_through_the_main_entry_point_errors_are_one_line_and_exit_2(make_config, tmp_path, capsys, monkeypatch):
    from nucleikit.cli import main

    # registered here only: cli/main.py's COMMANDS is edited by its owner
    monkeypatch.setitem(main.COMMANDS, "experiment", ("nucleikit.cli.experiment", "run a transfer study"))
    cfg = make_config("cross_dataset", {"datasets": ["a", "missing"]})
    code = main.main(["experiment", "cross_dataset", "--config", str(cfg), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("nucleikit: error:") and "'missing'" in err[0]
    code = main.main(["experiment", "nonsense", "--config", str(cfg), "-o", str(tmp_path / "o")])
    # an unknown study is named first, before the configuration is compared with it
    assert code == 2 and "unknown experiment 'nonsense'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
