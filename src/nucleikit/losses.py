"""Training losses.

* :func:`weighted_mse` — Xing et al. 2019: ``1/2 * sum_i (y_i + lam * ybar) (o_i - y_i)^2``
  normalised by the pixel count, where ``ybar`` is the mean of the target map.
  Background pixels (``y = 0``) keep a small weight ``lam * ybar`` so the
  network is pushed harder to get the nuclei right than the empty glass.
* :func:`mse` — plain mean squared error (Alom et al.'s UD-Net).

Tensors are (B, K, H, W); reductions are over all pixels of the batch.
"""

from __future__ import annotations

import torch

__all__ = ["weighted_mse", "mse", "get_loss", "LOSSES"]


def weighted_mse(output: torch.Tensor, target: torch.Tensor, *, lam: float = 5.0) -> torch.Tensor:
    """Xing et al.'s weighted mean squared error.

    Parameters
    ----------
    output, target : (B, K, H, W) tensor
        Prediction and proximity-map target in [0, 1].
    lam : float
        Weight of background pixels relative to the mean target value
        (lambda in the paper; 5 by default, 0 ignores the background).

    Returns
    -------
    Scalar tensor: ``0.5 * mean((target + lam * ybar) * (output - target) ** 2)``
    with ``ybar`` the mean of each target map (per sample and channel).
    """
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    ybar = target.mean(dim=(-2, -1), keepdim=True)
    weight = target + lam * ybar
    return 0.5 * (weight * (output - target) ** 2).mean()


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error over all pixels."""
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    return ((output - target) ** 2).mean()


LOSSES = {"weighted_mse": weighted_mse, "mse": mse}


def get_loss(name: str, **kwargs):
    """Loss function by registry name, with keyword arguments bound.

    ``get_loss("weighted_mse", lam=0.5)(output, target)``.
    """
    from .errors import ConfigError

    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    fn = LOSSES[name]
    if not kwargs:
        return fn
    return lambda output, target: fn(output, target, **kwargs)
