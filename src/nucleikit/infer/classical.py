"""The classical floor: Otsu threshold + distance-transform watershed, no training at all.

Every learned segmenter is reported next to this baseline (PROTOCOL.md section 3): a network
that does not beat it on an organ has learned nothing useful there.

Pipeline for an (H, W, 3) RGB image in [0, 1]:

1. one channel where nuclei are bright: the haematoxylin optical density of
   :func:`skimage.color.rgb2hed` for bright-field H&E (``channel="haematoxylin"``), the
   BT.601 luminance for fluorescence (``channel="grey"``), its negative for grey bright field
   (``channel="dark"``: dark nuclei on a bright background), or the one of these that fits
   the image (``channel="auto"``: haematoxylin for stained images by
   :func:`nucleikit.infer.segment.image_kind`, else dark when the median luminance is above
   0.5, else grey);
2. Gaussian smoothing (``sigma`` pixels), then Otsu's threshold
   (:func:`skimage.filters.threshold_otsu`), holes filled;
3. instances by :func:`nucleikit.postprocess.instances_from_probability` on that mask
   (components below ``min_size`` dropped, touching nuclei split at the maxima of the
   distance transform at least ``min_distance`` apart).
"""

from __future__ import annotations

import numpy as np

from ..postprocess import instances_from_probability

__all__ = ["CHANNELS", "nucleus_channel", "otsu_watershed"]

#: What :func:`nucleus_channel` can extract ("auto" picks one per image).
CHANNELS = ("haematoxylin", "grey", "dark", "auto")


def nucleus_channel(pixels: np.ndarray, channel: str = "haematoxylin") -> np.ndarray:
    """(H, W) float32 channel of an (H, W, 3) RGB image in [0, 1] in which nuclei are bright."""
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"pixels must be (H, W, 3) RGB, got shape {arr.shape}")
    if channel == "haematoxylin":
        from skimage.color import rgb2hed

        return rgb2hed(np.clip(arr, 0.0, 1.0))[..., 0].astype(np.float32)
    if channel in ("grey", "dark", "auto"):
        grey = (arr @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
        if channel == "auto":
            from .segment import image_kind

            if image_kind(arr) == "stained":
                return nucleus_channel(arr, "haematoxylin")
            channel = "dark" if float(np.median(grey)) > 0.5 else "grey"
        return 1.0 - grey if channel == "dark" else grey
    raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")


def otsu_watershed(
    pixels: np.ndarray,
    *,
    channel: str = "haematoxylin",
    sigma: float = 1.0,
    min_size: int = 30,
    min_distance: int = 5,
) -> np.ndarray:
    """Nucleus instances of an RGB image by Otsu + distance-transform watershed.

    Parameters
    ----------
    pixels : (H, W, 3) float array in [0, 1]
    channel : {"haematoxylin", "grey", "dark", "auto"}
        H&E bright field, fluorescence (nuclei bright on dark), grey bright field (nuclei dark
        on bright), or chosen per image (module docstring).
    sigma : float
        Gaussian smoothing before thresholding, in pixels (0 disables it).
    min_size : int
        Smallest instance kept, in pixels.
    min_distance : int
        Smallest distance between watershed seeds, in pixels.

    Returns
    -------
    (H, W) ndarray of int32
        0 = background; instances 1..K in raster order.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    signal = nucleus_channel(pixels, channel)
    if sigma > 0:
        signal = ndimage.gaussian_filter(signal, sigma)
    if float(signal.max()) <= float(signal.min()):
        return np.zeros(signal.shape, np.int32)
    mask = ndimage.binary_fill_holes(signal > threshold_otsu(signal))
    return instances_from_probability(mask.astype(np.float32), threshold=0.5, min_size=min_size,
                                      min_distance=min_distance)
