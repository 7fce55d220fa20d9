"""Tests of nucleikit.models.weights."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

import nucleikit.models.weights as weights
from nucleikit.errors import ConfigError, WeightsError
from nucleikit.models import build_model, load_weights, read_weights_meta, resolve_weights, save_weights


META = {"model": "micronet", "model_kwargs": {"width": 4}, "mpp": 0.55, "mean": [0.5, 0.4, 0.6],
        "std": [0.2, 0.2, 0.25], "peaks": {"threshold": 0.3, "min_distance": 3}}


@pytest.fixture
def trained():
    """A small MicroNet after one training step (BN statistics moved)."""
    model = build_model("micronet", width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.rand(2, 3, 24, 24)).mean().backward()
    optimizer.step()
    return model.eval()


@pytest.fixture
def saved(tmp_path, trained):
    return save_weights(tmp_path / "m.safetensors", trained, META)


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path, trained, saved):
    assert saved == tmp_path / "m.safetensors"
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary left behind
    model, meta = load_weights(saved)
    assert not model.training
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))
    for key, value in trained.state_dict().items():  # buffers included
        assert torch.equal(model.state_dict()[key], value), key
    expected_params = sum(p.numel() for p in trained.parameters())
    full_kwargs = {"in_channels": 3, "out_channels": 1, "width": 4, "dropout": 0.5}
    assert meta == {**META, "model_kwargs": full_kwargs, "num_params": expected_params, "format_version": 1,
                    "storage": "float32", "task": "detection"}
    assert read_weights_meta(saved) == meta
    assert "num_params" not in META and META["model_kwargs"] == {"width": 4}  # caller's dict unmodified


def test_tensors_are_float32(tmp_path):
    model = build_model("micronet", width=4).to(torch.float64)
    path = save_weights(tmp_path / "d.safetensors", model, META)
    loaded, _ = load_weights(path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}


def test_tuple_kwargs_survive_json(tmp_path):
    model = build_model("udnet", widths=(2, 4, 8, 16, 32))
    meta = {"model": "udnet", "model_kwargs": {"widths": (2, 4, 8, 16, 32)}, "mean": [0.5] * 3, "std": [0.2] * 3}
    path = save_weights(tmp_path / "u.safetensors", model, meta)
    loaded, meta = load_weights(path)
    assert meta["model_kwargs"] == {"in_channels": 3, "widths": [2, 4, 8, 16, 32], "t": 3, "out_activation": "sigmoid",
                                   "step_norm": False}
    assert loaded.widths == (2, 4, 8, 16, 32) and loaded.t == 3


def test_save_replaces_an_existing_file(tmp_path, saved):
    other = build_model("micronet", width=4)
    save_weights(saved, other, {**META, "note": "second"})
    model, meta = load_weights(saved)
    assert meta["note"] == "second"
    assert torch.equal(model.state_dict()["blocks.0.0.weight"], other.state_dict()["blocks.0.0.weight"])
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_save_rejects_bad_metadata(tmp_path, trained):
    with pytest.raises(ConfigError, match="'model' and 'model_kwargs'"):
        save_weights(tmp_path / "a.safetensors", trained, {"model": "micronet"})
    with pytest.raises(ConfigError, match="unknown model 'micronett'"):
        save_weights(tmp_path / "b.safetensors", trained, {"model": "micronett", "model_kwargs": {}})
    with pytest.raises(ConfigError, match="does not match 'micronet'"):
        save_weights(tmp_path / "c.safetensors", trained, {"model": "micronet", "model_kwargs": {"width": 8}})
    with pytest.raises(ConfigError, match="JSON"):
        save_weights(tmp_path / "d.safetensors", trained, {**META, "when": object()})
    with pytest.raises(WeightsError, match="does not exist"):
        save_weights(tmp_path / "missing" / "e.safetensors", trained, META)
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        load_weights(tmp_path / "absent.safetensors")


def test_truncated_file(tmp_path, saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable safetensors file") as info:
        load_weights(saved)
    assert info.value.path == str(saved)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_weights(path)


def test_pickle_is_refused_not_executed(tmp_path, trained):
    path = tmp_path / "pickled.safetensors"
    torch.save(trained.state_dict(), path)
    with pytest.raises(WeightsError, match="this is a PyTorch pickle") as exc:
        load_weights(path)
    assert weights.CONVERT_RECIPE in str(exc.value)  # the one-line conversion is quoted


def test_legacy_pickle_is_named_as_a_pytorch_pickle(tmp_path, trained):
    path = tmp_path / "old.pt"
    torch.save(trained.state_dict(), path, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="this is a PyTorch pickle"):
        read_weights_meta(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_tensors_are_refused_at_load(tmp_path, trained, value):
    with torch.no_grad():
        trained.blocks[0][0].weight[0, 0, 0, 0] = value
    path = save_weights(tmp_path / "diverged.safetensors", trained, META)
    with pytest.raises(WeightsError, match=r"1 tensors hold NaN or infinite values \(e\.g\. blocks\.0\.0\.weight\)"):
        load_weights(path)


@pytest.mark.parametrize("mpp", [-1, 0, "0.5", True])
def test_impossible_mpp_in_metadata_is_refused(tmp_path, trained, mpp):
    path = save_weights(tmp_path / "m.safetensors", trained, {**META, "mpp": mpp})
    with pytest.raises(WeightsError, match="metadata mpp must be a positive number"):
        read_weights_meta(path)


def test_null_mpp_is_accepted(tmp_path, trained):
    path = save_weights(tmp_path / "m.safetensors", trained, {**META, "mpp": None})
    assert read_weights_meta(path)["mpp"] is None


def test_saved_weights_follow_the_umask(tmp_path, trained):
    old = os.umask(0o027)
    try:
        path = save_weights(tmp_path / "m.safetensors", trained, META)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_folder_and_symlink_loop_are_named(tmp_path):
    with pytest.raises(WeightsError, match="is a folder"):
        resolve_weights(tmp_path)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(WeightsError, match="symbolic link loop"):
        resolve_weights(tmp_path / "a")
    (tmp_path / "c").symlink_to(tmp_path / "nowhere")
    with pytest.raises(WeightsError, match="broken symbolic link"):
        resolve_weights(tmp_path / "c")


def test_safetensors_without_our_metadata(tmp_path, trained):
    path = tmp_path / "plain.safetensors"
    save_file(weights._state_tensors(trained), path)
    with pytest.raises(WeightsError, match="no 'nucleikit' metadata"):
        read_weights_meta(path)


def test_unknown_model_in_file(tmp_path, trained):
    path = tmp_path / "alien.safetensors"
    meta = {"model": "alien", "model_kwargs": {}, "format_version": 1}
    save_file(weights._state_tensors(trained), path, metadata={"nucleikit": json.dumps(meta)})
    with pytest.raises(WeightsError, match="unknown model 'alien'"):
        load_weights(path)


def test_mismatched_tensors(tmp_path, trained):
    path = tmp_path / "wide.safetensors"
    meta = {"model": "micronet", "model_kwargs": {"width": 8}, "format_version": 1, "num_params": 0}
    save_file(weights._state_tensors(trained), path, metadata={"nucleikit": json.dumps(meta)})
    with pytest.raises(WeightsError, match="tensors do not fit model 'micronet'.*wrong shape"):
        load_weights(path)


def test_missing_tensor(tmp_path, trained):
    path = tmp_path / "short.safetensors"
    tensors = weights._state_tensors(trained)
    del tensors["blocks.9.head.bias"]
    meta = {"model": "micronet", "model_kwargs": {"width": 4}, "format_version": 1, "num_params": 0}
    save_file(tensors, path, metadata={"nucleikit": json.dumps(meta)})
    with pytest.raises(WeightsError, match=r"1 tensors missing \(e.g. blocks.9.head.bias\)"):
        load_weights(path)


def test_declared_parameter_count_is_checked(tmp_path, trained):
    path = tmp_path / "lying.safetensors"
    meta = {"model": "micronet", "model_kwargs": {"width": 4}, "format_version": 1, "num_params": 12}
    save_file(weights._state_tensors(trained), path, metadata={"nucleikit": json.dumps(meta)})
    with pytest.raises(WeightsError, match="metadata says 12 parameters"):
        load_weights(path)


def test_newer_format_version_is_refused(tmp_path, trained):
    path = tmp_path / "future.safetensors"
    meta = {"model": "micronet", "model_kwargs": {"width": 4}, "format_version": 2}
    save_file(weights._state_tensors(trained), path, metadata={"nucleikit": json.dumps(meta)})
    with pytest.raises(WeightsError, match="format version 2"):
        read_weights_meta(path)


def test_bundled_weights_dir_is_the_package_folder():
    folder = weights.bundled_weights_dir()
    assert folder.parts[-2:] == ("nucleikit", "weights")
    assert folder.is_dir()


def test_resolve_weights(tmp_path, saved, monkeypatch):
    assert resolve_weights(saved) == saved
    assert resolve_weights(str(saved)) == saved
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "micronet_crc.safetensors").write_bytes(saved.read_bytes())
    monkeypatch.setattr(weights, "bundled_weights_dir", lambda: bundled)
    assert resolve_weights("micronet_crc") == bundled / "micronet_crc.safetensors"
    with pytest.raises(WeightsError, match=r"^micronet_xyz: no such file .*\(bundled: micronet_crc\)$"):
        resolve_weights("micronet_xyz")


def test_float16_storage_halves_the_file_and_keeps_outputs(tmp_path):
    import torch

    from nucleikit.models import build_model
    from nucleikit.models.weights import load_weights, save_weights

    torch.manual_seed(0)
    model = build_model("micronet", width=4).eval()
    meta = {"model": "micronet", "model_kwargs": {"width": 4}, "mean": [0.5] * 3, "std": [0.2] * 3}
    p32 = save_weights(tmp_path / "a.safetensors", model, meta)
    p16 = save_weights(tmp_path / "b.safetensors", model, meta, storage="float16")
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    m16, meta16 = load_weights(p16)
    assert meta16["storage"] == "float16"
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x), m16(x), atol=2e-3)


def test_weights_without_input_normalisation_are_refused_at_load(tmp_path, trained):
    bare = {k: v for k, v in META.items() if k not in ("mean", "std")}
    path = save_weights(tmp_path / "m.safetensors", trained, bare)
    assert "mean" not in read_weights_meta(path)  # metadata alone may be read
    with pytest.raises(WeightsError, match="no input normalisation"):
        load_weights(path)


@pytest.mark.parametrize("mean, std", [([0.5, 0.5, 0.5], None), ([0.5, 0.5], [0.2, 0.2, 0.2]),
                                       (["a", 0.5, 0.5], [0.2] * 3), ([0.5] * 3, [0.2, 0.0, 0.2]),
                                       ([0.5] * 3, [0.2, -1, 0.2]), (0.5, 0.2), ([], [])])
def test_malformed_input_normalisation_is_refused(tmp_path, trained, mean, std):
    path = save_weights(tmp_path / "m.safetensors", trained, {**META, "mean": mean, "std": std})
    with pytest.raises(WeightsError, match="mean and std|std must be positive"):
        read_weights_meta(path)


def test_a_converted_state_dict_gets_its_architectures_task(tmp_path, trained):
    path = save_weights(tmp_path / "m.safetensors", trained, META)  # no "task", as the pickle recipe writes
    assert read_weights_meta(path)["task"] == "detection"
    named = save_weights(tmp_path / "n.safetensors", trained, {**META, "task": "segmentation"})
    assert read_weights_meta(named)["task"] == "segmentation"  # the caller's word wins


def test_tensor_fingerprint_follows_the_tensors_not_the_metadata_or_the_path(tmp_path):
    import torch

    from nucleikit.errors import WeightsError
    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights, tensor_fingerprint

    torch.manual_seed(0)
    net = build_model("micronet", width=4)
    meta = {"model": "micronet", "model_kwargs": {"width": 4}, "mpp": 0.5, "mean": [0.5] * 3, "std": [0.2] * 3}
    a = save_weights(tmp_path / "a.safetensors", net, meta)
    b = save_weights(tmp_path / "b.safetensors", net, {**meta, "note": "calibrated later", "mpp": 0.25})
    assert tensor_fingerprint(a) == tensor_fingerprint(b)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] += 1.0
    c = save_weights(tmp_path / "c.safetensors", net, meta)
    assert tensor_fingerprint(c) != tensor_fingerprint(a)
    with pytest.raises(WeightsError):
        tensor_fingerprint(tmp_path / "missing.safetensors")
