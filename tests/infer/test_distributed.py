"""Slides over Dask workers: a real LocalCluster of 2 processes, a broken slide, the serial result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed", reason="needs the 'distributed' extra (pip install nucleikit[distributed])")

from nucleikit.errors import WeightsError  # noqa: E402
from nucleikit.infer.distributed import SlideFailure, detect_slides_dask  # noqa: E402
from nucleikit.infer.predict import Detector, InferenceConfig  # noqa: E402
from nucleikit.infer.wsi import SlideResult, detect_slide  # noqa: E402



def write_pyramid(path: Path, level0: np.ndarray) -> Path:
    """A 2-level tiled pyramidal TIFF at 0.5 µm/px."""
    import tifffile

    px_per_cm = 1e4 / 0.5
    options = dict(tile=(64, 64), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
    h, w = level0.shape[0] // 2, level0.shape[1] // 2
    level1 = level0[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(level0, subifds=1, resolution=(px_per_cm, px_per_cm), **options)
        tif.write(level1, subfiletype=1, resolution=(px_per_cm / 2, px_per_cm / 2), **options)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import torch

    from nucleikit.models import build_model
    from nucleikit.models.weights import save_weights

    torch.manual_seed(0)
    meta = {"name": "tiny", "model": "micronet", "model_kwargs": {"width": 4}, "task": "detection",
            "target": "proximity", "mpp": 0.5, "mean": [0.5] * 3, "std": [0.25] * 3,
            "postprocess": {"threshold_rel": 0.5, "min_distance": 3}, "halo": 32}
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_weights(path, build_model("micronet", width=4), meta)


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("slides")
    rng = np.random.default_rng(1)
    a = write_pyramid(folder / "a.tif", rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
    b = write_pyramid(folder / "b.tif", rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    whole = write_pyramid(folder / "c.tif", rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    broken = folder / "broken.tif"
    broken.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # cut off: a truncated copy
    return [a, broken, b]


def test_two_workers_three_slides_one_broken(slides, weights, tmp_path):
    out = tmp_path / "dask"
    arrived: list = []
    results = detect_slides_dask(slides, weights, out, workers=2, tile=64, tissue_mask="all",
                                 formats=("csv",), on_result=arrived.append)
    assert [type(r) for r in results] == [SlideResult, SlideFailure, SlideResult]
    assert results[1].path == slides[1].resolve() and "truncated" in results[1].reason
    assert len(arrived) == 3
    serial = Detector.from_weights(weights, config=InferenceConfig(threads=1))
    for res, path in zip(results[::2], slides[::2]):
        alone = detect_slide(path, serial, tmp_path / "serial", tile=64, tissue_mask="all", formats=("csv",),
                             progress=False)
        assert res.count == alone.count > 0
        pd.testing.assert_frame_equal(pd.read_csv(res.outputs["csv"]), pd.read_csv(alone.outputs["csv"]))
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv"]


def test_missing_weights_fail_before_any_worker_starts(slides, tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        detect_slides_dask(slides, tmp_path / "nope.safetensors", tmp_path, workers=1)


def test_running_scheduler_by_address_each_worker_holds_the_model(slides, weights, tmp_path):
    from distributed import Client, LocalCluster

    from nucleikit.infer import distributed as nk_distributed

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        results = detect_slides_dask([slides[0], slides[2]], weights, tmp_path, scheduler=cluster.scheduler_address,
                                     tile=64, tissue_mask="all", formats=("sqlite",))
        assert [type(r) for r in results] == [SlideResult, SlideResult]
        assert results[0].outputs["sqlite"].exists()

        def loaded(dask_worker) -> list[str]:
            return [type(p.detector).__name__ for p in dask_worker.plugins.values()
                    if isinstance(p, nk_distributed.DetectorPlugin)]

        # the plugin's setup ran on every worker, which keeps the model for all its slides
        assert sorted(client.run(loaded).values()) == [["Detector"], ["Detector"]]
