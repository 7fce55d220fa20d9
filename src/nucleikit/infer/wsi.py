"""Whole-slide detection: tiled, seam-exact, memory-bounded and resumable.

:func:`detect_slide` runs a :class:`~nucleikit.infer.predict.Detector` over a slide that
never fits in memory and gives the nuclei that :meth:`Detector.detect
<nucleikit.infer.predict.Detector.detect>` would give on the same pixels held as one
array (within floating-point noise of the network, and ties apart). It is built from
the package's own parts: :mod:`nucleikit.io.slides` reads regions,
:mod:`nucleikit.infer.tissue` skips glass, :func:`~nucleikit.infer.tiling.predict_tiles`
(the one tiling engine) runs the network, :func:`~nucleikit.postprocess.find_peaks`
finds centres, the writer registry (:mod:`nucleikit.export`) writes the tables.

Whole-slide segmentation (:func:`nucleikit.infer.wsi_segment.segment_slide`) runs on the
same engine: steps 1, 3 and 6 below, the tile grid of step 4 and the progress bar are
functions both use (``_plan_slide``, ``_TileStore``, ``_run_tiles``, ``_finish_slide``);
only the work on a tile and the tables written differ.

Steps
-----
1. **Level and resolution** (:func:`slide_geometry`). The pyramid level is the coarsest
   one not coarser than the model (:meth:`Slide.best_level_for_mpp
   <nucleikit.io.slides.Slide.best_level_for_mpp>`), or the one asked for. The slide is
   then seen through a virtual image **at the model's resolution**, the *model grid*: a
   level of ``Hk x Wk`` pixels at ``mk`` µm/px and a model at ``mm`` µm/px give a grid of
   ``Hm = round(Hk * f) x Wm = round(Wk * f)`` pixels with ``f = mk / mm``, exactly the
   size :func:`nucleikit.transforms.resample` would give the level held as an array
   (``f`` is 1 when the two agree within 2 %, and then nothing is resampled).
2. **Exact window arithmetic.** All tiling happens on the model grid. Per axis, with
   ``s = Hm / Hk`` (the scale ``skimage.transform.resize`` actually applies), model pixel
   ``o`` is centred on level coordinate ``u = (o + 0.5) / s - 0.5`` (pixel-centre
   convention, PROTOCOL.md). A block of model pixels ``[o0, o1)`` is computed from the
   level pixels ``[floor(u(o0)) - r, floor(u(o1 - 1)) + 2 + r)``, read with reflection
   about the level border, where ``r`` is the radius of the anti-aliasing Gaussian
   (``sigma = (1/s - 1) / 2``, truncated at 4 sigma, only when shrinking): that margin
   holds every pixel the interpolation and the filter touch, so the block equals the same
   pixels of ``resample(level, f)`` (bilinear, ``mode="reflect"``), whatever the block.
   Pixels *outside* the model grid (the halo of a border tile) are made up by reflection
   about the **model grid's** border, as for an array: the virtual image is handed to
   ``predict_tiles``, whose :func:`~nucleikit.windows.read_window` does that, and only ever
   slices it inside. Standardisation (per-channel affine) is applied to the block.
   Back to the slide: model point ``p`` is level-0 point ``(p + 0.5) * a - 0.5`` per axis,
   with ``a = (H0 / Hk) / s`` level-0 pixels per model pixel.
3. **Tissue** (:mod:`nucleikit.infer.tissue`): computed on a ~8 µm/px thumbnail, or the
   user's mask, or none (``tissue_mask="all"``). A tile runs when any part of its core is
   tissue; a slide without any tissue is an :class:`~nucleikit.errors.InputError`.
4. **Tiles and seams.** A :class:`~nucleikit.infer.tiling.TileGrid` over the model grid
   with the predictor's halo plus ``d`` (the peak distance) rounded up to a multiple of the
   network's alignment (:func:`~nucleikit.infer.tiling.lattice_margin`, so the read windows
   lie on the same pooling lattice as the one-pass map's; a halo that differs by 8 shifts
   MicroNet's 16-pixel pooling cells and changes the map): each tile's output
   is kept over its core **grown by d** on every side (clipped to the grid), which is
   still at least the receptive-field radius from the read window's edge, so equals the
   one-pass map there. Peaks are found on that grown core and kept if the tile owns them
   (:meth:`Tile.owns <nucleikit.infer.tiling.Tile.owns>`): a peak's candidacy depends only
   on the map within ``d`` of it (:func:`~nucleikit.postprocess.find_peaks`), which the
   grown core contains for every core pixel, so each tile finds exactly the one-pass
   peaks of its core (ties apart: plateaus are broken in raster order, which a tile sees
   differently). Every nucleus is found once, by one tile.
5. **The global xi * max rule and the floor, in one pass.** Xing et al. keep peaks above
   ``xi * M``, ``M`` the maximum of the map over the *whole* image; nucleikit also asks
   every peak to exceed the absolute floor ``threshold_abs`` of the weights, so a peak is
   kept above ``T(M) = max(xi * M, threshold_abs)``
   (:func:`~nucleikit.postprocess.peak_threshold`, the rule :class:`Detector` applies to an
   array). Tiles come one at a time, so the running maximum ``M_t`` (over the cores
   processed so far, the current one included) only grows to the final ``M``. Each tile
   stores its peaks above ``T(M_t)``, with their scores and the tile's core maximum; at
   the end ``M`` is the maximum over the stored tile maxima and the nuclei are the stored
   peaks with ``score > T(M)``. This is exact: (a) ``find_peaks`` at a higher threshold
   returns exactly the lower threshold's peaks whose score exceeds it (candidacy does not
   depend on the threshold), and (b) since ``M_t <= M``, ``T(M_t) <= T(M)``: no peak above
   ``T(M)`` was left out when its tile was stored. The floor is one number for every tile,
   so it needs no global pass. The threshold is compared in float32, as ``find_peaks``
   compares a float32 map. ``M`` is the maximum over the tiles that ran (tissue), not
   over skipped glass.
6. **Streaming and resume.** Each finished tile is one row of ``<stem>.resume.sqlite`` in
   the output folder (tile index, core maximum, peak count, and the peaks as a blob of
   level-0 (x, y, score)),
   committed in its own transaction, so memory holds one batch of tiles, and a killed
   run loses at most the tiles in flight. The file also records a fingerprint of
   everything that decides the tiles (slide file, size and time, level, model grid, tile
   and halo, the task, peak distance, xi, the floor, bf16, the weights, the tiles selected); a rerun with
   ``resume=True`` and the same fingerprint skips the finished tiles, any other rerun
   starts afresh. Each command has its own store (segmentation's is
   ``<stem>_outlines.resume.sqlite``), and a run holds an exclusive lock,
   ``<stem>.resume.lock``, while it uses it: a second run on the same slide, command and
   folder is refused in one line while the first is alive (it would otherwise delete the
   live store), and a store left by a finished or killed run is replaced as above. The outputs
   are then written by streaming the rows in tile order (bounded memory), each atomically
   (temporary name, then rename), and the resume file is deleted. A completed slide is
   computed again when run again.

Outputs (``<stem>`` is the slide's file stem), in **level-0 pixel centres** (x, y), 0-based:

- ``<stem>.csv``: ``x,y,score``;
- ``<stem>.parquet``: the same columns at full precision;
- ``<stem>.geojson``: QuPath detections (:func:`nucleikit.export.qupath_features`);
- ``<stem>.sqlite``: table ``nuclei(id, x, y, score)`` with an R*Tree ``nuclei_rtree``;
  the nuclei of level-0 region ``[1000, 2000) x [500, 1500)`` (x, then y)::

      SELECT n.x, n.y, n.score FROM nuclei AS n JOIN nuclei_rtree AS r ON r.id = n.id
      WHERE r.max_x >= 1000 AND r.min_x <= 2000 AND r.max_y >= 500 AND r.min_y <= 1500
        AND n.x >= 1000 AND n.x < 2000 AND n.y >= 500 AND n.y < 1500;

  or :func:`nucleikit.export.query_region` (see :mod:`nucleikit.export.sqlite`);
- ``<stem>_tissue.png``: the tissue mask used (not written with ``tissue_mask="all"``);
  pixel ``(r, c)`` covers level-0 ``[r / scale, (r + 1) / scale)`` rows and likewise for
  columns, ``scale`` as in :class:`SlideResult`.

Memory: one batch of read windows and outputs, one chunk of nuclei while writing, the
tissue mask (at most 2048 pixels a side) and the tile list; none of it grows with the
number of nuclei, and only the tile list (a few bytes per tile) with the slide's area.

Where the code is
-----------------
This module holds detection (:func:`detect_slide`: its work on a tile, its peaks in the store,
its tables) and what every slide run does around the tiles (the progress bar, ``_run_tiles``,
``_finish_slide``). The other steps have a module each, re-exported here so that
``nucleikit.infer.wsi`` stays the import path:

* :mod:`nucleikit.infer.wsi_geometry` — steps 1-2: :func:`slide_geometry`,
  :class:`SlideGeometry` and the resampled model grid (``_ModelGrid``);
* :mod:`nucleikit.infer.wsi_plan` — steps 3-4: the tissue mask, the tile grid and the tiles
  still to run (``_plan_slide``, ``_pending``, :func:`slide_tile`);
* :mod:`nucleikit.infer.wsi_store` — step 6: the resume store, its lock and its fingerprint
  (``_TileStore``, :func:`resume_path`, :func:`lock_path`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..export import Nuclei, SlideTable, check_slide_formats, output_stem, slide_formats, write_slide_outputs
from ..postprocess import find_peaks, peak_threshold, points_in_window
from ..windows import Window
from .tiling import Tile, TileGrid, predict_tiles

# The engine's parts, one concept each (module docstring, "Where the code is"), re-exported here:
from .wsi_geometry import SlideGeometry, _ModelGrid, slide_geometry
from .wsi_plan import MASK_SIDE, _pending, _plan_slide, _slide_halo, _SlidePlan, _tissue, slide_tile  # noqa: F401
from .wsi_store import _fingerprint, _TileStore, lock_path, resume_path

__all__ = [
    "FORMATS",
    "SlideGeometry",
    "SlideProgress",
    "SlideResult",
    "slide_geometry",
    "detect_slide",
    "lock_path",
    "resume_path",
]

#: Output tables :func:`detect_slide` can write: every slide format of the writer registry.
FORMATS = slide_formats()

# Nuclei per chunk when streaming the outputs.
_CHUNK = 65536
_COLUMNS = {"score": "float32"}


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SlideProgress:
    """Passed to ``on_tile`` after each tile is stored.

    Attributes
    ----------
    tile : int
        Index of the tile just stored (in its :class:`~nucleikit.infer.tiling.TileGrid`).
    done, total : int
        Tissue tiles finished (including resumed ones) and to do.
    candidates : int
        Objects stored so far. Detection: peaks, an upper bound on the nuclei, exact once
        the running maximum has stopped growing; segmentation: the nuclei kept so far.
    """

    tile: int
    done: int
    total: int
    candidates: int


@dataclass(frozen=True)
class SlideResult:
    """What :func:`detect_slide` produced for one slide.

    Attributes
    ----------
    path : Path
        The slide.
    count : int
        Nuclei found.
    level : int
        Pyramid level read.
    mpp : float or None
        Level-0 µm/px used (None if unknown and a level was given).
    mpp_source : str
        ``"option"`` (given) or ``"metadata"`` (the file's); ``"unknown"`` when None.
    factor : float
        Resize factor from the level to the model grid (1.0: none).
    model_shape : (int, int)
        (H, W) of the model grid.
    tiles_total : int
        Tiles in the grid.
    tiles_tissue : int
        Tiles with tissue (run or resumed).
    tiles_resumed : int
        Tissue tiles found finished in the resume file.
    map_max : float
        Maximum of the probability map over the tissue tiles.
    threshold : float
        Score threshold applied, ``max(xi * map_max, threshold_abs)`` (``inf`` when
        ``map_max <= 0``).
    mask_scale : float
        Tissue-mask pixels per level-0 pixel (1.0 without a mask).
    seconds : float
        Wall time.
    outputs : dict of str to Path
        Format (``"csv"``, ``"parquet"``, ``"geojson"``, ``"sqlite"``, ``"tissue"``) → file.
    """

    path: Path
    count: int
    level: int
    mpp: float | None
    mpp_source: str
    factor: float
    model_shape: tuple[int, int]
    tiles_total: int
    tiles_tissue: int
    tiles_resumed: int
    map_max: float
    threshold: float
    mask_scale: float
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    return check_slide_formats(formats)


# --------------------------------------------------------------------------- one slide run
# Detection and segmentation (:mod:`nucleikit.infer.wsi_segment`) share the plan (level, model
# grid, tissue, tiles: :mod:`.wsi_plan`), the resume store (:mod:`.wsi_store`) and everything
# below but the work done on a tile and the tables written: the progress bar, the loop that
# stores the tiles, the finishing touches and the fields of a result.


@contextlib.contextmanager
def _progress_bar(enabled: bool, name: str, total: int, done: int) -> Iterator[Callable[[int, int], None]]:
    """A Rich bar (tiles done/total, nuclei so far, elapsed, ETA); yields ``update(done, nuclei)``."""
    if not enabled:
        yield lambda done, nuclei: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
               TextColumn("{task.fields[nuclei]:,} nuclei"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(name, total=total, completed=done, nuclei=0)
        yield lambda done, nuclei: bar.update(task, completed=done, nuclei=nuclei)


def _run_tiles(store: _TileStore, results: Iterable[tuple[int, float, int, bytes]], *, name: str, total: int,
               done: int, stored: int, progress: bool,
               on_tile: Callable[[SlideProgress], None] | None) -> None:
    """Store each finished tile as it comes, then update the bar and call ``on_tile``.

    ``results`` yields ``(tile index, value, objects, data)`` rows for :meth:`_TileStore.add`;
    it is a generator, so the next tile is computed only once this one is committed (a
    stop raised by ``on_tile`` loses nothing stored).
    """
    with _progress_bar(progress, name, total, done) as update:
        update(done, stored)
        for index, value, n, data in results:
            store.add(index, value, n, data)
            done += 1
            stored += n
            update(done, stored)
            if on_tile is not None:
                on_tile(SlideProgress(tile=index, done=done, total=total, candidates=stored))


def _finish_slide(out: Path, stem: str, mask: np.ndarray | None, outputs: dict[str, Path], store: _TileStore) -> None:
    """Save the tissue mask used beside the tables and drop the resume file (the slide is done).

    ``stem`` is the command's output stem (:func:`nucleikit.export.output_stem`), so that
    ``detect`` and ``segment`` on one slide keep their own masks and resume files.
    """
    if mask is not None:
        from .tissue import save_mask_png

        outputs["tissue"] = save_mask_png(out / f"{stem}_tissue.png", mask)
    store.discard()  # under the lock: no other run can have taken the store over in between


def _mpp_source(option: float | None, slide: Any) -> str:
    return "option" if option is not None else ("metadata" if slide.mpp is not None else "unknown")


def _result_fields(path: Path, plan: _SlidePlan, *, count: int, mpp: float | None, mpp_source: str, resumed: int,
                   t_start: float, outputs: dict[str, Path]) -> dict[str, Any]:
    """The fields :class:`SlideResult` and segmentation's result share, for a slide just finished.

    ``mpp`` is the slide's level-0 µm/px (None if unknown), ``resumed`` the tissue tiles found
    in the store, ``t_start`` the run's ``time.perf_counter()`` at its start (``seconds`` is
    the wall time since).
    """
    geometry = plan.geometry
    return dict(path=path, count=count, level=geometry.level, mpp=mpp, mpp_source=mpp_source,
                factor=geometry.factor, model_shape=geometry.model_shape, tiles_total=len(plan.grid),
                tiles_tissue=len(plan.tissue_tiles), tiles_resumed=resumed, mask_scale=float(plan.mask_scale),
                seconds=time.perf_counter() - t_start, outputs=outputs)


# --------------------------------------------------------------------------- detection


def detect_slide(
    slide_path: str | Path,
    detector: Any,
    out_dir: str | Path,
    *,
    mpp: float | None = None,
    level: int | None = None,
    tile: int | None = None,
    tissue_mask: Any = None,
    resume: bool = True,
    formats: Sequence[str] = FORMATS,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
    progress: bool = True,
    on_tile: Callable[[SlideProgress], None] | None = None,
    threshold_abs: float | None = None,
) -> SlideResult:
    """Detect the nuclei of a whole slide, tile by tile, and write them (module docstring).

    Parameters
    ----------
    slide_path : str or Path
        A slide :func:`~nucleikit.io.slides.open_slide` reads (SVS, NDPI, pyramidal TIFF...).
    detector : Detector
        Its network, µm/px, xi (``threshold_rel``), floor (``threshold_abs``) and peak
        distance, and its
        ``predictor.config`` (tile size, batch size, memory budget, threads) and precision are used.
    out_dir : str or Path
        Output folder (created); see the module docstring for the files.
    mpp : float or None
        Level-0 µm/px, overriding the file's metadata.
    level : int or None
        Pyramid level to read; None: the coarsest level not coarser than the model.
    tile : int or None
        Tile core side in model pixels; None: ``detector.predictor.config.tile``, else the
        largest balanced cores whose read window fits the predictor's memory budget
        (``config.memory``, :func:`slide_tile`).
    tissue_mask : None, "all", str, Path or (h, w) bool ndarray
        None: detected on a thumbnail; ``"all"``: every tile runs; a path: a mask image
        (:func:`~nucleikit.infer.tissue.load_mask`); an array: a mask covering the whole
        slide with its aspect ratio.
    resume : bool
        Continue from the finished tiles of an interrupted run with the same settings.
    formats : sequence of str, or str
        Any of :data:`FORMATS` (or a comma-separated string).
    threshold_rel, min_distance : float or None
        Override the detector's xi and peak distance (model pixels).
    progress : bool
        Show a Rich progress bar on stderr.
    on_tile : callable or None
        Called with a :class:`SlideProgress` after each tile is stored (an exception it
        raises stops the run; the stored tiles stay for a resume).
    threshold_abs : float or None
        Override the detector's absolute floor (map units, >= 0).

    Returns
    -------
    SlideResult

    Raises
    ------
    InputError
        Unreadable slide, missing level, unknown pixel size (with ``level=None``), no tissue,
        a bad mask file.
    ConfigError
        Unknown format, bad ``tissue_mask``.
    """
    from ..io.slides import open_slide

    t_start = time.perf_counter()
    slide_path = Path(slide_path)
    out = Path(out_dir)
    formats = _check_formats(formats)
    xi, floor, md = _peak_rule(detector, threshold_rel, threshold_abs, min_distance)
    predictor = detector.predictor
    stem = slide_path.stem
    named = output_stem(stem, "detect")  # the stem of this command's files (unchanged for detect)

    halo = _slide_halo(predictor.halo, md, predictor.align)
    with open_slide(slide_path, mpp=mpp) as slide:
        plan = _plan_slide(slide, slide_path, detector.mpp, level=level, tissue_mask=tissue_mask,
                           tile=slide_tile(predictor, tile, halo), halo=halo, align=predictor.align)
        geometry, grid = plan.geometry, plan.grid
        batch = predictor.plan(geometry.model_shape, halo=halo, tile=grid.core_shape).batch_size
        settings = {"task": "detection", "min_distance": md, "xi": xi, "threshold_abs": floor,
                    "bf16": predictor.precision.bf16}
        fingerprint = _fingerprint(slide_path, detector.meta.to_dict(), predictor.model, geometry, grid,
                                   plan.selected, settings)
        store = _TileStore(resume_path(out, named), fingerprint, resume=resume, slide=slide_path)
        try:
            done_before, pending = _pending(store, plan)
            _, running_max, candidates = store.finished()
            total = len(plan.tissue_tiles)
            model_grid = _ModelGrid(slide.level_view(geometry.level), geometry, predictor.mean, predictor.std)
            results = _detect_tiles(predictor, model_grid, geometry, grid, pending, md, xi, floor, running_max,
                                    batch)
            _run_tiles(store, results, name=stem, total=total, done=len(done_before), stored=candidates,
                       progress=progress, on_tile=on_tile)
            _, map_max, _ = store.finished()
            threshold = peak_threshold(map_max, xi=xi, threshold_abs=floor)  # the rule of Detector.peaks
            outputs, count = _write_outputs(out, stem, formats, store, threshold, plan.tissue_tiles, detector.name,
                                            detector.calibrated, mpp=slide.mpp)
            _finish_slide(out, named, plan.mask, outputs, store)
        finally:
            store.close()
        source = _mpp_source(mpp, slide)
        mpp_used = slide.mpp
    return SlideResult(
        **_result_fields(slide_path, plan, count=count, mpp=mpp_used, mpp_source=source, resumed=len(done_before),
                         t_start=t_start, outputs=outputs),
        map_max=float(map_max),
        threshold=float(threshold) if math.isfinite(threshold) else math.inf,
    )


def _peak_rule(detector: Any, threshold_rel: float | None, threshold_abs: float | None,
               min_distance: float | None) -> tuple[float, float, int]:
    """``(xi, floor, peak distance)``: the detector's, or the caller's overrides, checked (steps 4-5).

    Raises
    ------
    ConfigError
        xi outside [0, 1], a floor that is not a finite number >= 0, or a peak distance that
        is not a whole number of model pixels >= 1.
    """
    xi = detector.threshold_rel if threshold_rel is None else float(threshold_rel)
    if not 0.0 <= xi <= 1.0:
        raise ConfigError(f"threshold (xi) must be in [0, 1], got {xi}")
    floor = detector.threshold_abs if threshold_abs is None else float(threshold_abs)
    if not (math.isfinite(floor) and floor >= 0.0):
        raise ConfigError(f"threshold_abs must be a finite number >= 0, got {floor}")
    distance = detector.min_distance if min_distance is None else min_distance
    md = int(distance)
    if md != distance or md < 1:
        raise ConfigError(f"min_distance must be a whole number of pixels >= 1, got {distance}")
    return xi, floor, md


def _grown(tile: Tile, margin: int, shape: tuple[int, int]) -> Tile:
    """``tile`` with its core grown by ``margin`` on each side, clipped to the grid."""
    c = tile.core
    core = Window(max(c.y0 - margin, 0), max(c.x0 - margin, 0), min(c.y1 + margin, shape[0]),
                  min(c.x1 + margin, shape[1]))
    return Tile(index=tile.index, position=tile.position, read=tile.read, core=core)


def _detect_tiles(predictor: Any, model_grid: _ModelGrid, geometry: SlideGeometry, grid: TileGrid,
                  pending: list[Tile], md: int, xi: float, floor: float, running_max: float, batch_size: int
                  ) -> Iterator[tuple[int, float, int, bytes]]:
    """Peaks of each pending tile as store rows ``(tile, core maximum, peaks, packed peaks)`` (steps 4-5).

    ``running_max`` starts at the maximum over the tiles already stored (a resume).
    """
    grown = (_grown(t, md, geometry.model_shape) for t in pending)
    for big, output in predict_tiles(predictor.forward, model_grid, grown, batch_size=batch_size):
        prob = output[0]
        own = grid[big.index]
        core = prob[own.core.y0 - big.core.y0 : own.core.y1 - big.core.y0,
                    own.core.x0 - big.core.x0 : own.core.x1 - big.core.x0]
        core_max = float(core.max())
        running_max = max(running_max, core_max)
        # T(M_t) <= T(M): nothing kept at the end is dropped here (step 5). While M_t <= 0 the
        # threshold is inf: the owned peaks (in the core, <= M_t) could not pass T(M) >= 0 anyway.
        threshold = peak_threshold(running_max, xi=xi, threshold_abs=floor)
        xy, scores = find_peaks(prob, min_distance=md, threshold=threshold)
        xy = xy + (big.core.x0, big.core.y0)
        c = own.core
        keep = points_in_window(xy, (c.y0, c.x0, c.y1, c.x1))  # the ownership rule of tiled inference
        yield own.index, core_max, int(keep.sum()), _pack_peaks(geometry.to_level0(xy[keep]), scores[keep])


def _pack_peaks(xy0: np.ndarray, scores: np.ndarray) -> bytes:
    """(n, 2) level-0 (x, y) and (n,) scores as little-endian float64 rows (x, y, score)."""
    data = np.column_stack([xy0, scores.astype(np.float64)]) if len(scores) else np.zeros((0, 3))
    return np.ascontiguousarray(data, dtype="<f8").tobytes()


def _write_outputs(out: Path, stem: str, formats: tuple[str, ...], store: _TileStore, threshold: float,
                   tiles: set[int], model_name: str,
                   calibrate: Callable[[np.ndarray], np.ndarray] | None = None,
                   mpp: float | None = None) -> tuple[dict[str, Path], int]:
    """Stream the kept nuclei into each requested file; returns the files and the count.

    ``stem`` is the slide's own stem: the registry adds ``detect``'s tag (none). The store
    holds raw map values (the threshold compares them); ``calibrate`` turns them into the
    output scores (:meth:`Detector.calibrated`), as the image path writes them. ``mpp`` is
    the slide's level-0 resolution, recorded in the GeoJSON.
    """
    count = 0

    def chunks() -> Iterator[Nuclei]:
        nonlocal count
        count = 0  # every format is one pass over the store; the last pass's count is the count
        for xy, columns in _peak_chunks(store, threshold, tiles):
            count += len(xy)
            if calibrate is not None:
                columns = {**columns, "score": np.asarray(calibrate(columns["score"]), np.float32)}
            yield Nuclei(xy, columns=columns, measurements={f"{model_name} score": columns["score"]})

    table = SlideTable(chunks, schema=_COLUMNS, mpp=mpp)
    return write_slide_outputs(out, stem, "detect", formats, table), count


def _peak_chunks(store: _TileStore, threshold: float,
                 tiles: set[int]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Stored peaks with ``score > threshold`` (float32 comparison), in tile order, in chunks of ``_CHUNK``."""
    buffer: list[np.ndarray] = []
    size = 0
    thr32 = np.float32(threshold)
    for blob in store.rows(tiles):
        data = np.frombuffer(blob, dtype="<f8").reshape(-1, 3)
        data = data[data[:, 2].astype(np.float32) > thr32]
        if len(data):
            buffer.append(data)
            size += len(data)
        if size >= _CHUNK:
            yield _as_chunk(buffer)
            buffer, size = [], 0
    yield _as_chunk(buffer)  # possibly empty: the writers still get the schema


def _as_chunk(parts: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    data = np.concatenate(parts) if parts else np.zeros((0, 3))
    return data[:, :2], {"score": data[:, 2].astype(np.float32)}
