"""Tests of nucleikit.models.densenet (DenseNet, DCRN) and the pre-activation recurrent conv."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nucleikit.models as models
from nucleikit.errors import ConfigError
from nucleikit.models import densenet as dn
from nucleikit.models.blocks import RecurrentConv, freeze_blocks

TINY = {"growth": 2, "stem_width": 4, "compression": 0.5, "layers": (2, 2), "n_classes": 3}


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _bn(bn: nn.BatchNorm2d, y: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


# parameter counts -----------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), [("densenet", 1_220_466), ("dcrn", 1_220_925)])
def test_default_parameter_counts_match_docstrings(name, count):
    model = models.build_model(name)
    assert _n(model) == count
    builder_doc = inspect.getdoc(models.get_spec(name).builder)
    assert int(re.search(r"([\d,]+) parameters", builder_doc).group(1).replace(",", "")) == count
    # the module docstring's table states the same number
    assert re.search(rf"^{name}\s+.*\s{count:,}$", dn.__doc__, re.M)
    assert {"densenet": dn.DENSENET_NUM_PARAMS, "dcrn": dn.DCRN_NUM_PARAMS}[name] == count


def test_tiny_parameter_count_by_hand():
    # stem 3x3 3->4: 108. Each dense block (in 4, growth 2, 2 layers):
    # layer 1 BN(4) 8 + conv 4->2 72, layer 2 BN(6) 12 + conv 6->2 108 -> 200.
    # Transition 8 -> 4: BN 16 + 1x1 conv 32. Final BN(8) 16, linear 8->3 27.
    assert _n(dn.DenseNet(**TINY)) == 108 + 200 + 48 + 200 + 16 + 27
    # DCRN adds, per layer, w_r 2->2 (36) and the recurrence's BN(2) (4).
    assert _n(dn.DCRN(**TINY)) == 599 + 4 * 40


def test_dcrn_shares_recurrent_weights_over_t():
    counts = {t: _n(dn.DCRN(**TINY, t=t)) for t in (1, 2, 3)}
    assert counts == {1: 759, 2: 759, 3: 759}
    two, three = dn.DCRN(**TINY, t=2), dn.DCRN(**TINY, t=3)
    assert two.state_dict().keys() == three.state_dict().keys()
    three.load_state_dict(two.state_dict())  # same tensors, only the unrolling differs
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(two.eval()(x), three.eval()(x), atol=1e-4)
    layers = [m for m in models.build_model("dcrn").modules() if isinstance(m, RecurrentConv)]
    assert len(layers) == 28 and {(m.t, m.order) for m in layers} == {(2, "pre")}


# forward, features --------------------------------------------------------------


@pytest.mark.parametrize(("name", "width"), [("densenet", 320), ("dcrn", 296)])
def test_shapes_logits_and_features(name, width):
    model = models.build_model(name).eval()
    assert model.feature_dim == width
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        assert logits.shape == (2, 4) and feats.shape == (2, width)
        # logits, not probabilities: the linear classifier applied to the features
        assert torch.allclose(logits, feats @ model.blocks[-1].weight.T + model.blocks[-1].bias, atol=1e-5)
        assert not torch.allclose(logits.sum(1), torch.ones(2))
        assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4)
        assert model(torch.randn(1, 3, 17, 23)).shape == (1, 4)


def test_features_are_the_pooled_last_block(randomise_bn):
    model = dn.DenseNet(**TINY).eval()
    randomise_bn(model)
    x = torch.randn(2, 3, 9, 10)
    with torch.no_grad():
        y = x
        for stage in model.blocks[:-1]:
            y = stage(y)
        assert y.shape == (2, 8, 4, 5)  # one transition: 9x10 -> 4x5
        assert float(y.min()) >= 0.0  # ends in BN-ReLU
        assert torch.allclose(model.features(x), y.mean(dim=(2, 3)))


def test_input_smaller_than_the_poolings_is_refused():
    model = models.build_model("densenet").eval()  # 3 poolings: at least 8x8
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4)
    with pytest.raises(ValueError, match="smaller than the minimum 8x8"):
        model(torch.randn(1, 3, 7, 32))


def test_dcrn_with_t0_computes_the_densenet(randomise_bn):
    dense = dn.DenseNet(**TINY).eval()
    rec = dn.DCRN(**TINY, t=0).eval()
    randomise_bn(dense)
    # Map DenseNet's tensors onto DCRN's: each 3x3 conv is DCRN's feed-forward kernel.
    state = {k.replace(".conv.weight", ".conv.conv_f.weight"): v for k, v in dense.state_dict().items()}
    missing = rec.load_state_dict(state, strict=False).missing_keys
    assert missing and all(".conv.conv_r." in k or ".conv.bn." in k for k in missing)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(rec(x), dense(x), atol=1e-6)


def test_dcrn_layer_t1_equals_manual_computation(randomise_bn):
    model = dn.DCRN(**TINY, t=1).eval()
    randomise_bn(model)
    layer = model.blocks[1][0][1]  # stage 1, dense block, second layer (6 -> 2 channels)
    rc = layer.conv
    x = torch.randn(2, 6, 7, 5)
    a = F.relu(_bn(layer.norm, x))
    feed = F.conv2d(a, rc.conv_f.weight, padding=1)
    h1 = feed + F.conv2d(F.relu(_bn(rc.bn, feed)), rc.conv_r.weight, padding=1)
    with torch.no_grad():
        out = layer(x)
        assert out.shape == (2, 8, 7, 5)
        assert torch.equal(out[:, :6], x)  # dense connectivity: the input is passed on
        assert torch.allclose(out[:, 6:], h1, atol=1e-6)
        assert not torch.allclose(h1, feed, atol=1e-3)  # the recurrence contributes


def test_recurrent_conv_pre_order_t2_and_bad_order(randomise_bn):
    rc = RecurrentConv(2, 3, t=2, order="pre").eval()
    randomise_bn(rc)
    x = torch.randn(1, 2, 6, 6)
    feed = F.conv2d(x, rc.conv_f.weight, padding=1)
    h = feed
    for _ in range(2):
        h = feed + F.conv2d(F.relu(_bn(rc.bn, h)), rc.conv_r.weight, padding=1)
    with torch.no_grad():
        assert torch.allclose(rc(x), h, atol=1e-6)
    assert "order='pre'" in repr(rc) and "order" not in repr(RecurrentConv(2, 3))
    with pytest.raises(ConfigError, match="order must be 'post' or 'pre'"):
        RecurrentConv(2, 2, order="mid")


# registry, freezing, bad configurations --------------------------------------------


@pytest.mark.parametrize("name", ["densenet", "dcrn"])
def test_registered_as_classifiers_with_alom_recipe(name):
    spec = models.get_spec(name)
    assert (spec.task, spec.target, spec.loss, spec.mpp) == ("classification", "label", "cross_entropy", 0.55)
    assert dict(spec.train) == {
        "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 32, "patch": 32
    }
    assert models.list_models(task="classification") == ["dcrn", "densenet"]


def test_freeze_blocks_numbers_stem_stages_and_classifier():
    model = dn.DCRN(**TINY)
    assert len(model.blocks) == 4  # stem, 2 stages, classifier
    freeze_blocks(model, 2)
    assert not any(p.requires_grad for b in model.blocks[:2] for p in b.parameters())
    assert all(p.requires_grad for b in model.blocks[2:] for p in b.parameters())


def test_bad_configurations_are_config_errors():
    with pytest.raises(ConfigError, match="compression must be in"):
        dn.DenseNet(compression=0)
    with pytest.raises(ConfigError, match="layers must name"):
        dn.DenseNet(layers=())
    with pytest.raises(ConfigError, match="growth must be a positive integer"):
        models.build_model("dcrn", growth=0)
