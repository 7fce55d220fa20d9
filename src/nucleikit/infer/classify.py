"""Typing nuclei: a trained patch classifier applied at given centres.

:class:`Classifier` wraps a DenseNet or DCRN (:mod:`nucleikit.models.densenet`)
with what its weights file says about it: the class names, the resolution
(um/px) and patch side it was trained at, and the normalisation of its
patches. :meth:`Classifier.classify` takes an (H, W, 3) image at any
resolution and (x, y) centres in that image's pixels:

1. the image is resampled to the model's resolution
   (:func:`nucleikit.transforms.resample`) and the centres mapped with it
   (:func:`nucleikit.transforms.scale_points`), then clipped to the
   pixel-centre box, as :meth:`nucleikit.train.patches.PatchSet.from_samples`
   does for training;
2. the image is quantised to uint8 (``rint(255 * v)``) before the patches are
   cut (:func:`nucleikit.targets.extract_patches`, reflected at the border):
   training patches are stored that way, so an 8-bit file reaches the model
   with exactly the values it was trained on;
3. batches of patches run under ``torch.inference_mode`` in the channels-last
   memory format, optionally under bfloat16 autocast; the softmax gives the
   class probabilities;
4. with test-time augmentation (:attr:`PatchInferenceConfig.tta` views, or the
   ``tta`` the weights were validated with; 1 by default), the probabilities are
   the mean over ``tta`` symmetries of each patch (flips and 90-degree rotations,
   :func:`nucleikit.infer.tta.dihedral_transforms`: 2 = + left-right mirror,
   4 = all flips, 8 = all flips and rotations). A nucleus has no preferred
   orientation and a class is no map, so nothing is transformed back.

The training loop validates through this class
(:class:`nucleikit.train.classify.ClassificationTrainer`), so the figures chosen
on validation are those of the predictor ``nucleikit classify`` runs.

With :attr:`PatchInferenceConfig.stain_normalise` the patches of one image
are first matched, as a whole, to the L*a*b* moments of the training patches
(:func:`nucleikit.transforms.reinhard_normalise`; ``lab_mean``/``lab_std`` in
the weights' metadata). Both sets of moments are taken over nucleus-centred
patches, so the background share of an image does not bias them. It is off by
default: on CRCHisto itself it changes nothing wanted, but a classifier meets
another lab's H&E (a darker, more purple stain, say) as a shift it never saw.

Batch-norm folding (:func:`nucleikit.models.optimize.fold_batchnorm`) is
applied when :attr:`PatchInferenceConfig.fold_bn` is set, but DenseNet and
DCRN are pre-activation networks (BN-ReLU-Conv): no batch norm directly
follows a convolution, and a batch norm followed by a ReLU cannot move into
the next convolution, so the fold finds nothing to merge and the network is
unchanged. The option is kept so a future post-activation classifier gains it
without a change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import WeightsError
from ..io.points import OUTSIDE_TOLERANCE, clip_points_to_image
from ..targets import extract_patches
from ..transforms import reinhard_normalise, resample, scale_factor, scale_points
from .precision import choose_precision, cpu_flags, requested_precision
from .tta import TTA_SIZES, dihedral_transforms

__all__ = ["PatchInferenceConfig", "Classifier", "to_uint8"]

#: Metadata keys a classifier weights file must carry.
_REQUIRED_META = ("classes", "mpp", "patch", "mean", "std")


@dataclass(frozen=True)
class PatchInferenceConfig:
    """How a patch classifier is run on the CPU.

    Attributes
    ----------
    batch_size : int
        Patches per forward pass (256 32x32 patches are about 3 MB of input).
    threads : int or None
        ``torch.set_num_threads`` value; None leaves torch's setting alone.
    precision : {"auto", "fp32", "bf16"}
        "auto" (default): bfloat16 autocast when the CPU runs it natively and the
        weights record that their accuracy holds under it (``bf16_ok``), else fp32
        (:mod:`nucleikit.infer.precision`); probabilities are computed in float32
        from the logits either way.
    bf16 : bool or None
        The older switch, kept: True is ``precision="bf16"``, False ``"fp32"``;
        None (default) leaves ``precision``.
    channels_last : bool
        Channels-last memory format for the model and the batches.
    fold_bn : bool
        Fold Conv->BatchNorm pairs (a no-op for DenseNet/DCRN; see the module
        docstring).
    stain_normalise : bool
        Match each image's patches to the training stain before classifying
        (module docstring); needs ``lab_mean``/``lab_std`` in the weights.
    tta : {1, 2, 4, 8} or None
        Test-time augmentation views (module docstring); None takes the weights'
        ``tta`` (the views their best epoch was chosen with; 1 when they record none).
    """

    batch_size: int = 256
    threads: int | None = None
    bf16: bool | None = None
    channels_last: bool = True
    fold_bn: bool = True
    stain_normalise: bool = False
    tta: int | None = None
    precision: str = "auto"

    @property
    def requested_precision(self) -> str:
        """"auto", "fp32" or "bf16", the ``bf16`` switch taken into account."""
        return requested_precision(self.precision, self.bf16)

    def __post_init__(self) -> None:
        requested_precision(self.precision, self.bf16)  # refuses an unknown or contradictory request
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.tta is not None and self.tta not in TTA_SIZES:
            raise ValueError(f"tta must be one of {', '.join(map(str, TTA_SIZES))} views, got {self.tta!r}")


def _patch_view(patches: np.ndarray, view: tuple[bool, bool, bool]) -> np.ndarray:
    """(N, s, s, C) patches seen as ``view`` of :func:`~nucleikit.infer.tta.dihedral_transforms` (contiguous)."""
    if patches.ndim != 4:
        return patches  # left for _run to refuse with its message
    transpose, ud, lr = view
    out = np.swapaxes(patches, 1, 2) if transpose else patches
    if ud:
        out = out[:, ::-1]
    if lr:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """An (H, W[, C]) image in [0, 1] (float) as uint8 ``rint(255 * v)``; uint8 passes through.

    The inverse of reading an 8-bit file as ``v / 255``, so it loses nothing
    for such images.
    """
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a.astype(np.float32, copy=False) * 255.0), 0, 255).astype(np.uint8)


class Classifier:
    """A nucleus classifier: trained network, its classes, resolution and normalisation.

    Build one with :meth:`from_weights` (a bundled name or a ``.safetensors``
    file written by :func:`nucleikit.train.classify.train_classifier`), or
    from a model and its metadata (a :class:`~nucleikit.models.weights_meta.WeightsMeta`,
    or a dict checked as one; without a ``task`` it is a classifier's), kept as
    ``self.meta``, typed.

    Parameters
    ----------
    model : torch.nn.Module
        Maps (B, C, s, s) standardised patches to (B, K) logits and has a
        ``features`` method (B, C, s, s) -> (B, F).
    meta : WeightsMeta or dict
        Must hold ``classes`` (K names, in output order), ``mpp`` (um/px),
        ``patch`` (side s in pixels), ``mean`` and ``std`` (C values each, on
        the [0, 1] scale); optional ``tta`` (views, default 1) and
        ``lab_mean``/``lab_std`` (the training stain).
    config : PatchInferenceConfig
    source : str or Path
        Where the weights came from, named in errors.

    Raises
    ------
    WeightsError
        The metadata lacks a key, is not a classification model's, or
        disagrees with the model (class count).
    """

    def __init__(
        self,
        model: Any,
        meta: Mapping[str, Any],
        *,
        config: PatchInferenceConfig = PatchInferenceConfig(),
        source: str | Path = "<classifier>",
    ) -> None:
        import torch

        from ..models.weights_meta import as_weights_meta

        meta = as_weights_meta(meta, source, task="classification")
        if meta.task != "classification":
            raise WeightsError(source, f"holds a {meta.task} model, not a nucleus classifier")
        missing = [key for key in _REQUIRED_META if getattr(meta, key) is None]
        if missing:
            raise WeightsError(source, f"classifier metadata lacks {', '.join(missing)}")
        self.meta = meta
        self.classes: tuple[str, ...] = tuple(meta.classes)
        self.mpp = float(meta.mpp)
        self.patch = int(meta.patch)
        self.mean = np.asarray(meta.mean, dtype=np.float32)
        self.std = np.asarray(meta.std, dtype=np.float32)
        n_out = getattr(model, "n_classes", None)
        if n_out is not None and n_out != len(self.classes):
            raise WeightsError(
                source, f"the model has {n_out} outputs but the metadata names {len(self.classes)} classes"
            )
        if config.stain_normalise and (meta.lab_mean is None or meta.lab_std is None):
            raise WeightsError(
                source, "has no training stain (lab_mean/lab_std) to normalise to; retrain it, or run without "
                "stain normalisation"
            )
        #: Test-time augmentation views of :meth:`predict_patches`: the configuration's, else the weights'.
        self.tta = int(config.tta if config.tta is not None else meta.tta)
        self.config = config
        #: What the network runs in and why (:class:`~nucleikit.infer.precision.Precision`).
        self.precision = choose_precision(config.requested_precision, cpu_flags=cpu_flags(), bf16_ok=meta.bf16_ok)
        self.torch = torch
        if config.threads is not None:
            torch.set_num_threads(int(config.threads))
        model = model.eval()
        if config.fold_bn:
            from ..models.optimize import fold_batchnorm

            model = fold_batchnorm(model)  # a folded copy; the caller's model is untouched
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model

    @classmethod
    def from_weights(
        cls, name_or_path: str | Path, *, config: PatchInferenceConfig = PatchInferenceConfig()
    ) -> "Classifier":
        """Load bundled weights by name (e.g. ``"dcrn"``) or a ``.safetensors`` file.

        Raises
        ------
        WeightsError
            No such file or bundled name, a damaged file, or weights that are
            not a nucleus classifier's.
        """
        from ..models.weights import load_weights, resolve_weights

        path = resolve_weights(name_or_path)
        model, meta = load_weights(path)
        return cls(model, meta, config=config, source=path)

    @property
    def name(self) -> str:
        return self.meta.name if self.meta.name is not None else (self.meta.model or "classifier")

    # ------------------------------------------------------------------ patches

    def image(self, pixels: Any) -> np.ndarray:
        """An image array as :meth:`patches` reads it: (H, W, C) uint8, or float32 in [0, 1].

        A uint8 array with the model's C channels is used as it is (the patches are
        uint8 anyway); any other array the file readers would accept is converted as
        they convert files (:func:`nucleikit.io.images.as_float_image`): uint16, bool
        or float in [0, 1]; (H, W) or (H, W, 1) grey, RGB, RGBA.

        Raises
        ------
        InputError
            Any other shape or sample type, float values outside [0, 1], NaN or inf.
        """
        from ..io.images import as_float_image

        arr = np.asarray(pixels)
        channels = len(self.mean)
        if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == channels and min(arr.shape[:2]) > 0:
            return arr
        return as_float_image(arr, mode="grey" if channels == 1 else "rgb")

    def patches(self, pixels: np.ndarray, xy: Any, *, mpp: float | None = None) -> np.ndarray:
        """The model's input patches for centres in an image.

        Parameters
        ----------
        pixels : (H, W) or (H, W, C) array
            The image: uint8, uint16, bool or float in [0, 1]; grey, RGB or RGBA,
            converted as the file readers convert files (:meth:`image`).
        xy : (N, 2) array_like of float
            Centres (x, y), 0-based pixel centres of ``pixels``; each at most 1 px
            beyond the image's outer pixel centres (``-1.5 <= x <= W + 0.5``, same
            for y; those outside the image are clipped onto it).
        mpp : float or None
            Resolution of ``pixels`` in um/px; None means the model's own.

        Returns
        -------
        (N, s, s, C) uint8 ndarray
            Patch i is centred on centre i mapped to the model's resolution
            (:func:`nucleikit.targets.extract_patches`), s = :attr:`patch`.

        Raises
        ------
        InputError
            ``pixels`` of another shape or sample type, or float outside [0, 1].
        ValueError
            ``xy`` is not (N, 2) finite, or a centre lies outside the image (the
            message says how many and gives the first).
        """
        image = self.image(pixels)
        pts = np.asarray(xy, dtype=np.float64)
        if pts.size == 0:
            pts = pts.reshape(0, 2)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"centres must have shape (N, 2) of (x, y), got {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError("centres must be finite")
        h, w = image.shape[:2]
        # up to 1 px beyond the image's edge is an annotation tool's rounding: clipped onto it
        margin = OUTSIDE_TOLERANCE
        inside = (pts[:, 0] >= -margin) & (pts[:, 0] <= w - 1 + margin) & (pts[:, 1] >= -margin) & (
            pts[:, 1] <= h - 1 + margin)
        if not inside.all():
            first = pts[np.argmin(inside)]
            raise ValueError(
                f"{int((~inside).sum())} of {len(pts)} centres lie outside the {w} x {h} (W x H) image, "
                f"e.g. (x, y) = ({first[0]:g}, {first[1]:g})"
            )
        pts, _ = clip_points_to_image(pts, image.shape)
        factor = scale_factor(mpp, self.mpp)
        if factor != 1.0:
            # Resample in float (anti-aliased when shrinking), then quantise as training did.
            work = resample(image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image, factor)
            pts = scale_points(pts, factor)
        else:
            work = image
        hh, ww = work.shape[:2]
        # A centre on the image's outer half pixel (or moved past it by the
        # rounding of the resampled size) belongs to the border pixel.
        pts = np.column_stack([np.clip(pts[:, 0], 0, ww - 1), np.clip(pts[:, 1], 0, hh - 1)]).reshape(-1, 2)
        return extract_patches(to_uint8(work), pts, self.patch)

    def _run(self, fn: Any, patches: np.ndarray, width: int) -> np.ndarray:
        torch = self.torch
        patches = np.asarray(patches)
        if patches.dtype != np.uint8 or patches.ndim != 4 or patches.shape[-1] != len(self.mean):
            raise ValueError(f"patches must be (N, s, s, {len(self.mean)}) uint8, got {patches.shape} {patches.dtype}")
        out = np.zeros((len(patches), width), dtype=np.float32)
        step = self.config.batch_size
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision.bf16):
            for start in range(0, len(patches), step):
                x = (patches[start : start + step].astype(np.float32) / 255.0 - self.mean) / self.std
                xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
                if self.config.channels_last:
                    xt = xt.contiguous(memory_format=torch.channels_last)
                out[start : start + step] = fn(xt).float().numpy()
        return out

    def predict_patches(self, patches: np.ndarray, *, tta: int | None = None) -> np.ndarray:
        """Class probabilities of uint8 patches.

        Parameters
        ----------
        patches : (N, s, s, C) uint8 ndarray
            E.g. from :meth:`patches` or :attr:`nucleikit.train.patches.PatchSet.patches`.
        tta : {1, 2, 4, 8} or None
            Views to average (module docstring); None: :attr:`tta`.

        Returns
        -------
        (N, K) float32 ndarray
            Softmax probabilities, columns in :attr:`classes` order; rows sum
            to 1. N = 0 gives (0, K).
        """
        torch = self.torch
        n = self.tta if tta is None else tta
        views = dihedral_transforms(n)
        total = None
        for view in views:
            seen = patches if n == 1 else _patch_view(np.asarray(patches), view)
            probs = self._run(lambda x: torch.softmax(self.model(x).float(), dim=1), seen, len(self.classes))
            total = probs if total is None else total + probs
        return total if n == 1 else (total / np.float32(n)).astype(np.float32)

    def patch_features(self, patches: np.ndarray) -> np.ndarray:
        """Bottleneck features of uint8 patches (the model's ``features``), e.g. for UMAP.

        Returns
        -------
        (N, F) float32 ndarray
        """
        width = int(getattr(self.model, "feature_dim"))
        return self._run(self.model.features, patches, width)

    def classify(self, pixels: np.ndarray, xy: Any, *, mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Type the nuclei at given centres.

        Parameters
        ----------
        pixels : (H, W) or (H, W, C) array
            The image: uint8, uint16, bool or float in [0, 1]; grey, RGB or RGBA
            (:meth:`image`).
        xy : (N, 2) array_like of float
            Centres (x, y), 0-based pixel centres in ``pixels``.
        mpp : float or None
            Resolution of ``pixels`` (um/px); None means the model's own.

        Returns
        -------
        labels : (N,) ndarray of str
            The most probable class of each centre (first in :attr:`classes`
            order on a tie).
        probs : (N, K) float32 ndarray
            Class probabilities, columns in :attr:`classes` order.

        Raises
        ------
        InputError, ValueError
            As :meth:`patches`.

        Notes
        -----
        With ``config.stain_normalise`` the patches of this call are matched to
        the training stain together, so the moments come from all ``xy``: type
        the nuclei of one image in one call.
        """
        patches = self.patches(pixels, xy, mpp=mpp)
        if self.config.stain_normalise and len(patches):
            patches = reinhard_normalise(patches, self.meta.lab_mean, self.meta.lab_std)
        probs = self.predict_patches(patches)
        names = np.asarray(self.classes, dtype=str)
        labels = names[probs.argmax(axis=1)] if len(probs) else np.zeros(0, dtype=names.dtype)
        return labels, probs
