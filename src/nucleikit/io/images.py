"""Read image tiles (PNG, TIFF, BMP, JPEG) as float32 arrays with their pixel size.

:func:`read_image` is the one entry point. It returns an :class:`ImageData`
whose ``pixels`` are always an ``(H, W, C)`` float32 array in [0, 1] with
``C = 3`` (mode ``"rgb"``) or ``C = 1`` (mode ``"grey"``), plus the pixel size
in microns when the file records one. Whole-slide images (SVS, NDPI, ...) are
not read here; they belong to the slide reader.

Normalisation rules (applied in this order)
--------------------------------------------
1. **Sample type** to float32 in [0, 1]:

   - ``bool`` (bilevel) -> {0, 1};
   - ``uint8`` -> value / 255; ``uint16`` -> value / 65535;
   - ``float16/32/64`` -> kept as is when every value lies in [0, 1]. Anything
     else (a value outside [0, 1], NaN, inf) is an :class:`~nucleikit.errors.InputError`.
     We do *not* min-max rescale: that would make the intensities of a tile
     depend on its content, so two tiles of one slide would reach the model on
     different scales without anyone noticing;
   - any other sample type (int8, int16, int32, uint32, complex) is refused.
2. **Colour model**: palette images are expanded to RGB (RGBA when the palette
   has transparency); TIFF ``MINISWHITE`` grey is inverted so that 1 is white;
   CMYK and YCbCr JPEGs are converted to RGB by Pillow.
3. **Alpha**: an image with an alpha channel is composited over white (the
   background of a bright-field H&E slide) with straight (un-premultiplied)
   alpha: ``c * a + (1 - a)``. When every alpha value is fully opaque the
   channel is simply dropped, so the colours are unchanged bit for bit.
4. **Mode**: ``"rgb"`` replicates grey to three channels; ``"grey"`` turns RGB
   into luminance with the ITU-R BT.601 weights ``0.299 R + 0.587 G + 0.114 B``
   (on the stored, gamma-encoded values, as Pillow's ``"L"`` conversion does).

Geometry rules
--------------
- A multi-page or stacked TIFF (the first series, ``tifffile``, with one
  non-channel, non-spatial axis longer than 1: the pages of a ``QYX`` stack,
  the Z of a ``ZYX`` stack) is refused unless ``plane=K`` names the plane to
  read (the CLI's ``--plane K``, :func:`reading_plane`): taking the first one
  silently analyses a plane nobody chose. A stack
  with two or more such axes (e.g. ``TZYX``) is refused: save the plane to
  analyse as its own file. A stack of planes at most 4 pixels wide is named for
  what it almost always is: an (H, W, 2) array that tifffile saved as H pages
  of W x 2 pixels because 2 channels have no colour model.
- Refused as impossible: an axis of length 0, fewer than two spatial axes,
  a channel count other than 1, 3 or 4 (2 is accepted only as PNG grey + alpha),
  and more than ``max_pixels`` pixels (default :data:`MAX_PIXELS`, 2**27, about
  11,585 x 11,585). The size is checked from the file header, *before* any
  pixel is decoded, so a decompression bomb costs nothing. Pillow's own
  ``DecompressionBombWarning`` is silenced inside the reader because this check
  replaces it; larger images belong to the slide reader, which reads regions.
- EXIF orientation (JPEG) is ignored: pixels come back as stored, which is the
  frame point annotations refer to.
- 16-bit colour PNGs are decoded with ``imagecodecs`` (a tifffile/tiffslide
  dependency) because Pillow reduces them to 8 bits.

Pixel size (``mpp``, microns per pixel, along x)
------------------------------------------------
Looked up in this order; the first plausible value wins:

- TIFF: Aperio ``MPP = ...`` in the ImageDescription; OME-XML
  ``PhysicalSizeX`` (with ``PhysicalSizeXUnit``, default µm); ImageJ
  ``unit=micron`` with XResolution; XResolution with ResolutionUnit inch or
  centimetre (ResolutionUnit NONE gives nothing).
- PNG: the ``pHYs`` chunk when its unit is the metre (an aspect-ratio-only
  ``pHYs`` gives nothing); BMP pixels-per-metre and JPEG JFIF/EXIF density
  likewise, as reported by Pillow.
- A value outside :data:`MPP_RANGE` (0.01 to 50 µm/px) is ignored: image
  editors write 72, 96 or 300 dpi by default (85 to 353 µm/px), which is not a
  microscope's pixel size and would make a rescaling step shrink the image
  a hundredfold.

``mpp`` is ``None`` when nothing plausible is recorded (usual for BMP/JPEG).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import warnings
from collections.abc import Iterator
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

import numpy as np

from nucleikit.errors import ArrayError, ConfigError, InputError, missing_reason

__all__ = [
    "ImageData",
    "MAX_PIXELS",
    "MPP_RANGE",
    "SUPPORTED_SUFFIXES",
    "as_float_image",
    "convert_mode",
    "read_image",
    "reading_plane",
    "sample_image_path",
]

#: Largest image (height x width) :func:`read_image` decodes by default:
#: 2**27 pixels, 1.6 GB as float32 RGB. Below Pillow's hard limit (2 x 89.5 M).
MAX_PIXELS = 2**27

#: Plausible microscope pixel sizes in µm/px; metadata outside is ignored.
MPP_RANGE = (0.01, 50.0)

#: File suffixes read by :func:`read_image` (lower case) and their format.
SUPPORTED_SUFFIXES = {
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
}

_MODES = ("rgb", "grey")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Pillow formats we let it decode; anything else it recognises is "unsupported".
_PILLOW_FORMATS = ("PNG", "BMP", "JPEG")
# How much larger than one plane a TIFF series may be before we refuse to read
# it whole (a stack is read in full, then its first plane kept).
_MAX_STACK_FACTOR = 4


#: The plane read_image takes when its caller gives none (None: none); set by reading_plane.
_DEFAULT_PLANE: contextvars.ContextVar[int | None] = contextvars.ContextVar("nucleikit_plane", default=None)


@contextlib.contextmanager
def reading_plane(plane: int | None) -> Iterator[None]:
    """Within the block, :func:`read_image` called without ``plane`` reads plane ``plane``.

    How the CLI's ``--plane K`` reaches every image a command reads without each pipeline
    passing it on. The setting is local to the block (and to the thread or task it runs in);
    ``None`` changes nothing. A file with a single plane still refuses ``plane`` > 0.

    >>> with reading_plane(2):
    ...     pass
    """
    if plane is not None and (isinstance(plane, bool) or not isinstance(plane, (int, np.integer)) or plane < 0):
        raise ConfigError(f"plane must be an integer >= 0, not {plane!r}")
    token = _DEFAULT_PLANE.set(plane)
    try:
        yield
    finally:
        _DEFAULT_PLANE.reset(token)


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image read from disk, normalised to float32 in [0, 1].

    Attributes
    ----------
    pixels : (H, W, C) ndarray of float32
        Values in [0, 1]; ``C = 3`` (RGB) or ``C = 1`` (grey), by the mode asked.
        Row ``r``, column ``c`` is the pixel centred on (x, y) = (c, r).
    mpp : float or None
        Microns per pixel along x, from the file's metadata; ``None`` when the
        file records no plausible pixel size.
    path : Path
        The file read.
    original_dtype : str
        NumPy name of the stored sample type (``"bool"``, ``"uint8"``,
        ``"uint16"``, ``"float32"``, ...), before normalisation.
    original_mode : str
        Stored colour model: ``"grey"``, ``"grey+alpha"``, ``"rgb"``,
        ``"rgba"``, ``"palette"``, ``"palette+alpha"``, ``"cmyk"`` or ``"ycbcr"``.
    """

    pixels: np.ndarray
    mpp: float | None
    path: Path
    original_dtype: str
    original_mode: str

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``: the image height and width in pixels."""
        return self.pixels.shape[0], self.pixels.shape[1]


@dataclass(frozen=True, eq=False)
class _Decoded:
    """What a format decoder hands to the shared normalisation steps."""

    array: np.ndarray  # (H, W, C) in the stored sample type
    layout: str  # "grey", "grey+alpha", "rgb" or "rgba" (of ``array``)
    original_mode: str
    mpp: float | None
    invert: bool = False  # TIFF MINISWHITE


def read_image(
    path: str | Path,
    *,
    mode: Literal["rgb", "grey"] = "rgb",
    max_pixels: int = MAX_PIXELS,
    plane: int | None = None,
) -> ImageData:
    """Read a PNG, TIFF, BMP or JPEG image as float32 in [0, 1] with its µm/px.

    Parameters
    ----------
    path : str or Path
        The image file, named ``.png``, ``.tif``/``.tiff``, ``.bmp`` or
        ``.jpg``/``.jpeg`` (any case). The file's signature picks the decoder
        (tifffile for TIFF, Pillow otherwise); a TIFF must be named as one.
    mode : {"rgb", "grey"}
        ``"rgb"`` returns ``(H, W, 3)`` (grey replicated); ``"grey"`` returns
        ``(H, W, 1)`` (RGB turned into BT.601 luminance).
    max_pixels : int
        Largest ``H * W`` accepted, checked from the header before decoding.
        A TIFF stack is also refused above ``4 * max_pixels`` samples in all.
    plane : int or None
        0-based plane of a multi-page or Z/T-stacked TIFF to read; required
        for such a file, refused (unless 0) for any other. None: the plane
        set by :func:`reading_plane` (the CLI's ``--plane``), if any.

    Returns
    -------
    ImageData
        ``pixels`` (H, W, C) float32 in [0, 1], ``mpp`` (µm/px or None) and
        the stored sample type and colour model. See the module docstring for
        every normalisation rule.

    Raises
    ------
    InputError
        Missing, empty, truncated or undecodable file; unsupported format or
        sample type; impossible dimensions; float values outside [0, 1].
    ConfigError
        ``mode`` is not ``"rgb"`` or ``"grey"``.

    Examples
    --------
    >>> image = read_image(sample_image_path())
    >>> image.pixels.shape, image.pixels.dtype.name, round(image.mpp, 3)
    ((512, 512, 3), 'float32', 0.499)
    """
    if mode not in _MODES:
        raise ConfigError(f"image mode must be one of {_MODES}, not {mode!r}")
    path = Path(path)
    head = _check_file(path)
    if plane is None:
        plane = _DEFAULT_PLANE.get()
    if plane is not None and (isinstance(plane, bool) or not isinstance(plane, (int, np.integer)) or plane < 0):
        raise ConfigError(f"plane must be an integer >= 0, not {plane!r}")
    if head[:4] in _TIFF_MAGIC:
        decoded = _decode_tiff(path, max_pixels, plane)
    else:
        if plane not in (None, 0):
            raise InputError(path, f"has a single plane; plane {plane} (--plane) applies to multi-page TIFFs only")
        decoded = _decode_pillow(path, head, max_pixels)
    pixels = _to_unit_float(decoded.array, path)
    if decoded.invert:
        pixels = 1.0 - pixels
    pixels = _composite_over_white(pixels, decoded.layout)
    pixels = _convert_mode(pixels, mode)
    return ImageData(
        pixels=pixels,
        mpp=decoded.mpp,
        path=path,
        original_dtype=decoded.array.dtype.name,
        original_mode=decoded.original_mode,
    )


def sample_image_path() -> Path:
    """Path of the bundled 512 x 512 H&E sample (``sample_he.png``, 0.499 µm/px).

    A CC0 crop of OpenSlide's ``CMU-1-Small-Region.svs``; ``sample_he.json``
    beside it records the source, its SHA-256 and the region.
    """
    resource = files("nucleikit").joinpath("data", "sample_he.png")
    if not isinstance(resource, Path):
        # Only a zipped install would give a non-file resource; nucleikit is not
        # zip-safe, so say so rather than hand back a path that does not exist.
        raise RuntimeError(f"nucleikit is not installed as plain files: {resource}")
    return resource


# --- file checks --------------------------------------------------------------


def _check_file(path: Path) -> bytes:
    """Return the first 32 bytes after checking existence, size and suffix."""
    if not path.exists():
        raise InputError(path, missing_reason(path))
    if path.is_dir():
        raise InputError(path, "is a directory, not an image file")
    if not path.is_file():
        # a FIFO or a device named .png would block the read forever
        raise InputError(path, "not a regular file (a pipe, socket or device)")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise InputError(path, f"unsupported image format {suffix or '(no suffix)'!r} (supported: {supported})")
    try:
        with path.open("rb") as handle:
            head = handle.read(32)
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not head:
        raise InputError(path, "file is empty (0 bytes)")
    return head


def _check_plane(path: Path, height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise InputError(path, f"impossible image size {width} x {height} (a zero-sized axis)")
    if height * width > max_pixels:
        raise InputError(
            path,
            f"image of {width} x {height} pixels exceeds the limit of {max_pixels:,} pixels "
            "(open large images with the slide reader)",
        )


def _plausible_mpp(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value) if MPP_RANGE[0] <= value <= MPP_RANGE[1] else None


# --- Pillow formats (PNG, BMP, JPEG) ------------------------------------------

# Pillow mode -> (our layout after conversion, Pillow mode to convert to or None,
# original colour model).
_PILLOW_MODES = {
    "1": ("grey", None, "grey"),
    "L": ("grey", None, "grey"),
    "I;16": ("grey", None, "grey"),
    "I;16L": ("grey", None, "grey"),
    "I;16B": ("grey", None, "grey"),
    "F": ("grey", None, "grey"),
    "LA": ("grey+alpha", None, "grey+alpha"),
    "La": ("grey+alpha", "LA", "grey+alpha"),
    "RGB": ("rgb", None, "rgb"),
    "RGBX": ("rgb", "RGB", "rgb"),
    "RGBA": ("rgba", None, "rgba"),
    "RGBa": ("rgba", "RGBA", "rgba"),
    "PA": ("rgba", "RGBA", "palette+alpha"),
    "CMYK": ("rgb", "RGB", "cmyk"),
    "YCbCr": ("rgb", "RGB", "ycbcr"),
}
_PNG_COLOUR_TYPES = {2: ("rgb", "rgb"), 4: ("grey+alpha", "grey+alpha"), 6: ("rgba", "rgba")}


def _decode_pillow(path: Path, head: bytes, max_pixels: int) -> _Decoded:
    from PIL import Image, UnidentifiedImageError

    fmt = SUPPORTED_SUFFIXES[path.suffix.lower()]
    if fmt == "TIFF":
        raise InputError(path, "not a TIFF file (cannot be decoded)")
    try:
        with warnings.catch_warnings():
            # Our explicit pixel limit (checked below, before decoding) replaces
            # Pillow's warning; its hard error above 2 x MAX_IMAGE_PIXELS stays.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own message quotes its own, larger limit: name only ours, with the
        # image's size as every other refusal gives it (a PNG's header holds it)
        if head.startswith(_PNG_MAGIC) and len(head) >= 24:
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
            _check_plane(path, height, width, max_pixels)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"image of {int(found.group(1)):,} pixels" if found else "image"
        raise InputError(path, f"{size} exceeds the limit of {max_pixels:,} pixels "
                               "(open large images with the slide reader)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"cannot be decoded as a {fmt} image (damaged or not an image)") from exc
    with image:
        width, height = image.size
        _check_plane(path, height, width, max_pixels)
        mpp = _pillow_mpp(image.info)
        if head.startswith(_PNG_MAGIC) and len(head) > 25 and head[24] == 16 and head[25] in _PNG_COLOUR_TYPES:
            return _decode_png16(path, head[25], mpp)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(path, f"truncated or damaged {fmt} file ({exc})") from exc
        return _pillow_to_array(path, image, mpp)


def _pillow_to_array(path: Path, image, mpp: float | None) -> _Decoded:
    pil_mode = image.mode
    if pil_mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        layout, original = ("rgba", "palette+alpha") if has_alpha else ("rgb", "palette")
    elif pil_mode in _PILLOW_MODES:
        layout, target, original = _PILLOW_MODES[pil_mode]
        if target is not None:
            image = image.convert(target)
    else:
        raise InputError(path, f"unsupported pixel mode {pil_mode!r}")
    array = np.asarray(image)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))  # I;16B is big-endian
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return _Decoded(array=array, layout=layout, original_mode=original, mpp=mpp)


def _decode_png16(path: Path, colour_type: int, mpp: float | None) -> _Decoded:
    import imagecodecs

    try:
        array = imagecodecs.png_decode(path.read_bytes())
    except (RuntimeError, ValueError) as exc:  # imagecodecs errors are RuntimeErrors
        raise InputError(path, f"truncated or damaged PNG file ({exc})") from exc
    layout, original = _PNG_COLOUR_TYPES[colour_type]
    return _Decoded(array=np.ascontiguousarray(array), layout=layout, original_mode=original, mpp=mpp)


def _pillow_mpp(info: dict) -> float | None:
    # Pillow reports a metre-unit PNG pHYs, BMP pixels per metre and JFIF/EXIF
    # density all as "dpi"; an aspect-only pHYs gives no "dpi" at all.
    dpi = info.get("dpi")
    if not dpi:
        return None
    try:
        dpi_x = float(dpi[0])
    except (TypeError, ValueError):
        return None
    return _plausible_mpp(25400.0 / dpi_x) if dpi_x > 0 else None


# --- TIFF ---------------------------------------------------------------------

_TIFF_DTYPES = ("bool", "uint8", "uint16", "float16", "float32", "float64")
_DTYPE_HINT = "use 8/16-bit unsigned, or float in [0, 1]"


def _decode_tiff(path: Path, max_pixels: int, plane: int | None = None) -> _Decoded:
    import tifffile

    if SUPPORTED_SUFFIXES[path.suffix.lower()] != "TIFF":
        raise InputError(path, f"is a TIFF file but named {path.suffix!r}; rename it .tif")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(path, "TIFF file holds no image")
            series = tif.series[0]
            page = series.keyframe
            axes = series.get_axes(False)
            shape = series.get_shape(False)
            plan = _plan_tiff_axes(path, axes, shape, max_pixels, plane)
            photometric = int(page.photometric)
            if series.dtype.name not in _TIFF_DTYPES:
                raise InputError(path, f"unsupported sample type {series.dtype.name} ({_DTYPE_HINT})")
            mpp = _tiff_mpp(tif, page)
            colormap = page.colormap
            data = series.asarray()
    except InputError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, KeyError, IndexError, RuntimeError) as exc:
        raise InputError(path, f"truncated or damaged TIFF file ({exc})") from exc
    array = _apply_tiff_plan(data.reshape(shape), plan)
    return _tiff_colour(path, array, photometric, colormap, mpp)


@dataclass(frozen=True)
class _AxisPlan:
    """How to turn a TIFF series into (H, W, C)."""

    index: tuple  # indexes every axis but Y, X and the channel axis
    order: tuple[int, ...]  # transpose of the remaining axes to (Y, X, C)


def _plan_tiff_axes(
    path: Path, axes: str, shape: tuple[int, ...], max_pixels: int, plane: int | None = None
) -> _AxisPlan:
    if 0 in shape:
        raise InputError(path, f"impossible image shape {shape} (a zero-sized axis)")
    if "Y" not in axes or "X" not in axes:
        raise InputError(path, f"image has fewer than 2 spatial dimensions (axes {axes}, shape {shape})")
    _check_plane(path, shape[axes.index("Y")], shape[axes.index("X")], max_pixels)
    channel_axes = [i for i, a in enumerate(axes) if a in "SC" and shape[i] > 1]
    if len(channel_axes) > 1:
        raise InputError(path, f"image has two channel axes (axes {axes}, shape {shape})")
    stack_axes = [i for i, a in enumerate(axes) if a not in "YXSC" and shape[i] > 1]
    if len(stack_axes) > 1:
        raise InputError(
            path,
            f"{len(stack_axes) + 2}-D stack (axes {axes}, shape {shape}); save the plane to analyse as its own file",
        )
    if int(np.prod(shape)) > _MAX_STACK_FACTOR * max_pixels:
        raise InputError(path, f"TIFF stack of shape {shape} is too large to read")
    chosen = _chosen_plane(path, axes, shape, stack_axes[0] if stack_axes else None, plane)
    channel = channel_axes[0] if channel_axes else None
    keep = [axes.index("Y"), axes.index("X")] + ([channel] if channel is not None else [])
    index = tuple(slice(None) if i in keep else (chosen if i in stack_axes else 0) for i in range(len(axes)))
    remaining = sorted(keep)
    order = tuple(remaining.index(i) for i in keep)
    return _AxisPlan(index=index, order=order)


def _chosen_plane(path: Path, axes: str, shape: tuple[int, ...], stack_axis: int | None, plane: int | None) -> int:
    """The index to read along the TIFF's one stack axis (0 when it has none)."""
    if stack_axis is None:
        if plane not in (None, 0):
            raise InputError(path, f"has a single plane (axes {axes}, shape {shape}); plane {plane} (--plane) does not exist")
        return 0
    count = shape[stack_axis]
    width, height = shape[axes.index("X")], shape[axes.index("Y")]
    if plane is None:
        if width <= 4:
            raise InputError(path, f"{count} pages of {width} x {height} pixels: an image with {width} channels "
                                   "saved without a colour model? Save it with 1, 3 or 4 channels")
        raise InputError(path, f"holds {count} planes (axes {axes}, shape {shape}); choose one with "
                               "--plane K (Python: read_image(path, plane=K)), K from 0")
    if plane >= count:
        raise InputError(path, f"holds {count} planes (0 to {count - 1}); there is no plane {plane}")
    return int(plane)


def _apply_tiff_plan(data: np.ndarray, plan: _AxisPlan) -> np.ndarray:
    array = np.transpose(data[plan.index], plan.order)
    return np.ascontiguousarray(array if array.ndim == 3 else array[:, :, np.newaxis])


_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _YCBCR = 0, 1, 2, 3, 6


def _tiff_colour(path: Path, array: np.ndarray, photometric: int, colormap, mpp: float | None) -> _Decoded:
    channels = array.shape[2]
    if photometric == _PALETTE and channels == 1 and colormap is not None:
        # colormap is (3, 2**bits) uint16; index it with the stored values.
        rgb = np.moveaxis(np.asarray(colormap, dtype=np.uint16)[:, array[:, :, 0]], 0, -1)
        return _Decoded(array=np.ascontiguousarray(rgb), layout="rgb", original_mode="palette", mpp=mpp)
    if photometric in (_MINISBLACK, _MINISWHITE) and channels in (1, 3):
        # Three planes stored as grey (e.g. OME CYX) are read as R, G, B.
        layout = "grey" if channels == 1 else "rgb"
        invert = photometric == _MINISWHITE and channels == 1
        return _Decoded(array=array, layout=layout, original_mode=layout, mpp=mpp, invert=invert)
    if photometric in (_RGB, _YCBCR) and channels in (3, 4):
        # tifffile returns JPEG-compressed YCbCr already converted to RGB.
        layout = "rgb" if channels == 3 else "rgba"
        return _Decoded(array=array, layout=layout, original_mode=layout, mpp=mpp)
    if channels not in (1, 3, 4):
        raise InputError(path, f"image has {channels} channels (expected 1, 3 or 4)")
    raise InputError(path, f"unsupported TIFF colour model (photometric {photometric}, {channels} channels)")


def _tiff_mpp(tif, page) -> float | None:
    description = page.description or ""
    if description.startswith("Aperio"):
        match = re.search(r"\bMPP\s*=\s*([0-9.eE+-]+)", description)
        if match and (mpp := _plausible_mpp(_to_float(match.group(1)))) is not None:
            return mpp
    if tif.is_ome and (mpp := _plausible_mpp(_ome_mpp(tif.ome_metadata))) is not None:
        return mpp
    x_resolution = _tag_rational(page, "XResolution")
    if not x_resolution:
        return None
    if tif.is_imagej:
        unit = str((tif.imagej_metadata or {}).get("unit", "")).lower()
        if unit in ("micron", "microns", "um", "µm", "\u00b5m", "\\u00b5m"):
            return _plausible_mpp(1.0 / x_resolution)
    tag = page.tags.get("ResolutionUnit")
    unit = int(tag.value) if tag is not None else 2  # TIFF default: inch
    microns_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)
    return _plausible_mpp(microns_per_unit / x_resolution) if microns_per_unit else None


_OME_UNITS = {"µm": 1.0, "\u00b5m": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _ome_mpp(xml: str | None) -> float | None:
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            size = _to_float(element.get("PhysicalSizeX"))
            scale = _OME_UNITS.get(element.get("PhysicalSizeXUnit", "µm"))
            return size * scale if size is not None and scale is not None else None
    return None


def _tag_rational(page, name: str) -> float | None:
    tag = page.tags.get(name)
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, tuple) and len(value) == 2:
        numerator, denominator = value
        return numerator / denominator if denominator and numerator > 0 else None
    number = _to_float(value)
    return number if number and number > 0 else None


def _to_float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# --- shared normalisation -----------------------------------------------------


def _to_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) stored samples -> float32 in [0, 1] (rules in the module docstring)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError(path, "float image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                path,
                f"float pixel values span [{low:g}, {high:g}], outside [0, 1] "
                "(rescale to [0, 1] or save as 8/16-bit integers)",
            )
        return array.astype(np.float32)
    raise InputError(path, f"unsupported sample type {array.dtype.name} ({_DTYPE_HINT})")


def _composite_over_white(pixels: np.ndarray, layout: str) -> np.ndarray:
    """Drop the alpha channel of grey+alpha / RGBA pixels, compositing over white."""
    if layout not in ("grey+alpha", "rgba"):
        return pixels
    colour, alpha = pixels[:, :, :-1], pixels[:, :, -1:]
    if np.all(alpha == 1.0):
        return np.ascontiguousarray(colour)
    return colour * alpha + (np.float32(1.0) - alpha)


def as_float_image(array, *, mode: Literal["rgb", "grey"] = "rgb", name: str = "image array") -> np.ndarray:
    """An image held in memory, normalised exactly as :func:`read_image` normalises a file's pixels.

    Parameters
    ----------
    array : (H, W) or (H, W, C) array_like
        Grey (H, W) or (H, W, 1), RGB (H, W, 3) or RGBA (H, W, 4), rows first
        (row ``r``, column ``c`` is the pixel centred on (x, y) = (c, r)).
        Sample types as for files: bool, uint8 (/ 255), uint16 (/ 65535), or
        float already in [0, 1] (never rescaled).
    mode : {"rgb", "grey"}
        As :func:`read_image`: (H, W, 3) with grey replicated, or (H, W, 1)
        BT.601 luminance.
    name : str
        How error messages name the array.

    Returns
    -------
    (H, W, 3) or (H, W, 1) float32 ndarray in [0, 1]
        Alpha composited over white (module docstring, rule 3); a new array.

    Raises
    ------
    ArrayError
        (an :class:`InputError` and a :class:`ValueError`) Not 2-D or 3-D, a
        zero-sized axis, a channel count other than 1, 3 or 4 (two channels
        could be grey + alpha or two stains: say which), an unsupported sample
        type, float values outside [0, 1], NaN or inf.
    ConfigError
        ``mode`` is not ``"rgb"`` or ``"grey"``.
    """
    if mode not in _MODES:
        raise ConfigError(f"image mode must be one of {_MODES}, not {mode!r}")
    try:
        return _as_float_image(array, mode, name)
    except InputError as exc:
        raise ArrayError(exc.path, exc.reason) from None


def _as_float_image(array, mode: str, name: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3:
        raise InputError(name, f"image of shape {arr.shape}: expected (H, W) grey or (H, W, C) with C = 1, 3 or 4")
    if 0 in arr.shape:
        raise InputError(name, f"impossible image shape {arr.shape} (a zero-sized axis)")
    layouts = {1: "grey", 3: "rgb", 4: "rgba"}
    if arr.shape[2] not in layouts:
        raise InputError(name, f"image of shape {arr.shape} has {arr.shape[2]} channels (expected 1, 3 or 4)")
    pixels = _to_unit_float(arr, name)  # always a new array (astype copies)
    pixels = _composite_over_white(pixels, layouts[arr.shape[2]])
    return _convert_mode(pixels, mode)


def convert_mode(pixels: np.ndarray, mode: str) -> np.ndarray:
    """An (H, W, 1) or (H, W, 3) float image in the colour ``mode`` (as :func:`read_image` does).

    ``"rgb"`` replicates grey to three channels; ``"grey"`` turns RGB into
    BT.601 luminance, (H, W, 1). An image already in ``mode`` is returned as is.
    """
    if mode not in _MODES:
        raise ConfigError(f"image mode must be one of {_MODES}, not {mode!r}")
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"pixels must be (H, W, 1) or (H, W, 3), got {pixels.shape}")
    return _convert_mode(pixels, mode)


def _convert_mode(pixels: np.ndarray, mode: str) -> np.ndarray:
    channels = pixels.shape[2]
    if mode == "rgb":
        return np.repeat(pixels, 3, axis=2) if channels == 1 else pixels
    if channels == 1:
        return pixels
    grey = np.clip(pixels @ _BT601, 0.0, 1.0)  # weights sum to 1 up to float32 rounding
    return grey[:, :, np.newaxis]
