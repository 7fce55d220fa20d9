"""Nucleus instance segmentation: image in, one label per nucleus out.

:class:`Segmenter` is to segmentation models (``unet``, ``r2unet``) what
:class:`~nucleikit.infer.predict.Detector` is to detectors: the trained
network, the colour and resolution it was trained at, and the instance
post-processing tuned on validation images, all read from the weights file.

Pipeline for an (H, W, C) image in [0, 1]:

1. colour: converted to the weights' ``colour`` ("rgb" or "grey", BT.601
   luminance) so that a grey-trained model never sees RGB and vice versa;
   then the weights' per-image ``intensity`` normalisation ("percentile":
   :func:`~nucleikit.transforms.percentile_normalise`, as in training);
2. resolution: resampled to the weights' ``mpp`` when both the weights and the
   input record one (DSB2018 models record none: they run at input resolution);
3. the network's maps, tiled through
   :class:`~nucleikit.infer.predict.DensePredictor` (halo = the trained
   network's measured receptive field, stored with the weights); with
   ``padding="align"``, an image no larger than one tile's read window is run
   in one window padded only to the network's alignment
   (:func:`~nucleikit.infer.tiling.predict_aligned`);
4. instances, by the kind of head the weights record (``target``):

   * ``"mask"`` (Alom et al.'s binary U-Net / R2U-Net): the foreground
     probability is cut by :func:`~nucleikit.postprocess.instances_from_probability`
     with the saved ``threshold``, ``min_distance`` and ``min_size`` (model
     pixels), seeded by the distance transform (default) or by the peaks of
     a nucleikit detector (``seeds="detector"``); the labels are mapped back
     to the input's pixels (nearest neighbour);
   * ``"instance"`` (foreground + boundary + distance head): the three maps
     are resized to the input's pixels first (bilinear, so outlines are as
     smooth as the input's grid allows rather than blocky) and cut there by
     the marker-controlled watershed
     :func:`~nucleikit.postprocess.instances_from_maps` with the saved
     ``threshold``, ``markers``, ``marker_threshold`` and ``min_size``
     (``min_size`` in model pixels, scaled to the input's);
5. the instances are measured.

Coordinates are (x, y), 0-based pixel centres of the input image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError, WeightsError
from ..io.images import convert_mode
from ..postprocess import instances_from_maps, instances_from_probability, label_measurements
from ..transforms import percentile_normalise, resample, resize_labels, scale_factor, scale_points, standardise
from .predict import DensePredictor, Detector, InferenceConfig
from .tiling import aligned_window, predict_aligned
from .tta import average_over_transforms, dihedral_transforms

__all__ = [
    "INTENSITY_MODES",
    "SEED_KINDS",
    "HEAD_KINDS",
    "PADDINGS",
    "Segmentation",
    "Segmenter",
    "resize_labels",
    "resize_maps",
    "DEFAULT_SEED_DETECTOR",
    "IMAGE_KINDS",
    "image_kind",
    "AUTO_SEGMENTERS",
    "AutoSegmenter",
]

#: Watershed marker sources: distance-transform maxima, or a detector's peaks.
SEED_KINDS = ("distance", "detector")
#: Per-image intensity normalisations a segmenter may have been trained with.
INTENSITY_MODES = ("none", "percentile")
#: Segmentation heads: a foreground probability, or foreground + boundary + distance maps.
HEAD_KINDS = ("mask", "instance")
#: Context of an image as large as one read window: the measured halo (tiled == untiled) or only the alignment.
PADDINGS = ("halo", "align")
#: Bundled detector used for ``seeds="detector"`` unless the weights name another.
DEFAULT_SEED_DETECTOR = "micronet"


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Nucleus instances of one image.

    Attributes
    ----------
    prob : (H', W') float32
        Foreground probability at the model's resolution (H' x W' = H x W when
        the model runs at input resolution).
    maps : (K, H', W') float32
        Every output map of the network at the model's resolution (K = 1 for
        a mask head; foreground, boundary, distance for an instance head).
    labels : (H, W) int32
        Instance labels at the input's resolution; 0 = background, instances
        1..N in raster order of their first pixel at model resolution (a label
        too small to survive the mapping back to a coarser input is absent).
    measurements : dict of (N,) ndarray
        ``label`` (int32), centroid ``x``, ``y`` (float64, 0-based pixel
        centres of the input), ``area`` (int64, input pixels) and
        ``mean_intensity`` (float64, mean BT.601 luminance in [0, 1] of the
        input over the instance), in ascending label order.
    seeds : str
        Which markers split touching nuclei: "distance" or "detector" (mask
        heads), "distance" or "boundary" (instance heads).
    """

    prob: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    measurements: dict[str, np.ndarray] = field(repr=False)
    seeds: str = "distance"
    maps: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.measurements["label"])


def resize_maps(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (K, h, w) maps to (K, H, W) = (K, *shape), pixel centres aligned.

    Pixel centres map as in :func:`~nucleikit.transforms.resize_labels`
    (``x_small = (x + 0.5) * w / W - 0.5``), values beyond the border are the edge's; no
    anti-aliasing (maps are only ever enlarged or slightly shrunk back to their input's
    grid). Computed by ``torch.nn.functional.interpolate`` (``align_corners=False`` is this
    convention), several times faster than ``skimage.transform.resize`` on large maps.
    """
    import torch

    k, h, w = maps.shape
    if (h, w) == tuple(shape):
        return maps
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None]
        y = torch.nn.functional.interpolate(x, size=tuple(int(v) for v in shape), mode="bilinear",
                                            align_corners=False)
    return y[0].numpy()


#: What :func:`image_kind` tells apart.
IMAGE_KINDS = ("stained", "fluorescence")


def image_kind(pixels: np.ndarray, *, min_saturation: float = 0.1, min_luminance: float = 0.2) -> str:
    """Whether an image is stained bright field (H&E and the like) or fluorescence / grey.

    Parameters
    ----------
    pixels : (H, W) or (H, W, C) array
        As :func:`as_input_image` accepts it (uint8, uint16, bool or float in [0, 1]; grey,
        RGB or RGBA).
    min_saturation : float
        A stained image has its 90th percentile of HSV saturation at least this high
        (grey and single-channel images have none).
    min_luminance : float
        ... and a median BT.601 luminance at least this high (a bright background):
        fluorescence, even coloured, is mostly dark.

    Returns
    -------
    {"stained", "fluorescence"}

    Notes
    -----
    Measured on the shared data (``tests/infer/test_segment.py``): all 30 MoNuSeg tiles, the
    CRCHisto images and the bundled sample are "stained" (90th-percentile saturation at
    least 0.125, median luminance at least 0.26); grey DSB2018 images have a saturation of
    0. DSB2018 also holds bright-field images of stained tissue, which are "stained" too.
    """
    from skimage.color import rgb2hsv

    arr = as_input_image(pixels)
    if arr.shape[2] == 1:
        return "fluorescence"
    # a strided subsample keeps this cheap on large tiles; percentiles barely move
    step = max(1, int(np.sqrt(arr.shape[0] * arr.shape[1] / 250_000)))
    sub = np.clip(arr[::step, ::step], 0.0, 1.0)
    saturation = float(np.percentile(rgb2hsv(sub)[..., 1], 90))
    luminance = float(np.median(sub @ np.array([0.299, 0.587, 0.114], np.float32)))
    return "stained" if saturation >= min_saturation and luminance >= min_luminance else "fluorescence"


def as_input_image(pixels: Any) -> np.ndarray:
    """An image array as the segmenters read it: (H, W, 1) grey or (H, W, 3) RGB float32 in [0, 1].

    Accepts what the file readers accept, converted the same way
    (:func:`nucleikit.io.images.as_float_image`): uint8, uint16, bool or float in [0, 1];
    (H, W) or (H, W, 1) grey (kept grey), RGB, or RGBA (composited over white).

    Raises
    ------
    InputError
        Any other shape or sample type, float values outside [0, 1], NaN or inf.
    """
    from ..io.images import as_float_image

    arr = np.asarray(pixels)
    grey = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1)
    return as_float_image(arr, mode="grey" if grey else "rgb")


def _check_tta(tta: int) -> int:
    """``tta`` if it is a number of views :func:`~nucleikit.infer.tta.dihedral_transforms` has."""
    try:
        dihedral_transforms(tta)  # refuse now, not at the first image
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return int(tta)


def _check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    return padding


def _check_seeds(seeds: str) -> str:
    if seeds not in SEED_KINDS:
        raise ConfigError(f"seeds must be one of {', '.join(SEED_KINDS)}, got {seeds!r}")
    return seeds


class Segmenter:
    """A nucleus segmenter: trained network, its colour and resolution, and its tuned post-processing.

    Parameters
    ----------
    model : torch.nn.Module
        A network mapping (B, C, h, w) to (B, 1, h, w) foreground probabilities.
    meta : WeightsMeta or dict
        The weights' metadata (:class:`~nucleikit.models.weights_meta.WeightsMeta`,
        or a dict checked as one; without a ``task`` it is a segmenter's): ``mean``,
        ``std``, ``colour``, ``intensity``, ``mpp`` (None: run at input resolution),
        ``halo``, ``target`` (the head: "mask" or "instance") and ``postprocess``
        (:class:`~nucleikit.models.weights_meta.SegmentationPost`: threshold, seed
        distance, smallest size, seeds and seed detector, markers; the legacy
        defaults of older weights live there). Kept as ``self.meta``, typed.
    config : InferenceConfig
    seeds : {"distance", "detector"} or None
        Watershed markers; None takes ``meta.postprocess.seeds`` (the kind
        chosen on validation when the weights were shipped).
    detector : Detector or None
        The detector giving the seeds for ``seeds="detector"``; None loads
        ``meta.postprocess.seed_detector`` (default the bundled ``micronet``)
        when first needed.
    tta : {1, 2, 4, 8}
        Test-time augmentation: the network's maps averaged over this many
        flipped / transposed views of the image
        (:func:`~nucleikit.infer.tta.average_over_transforms`); 1 (default)
        runs the network once. Costs ``tta`` forward passes per image.
    padding : {"halo", "align"}
        "halo" (default): the image is tiled (``config.tile``, else the memory
        budget's plan, :meth:`DensePredictor.plan`) and every tile
        read with the network's receptive field of reflected context, so the
        maps equal an untiled pass's exactly. "align": an image whose
        alignment-padded size holds no more pixels than one tile's read window
        (no more memory than "halo") is run in one
        window padded only to the network's alignment
        (:func:`~nucleikit.infer.tiling.predict_aligned`): the network's pixels
        and no more (256 x 256 with a 96 px halo: 3.1x fewer; 520 x 696 with
        512-px tiles: 4 windows of 704 x 704, 5.3x fewer), with the network's
        own zero padding at the border, as on its training crops, so maps
        within the receptive field of the border differ from "halo"'s. Larger
        images are tiled with the halo either way.
    """

    def __init__(
        self,
        model: Any,
        meta: Mapping[str, Any],
        *,
        config: InferenceConfig = InferenceConfig(),
        seeds: str | None = None,
        detector: Detector | None = None,
        tta: int = 1,
        padding: str = "halo",
    ) -> None:
        from ..models.weights_meta import SegmentationPost, as_weights_meta  # (torch: imported when first used)

        meta = as_weights_meta(meta, task="segmentation")
        source = meta.name if meta.name is not None else "weights"
        if meta.task != "segmentation":
            raise WeightsError(source, f"is a {meta.task} model, not a segmenter")
        if meta.target not in HEAD_KINDS:
            raise WeightsError(source, f"is a {meta.target!r} model, not a segmenter (heads: {', '.join(HEAD_KINDS)})")
        if meta.mean is None or meta.std is None:
            raise WeightsError(source, "segmenter metadata lacks mean and std")
        post = meta.postprocess
        assert isinstance(post, SegmentationPost)  # a segmenter's, by WeightsMeta.from_dict
        self.meta = meta
        self.config = config
        self.colour = meta.colour
        self.intensity = meta.intensity
        self.mpp = float(meta.mpp) if meta.mpp is not None else None
        self.head = meta.target
        self.markers = post.markers
        self.marker_threshold = float(post.marker_threshold)
        self.threshold = float(post.threshold)
        self.min_distance = int(post.min_distance)
        self.min_size = int(post.min_size)
        self.seeds = _check_seeds(seeds if seeds is not None else post.seeds)
        self.seed_detector_name = post.seed_detector
        self._detector = detector
        self.tta = _check_tta(tta)
        self.padding = _check_padding(padding)
        self.predictor = DensePredictor(
            model, mean=meta.mean, std=meta.std, halo=meta.halo, config=config, bf16_ok=meta.bf16_ok,
        )

    @property
    def precision(self):
        """What the network runs in and why (:class:`~nucleikit.infer.precision.Precision`)."""
        return self.predictor.precision

    @classmethod
    def from_weights(
        cls,
        name_or_path: str | Path,
        config: InferenceConfig = InferenceConfig(),
        *,
        seeds: str | None = None,
        detector: Detector | None = None,
        tta: int = 1,
        padding: str = "halo",
    ) -> "Segmenter":
        """Load bundled weights by name (e.g. ``"r2unet"``) or a ``.safetensors`` file.

        Raises
        ------
        WeightsError
            No such file or bundled name, damaged file, or not a segmentation model.
        """
        from ..models.weights import load_weights, resolve_weights

        path = resolve_weights(name_or_path)
        model, meta = load_weights(path)
        if meta.task != "segmentation":
            raise WeightsError(path, f"is a {meta.task!r} model, not a segmentation model "
                                     "(`nucleikit detect` runs detectors)")
        return cls(model, meta, config=config, seeds=seeds, detector=detector, tta=tta, padding=padding)

    @property
    def name(self) -> str:
        return self.meta.name if self.meta.name is not None else (self.meta.model or "segmenter")

    @property
    def detector(self) -> Detector:
        """The seed detector (loaded on first use, with the same runtime settings)."""
        if self._detector is None:
            self._detector = Detector.from_weights(self.seed_detector_name, config=self.config)
        return self._detector

    def probability_map(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W) foreground probability of an image already prepared for the network (:meth:`prepare`)."""
        return self.output_maps(pixels)[0]

    def output_maps(self, pixels: np.ndarray) -> np.ndarray:
        """(K, H, W) maps of an image already prepared for the network (:meth:`prepare`).

        With ``tta`` > 1, the mean over that many flipped / transposed views.
        """
        if self.tta == 1:
            return self._maps(pixels)
        return average_over_transforms(self._maps, pixels, self.tta)

    def _maps(self, pixels: np.ndarray) -> np.ndarray:
        """One view's (K, H, W) maps, with the context ``padding`` asks for."""
        p = self.predictor
        if self.padding == "align":
            window = aligned_window(pixels.shape[:2], halo=p.halo, align=p.align)
            read = p.plan(pixels.shape[:2]).read_shape  # the read window of a tiled pass
            if window.shape[0] * window.shape[1] <= read[0] * read[1]:
                return predict_aligned(p.forward, standardise(pixels, p.mean, p.std), halo=p.halo, align=p.align)
        return p(pixels)

    def instances_from_output(
        self,
        maps: np.ndarray,
        shape: tuple[int, int],
        factor: float,
        *,
        threshold: float | None = None,
        marker_threshold: float | None = None,
        markers: str | None = None,
    ) -> np.ndarray:
        """(H, W) int32 instances at the input's ``shape`` from an instance head's (3, H', W') maps.

        ``factor`` is the input → model resize; ``min_size`` (model pixels) is
        scaled by ``1 / factor**2``. Other arguments override the tuned values.
        """
        big = resize_maps(np.asarray(maps, np.float32), tuple(shape))
        min_size = int(round(self.min_size / (factor * factor)))
        return instances_from_maps(
            big,
            threshold=self.threshold if threshold is None else float(threshold),
            marker_threshold=self.marker_threshold if marker_threshold is None else float(marker_threshold),
            markers=self.markers if markers is None else markers,
            min_size=min_size,
        )

    def seed_points(self, pixels: np.ndarray, mpp: float | None, factor: float, shape: tuple[int, int]) -> np.ndarray:
        """Detector peaks as (N, 2) (x, y) in model pixels (clipped onto the map).

        ``pixels`` is the input image (any colour: it is given to the detector
        as RGB), ``mpp`` its resolution (None: the detector assumes its own),
        ``factor`` the input → model resize and ``shape`` = (H', W') the map's.
        """
        rgb = convert_mode(pixels, "rgb")
        found = self.detector.detect(rgb, mpp=mpp)
        xy = scale_points(found.xy, factor)
        # a peak of a resampled detector map can land a fraction outside the segmenter's map
        xy[:, 0] = np.clip(xy[:, 0], 0, shape[1] - 1)
        xy[:, 1] = np.clip(xy[:, 1], 0, shape[0] - 1)
        return xy

    def instances(
        self,
        prob: np.ndarray,
        *,
        seeds: np.ndarray | None = None,
        threshold: float | None = None,
        min_distance: int | None = None,
    ) -> np.ndarray:
        """(H', W') int32 instances of a probability map with the tuned post-processing.

        ``seeds`` are (N, 2) (x, y) marker points in map pixels (None: the
        distance transform's maxima); ``threshold`` and ``min_distance``
        override the tuned values.
        """
        return instances_from_probability(
            prob,
            threshold=self.threshold if threshold is None else float(threshold),
            min_distance=self.min_distance if min_distance is None else int(min_distance),
            min_size=self.min_size,
            seeds=seeds,
        )

    def prepare(self, pixels: np.ndarray, mpp: float | None = None) -> tuple[np.ndarray, float]:
        """The network's input for an (H, W, C) image: (work, factor).

        ``work`` is the image in the model's colour and intensity
        normalisation, resampled by ``factor`` (input → model pixels; 1.0 when
        the weights or the input record no resolution). The order (colour,
        intensity, resampling) is the training's. ``pixels`` as :func:`as_input_image`
        accepts them.
        """
        return self._prepare(as_input_image(pixels), mpp)

    def _prepare(self, arr: np.ndarray, mpp: float | None) -> tuple[np.ndarray, float]:
        factor = scale_factor(mpp, self.mpp)
        work = convert_mode(arr, self.colour)
        if self.intensity == "percentile":
            work = percentile_normalise(work)
        return resample(work, factor), factor

    def labels_at_input(
        self,
        prob: np.ndarray,
        shape: tuple[int, int],
        *,
        seeds: np.ndarray | None = None,
        threshold: float | None = None,
        min_distance: int | None = None,
    ) -> np.ndarray:
        """(H, W) int32 instances of a model-resolution map, mapped to the input's ``shape``."""
        small = self.instances(prob, seeds=seeds, threshold=threshold, min_distance=min_distance)
        return resize_labels(small, tuple(shape))

    def segment(
        self,
        pixels: np.ndarray,
        *,
        mpp: float | None = None,
        threshold: float | None = None,
        prob: np.ndarray | None = None,
    ) -> Segmentation:
        """Segment the nuclei of an image.

        Parameters
        ----------
        pixels : (H, W) or (H, W, C) array
            uint8, uint16, bool or float in [0, 1]; grey, RGB or RGBA, converted
            as the file readers convert files (:func:`as_input_image`).
        mpp : float or None
            Resolution of ``pixels`` in um/px; used only when the weights record
            an ``mpp`` too (then the image is resampled to it). None assumes the
            model's own resolution.
        threshold : float or None
            Foreground probability threshold; None uses the tuned value.
        prob : (H', W') or (K, H', W') float32, or None
            The network's output already computed for this image at the
            model's resolution (e.g. while tuning): the foreground map of a
            mask head, or the three maps of an instance head; skips the network.

        Returns
        -------
        Segmentation
            Labels and measurements in the input's pixels.
        """
        arr = as_input_image(pixels)
        work, factor = self._prepare(arr, mpp)
        if prob is None:
            maps = self.output_maps(work)
        else:
            maps = np.asarray(prob, np.float32)
            maps = maps[None] if maps.ndim == 2 else maps
        if self.head == "instance":
            if maps.shape[0] != 3:
                raise ValueError(f"an instance head gives 3 maps, got {maps.shape[0]}")
            labels = self.instances_from_output(maps, arr.shape[:2], factor, threshold=threshold)
        else:
            seed_xy = self.seed_points(arr, mpp, factor, maps.shape[1:]) if self.seeds == "detector" else None
            labels = self.labels_at_input(maps[0], arr.shape[:2], seeds=seed_xy, threshold=threshold)
        grey = convert_mode(arr, "grey")[:, :, 0]
        measured = label_measurements(labels, grey)
        seeds = self.seeds if self.head == "mask" else self.markers
        return Segmentation(prob=maps[0], labels=labels, measurements=measured, seeds=seeds, maps=maps)


#: Bundled segmenter for each :func:`image_kind`: the H&E model for stained bright field, the
#: DSB2018 instance-head model (mostly fluorescence) for the rest. ``unet_dsb`` was chosen over
#: Alom et al.'s binary ``unet`` on the DSB2018 validation images: DSB score 0.519 vs 0.478,
#: PQ 0.691 vs 0.668, Dice 0.908 vs 0.903 (AJI 0.712 vs 0.720), each at its tuned post-processing.
AUTO_SEGMENTERS = {"stained": "unet_he", "fluorescence": "unet_dsb"}


class AutoSegmenter:
    """Picks a bundled segmenter per image by :func:`image_kind`, loading each at most once.

    Parameters
    ----------
    config : InferenceConfig
    models : mapping of image kind to weights name or path
        Default :data:`AUTO_SEGMENTERS`.
    seeds : str or None
        Passed to every :class:`Segmenter` (mask heads only).
    tta : {1, 2, 4, 8}
        Test-time augmentation views, passed to every :class:`Segmenter`.
    padding : {"halo", "align"}
        Context of one-tile images, passed to every :class:`Segmenter`.

    Examples
    --------
    >>> auto = AutoSegmenter()                                   # doctest: +SKIP
    >>> auto.for_image(pixels).segment(pixels, mpp=0.25)         # doctest: +SKIP
    """

    def __init__(self, config: InferenceConfig = InferenceConfig(), *, models: dict | None = None,
                 seeds: str | None = None, tta: int = 1, padding: str = "halo") -> None:
        self.config = config
        self.tta = _check_tta(tta)
        self.padding = _check_padding(padding)
        self.models = dict(AUTO_SEGMENTERS if models is None else models)
        unknown = set(self.models) - set(IMAGE_KINDS)
        if unknown or not self.models:
            raise ConfigError(f"models must map image kinds {', '.join(IMAGE_KINDS)} to weights, got {sorted(self.models)}")
        self.seeds = seeds
        self._loaded: dict[str, Segmenter] = {}

    def load(self, kind: str) -> Segmenter:
        """The segmenter for images of ``kind`` (loaded on first use)."""
        if kind not in self.models:
            raise ConfigError(f"no segmenter for {kind!r} images (have: {', '.join(self.models)})")
        if kind not in self._loaded:
            self._loaded[kind] = Segmenter.from_weights(self.models[kind], self.config, seeds=self.seeds,
                                                         tta=self.tta, padding=self.padding)
        return self._loaded[kind]

    @property
    def loaded(self) -> dict[str, Segmenter]:
        """The segmenters loaded so far, by image kind."""
        return dict(self._loaded)

    def for_image(self, pixels: np.ndarray) -> Segmenter:
        """The segmenter for this image (any array :func:`as_input_image` accepts)."""
        return self.load(image_kind(pixels))
