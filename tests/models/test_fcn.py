"""Tests of nucleikit.models.fcn (compact FCN-8s proximity regressor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nucleikit.models as models
from nucleikit.infer.predict import DensePredictor, InferenceConfig
from nucleikit.infer.tiling import measure_halo_grown
from nucleikit.models.blocks import ResidualEncoder, freeze_blocks
from nucleikit.models.fcn import FCN, FCN_NUM_PARAMS, bilinear_kernel


def test_parameter_count_and_spec():
    assert sum(p.numel() for p in FCN().parameters()) == FCN_NUM_PARAMS == 2_405_427
    spec = models.get_spec("fcn")
    assert (spec.task, spec.target, spec.loss, spec.mpp) == ("detection", "proximity", "weighted_mse", 0.55)
    assert spec.alignment_for() == 32 and models.build_model("fcn").alignment == 32


def test_encoder_levels_halve_the_size():
    enc = ResidualEncoder(3, (4, 8, 8))
    feats = enc(torch.rand(2, 3, 32, 24))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 32, 24), (2, 8, 16, 12), (2, 8, 8, 6)]


def test_any_size_output_top_left_aligned():
    model = FCN(width=4).eval()
    x = torch.randn(1, 3, 45, 37)
    with torch.no_grad():
        y = model(x)
        y_padded = model(F.pad(x, (0, 64 - 37, 0, 64 - 45)))  # the padding done inside (to 64 x 64)
    assert y.shape == (1, 1, 45, 37)
    assert torch.allclose(y, y_padded[..., :45, :37], atol=1e-6)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_several_output_maps():
    with torch.no_grad():
        assert FCN(width=4, out_channels=3, in_channels=1).eval()(torch.rand(2, 1, 40, 33)).shape == (2, 3, 40, 33)


def test_bilinear_kernel_upsamples_a_ramp_linearly():
    up = torch.nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(2, 4))
        ramp = torch.arange(6.0).repeat(1, 2, 6, 1)  # (1, 2, 6, 6), value = column
        out = up(ramp)
    # inside the map (away from the zero border), 2x bilinear between pixel centres: 0.25, 0.75, 1.25, ...
    assert torch.allclose(out[0, :, 4, 1:11], (torch.arange(1, 11) / 2 - 0.25).repeat(2, 1))
    assert bilinear_kernel(2, 4)[0, 1].abs().sum() == 0  # channels are not mixed


def test_tiled_equals_untiled_on_the_declared_lattice():
    torch.manual_seed(0)
    model = models.build_model("fcn", width=4)
    image = np.random.default_rng(0).random((150, 130, 3)).astype(np.float32)
    probe = DensePredictor(model, mean=[0.5] * 3, std=[0.25] * 3, halo=0)
    # five stride-2 stages reach past a 256-px probe: grow it, as training does for the saved halo
    halo = measure_halo_grown(probe.forward, in_channels=3, align=32)
    whole = DensePredictor(model, mean=[0.5] * 3, std=[0.25] * 3, halo=halo, config=InferenceConfig(tile=512))
    tiled = DensePredictor(model, mean=[0.5] * 3, std=[0.25] * 3, halo=halo, config=InferenceConfig(tile=64))
    assert np.abs(whole(image) - tiled(image)).max() < 1e-5


def test_blocks_can_be_frozen():
    model = FCN(width=4)
    freeze_blocks(model, 3)
    assert len(model.blocks) == 7
    assert not any(p.requires_grad for b in model.blocks[:3] for p in b.parameters())
    assert all(p.requires_grad for b in model.blocks[3:] for p in b.parameters())


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_width_is_refused(bad):
    from nucleikit.errors import ConfigError

    with pytest.raises(ConfigError, match="width"):
        FCN(width=bad)
