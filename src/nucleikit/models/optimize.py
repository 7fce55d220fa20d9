"""Inference-time rewrites of a trained network that keep its outputs.

:func:`fold_batchnorm` merges every ``Conv2d`` directly followed by a
``BatchNorm2d`` inside an ``nn.Sequential`` into one convolution (eval-mode
batch norm is an affine map per channel), removing a memory-bound pass over
each feature map. In a post-order :class:`~nucleikit.models.blocks.RecurrentConv`
the batch norm acts on ``w_f*x + w_r*h``; being affine, it folds into both
kernels (its shift goes into the feed-forward convolution's bias, which the
forward pass computes once). Other batch norms are left alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .blocks import RecurrentConv

__all__ = ["fold_batchnorm"]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with Conv2d→BatchNorm2d pairs folded.

    Parameters
    ----------
    model : nn.Module
        A trained network; it is not modified.

    Returns
    -------
    nn.Module
        Same outputs as ``model.eval()`` (to float rounding), fewer layers.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    for module in folded.modules():
        if isinstance(module, RecurrentConv) and module.order == "post" and isinstance(module.bn, nn.BatchNorm2d):
            _fold_recurrent(module)
    return folded


def _fold_recurrent(rc: RecurrentConv) -> None:
    bn = rc.bn
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    with torch.no_grad():
        conv_f = nn.Conv2d(rc.conv_f.in_channels, rc.conv_f.out_channels, rc.conv_f.kernel_size,
                           padding=rc.conv_f.padding, bias=True)
        conv_f.weight.copy_(rc.conv_f.weight * scale[:, None, None, None])
        conv_f.bias.copy_(shift)
        rc.conv_r.weight.mul_(scale[:, None, None, None])
    rc.conv_f = conv_f
    rc.bn = nn.Identity()
