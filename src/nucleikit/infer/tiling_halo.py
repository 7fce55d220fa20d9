"""The halo a network needs: its receptive-field radius, measured with an impulse.

Condition 2 of "tiled equals untiled" (:mod:`nucleikit.infer.tiling`) asks every read
window to hold at least the network's receptive-field radius of context around its core.
:func:`measure_halo` measures that radius by adding 1 at one pixel of a random probe image
and seeing how far the output changes (as StarDist's ``_compute_receptive_field``), at every
phase of the network's pooling lattice; :func:`measure_halo_grown` grows the probe until the
field fits in it (trained networks can reach much further than untrained ones). Radii are in
input pixels. Both are re-exported by :mod:`nucleikit.infer.tiling`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from .tiling_grid import Forward, _as_int, _round_up

__all__ = ["measure_halo", "measure_halo_grown"]


def measure_halo(
    forward: Forward,
    *,
    in_channels: int = 3,
    size: int = 256,
    tol: float = 1e-3,
    align: int,
    multiple: int = 16,
    batch_size: int = 4,
    seed: int = 0,
) -> int:
    """Receptive-field radius of ``forward``, measured with an impulse.

    A random input (seeded, uniform in [0, 1)) is run once as is and once with 1 added at a
    single pixel (all channels). The radius is the largest Chebyshev distance from that pixel
    to an output pixel whose change, the maximum over output channels, exceeds ``tol`` times
    the largest change. Because a network that downsamples by ``align`` reaches further from
    some positions in its pooling cells than from others, the impulse is tried at all
    ``align`` phases (``align + 1`` forward passes in all) and the largest radius is kept.

    Parameters
    ----------
    forward : callable
        ``(B, C, size, size) float32 -> (B, K, size, size)``, deterministic (eval mode).
    in_channels : int
        C of the network input.
    size : int
        Side of the probe image; a multiple of ``align``, larger than twice the radius.
    tol : float
        Relative change below which an output pixel counts as unaffected.
    align : int
        Total downsampling factor of the network.
    multiple : int
        The radius is rounded up to a multiple of this (16 by default; 1 returns it as is).
    batch_size : int
        Probe images per ``forward`` call.
    seed : int
        Seed of the random base image.

    Returns
    -------
    int
        The radius in input pixels rounded up to ``multiple``; 0 for a pixel-wise network.

    Warns
    -----
    UserWarning
        When the affected region reaches the probe's border: the network has global context
        (attention, global pooling, fully connected layers) or a receptive field wider than
        ``size / 2``. The result is then about ``size / 2`` and tiled output cannot equal the
        untiled pass exactly; use a larger ``size`` or tiles covering the whole image.
    """
    in_channels = _as_int(in_channels, "in_channels", minimum=1)
    align = _as_int(align, "align", minimum=1)
    multiple = _as_int(multiple, "multiple", minimum=1)
    size = _as_int(size, "size", minimum=2 * align)
    if size % align:
        raise ValueError(f"size ({size}) must be a multiple of align ({align})")
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    centre = (size // 2) // align * align  # phase 0 of the pooling lattice
    base = np.random.default_rng(seed).random((in_channels, size, size), dtype=np.float32)

    def probe(phases: list[int]) -> np.ndarray:
        x = np.repeat(base[None], len(phases), axis=0)
        for b, p in enumerate(phases):
            if p >= 0:
                x[b, :, centre + p, centre + p] += 1.0
        return np.asarray(forward(x), dtype=np.float64)

    phases = [-1] + list(range(align))  # -1: the unperturbed reference
    outputs = [probe(phases[k : k + batch_size]) for k in range(0, len(phases), batch_size)]
    y = np.concatenate(outputs)
    if y.ndim != 4 or y.shape[0] != len(phases) or y.shape[2:] != (size, size):
        raise ValueError(f"forward must keep the spatial size {size} x {size}; got output {y.shape}")
    radius, touched_border, changed = 0, False, False
    for k, p in enumerate(phases[1:], start=1):
        diff = np.abs(y[k] - y[0]).max(axis=0)
        peak = diff.max()
        if peak == 0:
            continue
        changed = True
        ys, xs = np.nonzero(diff > tol * peak)
        q = centre + p
        radius = max(radius, int(np.abs(ys - q).max()), int(np.abs(xs - q).max()))
        touched_border |= bool(ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or xs.max() == size - 1)
    if not changed:
        raise ValueError("forward's output does not depend on its input; cannot measure a receptive field")
    if touched_border:
        warnings.warn(
            f"the receptive field reaches the border of the {size} x {size} probe: the network has "
            "global context or a radius above size / 2; tiled output will not equal untiled output",
            stacklevel=2,
        )
    return _round_up(radius, multiple)


def measure_halo_grown(
    forward: Forward,
    *,
    in_channels: int = 3,
    sizes: Iterable[int] = (256, 512, 1024),
    tol: float = 1e-4,
    align: int,
) -> int:
    """:func:`measure_halo` with probes of growing size until the field fits in one.

    A trained network's effective receptive field can be much wider than an
    untrained one's (recurrent convolutions, deep bottlenecks); a probe it
    reaches the border of would under-measure it. ``align`` as for :func:`measure_halo`.

    Raises
    ------
    ValueError
        The field reaches the border of the largest probe.
    """
    last = None
    for size in sizes:
        last = size
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            try:
                return measure_halo(forward, in_channels=in_channels, size=size, tol=tol, align=align)
            except UserWarning:
                continue
    raise ValueError(f"the receptive field is wider than a {last} px probe: tiled output cannot equal untiled output")
