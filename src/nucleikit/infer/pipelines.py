"""File-level pipelines: read → predict → post-process → export.

One function per task; the CLI and the Python API both call these, so a file
is processed the same way whichever door it came in by.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


from ..export import qupath_features, write_geojson, write_overlay, write_points_csv
from ..io.images import read_image
from .predict import Detections, Detector

__all__ = ["FileResult", "detect_file", "resolve_mpp"]


@dataclass(frozen=True)
class FileResult:
    """What processing one file produced.

    Attributes
    ----------
    path : Path
        Input file.
    count : int
        Nuclei found.
    mpp : float
        Resolution used for the input (um/px), and where it came from.
    mpp_source : str
        "option", "metadata" or "model".
    seconds : float
        Wall time for this file (read to written).
    outputs : dict
        Kind ("csv", "geojson", "overlay") → written path.
    """

    path: Path
    count: int
    mpp: float
    mpp_source: str
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)
    detections: Detections | None = field(default=None, repr=False)


def resolve_mpp(option: float | None, metadata: float | None, model: float) -> tuple[float, str]:
    """The input's resolution: the user's value, else the file's, else the model's."""
    if option is not None:
        return float(option), "option"
    if metadata is not None:
        return float(metadata), "metadata"
    return float(model), "model"


def detect_file(
    path: str | Path,
    detector: Detector,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    overlay: bool = True,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
) -> FileResult:
    """Detect nuclei in one image file and write ``<stem>.csv``, ``<stem>.geojson``, ``<stem>_overlay.png``.

    Parameters
    ----------
    path : path
        Image file (PNG, TIFF, BMP, JPEG).
    detector : Detector
    out_dir : path
        Output folder (created).
    mpp : float or None
        Input resolution (um/px); None: from the file, else the model's.
    overlay : bool
        Also write an overlay PNG.
    threshold_rel, min_distance : float or None
        Override the detector's tuned post-processing.

    Returns
    -------
    FileResult
        Coordinates in the CSV/GeoJSON are the input image's full-resolution
        pixels, (x, y), 0-based pixel centres.
    """
    t0 = time.perf_counter()
    path = Path(path)
    out = Path(out_dir)
    image = read_image(path, mode="rgb")
    use_mpp, source = resolve_mpp(mpp, image.mpp, detector.mpp)
    det = detector.detect(image.pixels, mpp=use_mpp, threshold_rel=threshold_rel, min_distance=min_distance)
    stem = path.stem
    outputs = {
        "csv": write_points_csv(out / f"{stem}.csv", det.xy, columns={"score": det.scores}),
        "geojson": write_geojson(
            out / f"{stem}.geojson",
            qupath_features(points=det.xy, measurements={f"{detector.name} score": det.scores}),
        ),
    }
    if overlay:
        outputs["overlay"] = write_overlay(out / f"{stem}_overlay.png", image.pixels, det.xy)
    return FileResult(
        path=path,
        count=len(det),
        mpp=use_mpp,
        mpp_source=source,
        seconds=time.perf_counter() - t0,
        outputs={k: Path(v) if v is not None else out for k, v in outputs.items()},
        detections=det,
    )
