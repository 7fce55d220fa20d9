"""Running a trained network over images of any size.

:class:`DensePredictor` turns an (H, W, C) image in [0, 1] into the network's
(K, H, W) output map: standardise with the statistics saved beside the weights,
cut into overlapping tiles (:mod:`nucleikit.infer.tiling`; tile and batch sizes
from a memory budget unless given), run batches under ``torch.inference_mode``
(channels_last; bf16 autocast where :mod:`nucleikit.infer.precision` chooses it)
and keep each tile's core. :class:`Detector` adds resolution handling and peak finding.

A peak is a nucleus when its map value exceeds both ``xi * max(p)`` and the
absolute floor ``threshold_abs`` (:func:`~nucleikit.postprocess.peak_threshold`,
the one rule of every path). ``max(p)`` is the maximum of the probability map
over the *whole* image (all tiles), computed after the map is assembled, so the
rule means the same thing tiled and untiled; the floor is one number for every
tile. Whole-slide inference, which never holds the whole map, keeps every
candidate peak with its score and applies the same global rule once the running
maximum over all tiles is known.

Images given as arrays are normalised as the file readers normalise files
(:func:`nucleikit.io.images.as_float_image`): uint8, uint16, bool or float in
[0, 1]; grey (H, W) or (H, W, 1), RGB or RGBA (composited over white).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError, WeightsError
from ..postprocess import find_peaks, peak_threshold
from ..transforms import resample, scale_factor, scale_points, standardise
from .calibration import ScoreCalibration
from .precision import Precision, choose_precision, cpu_flags, requested_precision
from .tiling import TilePlan, measure_halo, plan_tiles, predict_tiled

__all__ = ["InferenceConfig", "DensePredictor", "Detections", "Detector", "model_alignment", "DEFAULT_MEMORY"]


#: Default memory budget of one forward pass (``InferenceConfig.memory``, ``--memory``): 1 GiB.
DEFAULT_MEMORY = 2 ** 30
#: Measured tensor bytes of a forward pass times this is meant to cover what the process really
#: holds (:meth:`DensePredictor.bytes_per_pixel`). The excess is glibc's heap keeping freed blocks
#: (with a fixed mmap threshold the growth equals the tensor trace): 0-230 MiB whatever the window,
#: so small windows exceed the factor. Peak RSS growth of one fp32 forward over the probe's
#: estimate: MicroNet-HE 1.00-1.46x at 1024 and 1536 px, 1.41-1.86x at 704 px (1.25-1.62x before
#: its lean route); width 8 1.00-1.63x at 1024 and 1536 px. Plans for budgets of 768 MiB and more
#: used 0.63-0.85 of them, 512 MiB up to 1.05, 256 MiB up to 1.10.
WORKSPACE_FACTOR = 1.5


@dataclass(frozen=True)
class InferenceConfig:
    """How a network is run on the CPU.

    Attributes
    ----------
    tile : int or None
        Side of a tile's core in model pixels (rounded up to the alignment); None (default)
        chooses it per image from the memory budget (:func:`~nucleikit.infer.tiling.plan_tiles`:
        the whole image in one window when it fits, else the largest balanced tiles that do).
    batch_size : int or None
        Tiles per forward pass; None (default): as many as the memory budget holds.
    threads : int or None
        ``torch.set_num_threads`` value; None leaves torch's setting alone.
    precision : {"auto", "fp32", "bf16"}
        "auto" (default): bf16 autocast when the CPU runs bf16 natively (AMX or AVX512-BF16)
        and the weights record that their accuracy holds under it (``bf16_ok``), else fp32
        (:mod:`nucleikit.infer.precision`).
    bf16 : bool or None
        The older switch, kept: True is ``precision="bf16"``, False ``precision="fp32"``;
        None (default) leaves ``precision``.
    memory : int
        Bytes one forward pass may use (default :data:`DEFAULT_MEMORY`, 1 GiB), which decides
        the tile and batch sizes left to None.
    channels_last : bool
        Use the channels-last memory format, which oneDNN convolutions prefer.
    fold_bn : bool
        Fold each convolution's batch norm into it (same outputs, fewer passes
        over memory; :func:`nucleikit.models.optimize.fold_batchnorm`).
    """

    tile: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    bf16: bool | None = None
    channels_last: bool = True
    fold_bn: bool = True
    precision: str = "auto"
    memory: int = DEFAULT_MEMORY

    def __post_init__(self) -> None:
        requested_precision(self.precision, self.bf16)  # refuses an unknown or contradictory request
        if isinstance(self.memory, bool) or not isinstance(self.memory, int) or self.memory < 1:
            raise ConfigError(f"memory must be a positive number of bytes, got {self.memory!r}")

    @property
    def requested_precision(self) -> str:
        """"auto", "fp32" or "bf16", the ``bf16`` switch taken into account."""
        return requested_precision(self.precision, self.bf16)


class DensePredictor:
    """Network + normalisation + tiling: image in, dense map out.

    Parameters
    ----------
    model : torch.nn.Module
        Any network mapping (B, C, h, w) to (B, K, h, w); put in eval mode here.
    mean, std : (C,) array_like
        Per-channel statistics of the training images (in [0, 1] units).
    halo : int or None
        Context added around each tile, in model pixels. None measures the
        receptive field with an impulse (:func:`measure_halo`).
    config : InferenceConfig
    align : int or None
        Total downsampling factor of the network, the lattice of the tiles
        (:mod:`nucleikit.infer.tiling`). None reads ``model.alignment``, which
        :func:`~nucleikit.models.registry.build_model` sets from the model's spec.
    bf16_ok : bool or None
        The weights' stored verdict on bf16 (``meta.bf16_ok``), which
        ``precision="auto"`` needs to choose bf16; None: not measured (fp32).

    Attributes
    ----------
    precision : Precision
        What the network runs in and why (:func:`~nucleikit.infer.precision.choose_precision`).

    Raises
    ------
    ConfigError
        ``align`` is None and the model declares no ``alignment``: a guessed lattice
        would run and silently break tiled == untiled.
    """

    def __init__(
        self,
        model: Any,
        *,
        mean: Any,
        std: Any,
        halo: int | None = None,
        config: InferenceConfig = InferenceConfig(),
        align: int | None = None,
        bf16_ok: bool | None = None,
    ) -> None:
        import torch

        self.torch = torch
        self.config = config
        self.precision: Precision = choose_precision(config.requested_precision, cpu_flags=cpu_flags(),
                                                     bf16_ok=bf16_ok)
        self.align = model_alignment(model) if align is None else int(align)
        if config.threads is not None:
            torch.set_num_threads(int(config.threads))
        self.model = model.eval()
        if config.fold_bn:
            from ..models.optimize import fold_batchnorm

            # a folded copy: the caller's model (e.g. one being trained) is untouched
            self.model = fold_batchnorm(self.model)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.halo = (int(halo) if halo is not None
                     else measure_halo(self.forward, in_channels=len(self.mean), align=self.align))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(B, C, h, w) float32 standardised input → (B, K, h, w) float32 output."""
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision.bf16):
            y = self.model(x)
        return y.float().contiguous().numpy()

    @cached_property
    def bytes_per_pixel(self) -> float:
        """Memory one read-window pixel costs in a forward pass, measured once with a probe.

        One forward pass over a small random window (``4 * align``, at least 128 px a side)
        with hooks on every module that note each tensor going in or out and drop it once
        it is freed (weak references); the peak of the live bytes (what a tensor-level
        allocation trace gives: MicroNet 326 B/px in fp32 on its memory-lean inference
        route, 345 in bf16; the bundled U-Nets about 320 in fp32) times
        :data:`WORKSPACE_FACTOR`. Activations grow with the window's area, so one small probe
        gives the rate for any window. Tensors made and freed inside one module's forward,
        between two hooks, go unseen: a network must not hold its peak there (MicroNet's
        lean route calls a module on each map alive at its peak).
        """
        torch = self.torch
        live: dict[int, tuple[Any, int]] = {}
        peak = 0

        def note(tensors: Any) -> None:
            nonlocal peak
            for t in tensors if isinstance(tensors, (tuple, list)) else (tensors,):
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    live.setdefault(storage.data_ptr(), (weakref.ref(t), storage.nbytes()))
            for key in [k for k, (ref, _) in live.items() if ref() is None]:
                del live[key]
            peak = max(peak, sum(n for _, n in live.values()))

        def before(module: Any, args: Any) -> None:
            note(args)

        def after(module: Any, args: Any, out: Any) -> None:
            note(args)
            note(out)

        modules = list(self.model.modules())
        handles = [m.register_forward_pre_hook(before) for m in modules]
        handles += [m.register_forward_hook(after) for m in modules]
        side = max(128, 4 * self.align)
        side = -(-side // self.align) * self.align
        try:
            self.forward(np.random.default_rng(0).random((1, len(self.mean), side, side), dtype=np.float32))
        finally:
            for handle in handles:
                handle.remove()
        return max(peak, 4 * len(self.mean)) / (side * side) * WORKSPACE_FACTOR

    def plan(self, shape: tuple[int, int], *, halo: int | None = None, tile: Any = None) -> TilePlan:
        """Tile and batch sizes for an (H, W) image (:func:`~nucleikit.infer.tiling.plan_tiles`).

        ``tile`` (else ``config.tile``) and ``config.batch_size`` are used when set; the
        rest comes from ``config.memory`` and :attr:`bytes_per_pixel`. ``halo`` defaults to
        the predictor's (a whole-slide run reads with more).
        """
        return plan_tiles(shape[:2], halo=self.halo if halo is None else halo, align=self.align,
                          bytes_per_pixel=self.bytes_per_pixel, budget=self.config.memory,
                          tile=self.config.tile if tile is None else tile, batch_size=self.config.batch_size)

    def __call__(self, pixels: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Dense output for an (H, W, C) image in [0, 1]: (K, H, W) float32."""
        x = standardise(pixels, self.mean, self.std)
        plan = self.plan(x.shape[:2])
        return predict_tiled(
            self.forward,
            x,
            tile=plan.tile,
            halo=self.halo,
            align=self.align,
            batch_size=plan.batch_size,
            progress=progress,
        )


@dataclass(frozen=True)
class Detections:
    """Nucleus centres found in one image.

    Attributes
    ----------
    xy : (N, 2) float64
        (x, y) 0-based pixel centres in the coordinates of the input image.
    scores : (N,) float32
        The score written to every output: with weights that carry a score
        calibration (:mod:`nucleikit.infer.calibration`), the fraction of
        validation detections at this map value that were true nuclei, the
        same meaning for every model; otherwise the raw map value.
    map_max : float
        Maximum of the probability map over the whole image.
    prob : (H', W') float32 or None
        The probability map at the model's resolution, when requested.
    map_values : (N,) float32 or None
        Raw map value at each peak (what the thresholds compare); None means
        ``scores`` are the raw values.
    """

    xy: np.ndarray
    scores: np.ndarray
    map_max: float
    prob: np.ndarray | None = field(default=None, repr=False)
    map_values: np.ndarray | None = field(default=None, repr=False)

    @property
    def raw_scores(self) -> np.ndarray:
        """(N,) float32 raw map values at the peaks (``map_values``, else ``scores``)."""
        return self.scores if self.map_values is None else self.map_values

    def __len__(self) -> int:
        return len(self.xy)


class Detector:
    """A point detector: trained network, its resolution and its tuned post-processing.

    Build one with :meth:`from_weights` (a bundled name such as ``"micronet"`` or
    a ``.safetensors`` path) or from a model and its metadata: a
    :class:`~nucleikit.models.weights_meta.WeightsMeta`, or a dict checked as one
    (:func:`~nucleikit.models.weights_meta.as_weights_meta`; metadata without a
    ``task`` is a detector's). The tuned xi, peak distance and floor are the
    metadata's :class:`~nucleikit.models.weights_meta.DetectionPost`, whose
    legacy defaults live there. ``meta`` is kept as the typed record.

    Raises
    ------
    WeightsError
        The metadata is not a detector's, records no ``mpp``, ``mean`` or ``std``,
        or holds a value nucleikit cannot use.
    """

    def __init__(self, model: Any, meta: Mapping[str, Any], *, config: InferenceConfig = InferenceConfig()) -> None:
        from ..models.weights_meta import DetectionPost, as_weights_meta  # (torch: imported when first used)

        meta = as_weights_meta(meta, task="detection")
        source = meta.name if meta.name is not None else "weights"
        if meta.task != "detection":
            # refused at once: a segmenter would "detect" its foreground, a classifier crash later
            hint = {"segmentation": "nucleikit segment", "classification": "nucleikit classify"}.get(meta.task or "")
            raise WeightsError(source,
                               f"is a {meta.task} model, not a detector" + (f" (`{hint}` runs it)" if hint else ""))
        if meta.mpp is None or meta.mean is None or meta.std is None:
            missing = [k for k in ("mpp", "mean", "std") if getattr(meta, k) is None]
            raise WeightsError(source, f"detector metadata lacks {', '.join(missing)}")
        post = meta.postprocess
        assert isinstance(post, DetectionPost)  # a detector's, by WeightsMeta.from_dict
        self.meta = meta
        self.mpp = float(meta.mpp)
        self.threshold_rel = float(post.threshold_rel)
        self.threshold_abs = float(post.threshold_abs)
        self.min_distance = float(post.min_distance)
        self.calibration = None if meta.calibration is None else ScoreCalibration.from_record(meta.calibration)
        self.predictor = DensePredictor(
            model, mean=meta.mean, std=meta.std, halo=meta.halo, config=config, bf16_ok=meta.bf16_ok,
        )

    @property
    def precision(self) -> Precision:
        """What the network runs in and why."""
        return self.predictor.precision

    @classmethod
    def from_weights(cls, name_or_path: str | Path, *, config: InferenceConfig = InferenceConfig()) -> "Detector":
        from ..models.weights import load_weights, resolve_weights

        path = resolve_weights(name_or_path)
        model, meta = load_weights(path)
        try:
            return cls(model, meta, config=config)
        except WeightsError as exc:
            raise WeightsError(path, exc.reason) from None

    @property
    def name(self) -> str:
        return self.meta.name if self.meta.name is not None else (self.meta.model or "detector")

    def image(self, pixels: Any) -> np.ndarray:
        """An image array as the network's input: (H, W, C) float32 in [0, 1].

        Accepts what the file readers accept, converted the same way
        (:func:`nucleikit.io.images.as_float_image`): uint8, uint16, bool or
        float in [0, 1]; (H, W) or (H, W, 1) grey, RGB, RGBA.

        Raises
        ------
        InputError
            Any other shape or sample type, or float values outside [0, 1].
        """
        from ..io.images import as_float_image

        mode = "grey" if len(self.predictor.mean) == 1 else "rgb"
        return as_float_image(pixels, mode=mode)

    def probability_map(self, pixels: Any, progress=None) -> np.ndarray:
        """(H, W) map of the first output channel for an image at the model's resolution.

        ``pixels`` as :meth:`image` accepts them.
        """
        return self._map(self.image(pixels), progress)

    def _map(self, pixels: np.ndarray, progress=None) -> np.ndarray:
        return self.predictor(pixels, progress=progress)[0]

    def peaks(
        self,
        prob: np.ndarray,
        *,
        threshold_rel: float | None = None,
        min_distance: float | None = None,
        threshold_abs: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Peaks of a map at the model's resolution: (xy, scores, map max).

        A peak is kept when its value exceeds both ``threshold_rel`` times the
        maximum of ``prob`` (the whole image's map, as in Xing et al.) and the
        absolute floor ``threshold_abs`` (:func:`~nucleikit.postprocess.peak_threshold`).
        """
        xi = self.threshold_rel if threshold_rel is None else float(threshold_rel)
        md = self.min_distance if min_distance is None else float(min_distance)
        floor = self.threshold_abs if threshold_abs is None else _floor(threshold_abs)
        pmax = float(prob.max()) if prob.size else 0.0
        if pmax <= 0:
            return np.zeros((0, 2)), np.zeros(0, np.float32), pmax
        xy, scores = find_peaks(prob, min_distance=md, threshold=peak_threshold(pmax, xi=xi, threshold_abs=floor))
        return xy, scores, pmax

    def detect(
        self,
        pixels: Any,
        *,
        mpp: float | None = None,
        threshold_rel: float | None = None,
        min_distance: float | None = None,
        threshold_abs: float | None = None,
        keep_map: bool = False,
        progress=None,
    ) -> Detections:
        """Find nucleus centres in an image.

        Parameters
        ----------
        pixels : (H, W) or (H, W, C) array
            uint8, uint16, bool or float in [0, 1]; grey, RGB or RGBA, converted
            as the file readers convert files (:meth:`image`).
        mpp : float or None
            Resolution of ``pixels`` in um/px. The image is resampled to the
            model's resolution and the points mapped back. None assumes the
            model's own resolution.
        threshold_rel, min_distance : float or None
            Override the tuned xi (relative to the map maximum) and the peak
            distance (model pixels).
        threshold_abs : float or None
            Override the tuned absolute floor (map units, >= 0).
        keep_map : bool
            Return the probability map (model resolution) too.

        Returns
        -------
        Detections, with ``xy`` in the input image's pixel coordinates.

        Raises
        ------
        InputError
            ``pixels`` of another shape or sample type, or float outside [0, 1].
        """
        factor = scale_factor(mpp, self.mpp)
        work = resample(self.image(pixels), factor)
        prob = self._map(work, progress=progress)
        xy, scores, pmax = self.peaks(prob, threshold_rel=threshold_rel, min_distance=min_distance,
                                      threshold_abs=threshold_abs)
        xy = scale_points(xy, 1.0 / factor) if factor != 1.0 else xy
        return Detections(xy=xy, scores=self.calibrated(scores), map_max=pmax, prob=prob if keep_map else None,
                          map_values=scores if self.calibration is not None else None)

    def calibrated(self, map_values: Any) -> np.ndarray:
        """Output scores of raw peak values: calibrated when the weights carry a calibration, else unchanged."""
        values = np.asarray(map_values, np.float32)
        return values if self.calibration is None else self.calibration(values)


def model_alignment(model: Any) -> int:
    """The total downsampling factor a network declares (``model.alignment``, set by ``build_model``).

    Raises
    ------
    ConfigError
        The network declares none (a module not built through the registry).
    """
    align = getattr(model, "alignment", None)
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise ConfigError(f"{type(model).__name__} declares no alignment (its total downsampling factor): "
                          "build it with nucleikit.models.build_model, or pass align=")
    return align


def _floor(value: Any) -> float:
    """An overriding ``threshold_abs`` as a float >= 0, else a ConfigError (the weights' own: WeightsMeta)."""
    try:
        floor = float(value)
    except (TypeError, ValueError):
        floor = float("nan")
    if not (np.isfinite(floor) and floor >= 0.0):
        raise ConfigError(f"threshold_abs must be a finite number >= 0, got {value!r}")
    return floor
