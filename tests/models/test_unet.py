"""Tests of nucleikit.models.unet (U-Net, R2U-Net, UD-Net)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nucleikit.errors import ConfigError
from nucleikit.models.blocks import RecurrentConv, RecurrentResidualBlock
from nucleikit.models.unet import EncoderDecoder, R2UNet, UNet, r2unet, udnet, unet, unet_regressor


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_one_skeleton_two_block_types():
    plain, recurrent = unet(), r2unet()
    assert type(plain).__mro__[1] is EncoderDecoder and type(recurrent).__mro__[1] is EncoderDecoder
    assert not any(isinstance(m, RecurrentConv) for m in plain.modules())
    assert all(isinstance(level, RecurrentResidualBlock) for level in [*recurrent.encoder, *recurrent.decoder])
    assert sum(isinstance(m, nn.MaxPool2d) for m in plain.modules()) == 1 and len(plain.encoder) == 5


def test_odd_size_75_pools_to_37_and_comes_back():
    model = UNet(widths=(4, 8, 16, 32, 64)).eval()
    sizes = []
    hooks = [level.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for level in model.encoder]
    with torch.no_grad():
        y = model(torch.rand(1, 3, 75, 75))
    for hook in hooks:
        hook.remove()
    assert sizes == [75, 37, 18, 9, 4]
    assert y.shape == (1, 1, 75, 75)


@pytest.mark.parametrize("builder", [unet, r2unet, udnet, unet_regressor])
def test_odd_shapes_and_unit_interval(builder):
    model = builder().eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 75, 61) * 3)
    assert y.shape == (2, 1, 75, 61)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_parameter_counts_near_alom_2022():
    assert _n(unet()) == 985_573
    assert _n(unet_regressor()) == 985_573
    assert _n(r2unet()) == 974_753
    assert _n(udnet()) == 1_048_777


def test_recurrence_changes_computation_not_parameters():
    assert _n(r2unet(t=2)) == _n(r2unet(t=3)) == _n(r2unet(t=5))
    assert {m.t for m in udnet().modules() if isinstance(m, RecurrentConv)} == {3}
    assert {m.t for m in r2unet().modules() if isinstance(m, RecurrentConv)} == {2}


def test_output_activations_share_the_logits():
    torch.manual_seed(1)
    linear = UNet(widths=(4, 8, 16), out_channels=3, out_activation="linear").eval()
    sigmoid = UNet(widths=(4, 8, 16), out_channels=3, out_activation="sigmoid").eval()
    softmax = UNet(widths=(4, 8, 16), out_channels=3, out_activation="softmax").eval()
    sigmoid.load_state_dict(linear.state_dict())
    softmax.load_state_dict(linear.state_dict())
    x = torch.rand(1, 3, 17, 19)
    with torch.no_grad():
        logits = linear(x)
        assert torch.allclose(sigmoid(x), torch.sigmoid(logits))
        assert torch.allclose(softmax(x), torch.softmax(logits, dim=1))
        assert torch.allclose(softmax(x).sum(dim=1), torch.ones(1, 17, 19))


def test_udnet_has_one_channel_and_optional_linear_head():
    assert udnet().head.out_channels == 1
    assert udnet(out_activation="linear").out_activation == "linear"


def test_validation():
    with pytest.raises(ConfigError, match="widths"):
        UNet(widths=(8,))
    with pytest.raises(ConfigError, match="out_activation"):
        R2UNet(out_activation="tanh")
    with pytest.raises(ValueError, match="minimum 16x16"):
        unet()(torch.rand(1, 3, 15, 40))


@pytest.mark.parametrize("name", ["r2unet", "r2unet_instance", "udnet", "dcrn"])
def test_step_norm_networks_save_and_load_with_their_flag(name, tmp_path):
    from nucleikit.models import build_model
    from nucleikit.models.weights import load_weights, save_weights

    model = build_model(name, step_norm=True)
    layers = [m for m in model.modules() if isinstance(m, RecurrentConv)]
    assert layers and all(m.step_norm for m in layers)
    assert not any(m.step_norm for m in build_model(name).modules() if isinstance(m, RecurrentConv))
    path = save_weights(tmp_path / "w.safetensors", model, {"model": name, "model_kwargs": {"step_norm": True},
                                                             "mean": [0.5] * 3, "std": [0.2] * 3})
    loaded, meta = load_weights(path)
    assert meta["model_kwargs"]["step_norm"] is True
    assert all(m.step_norm for m in loaded.modules() if isinstance(m, RecurrentConv))
