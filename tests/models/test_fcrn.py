"""Tests of nucleikit.models.fcrn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nucleikit.models.fcrn import FCRN_A_NUM_PARAMS, FCRN_B_NUM_PARAMS, fcrn_a, fcrn_b


def _convs(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.out_channels, m.kernel_size[0]) for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_fcrn_a_layer_table():
    model = fcrn_a()
    assert _convs(model) == [(32, 3), (64, 3), (128, 3), (512, 3), (128, 3), (64, 3), (32, 3), (1, 1)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    assert sum(p.numel() for p in model.parameters()) == FCRN_A_NUM_PARAMS == 1_366_785


def test_fcrn_b_layer_table():
    model = fcrn_b()
    assert _convs(model) == [(32, 3), (64, 3), (128, 3), (256, 5), (256, 3), (256, 5), (1, 1)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert sum(p.numel() for p in model.parameters()) == FCRN_B_NUM_PARAMS == 3_142_689


@pytest.mark.parametrize("builder", [fcrn_a, fcrn_b])
def test_any_size_output_top_left_aligned(builder):
    model = builder().eval()
    x = torch.randn(1, 3, 29, 21)
    with torch.no_grad():
        y = model(x)
        # 29x21 is padded with zeros to 32x24 inside; the same padding done
        # by hand must give the same pixels.
        y_padded = model(F.pad(x, (0, 3, 0, 3)))
    assert y.shape == (1, 1, 29, 21)
    assert torch.allclose(y, y_padded[..., :29, :21], atol=1e-6)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
