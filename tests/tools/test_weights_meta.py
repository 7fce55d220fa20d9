"""tools/weights_meta.py: metadata set in place, tensor bytes unchanged."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import weights_meta  # noqa: E402


def _weights(path: Path) -> Path:
    import torch

    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    torch.manual_seed(0)
    meta = {"name": "tiny", "model": "micronet", "model_kwargs": {"width": 4}, "mpp": 0.55,
            "mean": [0.8, 0.7, 0.85], "std": [0.15, 0.2, 0.12], "halo": 128}
    return save_weights(path, build_model("micronet", width=4), meta, storage="float16")


def _data_digest(path: Path) -> str:
    return hashlib.sha256(weights_meta.split_file(path.read_bytes())[1]).hexdigest()


def test_sets_keys_and_keeps_the_tensor_bytes(tmp_path):
    from safetensors.torch import load_file

    from nucleikit.models.weights import read_weights_meta

    path = _weights(tmp_path / "w.safetensors")
    digest, tensors = _data_digest(path), load_file(path)
    before = read_weights_meta(path)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "weights_meta.py"), str(path), "--set", "bf16_ok=true",
                           "--set", 'bf16_evidence={"f1": [0.8276, 0.8277]}'], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = read_weights_meta(path)
    assert meta["bf16_ok"] is True and meta["bf16_evidence"] == {"f1": [0.8276, 0.8277]}
    assert {k: v for k, v in meta.items() if not k.startswith("bf16")} == before
    assert _data_digest(path) == digest  # the tensors' bytes, not only their values
    after = load_file(path)
    assert all(after[k].dtype == tensors[k].dtype and after[k].equal(tensors[k]) for k in tensors)
    # the header stays 8-byte aligned, as safetensors writes it
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0


def test_refuses_keys_that_describe_the_tensors(tmp_path):
    path = _weights(tmp_path / "w.safetensors")
    raw = path.read_bytes()
    with pytest.raises(ValueError, match="num_params"):
        weights_meta.with_meta(raw, {"num_params": 1})
    assert weights_meta.main([str(path), "--set", "model_kwargs={}"]) == 2
    assert path.read_bytes() == raw


def test_bundled_micronet_carries_the_readme_bf16_verdict():
    # README ("Inference in bf16 gives MicroNet's test figures to three decimals") and
    # benchmarks/results/detection_accuracy_test_bf16.json: F1 0.8277 vs 0.8276 at r = 6 px
    from nucleikit.models.weights import read_weights_meta, resolve_weights

    meta = read_weights_meta(resolve_weights("micronet"))
    assert meta["bf16_ok"] is True
    ev = meta["bf16_evidence"]
    assert abs(ev["test_f1_r6"]["bf16"] - ev["test_f1_r6"]["fp32"]) < 5e-4
    assert ev["test_f1_r6"]["fp32"] == pytest.approx(meta["test"]["f1_r6"])
    json.dumps(ev)


@pytest.mark.parametrize("name", ["micronet_he", "udnet", "unet_he", "unet", "dcrn", "densenet"])
def test_bundled_verdicts_were_measured_on_validation_within_their_tolerance(name):
    # tools/bf16_verdict.py (README, "Precision and memory"): every validation set's figure within
    # the tolerance in bf16, so --precision auto runs these models in bf16 on CPUs with AMX
    from nucleikit.models.weights import read_weights_meta, resolve_weights

    meta = read_weights_meta(resolve_weights(name))
    ev = meta["bf16_evidence"]
    assert meta["bf16_ok"] is True and ev["split"] == "validation" and ev["tolerance"] == 0.005
    for figures in ev["sets"].values():
        assert figures["difference"] == pytest.approx(figures["bf16"] - figures["fp32"])
        assert abs(figures["difference"]) <= ev["tolerance"] and figures["output_max_change"] > 0
