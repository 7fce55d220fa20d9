"""CRCHistoPhenotypes (Sirinukunwattana et al. 2016): 100 H&E tiles with nucleus points.

Layout (``root`` = ``shared/data/crchisto``; see its README)::

    images/imgN.png                               500 x 500 RGB, both tasks
    Detection/imgN/imgN_detection.mat             29,756 nucleus centres
    Classification/imgN/imgN_<class>.mat          22,444 classified centres

Splits follow PROTOCOL.md section 1 and come from ``shared/splits/crchisto.json``:
the fixed split (train 70 / validation 10 / test 20 images) is fold 4 of the
five folds. Pixel size: 0.55 µm/px (:data:`MPP`; the files carry none).

The data README's oddities, each handled on purpose
----------------------------------------------------
1. **Mixed dtypes** (float64, uint16, uint8 files): every array is cast to
   float64 *before* the 1-based -> 0-based shift (:func:`~nucleikit.io.mat.read_mat_points`),
   so a uint8 228 becomes 227.0, never a wrapped-around value.
2. **68 empty class files** (0 x 2 uint8): read as (0, 2) float64; an image
   may have no point of a class. No detection file is empty.
3. **Points below 1** (9 detection points; 5 of them below 0.5, i.e. off the
   image by MATLAB's convention): after the shift they are negative (down to
   -0.85). Points are **clipped** to the pixel-centre box [0, W-1] x [0, H-1]
   rather than dropped: each is a real, labelled nucleus cut by the tile edge,
   and the clip moves none by more than 0.85 px (far below the 6 px matching
   radius) while keeping every pixel index ``round(x), round(y)`` valid.
   Nothing lies above 500, so the upper clip is a no-op on this release.
4. **Duplicates**: the 8 exact duplicate detection points are **dropped**
   (first occurrence kept, order otherwise unchanged): a nucleus counted twice
   would be an unmatchable false negative for every detector. 29,756 rows give
   29,748 points. On the classification side, exact duplicates are merged
   across the four class files (:func:`merge_class_points`): img26's point
   listed twice in ``others`` keeps one copy, and the two nuclei with two
   labels (img8 epithelial + others, img12 inflammatory + others) keep the
   **first label in the order of** :data:`CLASSES`, i.e. the specific class
   wins over "others" (the paper's "miscellaneous" bin). 22,444 rows give
   22,441 classified points.
5. **Classified points are only almost a subset of the detection points**
   (82 not exact, 44 of them 3-9.5 px away): the classification task uses the
   class files' own coordinates; :func:`attach_classes` labels detection points
   by one-to-one nearest matching within a tolerance instead of exact equality.
6. MAT headers differ by platform (MACI64 / GLNXA64); irrelevant to reading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from nucleikit.errors import ConfigError, InputError
from nucleikit.io.datasets.base import PointSample, SampleSequence
from nucleikit.io.mat import read_mat_points

__all__ = [
    "CLASSES",
    "IMAGE_SHAPE",
    "MPP",
    "CRCHisto",
    "attach_classes",
    "class_points",
    "detection_points",
    "merge_class_points",
    "read_split",
]

#: Class names, in the priority order used when one nucleus carries two labels.
CLASSES = ("epithelial", "fibroblast", "inflammatory", "others")
#: Microns per pixel (20x objective; the value usually given for this data set).
MPP = 0.55
#: (H, W) of every image.
IMAGE_SHAPE = (500, 500)
#: Image numbers N of ``imgN``.
IMAGE_NUMBERS = tuple(range(1, 101))

SUBSETS = ("train", "validation", "test", "train+validation", "all")
TASKS = ("detection", "classification")
N_FOLDS = 5


class CRCHisto(SampleSequence[PointSample]):
    """The CRCHistoPhenotypes images of one split and subset, as :class:`PointSample` records.

    Parameters
    ----------
    root : str or Path
        The ``crchisto`` data folder (holding ``images/``, ``Detection/``,
        ``Classification/``).
    split : "fixed" or int
        ``"fixed"`` (PROTOCOL.md's fixed split, equal to fold 4) or a fold
        number 0-4 (test = that fold, validation = 10 images of another).
    subset : {"train", "validation", "test", "train+validation", "all"}
        Which images of the split; ``"all"`` is the 100 images.
    task : {"detection", "classification"}
        ``"detection"``: all nucleus centres, ``classes`` is None.
        ``"classification"``: the classified centres with their class names.
    splits_file : str or Path, optional
        The split list; default ``root/../../splits/crchisto.json``.

    Notes
    -----
    Points are read when a sample is indexed (five small ``.mat`` files at
    most); each is cleaned as the module docstring describes.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: Literal["fixed"] | int = "fixed",
        subset: Literal["train", "validation", "test", "train+validation", "all"] = "train",
        task: Literal["detection", "classification"] = "detection",
        splits_file: str | Path | None = None,
    ) -> None:
        if subset not in SUBSETS:
            raise ConfigError(f"CRCHisto subset must be one of {SUBSETS}, not {subset!r}")
        if task not in TASKS:
            raise ConfigError(f"CRCHisto task must be one of {TASKS}, not {task!r}")
        root = Path(root)
        if not root.is_dir():
            raise InputError(root, "CRCHistoPhenotypes folder not found")
        for folder in ("images", "Detection", "Classification"):
            if not (root / folder).is_dir():
                raise InputError(root, f"not a CRCHistoPhenotypes folder (no {folder}/)")
        if splits_file is None:
            splits_file = root.resolve().parent.parent / "splits" / "crchisto.json"
        self.root = root
        self.split = split
        self.subset = subset
        self.task = task
        self.image_numbers: tuple[int, ...] = _subset_numbers(read_split(splits_file, split), subset)

    @property
    def _keys(self) -> tuple:
        return self.image_numbers

    def __repr__(self) -> str:
        return f"CRCHisto(split={self.split!r}, subset={self.subset!r}, task={self.task!r}, {len(self)} images)"

    @property
    def ids(self) -> tuple[str, ...]:
        """Sample ids (``"imgN"``) in order."""
        return tuple(f"img{number}" for number in self.image_numbers)

    def _sample(self, number: int) -> PointSample:
        image_path = self.root / "images" / f"img{number}.png"
        if self.task == "detection":
            return PointSample(f"img{number}", image_path, detection_points(self.root, number), MPP)
        xy, labels = merge_class_points(class_points(self.root, number))
        return PointSample(f"img{number}", image_path, _clip_to_image(xy), MPP, labels)


def read_split(splits_file: str | Path, split: Literal["fixed"] | int) -> dict[str, tuple[int, ...]]:
    """Image numbers of one split: ``{"train": ..., "validation": ..., "test": ...}``.

    Parameters
    ----------
    splits_file : str or Path
        ``crchisto.json``: ``{"fixed": {...}, "folds": [{"fold": k, ...}, ...]}``.
    split : "fixed" or int
        ``"fixed"`` or a fold number 0-4.

    Raises
    ------
    ConfigError
        ``split`` is neither ``"fixed"`` nor a fold number 0-4.
    InputError
        The file is missing, not JSON, or lacks the split asked for.
    """
    if split != "fixed" and not (isinstance(split, int) and not isinstance(split, bool) and 0 <= split < N_FOLDS):
        raise ConfigError(f"CRCHisto split must be 'fixed' or a fold number 0-{N_FOLDS - 1}, not {split!r}")
    splits_file = Path(splits_file)
    if not splits_file.is_file():
        raise InputError(splits_file, "split list not found")
    try:
        document = json.loads(splits_file.read_text(encoding="utf-8"))
        entry = document["fixed"] if split == "fixed" else document["folds"][split]
        if split != "fixed" and entry.get("fold") != split:
            raise InputError(splits_file, f"folds[{split}] is labelled fold {entry.get('fold')!r}")
        return {name: tuple(int(n) for n in entry[name]) for name in ("train", "validation", "test")}
    except InputError:
        raise
    except json.JSONDecodeError as exc:
        raise InputError(splits_file, f"invalid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(splits_file, f"not a CRCHisto split list (missing or bad {exc})") from exc


def _subset_numbers(split: dict[str, tuple[int, ...]], subset: str) -> tuple[int, ...]:
    if subset == "all":
        return IMAGE_NUMBERS
    names = subset.split("+")
    return tuple(sorted(number for name in names for number in split[name]))


def detection_points(root: str | Path, number: int) -> np.ndarray:
    """Cleaned detection points of ``imgN``: (N, 2) float64 0-based (x, y).

    float64, minus 1, exact duplicates dropped (first kept), clipped to the
    pixel-centre box [0, 499] x [0, 499] (module docstring, items 1, 3, 4).
    """
    path = Path(root) / "Detection" / f"img{number}" / f"img{number}_detection.mat"
    return _clip_to_image(_drop_duplicates(read_mat_points(path)))


def class_points(root: str | Path, number: int) -> dict[str, np.ndarray]:
    """Raw classified points of ``imgN``, per class in :data:`CLASSES` order.

    Each value is (K, 2) float64 0-based (x, y), possibly empty, not yet
    de-duplicated or clipped.
    """
    folder = Path(root) / "Classification" / f"img{number}"
    # clipped as the detection points are: img8 and img91 have points up to 0.85 px above the image
    return {name: _clip_to_image(read_mat_points(folder / f"img{number}_{name}.mat")) for name in CLASSES}


def merge_class_points(class_points: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-class points, keeping one copy of each exact coordinate.

    Parameters
    ----------
    class_points : mapping of str to (K, 2) array_like of float
        Points of each class; the mapping's order is the priority order.

    Returns
    -------
    xy : (M, 2) ndarray of float64
        Distinct points, in first-occurrence order.
    labels : (M,) ndarray of str
        Class of each point. A point listed under several classes keeps the
        first class in the mapping's order (with :data:`CLASSES` order, a
        specific class beats "others").
    """
    chunks = [np.asarray(points, dtype=np.float64).reshape(-1, 2) for points in class_points.values()]
    names = [name for name, chunk in zip(class_points, chunks) for _ in range(len(chunk))]
    xy = np.concatenate(chunks) if chunks else np.zeros((0, 2))
    labels = np.asarray(names, dtype=str)
    keep = _first_occurrences(xy)
    return xy[keep], labels[keep]


def attach_classes(
    detection_xy: np.ndarray,
    class_points: Mapping[str, np.ndarray],
    *,
    tolerance: float = 3.0,
) -> np.ndarray:
    """Label detection points with the classes of nearby classified points.

    Classified points are first merged (:func:`merge_class_points`), then
    paired one-to-one with detection points: among all pairings whose
    distances are at most ``tolerance``, one with the most pairs and, among
    those, the least total distance (the matching rule of PROTOCOL.md). A
    one-to-one pairing keeps two classified points from labelling the same
    detection point.

    Parameters
    ----------
    detection_xy : (N, 2) array_like of float
        Detection points, (x, y) 0-based pixel centres.
    class_points : mapping of str to (K, 2) array_like of float
        Classified points per class, in priority order.
    tolerance : float
        Largest pairing distance in pixels (3 px pairs 22,400 of CRCHisto's
        22,444 classified points with a detection point).

    Returns
    -------
    (N,) ndarray of str
        The class of each detection point, ``""`` where none was paired.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    detections = np.asarray(detection_xy, dtype=np.float64).reshape(-1, 2)
    xy, labels = merge_class_points(class_points)
    result = np.full(len(detections), "", dtype=object)
    if len(detections) and len(xy):
        near = cKDTree(detections).sparse_distance_matrix(cKDTree(xy), tolerance, output_type="ndarray")
        if len(near):
            rows, row_index = np.unique(near["i"], return_inverse=True)
            cols, col_index = np.unique(near["j"], return_inverse=True)
            # Any pairing with one more allowed pair beats all with fewer: the
            # forbidden cost exceeds the largest possible total of allowed ones.
            forbidden = tolerance * min(len(rows), len(cols)) + 1.0
            cost = np.full((len(rows), len(cols)), forbidden)
            cost[row_index, col_index] = near["v"]
            pair_rows, pair_cols = linear_sum_assignment(cost)
            allowed = cost[pair_rows, pair_cols] < forbidden
            result[rows[pair_rows[allowed]]] = labels[cols[pair_cols[allowed]]]
    return result.astype(str)


def _first_occurrences(xy: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of each distinct row."""
    if len(xy) == 0:
        return np.zeros(0, dtype=np.intp)
    _, first = np.unique(xy, axis=0, return_index=True)
    return np.sort(first)


def _drop_duplicates(xy: np.ndarray) -> np.ndarray:
    return xy[_first_occurrences(xy)]


def _clip_to_image(xy: np.ndarray) -> np.ndarray:
    height, width = IMAGE_SHAPE
    return np.column_stack([np.clip(xy[:, 0], 0, width - 1), np.clip(xy[:, 1], 0, height - 1)]).reshape(-1, 2)
