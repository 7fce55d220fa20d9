"""The command line: contract of every command, batches past bad files, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nucleikit.cli.main import COMMANDS, main


def test_entry_point_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "nucleikit.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: nucleikit " + command in capsys.readouterr().out


def test_detect_writes_csv_geojson_overlay(tiny_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    out = tmp_path / "out"
    code = main(["detect", str(image), "-o", str(out), "--model", str(tiny_weights), "--threads", "1"])
    assert code == 0
    lines = (out / "discs.csv").read_text().splitlines()
    assert lines[0] == "x,y,score"
    for row in lines[1:]:
        x, y, s = map(float, row.split(","))
        assert 0 <= x < 96 and 0 <= y < 80 and 0 <= s <= 1
    gj = json.loads((out / "discs.geojson").read_text())
    assert gj["type"] == "FeatureCollection"
    assert len(gj["features"]) == len(lines) - 1
    for f in gj["features"]:
        assert f["properties"]["objectType"] == "detection"
        assert all(isinstance(v, float) for v in f["properties"]["measurements"].values())
    assert (out / "discs_overlay.png").stat().st_size > 0
    assert "1 of 1 inputs processed" in capsys.readouterr().out


def test_detect_uses_given_mpp_and_maps_points_back(tiny_weights, disc_png, tmp_path):
    image, _ = disc_png
    out = tmp_path / "o"
    assert main(["detect", str(image), "-o", str(out), "--model", str(tiny_weights), "--mpp", "0.25",
                 "--no-overlay", "--threads", "1"]) == 0
    rows = np.loadtxt(out / "discs.csv", delimiter=",", skiprows=1, ndmin=2)
    if len(rows):
        assert rows[:, 0].max() < 96 and rows[:, 1].max() < 80
    assert not (out / "discs_overlay.png").exists()


def test_batch_goes_on_past_bad_files(tiny_weights, disc_png, tmp_path, capsys):
    image, _ = disc_png
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all" * 10)
    out = tmp_path / "out"
    code = main(["detect", str(empty), str(image), str(junk), str(tmp_path / "missing.png"), "-o", str(out),
                 "--model", str(tiny_weights), "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 2
    assert (out / "discs.csv").exists()
    assert not (out / "empty.csv").exists() and not (out / "junk.csv").exists()
    assert "3 failed" in captured.err
    assert "empty.png" in captured.err and "junk.png" in captured.err and "missing.png" in captured.err
    assert "Traceback" not in captured.err
    # nothing half-written: no temporary files left behind
    assert sorted(p.name for p in out.iterdir()) == ["detect_run.json", "discs.csv", "discs.geojson",
                                                      "discs_overlay.png"]


def test_bad_weights_one_line_exit_2(disc_png, tmp_path, capsys):
    image, _ = disc_png
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    assert main(["detect", str(image), "-o", str(tmp_path / "o"), "--model", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nucleikit: error: ") and "bad.safetensors" in err[0]
    assert main(["detect", str(image), "-o", str(tmp_path / "o"), "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    bad = tmp_path / "zero.png"
    bad.write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "-m", "nucleikit.cli.main", "evaluate", "detection", "--pred", str(tmp_path / "nope"),
         "--truth", str(tmp_path), "--radius", "5"],
        capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def _write_csv(path, rows, header="x,y"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def test_evaluate_detection_json_protocol_case(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    _write_csv(pred / "a.csv", [(6.37, 2.70, 0.9), (0.41, 0.17, 0.8)], header="x,y,score")
    _write_csv(truth / "a.csv", [(8.13, 9.13), (6.07, 7.29)])
    _write_csv(pred / "b.csv", [(1, 1, 0.5)], header="x,y,score")
    _write_csv(truth / "b.csv", [(1, 2)])
    assert main(["evaluate", "detection", "--pred", str(pred), "--truth", str(truth), "--radius", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["tp"], res["fp"], res["fn"]) == (2, 1, 1)
    assert res["precision"] == pytest.approx(2 / 3) and res["recall"] == pytest.approx(2 / 3)
    assert res["f1"] == pytest.approx(2 / 3)
    d_a = np.hypot(6.37 - 6.07, 2.70 - 7.29)
    assert res["ed"] == pytest.approx((d_a + 1.0) / 2)
    assert set(res) >= {"precision", "recall", "f1", "ed", "tp", "fp", "fn"}


def test_evaluate_missing_truth_is_exit_2(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    _write_csv(pred / "a.csv", [(1, 1, 0.5)], header="x,y,score")
    assert main(["evaluate", "detection", "--pred", str(pred), "--truth", str(truth), "--radius", "5"]) == 2
    assert "no truth file" in capsys.readouterr().err


def test_models_lists_architectures(capsys):
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {a["name"] for a in data["architectures"]}
    assert {"micronet", "udnet", "fcrn_a", "fcrn_b", "unet_regressor"} <= names


def test_train_on_user_folders_then_detect(disc_png, tmp_path, capsys):
    image, centres = disc_png
    from shutil import copy

    for split in ("train", "val"):
        d = tmp_path / split
        d.mkdir()
        copy(image, d / "img.png")
        _write_csv(d / "img.csv", centres.tolist())
    run = tmp_path / "run"
    code = main(["train", "detection", "--images", str(tmp_path / "train"), "--val-images", str(tmp_path / "val"),
                 "--mpp", "0.5", "-o", str(run), "--steps", "2", "--val-every", "1", "--batch-size", "1",
                 "--crop", "48", "--threads", "1", "--no-progress", "--config", str(_tiny_config(tmp_path))])
    assert code == 0, capsys.readouterr().err
    assert (run / "best.safetensors").exists() and (run / "checkpoint.pt").exists()
    assert main(["detect", str(image), "-o", str(tmp_path / "det"), "--model", str(run / "best.safetensors"),
                 "--threads", "1"]) == 0


def _tiny_config(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"model_kwargs": {"width": 4}, "xi_grid": [0.5], "min_distance_grid": [3]}))
    return p


def test_train_needs_validation_images(disc_png, tmp_path, capsys):
    image, _ = disc_png
    assert main(["train", "detection", "--images", str(image.parent), "-o", str(tmp_path / "r")]) == 2
    assert "--val-images" in capsys.readouterr().err


def test_train_bad_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text("{not json")
    assert main(["train", "detection", "--dataset", "crchisto", "-o", str(tmp_path / "r"), "--config", str(cfg)]) == 2
    assert "c.json" in capsys.readouterr().err


def test_batch_inputs_reports_missing_inputs_and_duplicate_stems(tmp_path, capsys):
    from nucleikit.cli.options import batch_inputs
    from nucleikit.cli.report import BatchReport

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second, other = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "a" / "y.png"
    for p in (first, second, other):
        p.write_bytes(b"not read here")
    report = BatchReport("detect")
    kept = batch_inputs([str(first), str(second), str(other), str(tmp_path / "none.png")], (".png",), report)
    assert kept == [first, other]
    failed = dict(report.failed)
    assert "overwrite each other" in failed[str(second)] and str(first) in failed[str(second)]
    assert len(report.failed) == 2  # the duplicate and the input that matches nothing
    assert capsys.readouterr().err.count("nucleikit: error:") == 2


def test_assumed_resolution_is_said_once_and_recorded(tiny_weights, disc_png, tmp_path, capsys):
    # a PNG without pHYs used to be run at the model's resolution without a word (issue 16)
    image, _ = disc_png
    second = tmp_path / "second.png"
    second.write_bytes(image.read_bytes())
    out = tmp_path / "out"
    assert main(["detect", str(image), str(second), "-o", str(out), "--model", str(tiny_weights),
                 "--threads", "1", "--no-overlay"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("no pixel size") == 1
    assert "2 inputs record no pixel size: assumed the model's 0.5 um/px" in stdout.splitlines()[-1]
    record = json.loads((out / "detect_run.json").read_text())
    entry = record["inputs"][str(image)]
    assert {k: entry[k] for k in ("mpp", "mpp_source")} == {"mpp": 0.5, "mpp_source": "model"}
    # the precision that ran and why: the tiny weights record no bf16 verdict, so auto is fp32 on any CPU
    assert entry["precision"]["used"] == "fp32" and entry["precision"]["requested"] == "auto"
    assert entry["precision"]["reason"].startswith("auto: fp32")
    # a later run with --mpp into the same folder updates its inputs and says nothing is assumed
    assert main(["detect", str(image), "-o", str(out), "--model", str(tiny_weights), "--threads", "1",
                 "--no-overlay", "--mpp", "0.25"]) == 0
    assert "no pixel size" not in capsys.readouterr().out
    record = json.loads((out / "detect_run.json").read_text())
    entry = record["inputs"][str(image)]
    assert {k: entry[k] for k in ("mpp", "mpp_source")} == {"mpp": 0.25, "mpp_source": "option"}
    assert record["inputs"][str(second)]["mpp_source"] == "model"
