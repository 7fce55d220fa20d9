"""Whole-slide segmentation: nucleus outlines of a slide, tile by tile, seam-exact and resumable.

:func:`segment_slide` is to :meth:`Segmenter.segment <nucleikit.infer.segment.Segmenter.segment>`
what :func:`~nucleikit.infer.wsi.detect_slide` is to ``Detector.detect``, and runs on the same
slide engine (:mod:`nucleikit.infer.wsi`): the level and the model grid
(:func:`~nucleikit.infer.wsi.slide_geometry`, resampled on the fly), the tissue mask
(:mod:`nucleikit.infer.tissue`), a :class:`~nucleikit.infer.tiling.TileGrid`, the resumable
per-tile store with its fingerprint, the Rich progress bar and the streaming writers of
:mod:`nucleikit.export`. Only the work on a tile and the tables differ. The segmenter
is used through ``segment(pixels, mpp=...)`` alone, so any segmenter works (a foreground
map with a watershed, an instance head...).

Tiles and seams
---------------
Each tile's **core** (the cores partition the model grid) is segmented inside a **window**:
the core grown by a margin ``M`` on every side and clipped to the model grid, with

    ``M = round_up(halo + diameter, align)``
    (:func:`~nucleikit.infer.tiling.lattice_margin`),

``halo`` the segmenter's context (its receptive-field radius, ``predictor.halo``),
``diameter`` the largest nucleus expected (``diameter_um``, 20 µm by default, in model
pixels) and ``align`` the network's total downsampling factor (``predictor.align``, 16 for
the bundled U-Nets). The segmenter runs on the window as if it were an image. Then:

- **Ownership by centroid.** An instance is kept by the tile whose core contains its
  centroid (the pixel ``floor(c + 0.5)``, :meth:`Tile.owns
  <nucleikit.infer.tiling.Tile.owns>`). Cores partition the grid, so a nucleus crossing a
  seam is kept once, by one tile.
- **Incomplete instances are dropped.** An instance touching an edge of the window that is
  *inside* the slide is dropped: it continues beyond what the tile saw (it belongs to a
  neighbour, or is larger than the margin allows). Window edges on the slide's border are
  the image's own edges, as for one pass over the slide, so instances there are kept.
- Why this equals one pass: an owned nucleus lies within ``diameter`` of its centroid, so
  within ``halo`` of nothing but window pixels; the map there is computed from the same
  pixels as in one pass (window origins are multiples of ``align``, the network's pooling
  lattice, as in :mod:`nucleikit.infer.tiling`), hence the same outline. What one pass and
  a window can still disagree on: a per-image intensity normalisation (the bundled U-Net's
  percentiles are the window's, not the slide's) and watershed splits of clumps wider than
  the margin; both move outlines by a pixel or two at most on real tissue (see the tests).

Coordinates and outputs
-----------------------
Model pixel ``p`` maps to level-0 ``(p + 0.5) * a - 0.5`` per axis (``a`` level-0 pixels per
model pixel; :meth:`SlideGeometry.to_level0 <nucleikit.infer.wsi.SlideGeometry.to_level0>`),
outline vertices and centroids alike. Everything written is in **level-0 pixels**, 0-based
**pixel centres** (pixel ``(i, j)`` is centred on ``x = j, y = i``), except the GeoJSON,
which follows QuPath's pixel **corners** (+0.5), as ``nucleikit segment`` on an image does
(:func:`nucleikit.infer.pipelines.segmentation_features`). Areas are pixel counts in the
model grid times ``ay * ax``, i.e. level-0 pixels. Each nucleus has one ``id`` (1, 2, ... in
tile order, then in label order inside a tile), the same in every file. File names carry the
``_outlines`` tag (:data:`nucleikit.export.OUTPUT_TAGS`), so that ``detect`` and ``segment`` on
one slide can share an output folder:

- ``<stem>_outlines.csv``: ``id,x,y,area,mean_intensity`` (centroid; mean BT.601 luminance in [0, 1]);
- ``<stem>_outlines.parquet``: the same columns at full precision and ``geometry``, the outline as
  WKB, with GeoParquet metadata (``geopandas.read_parquet`` reads it);
- ``<stem>_outlines.sqlite``: table ``nuclei(id, x, y, area, mean_intensity, geometry)`` (WKB) and an
  R*Tree ``nuclei_rtree`` of the outlines' boxes. The nuclei whose outline may meet level-0
  region ``[1000, 2000] x [500, 1500]`` (x, then y)::

      SELECT n.id, n.x, n.y, n.area, n.geometry
      FROM nuclei AS n JOIN nuclei_rtree AS r ON r.id = n.id
      WHERE r.max_x >= 1000 AND r.min_x <= 2000 AND r.max_y >= 500 AND r.min_y <= 1500;

  (``shapely.from_wkb`` reads ``geometry``; :func:`nucleikit.export.query_polygons`
  runs it and keeps the outlines that really intersect, and
  :func:`~nucleikit.export.query_region` selects by centroid);
- ``<stem>_outlines.geojson``: QuPath detections with ``Polygon`` geometry and the measurements
  ``Label`` (the id), ``Centroid X px``, ``Centroid Y px``, ``Area px^2``, ``Mean intensity``;
- ``<stem>_outlines_tissue.png``: the tissue mask used (as for detection).

Every file is written under a temporary name and renamed when complete; the resume file
``<stem>_outlines.resume.sqlite`` holds the finished tiles (outlines and measurements in level-0
pixels) until the slide is done. Memory holds one window (its pixels, map and labels), one
tile's nuclei and one chunk of outlines while writing: never the slide's labels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..export import Nuclei, SlideTable, output_stem, write_slide_outputs
from ..windows import Window
from .tiling import Tile, TileGrid, lattice_halo, lattice_margin
from .wsi import FORMATS, SlideProgress, _check_formats, _finish_slide, _mpp_source, _result_fields, _run_tiles
from .wsi_geometry import SlideGeometry, _ModelGrid, slide_geometry
from .wsi_plan import _pending, _plan_slide
from .wsi_store import _fingerprint, _TileStore, resume_path

__all__ = [
    "DIAMETER_UM",
    "SlideSegmentResult",
    "seam_margin",
    "nucleus_diameter_px",
    "tile_window",
    "kept_instances",
    "tile_nuclei",
    "segment_slide",
]

#: Largest nucleus diameter the margin allows for, in µm (a large epithelial or tumour
#: nucleus is 10-20 µm across; H&E clumps wider than this may be split differently).
DIAMETER_UM = 20.0
#: Diameter in model pixels when neither the model nor the slide knows its pixel size
#: (20 µm at 0.4 µm/px, a common 20x scan).
DIAMETER_PX_UNKNOWN = 50

# Nuclei per chunk when streaming the outputs: outlines cost ~1 kB each as Python objects in
# the GeoJSON writer, so far fewer than detection's points.
_CHUNK = 4096
_MEASURES = {"area": "float64", "mean_intensity": "float64"}
_TABLE_WIDTH = 4  # x, y, area, mean_intensity


@dataclass(frozen=True)
class SlideSegmentResult:
    """What :func:`segment_slide` produced for one slide.

    Attributes
    ----------
    path : Path
        The slide.
    count : int
        Nuclei written.
    level : int
        Pyramid level read.
    mpp : float or None
        Level-0 µm/px (None if unknown).
    mpp_source : str
        ``"option"``, ``"metadata"`` or ``"unknown"``.
    factor : float
        Resize factor from the level to the model grid (1.0: none).
    model_shape : (int, int)
        (H, W) of the model grid.
    margin : int
        Margin ``M`` around each core, model pixels (module docstring).
    tiles_total, tiles_tissue, tiles_resumed : int
        Tiles in the grid, with tissue (run or resumed), found finished in the resume file.
    mask_scale : float
        Tissue-mask pixels per level-0 pixel (1.0 without a mask).
    seconds : float
        Wall time.
    outputs : dict of str to Path
        ``"csv"``, ``"parquet"``, ``"geojson"``, ``"sqlite"``, ``"tissue"`` → file.
    """

    path: Path
    count: int
    level: int
    mpp: float | None
    mpp_source: str
    factor: float
    model_shape: tuple[int, int]
    margin: int
    tiles_total: int
    tiles_tissue: int
    tiles_resumed: int
    mask_scale: float
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- seams


def seam_margin(halo: int, diameter: float, align: int) -> int:
    """Margin around a core, in model pixels: ``round_up(halo + ceil(diameter), align)``.

    A multiple of ``align``, the network's total downsampling factor, so that every
    window starts on its pooling lattice (core starts are multiples of the core side,
    itself one of ``align``; :func:`~nucleikit.infer.tiling.lattice_margin`).
    """
    if halo < 0 or not diameter >= 0:
        raise ConfigError(f"halo and diameter must be >= 0, got {halo} and {diameter}")
    return lattice_margin(int(halo) + math.ceil(diameter), align)


def nucleus_diameter_px(diameter_um: float, grid_mpp: float | None) -> float:
    """``diameter_um`` in model pixels at ``grid_mpp`` µm/px; :data:`DIAMETER_PX_UNKNOWN` when unknown."""
    if not (math.isfinite(diameter_um) and diameter_um > 0):
        raise ConfigError(f"nucleus diameter must be a positive number of µm, got {diameter_um!r}")
    return diameter_um / grid_mpp if grid_mpp else float(DIAMETER_PX_UNKNOWN)


def tile_window(tile: Tile, shape: tuple[int, int]) -> Window:
    """The pixels a tile segments: its read window (core ± margin) clipped to the (H, W) grid.

    Clipped rather than padded: a nucleus cut by the slide's border is then cut as in one
    pass over the slide, not mirrored into a larger one.
    """
    r = tile.read
    return Window(max(r.y0, 0), max(r.x0, 0), min(r.y1, shape[0]), min(r.x1, shape[1]))


def _interior_edge_labels(labels: np.ndarray, window: Window, shape: tuple[int, int]) -> np.ndarray:
    """Labels on the window's edges that lie inside the (H, W) grid (not on its border)."""
    edges = []
    if window.y0 > 0:
        edges.append(labels[0, :])
    if window.y1 < shape[0]:
        edges.append(labels[-1, :])
    if window.x0 > 0:
        edges.append(labels[:, 0])
    if window.x1 < shape[1]:
        edges.append(labels[:, -1])
    return np.unique(np.concatenate(edges)) if edges else np.zeros(0, dtype=labels.dtype)


def kept_instances(labels: np.ndarray, label: np.ndarray, centroid: np.ndarray, window: Window, tile: Tile,
                   shape: tuple[int, int]) -> np.ndarray:
    """The seam rule: which instances of a window this tile keeps.

    Parameters
    ----------
    labels : (h, w) int ndarray
        Instance labels over ``window`` (0 = background).
    label : (N,) int ndarray
        The instances' labels.
    centroid : (N, 2) float ndarray
        Their (x, y) centroids, pixel centres of ``labels``.
    window : Window
        Where ``labels`` lies on the model grid.
    tile : Tile
        The tile (its ``core`` in model-grid pixels).
    shape : (int, int)
        (H, W) of the model grid.

    Returns
    -------
    (N,) bool ndarray
        True when the core holds the centroid (ownership) and the instance touches no
        window edge inside the slide.
    """
    xy = np.asarray(centroid, dtype=np.float64).reshape(-1, 2) + (window.x0, window.y0)
    return tile.owns(xy) & ~np.isin(label, _interior_edge_labels(labels, window, shape))


def tile_nuclei(seg: Any, window: Window, tile: Tile, geometry: SlideGeometry
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nuclei a tile keeps, in level-0 pixels, from its window's segmentation.

    Parameters
    ----------
    seg : Segmentation
        ``segment()`` of the window's pixels: ``labels`` (h, w) and ``measurements``
        (``label``, centroid ``x``, ``y``, ``area`` in pixels, ``mean_intensity``).
    window, tile
        As for :func:`kept_instances`.
    geometry : SlideGeometry
        Model grid → level 0.

    Returns
    -------
    table : (n, 4) float64
        Level-0 centroid x, y (pixel centres), area (level-0 pixels), mean intensity; in
        ascending label order.
    offsets : (n + 1,) int64
        Outline ``k`` is ``vertices[offsets[k]:offsets[k + 1]]``.
    vertices : (V, 2) float64
        Outline vertices (x, y), level-0 pixel centres, rings not closed
        (:func:`nucleikit.postprocess.label_outlines`).
    """
    from ..postprocess import label_outlines

    labels = np.asarray(seg.labels)
    if labels.shape != window.shape:
        raise ValueError(f"the segmenter returned labels of shape {labels.shape} for a {window.shape} window")
    m = seg.measurements
    order = np.argsort(m["label"], kind="stable")  # label_outlines goes in ascending label order
    label = np.asarray(m["label"])[order]
    centroid = np.column_stack([np.asarray(m["x"])[order], np.asarray(m["y"])[order]])
    keep = kept_instances(labels, label, centroid, window, tile, geometry.model_shape)
    rings = label_outlines(labels, label[keep])  # only the kept ones are traced, in ascending label order
    sizes = np.array([len(r) for r in rings], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    origin = (window.x0, window.y0)
    vertices = geometry.to_level0(np.concatenate(rings) + origin) if rings else np.zeros((0, 2))
    ay, ax = geometry.level0_per_model
    table = np.column_stack([
        geometry.to_level0(centroid[keep] + origin),
        np.asarray(m["area"], dtype=np.float64)[order][keep] * (ay * ax),
        np.asarray(m["mean_intensity"], dtype=np.float64)[order][keep],
    ]).reshape(-1, _TABLE_WIDTH)
    return table, offsets, vertices


# --------------------------------------------------------------------------- store rows


def _pack_nuclei(table: np.ndarray, offsets: np.ndarray, vertices: np.ndarray) -> bytes:
    """One tile's nuclei as bytes: n, V (int64), table (n, 4) f8, offsets (n + 1) i8, vertices (V, 2) f8."""
    head = np.array([len(table), len(vertices)], dtype="<i8")
    parts = (head, np.asarray(table, "<f8"), np.asarray(offsets, "<i8"), np.asarray(vertices, "<f8"))
    return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)


def _unpack_nuclei(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`_pack_nuclei`."""
    n, v = (int(k) for k in np.frombuffer(data, dtype="<i8", count=2))
    at = 16
    table = np.frombuffer(data, dtype="<f8", count=n * _TABLE_WIDTH, offset=at).reshape(n, _TABLE_WIDTH)
    at += 8 * n * _TABLE_WIDTH
    offsets = np.frombuffer(data, dtype="<i8", count=n + 1, offset=at)
    at += 8 * (n + 1)
    vertices = np.frombuffer(data, dtype="<f8", count=2 * v, offset=at).reshape(v, 2)
    return table, offsets, vertices


def _nuclei_chunks(store: _TileStore, tiles: set[int]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The stored nuclei in tile order, as ``(table, offsets, vertices)`` chunks of about ``_CHUNK``.

    The last chunk may be empty (so writers still get the schema).
    """
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    size = 0
    for data in store.rows(tiles):
        part = _unpack_nuclei(data)
        if len(part[0]):
            parts.append(part)
            size += len(part[0])
        if size >= _CHUNK:
            yield _concat(parts)
            parts, size = [], 0
    yield _concat(parts)


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros((0, _TABLE_WIDTH)), np.zeros(1, dtype=np.int64), np.zeros((0, 2))
    tables, offsets, vertices = zip(*parts)
    starts = np.cumsum([0] + [len(v) for v in vertices[:-1]])
    # each part's offsets start at 0: shift by the vertices before it and drop its leading 0
    joined = np.concatenate([[0]] + [o[1:] + s for o, s in zip(offsets, starts)]).astype(np.int64)
    return np.concatenate(tables), joined, np.concatenate(vertices)


# --------------------------------------------------------------------------- the slide


def segment_slide(
    slide_path: str | Path,
    segmenter: Any,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    level: int | None = None,
    tile: int | None = None,
    tissue_mask: Any = None,
    resume: bool = True,
    formats: Sequence[str] = FORMATS,
    threshold: float | None = None,
    diameter_um: float = DIAMETER_UM,
    progress: bool = True,
    on_tile: Callable[[SlideProgress], None] | None = None,
) -> SlideSegmentResult:
    """Segment the nuclei of a whole slide, tile by tile, and write them (module docstring).

    Parameters
    ----------
    slide_path : str or Path
        A slide :func:`~nucleikit.io.slides.open_slide` reads (SVS, NDPI, pyramidal TIFF...).
    segmenter : Segmenter
        Used through ``segment(pixels, mpp=...)`` on each window, read at its ``mpp`` (None:
        the level's own pixels), and its ``meta`` (a :class:`~nucleikit.models.weights_meta.WeightsMeta`);
        its context ``predictor.halo`` (else ``meta.halo``) sets the margin.
    out_dir : str or Path
        Output folder (created).
    mpp : float or None
        Level-0 µm/px, overriding the file's metadata.
    level : int or None
        Pyramid level to read; None: the coarsest level not coarser than the model, or
        level 0 for a model without a pixel size.
    tile : int or None
        Tile core side in model pixels; None: the segmenter's ``config.tile``, else the
        largest balanced cores whose network window (core, seam margin and halo) fits the
        memory budget (``config.memory``).
    tissue_mask : None, "all", str, Path or (h, w) bool ndarray
        As for :func:`~nucleikit.infer.wsi.detect_slide`.
    resume : bool
        Continue from the finished tiles of an interrupted run with the same settings.
    formats : sequence of str, or str
        Any of ``csv``, ``geojson``, ``parquet``, ``sqlite``.
    threshold : float or None
        Foreground threshold passed to ``segment``; None: the segmenter's own.
    diameter_um : float
        Largest nucleus diameter the margin allows for, µm (module docstring).
    progress : bool
        Show a Rich progress bar on stderr.
    on_tile : callable or None
        Called with a :class:`~nucleikit.infer.wsi.SlideProgress` after each tile is stored
        (an exception it raises stops the run; the stored tiles stay for a resume).

    Returns
    -------
    SlideSegmentResult

    Raises
    ------
    InputError
        Unreadable slide, missing level, unknown pixel size (model with one, ``level=None``),
        no tissue, a bad mask file. Nothing is written then.
    ConfigError
        Unknown format, bad ``tissue_mask`` or diameter, a segmenter without a halo or a known alignment.
    """
    from ..io.slides import open_slide

    t_start = time.perf_counter()
    slide_path = Path(slide_path)
    out = Path(out_dir)
    formats = _check_formats(formats)
    stem = slide_path.stem
    named = output_stem(stem, "segment")  # <stem>_outlines: apart from detect's files in one folder
    model_mpp = segmenter.mpp
    halo = _context(segmenter)
    align = _alignment(segmenter)
    with open_slide(slide_path, mpp=mpp) as slide:
        # the margin depends on the grid's pixel size, known once the level is chosen
        grid_mpp = model_mpp if model_mpp is not None else slide_geometry(slide, None, level=level).level_mpp
        margin = seam_margin(halo, nucleus_diameter_px(diameter_um, grid_mpp), align)
        plan = _plan_slide(slide, slide_path, model_mpp, level=level, tissue_mask=tissue_mask,
                           tile=_slide_tile(segmenter, tile, margin, halo, align), halo=margin, align=align)
        geometry, grid = plan.geometry, plan.grid
        settings = _segment_settings(segmenter, margin, threshold)
        model = getattr(getattr(segmenter, "predictor", None), "model", None)
        fingerprint = _fingerprint(slide_path, _meta(segmenter).to_dict(), model, geometry, grid, plan.selected,
                                   settings)
        store = _TileStore(resume_path(out, named), fingerprint, resume=resume, slide=slide_path)
        try:
            done_before, pending = _pending(store, plan)
            _, _, stored = store.finished()
            total = len(plan.tissue_tiles)
            # the segmenter takes pixels in [0, 1]: the model grid without standardisation
            pixels = _ModelGrid(slide.level_view(geometry.level), geometry, np.zeros(3), np.ones(3))
            results = _segment_tiles(segmenter, pixels, geometry, grid, pending, threshold)
            _run_tiles(store, results, name=stem, total=total, done=len(done_before), stored=stored,
                       progress=progress, on_tile=on_tile)
            outputs, count = _write_outputs(out, stem, formats, store, plan.tissue_tiles, mpp=slide.mpp)
            _finish_slide(out, named, plan.mask, outputs, store)
        finally:
            store.close()
        source = _mpp_source(mpp, slide)
        mpp_used = slide.mpp
    return SlideSegmentResult(
        **_result_fields(slide_path, plan, count=count, mpp=mpp_used, mpp_source=source, resumed=len(done_before),
                         t_start=t_start, outputs=outputs),
        margin=margin,
    )


def _segment_settings(segmenter: Any, margin: int, threshold: float | None) -> dict[str, Any]:
    """The fingerprint's ``settings``: what decides a tile's nuclei besides the pixels and the weights."""
    config = getattr(segmenter, "config", None)
    precision = getattr(segmenter, "precision", None)
    bf16 = precision.bf16 if precision is not None else bool(getattr(config, "bf16", False))
    settings = {"task": "segmentation", "margin": margin, "threshold": threshold,
                "seeds": getattr(segmenter, "seeds", None), "bf16": bf16,
                # test-time views change the maps: tiles of another --tta are not this run's
                "tta": int(getattr(segmenter, "tta", 1))}
    padding = getattr(segmenter, "padding", "halo")
    if padding != "halo":  # one-tile windows padded otherwise; absent by default, so older stores resume
        settings["padding"] = padding
    return settings


def _slide_tile(segmenter: Any, tile: int | None, margin: int, halo: int, align: int) -> Any:
    """``tile``, else the segmenter's ``config.tile``, else the memory budget's choice.

    The network sees a tile's core, the seam margin and its own halo on each side, so the
    plan (:meth:`DensePredictor.plan <nucleikit.infer.predict.DensePredictor.plan>`) is made
    for reads with ``margin + halo``; a window of that plan then fits the budget as one
    image and reaches the network whole. A segmenter without a predictor gets 512.
    """
    given = tile or getattr(getattr(segmenter, "config", None), "tile", None)
    if given:
        return given
    predictor = getattr(segmenter, "predictor", None)
    if predictor is None or not hasattr(predictor, "plan"):
        return 512
    return lambda shape: predictor.plan(shape, halo=margin + lattice_halo(halo, align)).tile


def _meta(segmenter: Any) -> Any:
    """The segmenter's metadata as a :class:`~nucleikit.models.weights_meta.WeightsMeta` (a Segmenter's own)."""
    from ..models.weights_meta import as_weights_meta

    return as_weights_meta(getattr(segmenter, "meta", None) or {}, task="segmentation")


def _context(segmenter: Any) -> int:
    """The segmenter's context radius in model pixels (its tiling halo)."""
    halo = getattr(getattr(segmenter, "predictor", None), "halo", None)
    if halo is None:
        halo = _meta(segmenter).halo
    if halo is None:
        raise ConfigError(f"segmenter {_meta(segmenter).name or ''!r} records no halo (receptive field); "
                          "cannot choose the margin between tiles")
    return int(halo)


def _alignment(segmenter: Any) -> int:
    """The segmenter network's total downsampling factor (its tiles' lattice).

    Its predictor's ``align``, else the registry's value for the model its ``meta`` names.
    """
    align = getattr(getattr(segmenter, "predictor", None), "align", None)
    if align is not None:
        return int(align)
    meta = _meta(segmenter)
    if meta.model is None:
        raise ConfigError(f"segmenter {meta.name or ''!r} names no model: its alignment (total downsampling "
                          "factor) is unknown, so its windows cannot be laid on its pooling lattice")
    from ..models import get_spec
    from ..models.weights_meta import to_json

    return get_spec(meta.model).alignment_for(**to_json(meta.model_kwargs))


def _segment_tiles(segmenter: Any, pixels: _ModelGrid, geometry: SlideGeometry, grid: TileGrid,
                   pending: list[Tile], threshold: float | None) -> Iterator[tuple[int, float, int, bytes]]:
    """Segment each pending tile's window; store rows ``(tile, 0.0, nuclei kept, packed nuclei)``."""
    # The grid is at the model's resolution: tell segment() so, and it resamples nothing.
    grid_mpp = segmenter.mpp if segmenter.mpp is not None else geometry.level_mpp
    extra = {} if threshold is None else {"threshold": float(threshold)}
    for t in pending:
        window = tile_window(t, geometry.model_shape)
        seg = segmenter.segment(pixels[window.slices], mpp=grid_mpp, **extra)
        table, offsets, vertices = tile_nuclei(seg, window, t, geometry)
        yield t.index, 0.0, len(table), _pack_nuclei(table, offsets, vertices)


def _write_outputs(out: Path, stem: str, formats: tuple[str, ...], store: _TileStore,
                   tiles: set[int], mpp: float | None = None) -> tuple[dict[str, Path], int]:
    """Stream the stored nuclei into each requested file; returns the files and the count.

    ``stem`` is the slide's own stem: the registry adds ``segment``'s tag.
    """
    from .pipelines import segmentation_nuclei

    count = 0

    def chunks() -> Iterator[Nuclei]:
        nonlocal count
        count = 0  # every format is one pass over the store
        for table, offsets, vertices in _nuclei_chunks(store, tiles):
            ids = np.arange(count + 1, count + 1 + len(table))
            count += len(table)
            m = {"label": ids, "x": table[:, 0], "y": table[:, 1], "area": table[:, 2], "mean_intensity": table[:, 3]}
            # the image path's table, measurements and QuPath +0.5: images and slides give the same kind of file
            rings = np.split(vertices, offsets[1:-1]) if len(table) else []
            yield segmentation_nuclei(m, rings)

    table = SlideTable(chunks, schema=_MEASURES, ids=True, outlines=True, mpp=mpp)
    return write_slide_outputs(out, stem, "segment", formats, table), count
