"""The README's summary table, built from the committed reports (docs/experiments/)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from nucleikit.experiments.summary import FINDINGS, markdown, summary_rows

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "experiments"


def _tool():
    spec = importlib.util.spec_from_file_location("experiments_summary", REPO / "tools" / "experiments_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_finding_has_a_row_from_the_committed_reports():
    rows = summary_rows(DOCS, root=REPO)
    assert [r["finding"] for r in rows] == [f.key for f in FINDINGS]
    by = {r["finding"]: r for r in rows}
    # cross_dataset: one seed, best at the last step for 4 of 5 models: inconclusive, agreeing in direction
    assert by["cross_dataset"]["verdict"].startswith("inconclusive (agrees in direction; 1 seed")
    assert "gap +0.112" in by["cross_dataset"]["ours"] and "5 of 5" in by["cross_dataset"]["ours"]
    assert by["cross_dataset"]["report"] == "docs/experiments/cross_dataset/report.md"
    assert by["finetune_iterations"]["verdict"].startswith("inconclusive (disagrees in direction")
    assert "fine-tuned 0.756 vs scratch 0.823" in by["finetune_iterations"]["ours"]
    for key in ("finetune_fraction", "finetune_snapshots", "finetune_freeze", "auxiliary", "gamma", "lambda",
                "baselines"):
        assert by[key]["verdict"] == "not yet run", key


def test_three_seeds_beyond_the_noise_at_a_plateau_decide(tmp_path):
    raw = json.loads((DOCS / "cross_dataset" / "results.json").read_text())
    raw["config"]["seeds"] = [0, 1, 2]
    raw["plateau"] = [{"training": "train-a", "plateaued": "yes"}]
    (tmp_path / "docs" / "experiments" / "x").mkdir(parents=True)
    (tmp_path / "docs" / "experiments" / "x" / "results.json").write_text(json.dumps(raw))
    rows = summary_rows(tmp_path / "docs" / "experiments")
    assert rows[0]["verdict"] == "reproduced" and rows[0]["report"] == "docs/experiments/x/report.md"
    raw["plateau"] = [{"training": "train-a", "plateaued": "no"}]
    (tmp_path / "docs" / "experiments" / "x" / "results.json").write_text(json.dumps(raw))
    assert "budget short of the plateau" in summary_rows(tmp_path / "docs" / "experiments")[0]["verdict"]


def test_the_tool_prints_the_table_and_the_readme_is_in_step(tmp_path, capsys):
    tool = _tool()
    assert tool.main([]) == 0
    out = capsys.readouterr().out
    assert out == markdown(summary_rows(DOCS, root=REPO)) and out.count("\n") == 2 + len(FINDINGS)
    assert tool.main(["--check", str(REPO / "README.md")]) == 0, "run python tools/experiments_summary.py --write README.md"
    stale = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", stale)
    stale.write_text(stale.read_text().replace("**not yet run**", "**reproduced**", 1))
    assert tool.main(["--check", str(stale)]) == 1
    assert tool.main(["--write", str(stale)]) == 0 and tool.main(["--check", str(stale)]) == 0
