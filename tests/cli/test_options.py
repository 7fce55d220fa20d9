"""Runtime options shared by the commands that run a network: --precision (and --bf16), --memory, --tile."""

from __future__ import annotations

import argparse

import pytest

from nucleikit.cli.main import build_parser
from nucleikit.cli.options import inference_config, memory_size

#: Every command that runs a network, with its required arguments.
NETWORK_COMMANDS = {
    "detect": ["detect", "x.png", "-o", "out"],
    "segment": ["segment", "x.png", "-o", "out"],
    "analyze": ["analyze", "x.png", "-o", "out"],
    "classify": ["classify", "x.png", "--points", "p.csv", "-o", "out"],
    "demo": ["demo"],
}


@pytest.fixture(scope="module")
def parser():
    return build_parser()


@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_precision_defaults_to_auto_and_bf16_is_an_alias(parser, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = NETWORK_COMMANDS[command]
    assert parser.parse_args(base).precision == "auto"
    for value in ("auto", "fp32", "bf16"):
        assert parser.parse_args([*base, "--precision", value]).precision == value
    assert parser.parse_args([*base, "--bf16"]).precision == "bf16"  # the old flag keeps working


@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_bad_precision_is_a_usage_error(parser, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*NETWORK_COMMANDS[command], "--precision", "fp16"])
    assert exc.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_help_names_the_options_and_marks_bf16_deprecated(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--precision {auto,fp32,bf16}" in text and "--memory SIZE" in text
    assert "deprecated: the same as --precision bf16" in text


def test_inference_config_carries_the_runtime_options(parser, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = inference_config(parser.parse_args(["detect", "x.png", "-o", "out"]))
    assert (config.tile, config.batch_size, config.memory, config.requested_precision) == (None, None, 2**30, "auto")
    config = inference_config(parser.parse_args(["detect", "x.png", "-o", "out", "--tile", "256", "--batch-size",
                                                 "2", "--memory", "512M", "--bf16"]))
    assert (config.tile, config.batch_size, config.memory, config.requested_precision) == (256, 2, 2**29, "bf16")


@pytest.mark.parametrize("text, expected", [
    ("1024", 2**30), ("1G", 2**30), ("1GiB", 2**30), ("1gb", 2**30), ("1.5G", 3 * 2**29), ("768M", 768 * 2**20),
    ("65536k", 64 * 2**20),
])
def test_memory_sizes(text, expected):
    assert memory_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "1T", "inf", "nan", "10M", "-1G"])
def test_bad_memory_sizes(text):
    with pytest.raises(argparse.ArgumentTypeError):
        memory_size(text)


def test_segment_padding(parser, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert parser.parse_args(NETWORK_COMMANDS["segment"]).padding == "halo"  # default unchanged
    assert parser.parse_args([*NETWORK_COMMANDS["segment"], "--padding", "align"]).padding == "align"
    with pytest.raises(SystemExit):
        parser.parse_args([*NETWORK_COMMANDS["segment"], "--padding", "zero"])
    assert "invalid choice: 'zero'" in capsys.readouterr().err


# --- one name per kind of value (issue 16) -----------------------------------------------------
# detect's --threshold was a fraction of the map maximum (xi), segment's a probability, and
# classify's --batch-size counted patches where every other command's counts tiles.


@pytest.mark.parametrize("command", ["detect", "analyze"])
def test_xi_is_the_name_of_the_relative_threshold(parser, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = NETWORK_COMMANDS[command]
    assert parser.parse_args([*base, "--xi", "0.4"]).threshold == 0.4
    assert parser.parse_args([*base, "--threshold", "0.4"]).threshold == 0.4  # the older name keeps working
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--prob-threshold", "0.4"])  # a probability is not what these threshold


def test_prob_threshold_is_the_name_of_segments_probability(parser, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = NETWORK_COMMANDS["segment"]
    assert parser.parse_args([*base, "--prob-threshold", "0.7"]).threshold == 0.7
    assert parser.parse_args([*base, "--threshold", "0.7"]).threshold == 0.7
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--xi", "0.4"])


@pytest.mark.parametrize("command", ["classify", "analyze"])
def test_patch_batch_counts_patches_in_both_typing_commands(parser, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = parser.parse_args([*NETWORK_COMMANDS[command], "--patch-batch", "64"])
    patches = args.batch_size if command == "classify" else args.patch_batch
    assert patches == 64
    if command == "classify":  # the older name of classify's patches per pass
        assert parser.parse_args([*NETWORK_COMMANDS[command], "--batch-size", "32"]).batch_size == 32


def test_help_gives_the_new_names_first(parser, capsys):
    for command, shown in (("detect", "--xi XI, --threshold XI"), ("segment", "--prob-threshold P, --threshold P"),
                           ("classify", "--patch-batch N, --batch-size N")):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert shown in " ".join(capsys.readouterr().out.split()), command
