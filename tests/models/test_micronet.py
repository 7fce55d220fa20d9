"""Tests of nucleikit.models.micronet and block freezing."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch import nn

from nucleikit.errors import ConfigError
from nucleikit.models.blocks import freeze_blocks
from nucleikit.models.micronet import MICRONET_NUM_PARAMS, MicroNet
from nucleikit.models.optimize import fold_batchnorm
from nucleikit.models.unet import UNet
from nucleikit.models.weights import bundled_weights_dir, read_weights_meta


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _block_output_shapes(model: MicroNet, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for b in model.blocks]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def test_ten_blocks_with_the_paper_widths_on_an_odd_size():
    model = MicroNet().eval()
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 10
    shapes = _block_output_shapes(model, torch.rand(1, 3, 75, 61))
    assert shapes == [
        (1, 16, 75, 61),  # 1 input transition
        (1, 32, 38, 31),  # 2-5 down, stride-2 convs round up
        (1, 64, 19, 16),
        (1, 128, 10, 8),
        (1, 128, 5, 4),
        (1, 128, 10, 8),  # 6-9 up, each the size of its skip
        (1, 64, 19, 16),
        (1, 32, 38, 31),
        (1, 16, 75, 61),
        (1, 1, 75, 61),  # 10 output transition (logits)
    ]


def test_output_in_unit_interval_on_a_200_crop():
    model = MicroNet(out_channels=2).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 200, 200) * 3)
    assert y.shape == (2, 2, 200, 200)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_parameter_counts():
    assert _n(MicroNet()) == MICRONET_NUM_PARAMS == 2_351_393
    assert _n(MicroNet(width=32)) == 9_396_289
    assert _n(MicroNet(in_channels=1)) == MICRONET_NUM_PARAMS - 2 * 9 * 16


def test_multi_context_aggregation_upsamples_down_blocks_3_to_5():
    head = MicroNet().blocks[9]
    strides = [branch[0].stride for branch in head.contexts]
    in_channels = [branch[0].in_channels for branch in head.contexts]
    assert strides == [(4, 4), (8, 8), (16, 16)]
    assert in_channels == [64, 128, 128]
    assert head.fuse[0].in_channels == 4 * 16  # last up block + three contexts
    assert head.head.kernel_size == (1, 1)


def test_dropout_only_after_the_last_two_down_blocks():
    model = MicroNet(dropout=0.5)
    found = {i + 1: [m.p for m in b.modules() if isinstance(m, nn.Dropout)] for i, b in enumerate(model.blocks)}
    assert {k: v for k, v in found.items() if v} == {4: [0.5], 5: [0.5]}
    assert not any(isinstance(m, nn.Dropout) for m in MicroNet(dropout=0.0).modules())


def test_all_activations_are_elu():
    acts = {type(m) for m in MicroNet().modules() if isinstance(m, (nn.ELU, nn.ReLU, nn.LeakyReLU))}
    assert acts == {nn.ELU}


def test_constructor_is_keyword_only_and_validates():
    with pytest.raises(TypeError):
        MicroNet(3)  # type: ignore[misc]
    with pytest.raises(ConfigError, match="width"):
        MicroNet(width=0)
    with pytest.raises(ConfigError, match="dropout"):
        MicroNet(dropout=1.0)


# memory-lean inference -----------------------------------------------------------


def _forward_spying_on_cat(model: nn.Module, x: torch.Tensor, monkeypatch) -> tuple[torch.Tensor, set]:
    """``model(x)`` and the spatial sizes of the maps ``torch.cat`` made on the way."""
    sizes: set = set()
    cat = torch.cat

    def spy(tensors, dim=0):
        out = cat(tensors, dim)
        sizes.add(tuple(out.shape[-2:]))
        return out

    with monkeypatch.context() as patch:
        patch.setattr(torch, "cat", spy)
        return model(x), sizes


@pytest.mark.parametrize("width,out_channels", [(8, 1), (16, 2)])
@pytest.mark.parametrize("folded", [False, True], ids=["bn", "folded"])
@pytest.mark.parametrize("no_autograd", [torch.inference_mode, torch.no_grad], ids=["inference_mode", "no_grad"])
def test_inference_without_autograd_equals_the_standard_forward(randomise_bn, monkeypatch, width, out_channels,
                                                                folded, no_autograd):
    model = MicroNet(width=width, out_channels=out_channels)
    randomise_bn(model)
    model.eval()
    if folded:  # as the predictor runs it
        model = fold_batchnorm(model).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 37, 50) * 2
    standard, standard_cats = _forward_spying_on_cat(model, x, monkeypatch)  # eval, autograd on
    with no_autograd():
        lean, lean_cats = _forward_spying_on_cat(model, x, monkeypatch)
    assert lean.shape == standard.shape == (2, out_channels, 37, 50)
    assert float((lean - standard.detach()).abs().max()) <= 1e-5
    # the lean route never concatenates at full resolution (blocks 9 and 10)
    assert (37, 50) in standard_cats and (37, 50) not in lean_cats


def test_training_forward_takes_the_standard_route_and_stays_differentiable(randomise_bn, monkeypatch):
    model = MicroNet(width=8, dropout=0.0)
    randomise_bn(model)
    model.train()
    x = torch.randn(2, 3, 37, 50)
    with torch.no_grad():  # training mode: batch statistics and the standard route, even without autograd
        quiet, quiet_cats = _forward_spying_on_cat(model, x, monkeypatch)
    y, cats = _forward_spying_on_cat(model, x, monkeypatch)
    assert (37, 50) in quiet_cats and (37, 50) in cats
    assert torch.equal(quiet, y.detach())
    y.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_autocast_keeps_the_standard_route(monkeypatch):
    model = MicroNet(width=8).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        _, cats = _forward_spying_on_cat(model, torch.randn(1, 3, 37, 50), monkeypatch)
    assert (37, 50) in cats  # the route the weights' bf16 verdicts were measured on


def test_state_dict_keys_are_those_of_the_bundled_weights():
    path = bundled_weights_dir() / "micronet.safetensors"
    with safe_open(path, framework="pt") as handle:
        stored = set(handle.keys())
    assert set(MicroNet(**read_weights_meta(path).model_kwargs).state_dict()) == stored


# freeze_blocks -------------------------------------------------------------------


def _bn_stats(block: nn.Module) -> list[torch.Tensor]:
    return [b.running_mean.clone() for b in block.modules() if isinstance(b, nn.BatchNorm2d)]


@pytest.mark.parametrize("k", [3, 7])
def test_freeze_blocks_freezes_exactly_the_first_k(k):
    model = MicroNet(width=4)
    assert freeze_blocks(model, k) is model
    for index, block in enumerate(model.blocks):
        assert all(p.requires_grad == (index >= k) for p in block.parameters()), index

    params_before = [[p.detach().clone() for p in b.parameters()] for b in model.blocks]
    stats_before = [_bn_stats(b) for b in model.blocks]
    model.train()  # must not wake the frozen blocks up
    assert [b.training for b in model.blocks] == [False] * k + [True] * (10 - k)

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.rand(2, 3, 32, 32)).mean()
    loss.backward()
    optimizer.step()

    for index, block in enumerate(model.blocks):
        same_params = all(torch.equal(a, b) for a, b in zip(params_before[index], block.parameters()))
        same_stats = all(torch.equal(a, b) for a, b in zip(stats_before[index], _bn_stats(block)))
        if index < k:
            assert same_params and same_stats, f"frozen block {index + 1} changed"
        else:
            assert not same_stats, f"trainable block {index + 1} kept its BN statistics"
    assert all(p.grad is None for b in model.blocks[:k] for p in b.parameters())


def test_freeze_zero_unfreezes_everything():
    model = freeze_blocks(MicroNet(width=4), 10)
    assert not any(p.requires_grad for p in model.parameters())
    freeze_blocks(model, 0)
    model.train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(b.training for b in model.blocks)


def test_freeze_keeps_eval_mode_of_an_eval_model():
    model = MicroNet(width=4).eval()
    freeze_blocks(model, 2)
    assert not model.training and not any(b.training for b in model.blocks)


def test_freeze_blocks_rejects_bad_k_and_models_without_blocks():
    with pytest.raises(ConfigError, match="0..10"):
        freeze_blocks(MicroNet(width=4), 11)
    with pytest.raises(ConfigError, match="no numbered blocks"):
        freeze_blocks(UNet(), 1)
