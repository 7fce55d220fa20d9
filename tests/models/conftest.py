"""Fixtures shared by the model tests."""

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run faster on one thread; the seed makes weights reproducible."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def randomise_bn():
    """Give every BatchNorm of a module non-trivial affine parameters and running statistics."""

    def apply(module: nn.Module) -> None:
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                with torch.no_grad():
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.uniform_(-0.5, 0.5)
                    bn.running_mean.uniform_(-0.2, 0.2)
                    bn.running_var.uniform_(0.5, 2.0)

    return apply
