"""Tests of nucleikit.models.blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nucleikit.errors import ConfigError
from nucleikit.models.blocks import (
    ConvBNAct,
    RecurrentConv,
    RecurrentResidualBlock,
    ResidualBlock,
    make_activation,
    pad_to_match,
)


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# pad_to_match ------------------------------------------------------------


def test_pad_to_match_pooled_odd_size_comes_back_to_75():
    skip = torch.zeros(1, 2, 75, 75)
    pooled = F.max_pool2d(torch.ones(1, 2, 75, 75), 2)
    assert pooled.shape[-1] == 37
    up = F.interpolate(pooled, scale_factor=2)  # 74 x 74 of ones
    out = pad_to_match(up, skip)
    assert out.shape == (1, 2, 75, 75)
    assert torch.equal(out[..., :74, :74], up)  # top-left aligned, values kept
    assert out[..., 74, :].abs().sum() == 0  # new bottom row is zeros
    assert out[..., :, 74].abs().sum() == 0  # new right column is zeros


def test_pad_to_match_crops_bottom_right():
    x = torch.arange(4 * 5, dtype=torch.float32).reshape(1, 1, 4, 5)
    out = pad_to_match(x, torch.zeros(1, 1, 3, 3))
    assert torch.equal(out, x[..., :3, :3])


def test_pad_to_match_pads_one_axis_and_crops_the_other():
    x = torch.ones(1, 1, 2, 4)
    out = pad_to_match(x, torch.zeros(3, 3))
    assert torch.equal(out, torch.tensor([[[[1.0, 1, 1], [1, 1, 1], [0, 0, 0]]]]))


def test_pad_to_match_same_size_is_identity():
    x = torch.rand(1, 1, 5, 5)
    assert pad_to_match(x, torch.zeros(1, 3, 5, 5)) is x


# ConvBNAct, ResidualBlock ---------------------------------------------------


def test_conv_bn_act_stride_two_on_odd_size_gives_ceil_half():
    block = ConvBNAct(3, 4, 3, stride=2, activation="elu")
    assert isinstance(block[2], nn.ELU)
    assert block[0].bias is None  # BN replaces the bias
    assert block(torch.rand(1, 3, 75, 61)).shape == (1, 4, 38, 31)


def test_make_activation_rejects_unknown_name():
    with pytest.raises(ConfigError, match="unknown activation 'swish'"):
        make_activation("swish")


def test_residual_block_identity_shortcut_parameter_count():
    # two 3x3 4->4 convs without bias (2 * 144) + two BN (2 * 8)
    block = ResidualBlock(4, 4)
    assert isinstance(block.shortcut, nn.Identity)
    assert _n(block) == 304


def test_residual_block_projection_shortcut_parameter_count():
    # 3x3 4->8 (288) + 3x3 8->8 (576) + 1x1 4->8 projection (32) + three BN (48)
    block = ResidualBlock(4, 8)
    assert isinstance(block.shortcut[0], nn.Conv2d) and block.shortcut[0].kernel_size == (1, 1)
    assert _n(block) == 944
    assert block(torch.rand(2, 4, 9, 7)).shape == (2, 8, 9, 7)


def test_residual_block_adds_the_shortcut():
    block = ResidualBlock(3, 3, activation="identity").eval()
    with torch.no_grad():
        block.body[1].weight.zero_()  # second conv outputs 0, its BN then outputs the BN bias
        block.body[2].bias.zero_()
    x = torch.randn(1, 3, 5, 5)
    assert torch.allclose(block(x), x)


# RecurrentConv --------------------------------------------------------------


def test_recurrent_conv_parameters_do_not_grow_with_t():
    counts = {t: _n(RecurrentConv(4, 6, t=t)) for t in (0, 1, 2, 5)}
    # w_f 4->6 (216) + w_r 6->6 (324) + one BN (12)
    assert counts == {0: 552, 1: 552, 2: 552, 5: 552}
    assert RecurrentConv(4, 6, t=5).t == 5


def test_recurrent_conv_t1_equals_manual_computation(randomise_bn):
    layer = RecurrentConv(3, 4, t=1).eval()
    randomise_bn(layer)
    x = torch.randn(2, 3, 9, 8)
    bn = layer.bn

    def norm(y):
        return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    feed = F.conv2d(x, layer.conv_f.weight, padding=1)
    h0 = F.relu(norm(feed))
    h1 = F.relu(norm(feed + F.conv2d(h0, layer.conv_r.weight, padding=1)))
    with torch.no_grad():
        assert torch.allclose(layer(x), h1, atol=1e-6)
        # The recurrence really happens: t=1 differs from the feed-forward h(0).
        assert not torch.allclose(h1, h0, atol=1e-3)


def test_recurrent_conv_t2_reuses_the_same_kernels(randomise_bn):
    layer = RecurrentConv(2, 2, t=2, activation="elu").eval()
    randomise_bn(layer)
    x = torch.randn(1, 2, 6, 6)
    bn = layer.bn

    def step(feed, h):
        y = feed if h is None else feed + F.conv2d(h, layer.conv_r.weight, padding=1)
        return F.elu(F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))

    feed = F.conv2d(x, layer.conv_f.weight, padding=1)
    h = step(feed, None)
    h = step(feed, h)
    h = step(feed, h)
    with torch.no_grad():
        assert torch.allclose(layer(x), h, atol=1e-6)


def test_recurrent_conv_rejects_negative_t_and_even_kernel():
    with pytest.raises(ConfigError, match="t must be"):
        RecurrentConv(2, 2, t=-1)
    with pytest.raises(ConfigError, match="odd"):
        RecurrentConv(2, 2, kernel_size=4)


def test_recurrent_conv_kernel_size_is_configurable():
    layer = RecurrentConv(2, 3, t=2, kernel_size=5)
    assert layer.conv_f.kernel_size == (5, 5) and layer.conv_r.kernel_size == (5, 5)
    assert layer(torch.rand(1, 2, 7, 7)).shape == (1, 3, 7, 7)


def test_step_norm_gives_each_step_its_own_batchnorm():
    post, pre = RecurrentConv(4, 6, t=2, step_norm=True), RecurrentConv(4, 6, t=2, order="pre", step_norm=True)
    assert post.bn is None and len(post.bns) == 3 and len(pre.bns) == 2
    # the shared layer's 552 parameters plus 12 per extra BatchNorm
    assert _n(post) == 552 + 2 * 12 and _n(pre) == 552 + 12
    assert "step_norm=True" in repr(post)
    block = RecurrentResidualBlock(3, 4, t=3, step_norm=True)
    assert all(rc.step_norm and len(rc.bns) == 4 for rc in block.body)


@pytest.mark.parametrize("order", ["post", "pre"])
def test_step_norm_trains_like_the_shared_layer_but_evaluates_as_trained(order):
    torch.manual_seed(0)
    shared = RecurrentConv(3, 5, t=2, order=order)
    per_step = RecurrentConv(3, 5, t=2, order=order, step_norm=True)
    per_step.conv_f.load_state_dict(shared.conv_f.state_dict())
    per_step.conv_r.load_state_dict(shared.conv_r.state_dict())
    x = torch.randn(64, 3, 12, 12)
    with torch.no_grad():
        # training mode normalises by batch statistics: the two layers compute the same thing
        assert torch.allclose(shared.train()(x), per_step.train()(x), atol=1e-5)
        # running statistics of exactly this batch (cumulative average of repeated passes)
        for layer in (shared, per_step):
            for bn in [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)]:
                bn.momentum = None
                bn.reset_running_stats()
            for _ in range(3):
                layer(x)
        trained = per_step(x)
        # evaluated with its own steps' statistics, the per-step layer is the trained one ...
        assert torch.allclose(per_step.eval()(x), trained, atol=2e-2)
        # ... while one BatchNorm holding the average over the steps is not
        gap = (shared.eval()(x) - shared.train()(x)).abs().max()
        assert gap > 0.2
        assert (per_step.eval()(x) - trained).abs().max() < gap / 10


# RecurrentResidualBlock -----------------------------------------------------


def test_recurrent_residual_block_parameter_count_and_t():
    block = RecurrentResidualBlock(3, 4, t=3)
    # 1x1 3->4 with bias (16) + two RecurrentConv 4->4 (2 * (144 + 144 + 8))
    assert _n(block) == 608
    assert block.t == 3 and [m.t for m in block.body] == [3, 3]
    assert _n(RecurrentResidualBlock(3, 4, t=1)) == 608


def test_recurrent_residual_block_adds_the_projection():
    block = RecurrentResidualBlock(3, 4, t=2).eval()
    with torch.no_grad():
        for rc in block.body:  # make both recurrent convs output act(0) = 0
            rc.bn.weight.zero_()
            rc.bn.bias.zero_()
    x = torch.randn(1, 3, 5, 6)
    with torch.no_grad():
        assert torch.allclose(block(x), block.project(x))
