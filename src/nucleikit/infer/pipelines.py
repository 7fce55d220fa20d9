"""File-level pipelines: read → predict → post-process → export.

One function per task; the CLI and the Python API both call these, so a file
is processed the same way whichever door it came in by.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..export import WRITERS, ImageOutput, Nuclei, qupath_features, write_image_outputs
from ..io.images import read_image
from .predict import Detections, Detector

if TYPE_CHECKING:  # the classifier and segmenter modules are only needed by their pipelines
    from .classify import Classifier
    from .segment import Segmentation, Segmenter

__all__ = [
    "FileResult",
    "TypedNuclei",
    "analyze_file",
    "analyze_image",
    "analyze_slide",
    "classify_file",
    "detect_file",
    "resolve_mpp",
    "segment_file",
    "segmentation_features",
    "segmentation_nuclei",
]


@dataclass(frozen=True, eq=False)
class TypedNuclei:
    """Detected and typed nuclei of one image.

    Attributes
    ----------
    xy : (N, 2) float64
        Centres (x, y), 0-based pixel centres of the input image.
    scores : (N,) float32
        Detection score (probability-map value at the peak); NaN for centres
        that were given rather than detected (:func:`classify_file`).
    labels : (N,) str
        Most probable class of each nucleus.
    probs : (N, K) float32
        Class probabilities, columns in ``classes`` order.
    classes : tuple of str
        The classifier's K classes.
    """

    xy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def class_prob(self) -> np.ndarray:
        """(N,) float32: probability of the chosen class."""
        return self.probs.max(axis=1) if len(self.probs) else np.zeros(0, np.float32)


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
    detections : Detections or None
        What :func:`detect_file` found.
    typed : TypedNuclei or None
        What :func:`analyze_file` or :func:`classify_file` typed.
    segmentation : Segmentation or None
        What :func:`segment_file` found.
    model : str
        Name of the weights that processed the file (empty when not recorded).
    clipped : int
        Given points less than 1 px beyond the image's edge, typed at the pixel on the edge
        (:func:`classify_file`; :func:`nucleikit.io.points.clip_points_to_image`).
    """

    path: Path
    count: int
    mpp: float
    mpp_source: str
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)
    detections: Detections | None = field(default=None, repr=False)
    typed: TypedNuclei | None = field(default=None, repr=False)
    segmentation: "Segmentation | None" = field(default=None, repr=False)
    model: str = ""
    clipped: int = 0


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
    nuclei = Nuclei(det.xy, columns={"score": det.scores}, measurements={f"{detector.name} score": det.scores})
    formats = ("csv", "geojson", "overlay") if overlay else ("csv", "geojson")
    outputs = write_image_outputs(out, path.stem, "detect", formats, ImageOutput(nuclei, pixels=image.pixels, mpp=use_mpp,
                                                                                  mpp_source=source))
    return FileResult(
        path=path,
        count=len(det),
        mpp=use_mpp,
        mpp_source=source,
        seconds=time.perf_counter() - t0,
        outputs=outputs,
        detections=det,
    )


def analyze_image(
    pixels: np.ndarray,
    detector: Detector,
    classifier: Classifier,
    *,
    mpp: float | None = None,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
) -> TypedNuclei:
    """Detect the nuclei of an image, then type each one.

    The detector's tuned post-processing applies, absolute floor included: an image
    without nuclei (blank, background) gives none to type.

    Parameters
    ----------
    pixels : (H, W) or (H, W, C) array
        uint8, uint16, bool or float in [0, 1]; grey, RGB or RGBA, converted as the file
        readers convert files (:func:`nucleikit.io.images.as_float_image`).
    detector : Detector
    classifier : Classifier
    mpp : float or None
        Resolution of ``pixels`` (um/px); None assumes the detector's. Each
        model resamples the image to its own resolution.
    threshold_rel, min_distance : float or None
        Override the detector's tuned post-processing.

    Returns
    -------
    TypedNuclei
        In the input image's pixel coordinates.
    """
    pixels = detector.image(pixels)  # once, so both models see the same [0, 1] RGB pixels
    det = detector.detect(pixels, mpp=mpp, threshold_rel=threshold_rel, min_distance=min_distance)
    labels, probs = classifier.classify(pixels, det.xy, mpp=mpp if mpp is not None else detector.mpp)
    return TypedNuclei(det.xy, det.scores, labels, probs, classifier.classes)


def _typed_nuclei(typed: TypedNuclei, score_name: str) -> Nuclei:
    """``analyze``'s table (score, class, class_prob) and QuPath measurements (score, each class probability)."""
    measurements = {score_name: typed.scores}
    for k, name in enumerate(typed.classes):
        measurements[f"{name} probability"] = typed.probs[:, k]
    columns = {"score": typed.scores, "class": typed.labels, "class_prob": typed.class_prob}
    return Nuclei(typed.xy, columns=columns, measurements=measurements, classes=typed.labels)


def analyze_file(
    path: str | Path,
    detector: Detector,
    classifier: Classifier,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    overlay: bool = True,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
) -> FileResult:
    """Detect and type the nuclei of one image file.

    Writes ``<stem>_typed.csv`` (header ``x,y,score,class,class_prob``),
    ``<stem>_typed.geojson`` (QuPath detections: ``classification`` {name, color}
    per class; the detection score as ``"<detector> score"`` and each class
    probability as ``"<class> probability"`` in ``measurements``) and, with
    ``overlay``, ``<stem>_typed_overlay.png`` (rings coloured by class); the
    ``_typed`` tag keeps them apart from ``detect``'s files in a shared folder.

    Parameters
    ----------
    path : path
        Image file (PNG, TIFF, BMP, JPEG).
    detector : Detector
    classifier : Classifier
    out_dir : path
        Output folder (created).
    mpp : float or None
        Input resolution (um/px); None: from the file, else the detector's.
    overlay : bool
        Also write the overlay PNG.
    threshold_rel, min_distance : float or None
        Override the detector's tuned post-processing.

    Returns
    -------
    FileResult
        With ``typed`` filled (``detections`` is None). Coordinates are the input
        image's full-resolution pixels, (x, y), 0-based pixel centres. An
        image without nuclei gives header-only files.

    Notes
    -----
    Both models run before anything is written, and each file is written
    atomically: a failure leaves no partial file.
    """
    t0 = time.perf_counter()
    path = Path(path)
    out = Path(out_dir)
    image = read_image(path, mode="rgb")
    use_mpp, source = resolve_mpp(mpp, image.mpp, detector.mpp)
    typed = analyze_image(
        image.pixels, detector, classifier, mpp=use_mpp, threshold_rel=threshold_rel, min_distance=min_distance
    )
    formats = ("csv", "geojson", "overlay") if overlay else ("csv", "geojson")
    outputs = write_image_outputs(out, path.stem, "analyze", formats,
                                  ImageOutput(_typed_nuclei(typed, f"{detector.name} score"), pixels=image.pixels,
                                              mpp=use_mpp, mpp_source=source))
    return FileResult(
        path=path,
        count=len(typed),
        mpp=use_mpp,
        mpp_source=source,
        seconds=time.perf_counter() - t0,
        outputs=outputs,
        typed=typed,
    )


#: Side, in pixels of the level read, of the blocks a slide's nuclei are typed in (each block
#: read once, with a margin holding every patch that reaches beyond it).
TYPING_BLOCK = 1024


def analyze_slide(
    slide_path: str | Path,
    detector: Detector,
    classifier: Classifier,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    level: int | None = None,
    tile: int | None = None,
    tissue_mask=None,
    resume: bool = True,
    formats=None,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
    progress: bool = True,
):
    """Detect and type the nuclei of a whole slide: ``detect_slide``, then a patch per nucleus.

    The nuclei are those :func:`~nucleikit.infer.wsi.detect_slide` finds with the same options
    (tissue tiles, seam-exact peaks, bounded memory, resume); its tables go to a working
    folder ``OUTDIR/.<stem>_typed.work/`` that is removed once the slide is done, so a shared
    ``-o`` keeps ``detect``'s own ``<stem>.csv`` apart. Each nucleus is then typed on a patch
    read from the slide at the classifier's resolution: the coarsest pyramid level at least
    as fine as the classifier (the level detection read when the slide records no pixel
    size), read in blocks of :data:`TYPING_BLOCK` pixels with a margin, resampled and cut as
    :meth:`~nucleikit.infer.classify.Classifier.classify` does for an image.

    Writes ``<stem>_typed.csv`` (``x,y,score,class,class_prob`` in level-0 pixels, as
    :func:`analyze_file` writes an image's), ``.geojson`` (QuPath detections classified by
    type), ``.parquet`` and ``.sqlite`` (``class`` as text) as ``formats`` asks (default: the
    slides' default formats), and ``<stem>_typed_tissue.png``.

    Returns
    -------
    result : SlideResult
        :func:`~nucleikit.infer.wsi.detect_slide`'s, with ``outputs`` the typed files and
        ``seconds`` the whole run's.
    typed : TypedNuclei
        The nuclei (level-0 pixels), their classes and class probabilities.

    Notes
    -----
    With ``stain_normalise``, each block's patches are matched to the training stain together.
    """
    import dataclasses
    import shutil

    from ..export import SlideTable, check_slide_formats, output_stem, slide_formats, write_slide_outputs
    from ..export.files import atomic_write
    from .wsi import detect_slide

    t0 = time.perf_counter()
    slide_path, out = Path(slide_path), Path(out_dir)
    formats = check_slide_formats(slide_formats() if formats is None else formats)
    named = output_stem(slide_path.stem, "analyze")
    work = out / f".{named}.work"
    found = detect_slide(slide_path, detector, work, mpp=mpp, level=level, tile=tile, tissue_mask=tissue_mask,
                         resume=resume, formats=("csv",), threshold_rel=threshold_rel, min_distance=min_distance,
                         progress=progress)
    xy, scores = _read_points_table(found.outputs["csv"])
    labels, probs = _type_slide_nuclei(slide_path, classifier, xy, mpp=mpp, level=found.level)
    typed = TypedNuclei(xy, scores, labels, probs, tuple(classifier.classes))
    nuclei = _typed_nuclei(typed, f"{detector.name} score")
    schema = {"score": "float32", "class": "str", "class_prob": "float32"}
    outputs = write_slide_outputs(out, slide_path.stem, "analyze", formats,
                                  SlideTable(lambda: [nuclei], schema=schema, mpp=found.mpp))
    tissue = found.outputs.get("tissue")
    if tissue is not None and Path(tissue).exists():
        target = out / f"{named}_tissue.png"
        with atomic_write(target, "wb") as handle:
            handle.write(Path(tissue).read_bytes())
        outputs["tissue"] = target
    shutil.rmtree(work, ignore_errors=True)  # the slide is done: no resume needed
    return dataclasses.replace(found, count=len(typed), outputs=outputs, seconds=time.perf_counter() - t0), typed


def _read_points_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) x, y and (N,) score of a points CSV nucleikit wrote (header ``x,y,score``)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        ix, iy, iscore = header.index("x"), header.index("y"), header.index("score")
        data = np.array([(float(r[ix]), float(r[iy]), float(r[iscore])) for r in rows], dtype=np.float64)
    data = data.reshape(-1, 3)
    return data[:, :2].copy(), data[:, 2].astype(np.float32)


def _type_slide_nuclei(slide_path: Path, classifier: Classifier, xy: np.ndarray, *, mpp: float | None,
                       level: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of nuclei at level-0 ``xy`` of a slide, typed block by block."""
    import math

    from ..io.slides import open_slide
    from ..windows import Window

    names = np.asarray(classifier.classes, dtype=str)
    probs = np.zeros((len(xy), len(names)), np.float32)
    if not len(xy):
        return np.zeros(0, dtype=names.dtype), probs
    with open_slide(slide_path, mpp=mpp) as slide:
        if slide.mpp is not None:
            level, level_mpp = slide.best_level_for_mpp(classifier.mpp)
        else:  # no pixel size: the level detection read, taken to be at the classifier's resolution
            level_mpp = None
        w0, h0 = slide.dimensions
        wl, hl = slide.level_dimensions[level]
        sx, sy = w0 / wl, h0 / hl
        at_level = np.column_stack([(xy[:, 0] + 0.5) / sx - 0.5, (xy[:, 1] + 0.5) / sy - 0.5])
        # every patch cut from a block lies inside its margin, with room for the resampling kernel
        stretch = classifier.mpp / level_mpp if level_mpp else 1.0
        margin = int(math.ceil(classifier.patch * max(1.0, stretch))) + 8
        b = TYPING_BLOCK
        blocks = np.floor(at_level / b).astype(np.int64)
        order = np.lexsort((blocks[:, 0], blocks[:, 1]))
        keys = blocks[order]
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        for start, stop in zip(starts, np.r_[starts[1:], len(order)]):
            idx = order[start:stop]
            bx, by = keys[start]
            window = Window(int(by) * b - margin, int(bx) * b - margin, int(by + 1) * b + margin,
                            int(bx + 1) * b + margin)
            pixels = slide.read_region(window, level)
            local = at_level[idx] - (window.x0, window.y0)
            _, probs[idx] = classifier.classify(pixels, local, mpp=level_mpp)
    labels = names[probs.argmax(axis=1)]
    return labels, probs


def classify_file(
    image_path: str | Path,
    points_path: str | Path,
    classifier: Classifier,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
) -> FileResult:
    """Type given nucleus centres of one image and write ``<image stem>_classified.csv``.

    Parameters
    ----------
    image_path : path
        Image file (PNG, TIFF, BMP, JPEG).
    points_path : path
        Centres as ``.csv`` (``x``, ``y`` columns, 0-based pixel centres),
        QuPath ``.geojson``/``.json`` or MATLAB ``.mat``
        (:func:`nucleikit.io.points.read_points`). Classes or scores already
        in the file are ignored: every point is typed afresh.
    classifier : Classifier
    out_dir : path
        Output folder (created).
    mpp : float or None
        Image resolution (um/px); None: from the file, else the classifier's.

    Returns
    -------
    FileResult
        ``outputs["csv"]``: header ``x,y,class,class_prob``, one row per
        input point in input order (x, y as given); ``typed`` holds the
        probabilities (``scores`` are NaN); ``clipped`` counts the points less
        than 1 px outside the image, typed at the edge pixel.

    Raises
    ------
    InputError
        Unreadable image or points file, a points file without points, a
        point outside the image (the points file is named), or an output
        that would overwrite the points file. Nothing is written then.
    """
    from ..io.points import check_points_in_image, read_points

    t0 = time.perf_counter()
    image_path = Path(image_path)
    points_path = Path(points_path)
    target = WRITERS["csv"].path(Path(out_dir), image_path.stem, "classify")
    if target.resolve() == points_path.resolve():
        raise InputError(points_path, f"the output {target} would overwrite this points file; choose another -o")
    image = read_image(image_path, mode="rgb")
    points = read_points(points_path)
    check_points_in_image(points, image.pixels.shape, points_path)
    h, w = image.pixels.shape[:2]
    x, y = points.xy[:, 0], points.xy[:, 1]
    # beyond the image's edge (pixel 0 spans -0.5 to 0.5): typed at the edge pixel; the table keeps them as given
    clipped = int(np.count_nonzero((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)))
    use_mpp, source = resolve_mpp(mpp, image.mpp, classifier.mpp)
    labels, probs = classifier.classify(image.pixels, points.xy, mpp=use_mpp)
    typed = TypedNuclei(points.xy, np.full(len(points), np.nan, np.float32), labels, probs, classifier.classes)
    nuclei = Nuclei(typed.xy, columns={"class": typed.labels, "class_prob": typed.class_prob}, classes=typed.labels)
    written = write_image_outputs(Path(out_dir), image_path.stem, "classify", ("csv",), ImageOutput(nuclei))["csv"]
    return FileResult(
        path=image_path,
        count=len(typed),
        mpp=use_mpp,
        mpp_source=source,
        seconds=time.perf_counter() - t0,
        outputs={"csv": Path(written)},
        typed=typed,
        clipped=clipped,
    )


def segmentation_nuclei(m: dict, outlines: list[np.ndarray]) -> Nuclei:
    """Segmented nuclei for the writers: the ``id,x,y,area,mean_intensity`` table, outlines, QuPath measurements.

    ``m`` holds ``label``, centroid ``x``/``y`` (pixel centres), ``area``, ``mean_intensity``
    per instance; ``outlines`` are (K, 2) (x, y) rings in nucleikit's pixel-centre convention,
    one per instance in ascending label order (:func:`nucleikit.postprocess.label_outlines`);
    the GeoJSON writer shifts them by +0.5 to QuPath's pixel corners. The centroid
    measurements are given in QuPath's convention too (+0.5), so that they agree with the
    centroid QuPath computes from the polygon; the label ties each object to
    ``<stem>_labels.tif`` and ``<stem>_outlines.csv``. Images and slides use it alike.
    """
    measurements = {
        "Label": m["label"],
        "Centroid X px": m["x"] + 0.5,
        "Centroid Y px": m["y"] + 0.5,
        "Area px^2": m["area"],
        "Mean intensity": m["mean_intensity"],
    }
    xy = np.column_stack([m["x"], m["y"]]).reshape(-1, 2)
    return Nuclei(xy, columns={"area": m["area"], "mean_intensity": m["mean_intensity"]},
                  measurements=measurements, outlines=outlines, ids=m["label"])


def segmentation_features(seg: "Segmentation", outlines: list[np.ndarray]) -> list[dict]:
    """QuPath detection features of segmented nuclei: polygon outlines and their measurements
    (:func:`segmentation_nuclei`)."""
    n = segmentation_nuclei(seg.measurements, outlines)
    return qupath_features(polygons=n.outlines, measurements=n.measurements)


def segment_file(
    path: str | Path,
    segmenter: "Segmenter",
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    threshold: float | None = None,
    overlay: bool = True,
) -> FileResult:
    """Segment the nuclei of one image file and write its four outputs.

    Writes ``<stem>_labels.tif`` (uint16 instance labels, 0 = background),
    ``<stem>_outlines.geojson`` (QuPath detections with polygon geometry; label, centroid,
    area and mean intensity in ``measurements``), ``<stem>_outlines.csv`` (header
    ``id,x,y,area,mean_intensity``: the label, centroid as 0-based pixel centres, area in
    pixels, mean BT.601 luminance in [0, 1]) and, with ``overlay``,
    ``<stem>_outlines_overlay.png`` (outlines on the image); the ``_outlines`` tag keeps them
    apart from ``detect``'s files in a shared folder.

    Parameters
    ----------
    path : path
        Image file (PNG, TIFF, BMP, JPEG).
    segmenter : Segmenter or AutoSegmenter
        An :class:`~nucleikit.infer.segment.AutoSegmenter` picks the bundled model by the
        image's kind (stained bright field or fluorescence) once the image is read.
    out_dir : path
        Output folder (created).
    mpp : float or None
        Input resolution (um/px); None: from the file. Used only by segmenters that record a
        resolution (DSB2018 models run at input resolution).
    threshold : float or None
        Override the tuned foreground threshold.
    overlay : bool
        Also write the overlay PNG.

    Returns
    -------
    FileResult
        ``mpp`` is the input resolution used (NaN when unknown and irrelevant).

    Raises
    ------
    InputError
        Unreadable image, or more than 65535 nuclei (a uint16 label TIFF cannot hold
        them). Everything is computed before the first file is written and every file is
        written atomically, so a failure leaves no partial output.
    """
    from ..export import UINT16_MAX_LABEL
    from ..postprocess import label_outlines

    t0 = time.perf_counter()
    path = Path(path)
    out = Path(out_dir)
    image = read_image(path, mode="rgb")
    if hasattr(segmenter, "for_image"):
        segmenter = segmenter.for_image(image.pixels)
    if segmenter.mpp is not None:
        use_mpp, source = resolve_mpp(mpp, image.mpp, segmenter.mpp)
    else:
        use_mpp, source = (mpp, "option") if mpp is not None else (image.mpp, "metadata")
        if use_mpp is None:
            source = "unknown"
    seg = segmenter.segment(image.pixels, mpp=use_mpp, threshold=threshold)
    top = int(seg.labels.max()) if seg.labels.size else 0
    if top > UINT16_MAX_LABEL:
        raise InputError(path, f"{top} nuclei: more than a uint16 label TIFF holds ({UINT16_MAX_LABEL})")
    outlines = label_outlines(seg.labels)
    formats = ("labels", "geojson", "csv", "overlay") if overlay else ("labels", "geojson", "csv")
    output = ImageOutput(segmentation_nuclei(seg.measurements, outlines), pixels=image.pixels, labels=seg.labels,
                         mpp=use_mpp, mpp_source=source)
    outputs = write_image_outputs(out, path.stem, "segment", formats, output)
    return FileResult(
        path=path,
        count=len(seg),
        mpp=float(use_mpp) if use_mpp is not None else float("nan"),
        mpp_source=source,
        seconds=time.perf_counter() - t0,
        outputs=outputs,
        segmentation=seg,
        model=segmenter.name,
    )
