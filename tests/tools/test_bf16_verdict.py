"""tools/bf16_verdict.py: the bf16 verdict measured on validation images and written into the header only."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import bf16_verdict  # noqa: E402
import weights_meta  # noqa: E402

from tests.tools.test_ship_weights import write_discs  # noqa: E402  (the pooled shipper's folder images)


def _save(path: Path, model: str, kwargs: dict, meta: dict) -> Path:
    import torch

    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    torch.manual_seed(0)
    return save_weights(path, build_model(model, **kwargs), {"name": "tiny", "model": model, "model_kwargs": kwargs,
                                                            **meta}, storage="float16")


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """A tiny detector "trained" by a pooled experiment on a folder data set: (weights, config) paths."""
    from nucleikit.experiments.cells import CellRunner
    from nucleikit.experiments.collection import load_collection
    from nucleikit.experiments.config import load_config

    root = tmp_path_factory.mktemp("pooled")
    write_discs(root / "toy" / "train", "t0", 0)
    for i in range(2):
        write_discs(root / "toy" / "validation", f"v{i}", 10 + i)
    config = root / "pooled.json"
    config.write_text(json.dumps({
        "experiment": "pooled", "seed": 0, "mpp": 0.5, "steps": 2, "train": {"model": "micronet"},
        "datasets": {"toy": {"kind": "folder", "mpp": 0.5, "train": str(root / "toy" / "train"),
                             "validation": str(root / "toy" / "validation")}},
        "study": {"train": ["toy"], "validation": ["toy"], "tests": ["toy"]}}))
    cfg = load_config(config)
    fingerprint = CellRunner(load_collection(cfg.datasets, {"toy": ("validation",)}, 0.5), root).fingerprint("toy")
    weights = _save(root / "tiny.safetensors", "micronet", {"width": 2}, {
        "task": "detection", "mpp": 0.5, "mean": [0.6, 0.5, 0.6], "std": [0.25, 0.3, 0.25], "halo": 40,
        "postprocess": {"threshold_rel": 0.3, "min_distance": 3, "threshold_abs": 0.0},
        "experiment_cell": {"validation": ["toy"], "data": {"toy": fingerprint}},
        "training": {"command": f"python tools/ship_weights.py RUN --experiment-config {config}"}})
    return weights, config


def _tensor_bytes(path: Path) -> bytes:
    return weights_meta.split_file(path.read_bytes())[1]


def test_verdict_rule_hand_computed():
    fp32 = {"crchisto": 0.800, "lung": 0.700}
    # |0.803 - 0.800| = 0.003 and |0.696 - 0.700| = 0.004, both <= 0.005
    assert bf16_verdict.holds(fp32, {"crchisto": 0.803, "lung": 0.696}, 0.005) is True
    # exactly the tolerance holds (0.805 - 0.800 is 0.0050000000000000044 in binary)
    assert bf16_verdict.holds(fp32, {"crchisto": 0.805, "lung": 0.700}, 0.005) is True
    # one set beyond it (0.006) is enough to fail, the other set unchanged
    assert bf16_verdict.holds(fp32, {"crchisto": 0.800, "lung": 0.694}, 0.005) is False
    assert bf16_verdict.holds(fp32, {"crchisto": math.nan, "lung": 0.700}, 0.005) is False
    assert bf16_verdict.differences(fp32, {"crchisto": 0.803, "lung": 0.696}) == pytest.approx(
        {"crchisto": 0.003, "lung": -0.004})


def test_weights_without_a_halo_are_tiled_in_bf16_as_fp32_measured_them(pooled):
    from nucleikit.models.weights import read_weights_meta

    meta = read_weights_meta(pooled[0])
    assert bf16_verdict.with_halo(meta, 56) is meta  # a stored halo is kept
    bare = meta.from_dict({k: v for k, v in meta.to_dict().items() if k != "halo"}, "bare")
    assert bare.halo is None and bf16_verdict.with_halo(bare, 56).halo == 56


def test_a_real_run_writes_the_verdict_into_the_header_only(pooled, tmp_path, capsys):
    from safetensors.torch import load_file

    from nucleikit.models.weights import load_weights, read_weights_meta

    weights, _ = pooled
    raw = weights.read_bytes()
    out = tmp_path / "verdict.safetensors"
    assert bf16_verdict.main([str(weights), "--threads", "1", "--out", str(out)]) == 0
    assert "bf16_ok = " in capsys.readouterr().out
    assert weights.read_bytes() == raw  # --out leaves the input alone
    assert _tensor_bytes(out) == _tensor_bytes(weights)
    tensors, written = load_file(weights), load_file(out)
    assert all(written[k].equal(tensors[k]) for k in tensors)
    _, meta = load_weights(out)
    before = read_weights_meta(weights)
    assert {k: v for k, v in meta.items() if not k.startswith("bf16")} == before
    ev = meta["bf16_evidence"]
    toy = ev["sets"]["toy"]
    assert meta.bf16_ok is bf16_verdict.holds({"toy": toy["fp32"]}, {"toy": toy["bf16"]}, 0.005)
    assert toy["images"] == 2 and toy["radius_px"] == pytest.approx(8.0)  # 4 um at 0.5 um/px
    assert toy["difference"] == pytest.approx(toy["bf16"] - toy["fp32"])
    # both precisions really ran: autocast changed the network's output
    assert ev["precision"] == {"fp32": "fp32: asked for", "bf16": "bf16: asked for"}
    assert 0 < toy["output_max_change"] < 0.5
    assert ev["tolerance"] == 0.005 and ev["split"] == "validation" and ev["tiling"]["halo"] == 40
    assert ev["command"].startswith("python tools/bf16_verdict.py") and ev["cpu"]["model"] is not None


def test_dry_run_writes_nothing(pooled, capsys):
    weights, _ = pooled
    raw, listing = weights.read_bytes(), sorted(weights.parent.iterdir())
    assert bf16_verdict.main([str(weights), "--threads", "1", "--limit-images", "1", "--tolerance", "0.01",
                              "--dry-run"]) == 0
    printed = capsys.readouterr().out
    updates = json.loads(printed[printed.index("{"):])
    assert isinstance(updates["bf16_ok"], bool) and updates["bf16_evidence"]["sets"]["toy"]["images"] == 1
    assert "first 1 images" in updates["bf16_evidence"]["split"] and updates["bf16_evidence"]["tolerance"] == 0.01
    assert weights.read_bytes() == raw and sorted(weights.parent.iterdir()) == listing


def test_validation_data_that_differ_from_the_recorded_ones_are_refused(pooled, tmp_path, capsys):
    from nucleikit.models.weights import read_weights_meta

    weights, config = pooled
    meta = read_weights_meta(weights).to_dict()
    changed = tmp_path / "changed.safetensors"
    changed.write_bytes(weights_meta.with_meta(weights.read_bytes(), {
        "experiment_cell": {**meta["experiment_cell"], "data": {"toy": "0000000000"}}}))
    assert bf16_verdict.main([str(changed), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(config) in err[0] and "toy" in err[0]


@pytest.mark.parametrize("content", [None, b"not a weights file\n"])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, content):
    path = tmp_path / "w.safetensors"
    if content is not None:
        path.write_bytes(content)
    assert bf16_verdict.main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]


def _dry_run_evidence(path: Path, capsys) -> dict:
    assert bf16_verdict.main([str(path), "--threads", "1", "--limit-images", "1", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    return json.loads(printed[printed.index("{"):])["bf16_evidence"]


def test_crchisto_detector_and_classifier_on_their_validation_images(crchisto_dir, tmp_path, capsys):
    """The CRCHisto-only detector's and a classifier's recipes on the real fixed-split validation images."""
    det = _save(tmp_path / "det.safetensors", "micronet", {"width": 2}, {
        "task": "detection", "dataset": "CRCHistoPhenotypes", "mpp": 0.55, "mean": [0.8, 0.7, 0.85],
        "std": [0.15, 0.2, 0.12], "halo": 40, "postprocess": {"threshold_rel": 0.3, "min_distance": 4},
        "validation": {"images": ["img5", "img98"]}})
    ev = _dry_run_evidence(det, capsys)
    assert ev["metric"] == "f1" and ev["sets"]["crchisto"]["radius_px"] == pytest.approx(6.0)
    assert ev["sets"]["crchisto"]["images"] == 1 and ev["sets"]["crchisto"]["output_max_change"] > 0
    clf = _save(tmp_path / "clf.safetensors", "densenet", {"growth": 4, "stem_width": 8, "layers": [1, 1, 1, 1]}, {
        "task": "classification", "classes": ["epithelial", "fibroblast", "inflammatory", "others"], "mpp": 0.55,
        "patch": 16, "mean": [0.5] * 3, "std": [0.25] * 3})
    ev = _dry_run_evidence(clf, capsys)
    fixed = ev["sets"]["crchisto fixed validation"]
    assert ev["metric"] == "weighted_f1" and fixed["images"] == 1 and fixed["patches"] > 0
    assert fixed["output_max_change"] > 0
    # validated on a test image (another split): refused before anything runs
    other = tmp_path / "other.safetensors"
    other.write_bytes(weights_meta.with_meta(det.read_bytes(), {"validation": {"images": ["img1"]}}))
    assert bf16_verdict.main([str(other), "--dry-run"]) == 2
    assert "img1" in capsys.readouterr().err


def test_monuseg_instance_segmenter_on_its_validation_images(monuseg_dir, tmp_path, capsys):
    seg = _save(tmp_path / "seg.safetensors", "unet_instance", {"widths": [4, 8, 16]}, {
        "task": "segmentation", "target": "instance", "dataset": "MoNuSeg 2018 training images", "mpp": 0.5,
        "mean": [0.6, 0.5, 0.6], "std": [0.25, 0.3, 0.25], "halo": 48,
        "postprocess": {"threshold": 0.5, "markers": "distance", "marker_threshold": 0.5, "min_size": 6}})
    ev = _dry_run_evidence(seg, capsys)
    assert ev["task"] == "segmentation" and ev["metric"] == "aji"
    (name, figures), = ev["sets"].items()
    assert name == "monuseg per_organ validation" and figures["images"] == 1 and figures["output_max_change"] > 0
