"""Many slides over many processes or machines, on Dask distributed.

:func:`detect_slides_dask` sends each slide to a Dask worker as one task that runs
:func:`nucleikit.infer.wsi.detect_slide` there, so a slide is processed exactly as in a
single process (same tiles, same files) and only the scheduling differs.

- **Cluster.** ``scheduler=None`` or ``"local"`` starts a ``distributed.LocalCluster`` on
  this machine: ``workers`` processes with one thread each (torch uses one thread per
  worker too, so ``workers`` equals the cores used); it is closed when the batch ends.
  Any other string is the address of a running scheduler (``tcp://host:8786``, as printed
  by ``dask scheduler``); its workers need nucleikit installed, and the slides, the weights
  file and the output folder at the same paths (a shared file system). Paths are made
  absolute before they are sent.
- **The model is loaded once per worker** by a worker plugin (:class:`DetectorPlugin`,
  registered under a name derived from the weights and settings): Dask calls its
  ``setup`` on every worker, including workers that join later, and tasks take the
  worker's detector from it. A model that cannot be loaded on a worker is reported for
  each slide sent there.
- **Scheduling.** One task per slide, submitted all at once; the scheduler gives each free
  worker the next slide. Slides are independent, so workers never wait for each other;
  the throughput of N workers is about N times one worker's when there are several
  slides per worker (see ``benchmarks/wsi_speed.py``). A single large slide is not split
  across workers.
- **Failures are results.** A slide that fails (a :class:`~nucleikit.errors.NucleikitError`
  such as a truncated file or no tissue, an unexpected exception, a worker that died) is
  returned as a :class:`SlideFailure` in its place in the list; the other slides go on.
  A resumable slide keeps its finished tiles (``resume=True`` continues it next time).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NucleikitError
from .predict import InferenceConfig
from .wsi import FORMATS, SlideResult

__all__ = ["SlideFailure", "DetectorPlugin", "detect_slides_dask"]


@dataclass(frozen=True)
class SlideFailure:
    """A slide that could not be processed.

    Attributes
    ----------
    path : Path
        The slide.
    reason : str
        One line: the :class:`~nucleikit.errors.InputError` reason, or the exception's type
        and message.
    """

    path: Path
    reason: str


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NucleikitError):
        return str(getattr(exc, "reason", None) or exc)
    return f"{type(exc).__name__}: {exc}"


class _DetectorPluginMixin:
    """Loads a :class:`~nucleikit.infer.predict.Detector` once on each worker.

    Use ``DetectorPlugin(weights, config)``: the class derives from
    ``distributed.WorkerPlugin`` (Dask accepts no other plugins) and is made on first
    access, so that importing this module does not import Dask (which sets up its
    loggers).

    Parameters
    ----------
    weights : str
        Bundled weights name or a ``.safetensors`` path valid on the workers.
    config : InferenceConfig
        How the worker runs the network (``threads=1`` for one thread per worker).

    Attributes
    ----------
    detector : Detector or None
        Set by ``setup`` on the worker.
    error : str or None
        Why loading failed on the worker, if it did.
    """

    def __init__(self, weights: str, config: InferenceConfig) -> None:
        self.weights = weights
        self.config = config
        self.detector: Any = None
        self.error: str | None = None

    @property
    def key(self) -> str:
        """The name it is registered under: one per weights and settings."""
        digest = hashlib.sha256(repr((self.weights, self.config)).encode()).hexdigest()[:12]
        return f"nucleikit-detector-{digest}"

    def setup(self, worker: Any = None) -> None:
        from .predict import Detector

        try:
            self.detector = Detector.from_weights(self.weights, config=self.config)
        except NucleikitError as exc:  # reported with each slide, not as a worker crash
            self.error = str(exc)


def _plugin_class() -> type:
    """``DetectorPlugin``, made on first use (see _DetectorPluginMixin) and kept as a module
    attribute, so that pickle finds the same class by name on the workers."""
    cls = globals().get("DetectorPlugin")
    if cls is None:
        try:
            from distributed import WorkerPlugin
        except ImportError:
            raise ConfigError(
                'Dask distributed is not installed; install it with pip install "nucleikit[distributed]"'
            ) from None
        namespace = {"__module__": __name__, "__doc__": _DetectorPluginMixin.__doc__}
        cls = type("DetectorPlugin", (_DetectorPluginMixin, WorkerPlugin), namespace)
        globals()["DetectorPlugin"] = cls
    return cls


def __getattr__(name: str) -> Any:  # PEP 562: the module's lazy attribute
    if name == "DetectorPlugin":
        return _plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run_on_worker(plugin_key: str, path: str, out_dir: str, options: dict[str, Any]) -> SlideResult | SlideFailure:
    """The task: the worker's detector on one slide; user errors come back as failures."""
    from distributed import get_worker

    from .wsi import detect_slide

    plugin = get_worker().plugins[plugin_key]
    if plugin.detector is None:
        return SlideFailure(Path(path), f"cannot load the model on this worker: {plugin.error}")
    try:
        return detect_slide(path, plugin.detector, out_dir, progress=False, **options)
    except NucleikitError as exc:
        return SlideFailure(Path(path), _reason(exc))


def _check_weights(weights: str | Path) -> str:
    """The weights as the workers should see them: a bundled name, or an absolute path (checked here)."""
    from ..models.weights import read_weights_meta, resolve_weights

    resolved = resolve_weights(weights)  # WeightsError now rather than once per slide
    read_weights_meta(resolved)
    candidate = Path(weights)
    return str(candidate.resolve()) if candidate.is_file() else str(weights)


def detect_slides_dask(
    paths: Sequence[str | Path],
    weights: str | Path,
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    config: InferenceConfig = InferenceConfig(threads=1),
    mpp: float | None = None,
    level: int | None = None,
    tile: int | None = None,
    tissue_mask: str | Path | None = None,
    resume: bool = True,
    formats: Sequence[str] = FORMATS,
    threshold_rel: float | None = None,
    min_distance: float | None = None,
    on_result: Callable[[SlideResult | SlideFailure], None] | None = None,
) -> list[SlideResult | SlideFailure]:
    """Detect nuclei in many slides on a Dask cluster (see the module docstring).

    Parameters
    ----------
    paths : sequence of str or Path
        Slides.
    weights : str or Path
        Bundled weights name or ``.safetensors`` file.
    out_dir : str or Path
        Output folder, as for :func:`~nucleikit.infer.wsi.detect_slide` (shared by the workers).
    scheduler : None, "local" or str
        None or ``"local"``: a LocalCluster of ``workers`` single-threaded processes;
        otherwise a scheduler address.
    workers : int
        Worker processes of the LocalCluster (ignored with an address).
    config : InferenceConfig
        Per-worker inference settings; ``threads`` None is taken as 1.
    mpp, level, tile, tissue_mask, resume, formats, threshold_rel, min_distance
        As for :func:`~nucleikit.infer.wsi.detect_slide`, the same for every slide
        (``tissue_mask`` None, ``"all"`` or one mask file).
    on_result : callable or None
        Called in this process with each result or failure as it arrives.

    Returns
    -------
    list of SlideResult or SlideFailure
        One per slide, in the order of ``paths``.

    Raises
    ------
    WeightsError
        The weights cannot be found or read here (checked before any slide is sent).
    ConfigError
        ``distributed`` is not installed, or ``workers`` < 1.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError(
            'Dask distributed is not installed; install it with pip install "nucleikit[distributed]"'
        ) from None
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1, got {workers!r}")
    weights_ref = _check_weights(weights)
    if config.threads is None:
        config = replace(config, threads=1)
    options = dict(mpp=mpp, level=level, tile=tile, resume=resume, formats=tuple(formats),
                   threshold_rel=threshold_rel, min_distance=min_distance,
                   tissue_mask=str(Path(tissue_mask).resolve()) if tissue_mask not in (None, "all") else tissue_mask)
    out = str(Path(out_dir).resolve())
    slides = [Path(p).resolve() for p in paths]
    plugin = _plugin_class()(weights_ref, config)

    cluster = None
    if scheduler is None or scheduler == "local":
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    results: list[SlideResult | SlideFailure | None] = [None] * len(slides)
    try:
        client.register_plugin(plugin, name=plugin.key)
        futures = {
            client.submit(_run_on_worker, plugin.key, str(path), out, options, pure=False,
                          key=f"nucleikit-slide-{k}-{path.name}"): k
            for k, path in enumerate(slides)
        }
        for future in as_completed(futures):
            k = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # a bug or a dead worker: this slide fails, the batch goes on
                result = SlideFailure(slides[k], _reason(exc))
            results[k] = result
            if on_result is not None:
                on_result(result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [r for r in results if r is not None]
