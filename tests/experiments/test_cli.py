"""The command module through a parser built here (cli/main.py registers it separately)."""

import argparse

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
