"""The writer registry: every output format, and the names every command gives its files.

A command describes what it found as :class:`Nuclei` (one image's, or one chunk of a
slide's) and asks the registry for formats by name; each format module
(:mod:`~nucleikit.export.csv`, :mod:`~nucleikit.export.geojson`, ...) registers one
:class:`Writer` that knows how to write an image's :class:`ImageOutput` and/or a slide's
:class:`SlideTable`. Adding a format is one module with a :func:`register_writer` call (the
package imports every module it holds) and its test: images, slides and the CLI's
``--formats`` all read :data:`WRITERS`.

File names
----------
``<stem><tag><suffix>``: ``tag`` is the command's (:data:`OUTPUT_TAGS`, so that commands
sharing one ``-o`` folder never overwrite each other's files), ``suffix`` the writer's
(``.csv``, ``_overlay.png``...). A writer that only one command uses may leave the tag out
(``<stem>_labels.tif``: ``evaluate segmentation`` and training read that name).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = [
    "OUTPUT_TAGS",
    "output_stem",
    "Nuclei",
    "ImageOutput",
    "SlideTable",
    "Writer",
    "WRITERS",
    "register_writer",
    "slide_formats",
    "check_slide_formats",
    "write_image_outputs",
    "write_slide_outputs",
]

#: What each command adds to an input's stem in its output names, so that commands sharing
#: one ``-o`` folder never overwrite each other's files: ``detect`` keeps the plain
#: ``<stem>.csv`` (what ``evaluate detection`` and earlier scripts read), the others say
#: what their table holds. ``segment``'s label image stays ``<stem>_labels.tif`` (only
#: ``segment`` writes label images; ``evaluate segmentation`` and training read that name).
OUTPUT_TAGS: Mapping[str, str] = {
    "detect": "",
    "segment": "_outlines",
    "analyze": "_typed",
    "classify": "_classified",
}


def output_stem(stem: str, command: str) -> str:
    """The stem of ``command``'s outputs for an input of stem ``stem`` (:data:`OUTPUT_TAGS`).

    >>> output_stem("img1", "segment")
    'img1_outlines'
    """
    try:
        return stem + OUTPUT_TAGS[command]
    except KeyError:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(OUTPUT_TAGS)}") from None


@dataclass(frozen=True, eq=False)
class Nuclei:
    """Nuclei of one image, or one chunk of a slide's, in the form every writer reads.

    Attributes
    ----------
    xy : (N, 2) float64
        (x, y) 0-based pixel centres (centroids for outlined nuclei).
    columns : mapping of str to (N,) array
        Table columns after x and y, in order (``score``; ``class``, ``class_prob``;
        ``area``, ``mean_intensity``).
    measurements : mapping of str to (N,) array
        QuPath measurements (names as QuPath shows them).
    classes : (N,) array or None
        Class name per nucleus (QuPath classification, overlay colours).
    outlines : sequence of (K, 2) arrays, or None
        Outline rings (x, y), pixel centres, open.
    ids : (N,) int array or None
        Labels; the image CSV then starts with an ``id`` column and is a nucleus table
        (:func:`~nucleikit.export.csv.write_table_csv`).
    """

    xy: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    measurements: Mapping[str, np.ndarray] = field(default_factory=dict)
    classes: np.ndarray | None = None
    outlines: Sequence[np.ndarray] | None = None
    ids: np.ndarray | None = None

    @functools.cached_property
    def geometry(self) -> np.ndarray:
        """(N,) shapely polygons of the outlines (for WKB columns); computed once."""
        from ._stream import polygons_from_rings

        rings = list(self.outlines or [])
        sizes = [len(r) for r in rings]
        vertices = np.concatenate(rings) if rings else np.zeros((0, 2))
        return polygons_from_rings(vertices, np.concatenate([[0], np.cumsum(sizes)]))


@dataclass(frozen=True, eq=False)
class ImageOutput:
    """What an image's writers get: its nuclei, and the pixels and labels some formats draw.

    ``mpp`` is the input's resolution (µm/px) the coordinates refer to and ``mpp_source``
    where it came from (``option``, ``metadata`` or ``model``), recorded in the GeoJSON;
    None: not recorded.
    """

    nuclei: Nuclei
    pixels: np.ndarray | None = None
    labels: np.ndarray | None = None
    mpp: float | None = None
    mpp_source: str | None = None


@dataclass(frozen=True, eq=False)
class SlideTable:
    """What a slide's writers get.

    Attributes
    ----------
    chunks : callable
        Returns a fresh iterable of :class:`Nuclei` chunks (each writer streams its own pass
        over the resume store, so memory holds one chunk).
    schema : mapping of str to dtype
        The numeric columns every chunk's ``columns`` holds (a table without rows keeps them).
    ids : bool
        Tables start with an ``id`` column 1, 2, ... (the SQLite row ids).
    outlines : bool
        Chunks carry outlines: WKB ``geometry`` columns in Parquet and SQLite.
    mpp : float or None
        The slide's level-0 resolution (µm/px), recorded in the GeoJSON; None: not recorded.
    """

    chunks: Callable[[], Iterable[Nuclei]]
    schema: Mapping[str, str]
    ids: bool = False
    outlines: bool = False
    mpp: float | None = None


@dataclass(frozen=True)
class Writer:
    """One output format.

    Attributes
    ----------
    name : str
        What ``--formats`` and ``FileResult.outputs`` call it (``"csv"``).
    suffix : str
        End of the file name after the output stem (``".csv"``, ``"_overlay.png"``).
    write_image : callable or None
        ``(path, ImageOutput) -> Path``; None: not for images.
    write_slide : callable or None
        ``(path, SlideTable) -> Path``; None: not for slides.
    tagged : bool
        The command's tag is part of the name (False: ``<stem><suffix>`` for every command).
    needs : str or None
        Optional module the format needs (:mod:`nucleikit.extras`); without it the format
        is not a default and asking for it names the extra to install.
    default : bool
        Part of the slides' default formats (:func:`slide_formats`) when ``needs`` is met;
        False: written only when asked for by name.
    """

    name: str
    suffix: str
    write_image: Callable[[Path, ImageOutput], Path] | None = None
    write_slide: Callable[[Path, SlideTable], Path] | None = None
    tagged: bool = True
    needs: str | None = None
    default: bool = True

    @property
    def available(self) -> bool:
        """Its optional module (if any) is installed."""
        from ..extras import available

        return self.needs is None or available(self.needs)

    def path(self, out: Path, stem: str, command: str) -> Path:
        """Where this format's file of input ``stem`` goes when ``command`` writes it."""
        return Path(out) / f"{output_stem(stem, command) if self.tagged else stem}{self.suffix}"


#: Every registered format by name, in registration order (module name order).
WRITERS: dict[str, Writer] = {}


def register_writer(writer: Writer) -> Writer:
    """Add a format (once per name) to :data:`WRITERS`."""
    if writer.name in WRITERS and WRITERS[writer.name] is not writer:
        raise ValueError(f"an output format named {writer.name!r} is already registered")
    WRITERS[writer.name] = writer
    return writer


@functools.cache
def _load_formats() -> None:
    """Import every module of the package once, so each registers its writer."""
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{package}.{info.name}")


def writer(name: str) -> Writer:
    _load_formats()
    try:
        return WRITERS[name]
    except KeyError:
        raise ConfigError(f"unknown output format {name!r}; known: {', '.join(WRITERS)}") from None


def _ordered(names: Iterable[str]) -> tuple[str, ...]:
    order = ("csv", "geojson", "parquet", "sqlite")  # the historical default order; others after
    return tuple(sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n)))


def slide_formats(*, every: bool = False) -> tuple[str, ...]:
    """The slides' default formats, in a fixed order (csv first).

    Those whose optional module is installed (Parquet needs pyarrow) and that are not opt-in
    (``Writer.default``); ``every=True``: every registered slide format.
    """
    _load_formats()
    return _ordered(n for n, w in WRITERS.items()
                    if w.write_slide is not None and (every or (w.default and w.available)))


def check_slide_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """``formats`` (names, or one comma-separated string) checked against the slide formats.

    Raises :class:`~nucleikit.errors.ConfigError` for an unknown name and
    :class:`~nucleikit.extras.MissingExtraError` (naming the extra) for a format whose
    optional module is not installed.
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    out = tuple(dict.fromkeys(str(f).lower() for f in formats))
    known = slide_formats(every=True)
    unknown = [f for f in out if f not in known]
    if unknown or not out:
        raise ConfigError(f"formats must be one or more of {', '.join(known)}; got {', '.join(unknown) or 'none'}")
    for name in out:
        w = WRITERS[name]
        if not w.available:
            from ..extras import MissingExtraError

            raise MissingExtraError(w.needs, f"--formats {name}")
    return out


def write_image_outputs(out: Path, stem: str, command: str, formats: Sequence[str],
                        output: ImageOutput) -> dict[str, Path]:
    """Write one image's outputs in ``formats`` (in that order); format name -> file."""
    written = {}
    for name in formats:
        w = writer(name)
        if w.write_image is None:
            raise ConfigError(f"output format {name!r} is for slides only")
        written[name] = Path(w.write_image(w.path(out, stem, command), output))
    return written


def write_slide_outputs(out: Path, stem: str, command: str, formats: Sequence[str],
                        table: SlideTable) -> dict[str, Path]:
    """Stream one slide's tables in ``formats`` (in that order); format name -> file."""
    written = {}
    for name in formats:
        w = writer(name)
        if w.write_slide is None:
            raise ConfigError(f"output format {name!r} is for images only")
        written[name] = Path(w.write_slide(w.path(out, stem, command), table))
    return written
