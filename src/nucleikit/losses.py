"""Training losses.

* :func:`weighted_mse` — Xing et al. 2019: ``1/2 * sum_i (y_i + lam * ybar) (o_i - y_i)^2``
  normalised by the pixel count, where ``ybar`` is the mean of the target map.
  Background pixels (``y = 0``) keep a small weight ``lam * ybar`` so the
  network is pushed harder to get the nuclei right than the empty glass.
* :func:`mse` — plain mean squared error (Alom et al.'s UD-Net).
* :func:`dice_bce` — soft Dice loss plus binary cross-entropy for foreground
  segmentation (U-Net, R2U-Net).
* :func:`cross_entropy` — class-weighted cross-entropy of patch classifiers
  (DenseNet, DCRN), with :func:`class_weights` against class imbalance.

Dense tensors are (B, K, H, W); reductions are over all pixels of the batch.
Classification logits are (B, K) and targets (B,) class indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "weighted_mse",
    "mse",
    "cross_entropy",
    "class_weights",
    "soft_dice_loss",
    "bce",
    "dice_bce",
    "get_loss",
    "LOSSES",
]


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


def class_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Inverse-frequency class weights, normalised to a mean of 1.

    ``w_k = (1 / n_k) / mean_j(1 / n_j)`` over the classes present
    (``n_j > 0``), so a class half as frequent as another weighs twice as
    much, and balanced counts give all ones. Used with :func:`cross_entropy`,
    every class then contributes the same total weight to the loss
    (``n_k * w_k`` is the same for all present classes).

    Parameters
    ----------
    counts : (K,) array_like of int
        Training examples per class (e.g. ``np.bincount(labels, minlength=K)``).

    Returns
    -------
    (K,) float64 ndarray
        Weights; a class with no example gets 0 (it never occurs as a target,
        so its weight does not matter) and is left out of the mean.

    Raises
    ------
    ValueError
        ``counts`` is not 1-D, has a negative or non-finite entry, or is all
        zeros.

    Examples
    --------
    >>> class_weights([10, 30, 0, 60]).round(4).tolist()
    [2.0, 0.6667, 0.0, 0.3333]
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {n.shape}")
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"counts must be finite and non-negative, got {n.tolist()}")
    present = n > 0
    if not present.any():
        raise ValueError("counts are all zero: no class to weight")
    weights = np.zeros_like(n)
    # min/n rather than 1/n: the same ratios, and exactly 1.0 for equal counts.
    weights[present] = n[present].min() / n[present]
    return weights / weights[present].mean()


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | Sequence[float] | np.ndarray | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Softmax cross-entropy of class logits, optionally class-weighted and label-smoothed.

    Parameters
    ----------
    logits : (B, K) float tensor
        Unnormalised class scores (the classifiers' ``forward``).
    target : (B,) integer tensor
        Class indices in 0..K-1.
    weight : (K,) tensor or array_like, optional
        Per-class weights (:func:`class_weights`).
    label_smoothing : float in [0, 1)
        The target of patch i is ``(1 - e) * onehot(y_i) + e / K`` (Szegedy et al. 2016), as
        :func:`torch.nn.functional.cross_entropy` defines it (with ``weight``, each class's term
        is weighted by its class weight); 0 is the plain loss.

    Returns
    -------
    Scalar tensor: ``sum_i w[y_i] * l_i / sum_i w[y_i]`` with
    ``l_i = -log softmax(logits_i)[y_i]`` (the plain mean without ``weight``),
    as :func:`torch.nn.functional.cross_entropy` defines it.
    """
    if logits.ndim != 2 or target.ndim != 1 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"logits must be (B, K) and target (B,), got {tuple(logits.shape)} and {tuple(target.shape)}")
    if weight is not None:
        weight = torch.as_tensor(np.asarray(weight) if not isinstance(weight, torch.Tensor) else weight)
        weight = weight.to(device=logits.device, dtype=logits.dtype)
        if weight.shape != (logits.shape[1],):
            raise ValueError(f"weight must have shape ({logits.shape[1]},), got {tuple(weight.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if label_smoothing:
        return F.cross_entropy(logits, target.long(), weight=weight, label_smoothing=float(label_smoothing))
    return F.cross_entropy(logits, target.long(), weight=weight)


def soft_dice_loss(output: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """``1 - (2 sum(o y) + eps) / (sum(o) + sum(y) + eps)`` per sample, averaged.

    ``output`` are probabilities (B, K, H, W); ``eps`` keeps an empty target
    with an empty prediction at loss 0.
    """
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    dims = tuple(range(1, output.ndim))
    inter = (output * target).sum(dims)
    total = output.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


def bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of probabilities (sigmoid outputs), mean over pixels."""
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    # clamp: a saturated sigmoid in bf16 can reach exactly 0 or 1
    return F.binary_cross_entropy(output.clamp(1e-6, 1 - 1e-6), target)


def dice_bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss plus binary cross-entropy (segmentation, Alom et al.)."""
    return soft_dice_loss(output, target) + bce(output, target)


def instance_loss(output: torch.Tensor, target: torch.Tensor, *, distance_weight: float = 5.0) -> torch.Tensor:
    """Loss of an instance-aware head: (B, 3, H, W) probabilities against :func:`~nucleikit.targets.instance_targets`.

    Dice + BCE on the foreground (channel 0) and on the boundary (channel 1:
    thin, so the Dice term keeps it from collapsing to 0), plus
    ``distance_weight`` times the MSE of the normalised distance (channel 2).
    """
    if output.shape != target.shape or output.ndim != 4 or output.shape[1] != 3:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must both be (B, 3, H, W)")
    fg = dice_bce(output[:, 0:1], target[:, 0:1])
    boundary = dice_bce(output[:, 1:2], target[:, 1:2])
    distance = F.mse_loss(output[:, 2:3], target[:, 2:3])
    return fg + boundary + distance_weight * distance


LOSSES = {
    "weighted_mse": weighted_mse,
    "mse": mse,
    "cross_entropy": cross_entropy,
    "dice": soft_dice_loss,
    "bce": bce,
    "dice_bce": dice_bce,
    "instance": instance_loss,
}


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
