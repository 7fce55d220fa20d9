"""The records shared by the data sets, and where to find the shared data.

Every point data set reader (CRCHisto, MoNuSeg centroids, ...) yields
:class:`PointSample` records and every segmentation data set reader (DSB2018,
...) :class:`LabelSample` records, so training and evaluation code never needs
to know which data set it is reading.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload

import numpy as np

from nucleikit.io.images import read_image

__all__ = ["SHARED_ENV", "LabelSample", "PointSample", "SampleSequence", "find_shared_dir"]

#: Environment variable naming the ``shared`` folder (holding ``data/`` and ``splits/``).
SHARED_ENV = "NUCLEIKIT_SHARED"


S = TypeVar("S")


class SampleSequence(Sequence[S], Generic[S]):
    """A data set as a sequence of samples, one per key, built when indexed.

    Subclasses give ``_keys`` (a tuple, one key per sample, in order) and
    ``_sample(key)``; samples read their pixels only when asked
    (``load_image``), so indexing and slicing are cheap.
    """

    @property
    def _keys(self) -> tuple[Any, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample(self, key: Any) -> S:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> S: ...

    @overload
    def __getitem__(self, index: slice) -> list[S]: ...

    def __getitem__(self, index: int | slice) -> S | list[S]:
        if isinstance(index, slice):
            return [self._sample(key) for key in self._keys[index]]
        return self._sample(self._keys[index])


@dataclass(frozen=True, eq=False)
class PointSample:
    """One annotated image of a point data set.

    Attributes
    ----------
    id : str
        Identifier within its data set, e.g. ``"img8"``.
    image_path : Path
        The image file (read with :meth:`load_image`).
    points : (N, 2) ndarray of float64
        Annotated nucleus centres, (x, y) 0-based pixel centres, x to the
        right, y down; N may be 0.
    mpp : float
        Microns per pixel of the image.
    classes : (N,) ndarray of str, or None
        Class name of each point, or ``None`` for a detection-only sample.
    clipped : int
        How many of the annotated points lay less than 1 px outside the image
        and were moved onto its edge by the reader (farther ones are refused).
    """

    id: str
    image_path: Path
    points: np.ndarray
    mpp: float
    classes: np.ndarray | None = None
    clipped: int = 0

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64)
        if points.size == 0:
            points = points.reshape(0, 2)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"{self.id}: points must have shape (N, 2), got {points.shape}")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "image_path", Path(self.image_path))
        if self.classes is not None:
            classes = np.asarray(self.classes, dtype=str).reshape(-1)
            if len(classes) != len(points):
                raise ValueError(f"{self.id}: {len(classes)} classes for {len(points)} points")
            object.__setattr__(self, "classes", classes)

    def load_image(self, mode: Literal["rgb", "grey"] = "rgb") -> np.ndarray:
        """Read the image: (H, W, 3) (``"rgb"``) or (H, W, 1) (``"grey"``) float32 in [0, 1]."""
        return read_image(self.image_path, mode=mode).pixels


@dataclass(frozen=True, eq=False)
class LabelSample:
    """One image of a segmentation data set, with its instance labels read on demand.

    Attributes
    ----------
    id : str
        Identifier within its data set (e.g. a DSB2018 ImageId).
    image_path : Path
        The image file (read with :meth:`load_image`).
    labels_fn : callable () -> (H, W) ndarray of int
        Builds the label image (0 = background, one positive integer per
        nucleus) when called; decoding is left until it is needed because a
        data set's labels do not fit in memory all at once.
    mpp : float or None
        Microns per pixel, ``None`` when unknown (DSB2018 mixes microscopes
        and magnifications and records none).
    """

    id: str
    image_path: Path
    labels_fn: Callable[[], np.ndarray]
    mpp: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))

    def load_image(self, mode: Literal["rgb", "grey"] = "rgb") -> np.ndarray:
        """Read the image: (H, W, 3) (``"rgb"``) or (H, W, 1) (``"grey"``) float32 in [0, 1]."""
        return read_image(self.image_path, mode=mode).pixels

    def load_labels(self) -> np.ndarray:
        """Build the label image: (H, W) int32, 0 = background, row r column c at (x, y) = (c, r)."""
        labels = np.asarray(self.labels_fn())
        if labels.ndim != 2 or labels.dtype.kind not in "iu":
            raise ValueError(f"{self.id}: labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
        return labels.astype(np.int32, copy=False)


def find_shared_dir(start: str | Path | None = None) -> Path | None:
    """Locate the ``shared`` folder that holds the data sets and split lists.

    Parameters
    ----------
    start : str or Path, optional
        Where to start looking; the current directory by default.

    Returns
    -------
    Path or None
        The value of ``$NUCLEIKIT_SHARED`` when it is set (as given, even if it
        does not exist: an explicit choice is never silently replaced).
        Otherwise the first ``<dir>/shared`` holding a ``data`` folder, for
        ``<dir>`` = ``start`` and then each of its parents, so that a
        checkout at ``/work/main`` finds ``/work/shared``. ``None`` if there
        is none.
    """
    override = os.environ.get(SHARED_ENV)
    if override:
        return Path(override)
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared"
        if (candidate / "data").is_dir():
            return candidate
    return None
