"""DetectionTask.validate: xi, peak distance and the absolute floor tuned together and saved."""

from __future__ import annotations

import numpy as np

from nucleikit.train.config import TrainConfig
from nucleikit.train.tasks import DetectionTask, PreparedImage
from nucleikit.train.tuning import FLOOR_GRID


def test_validation_tunes_the_floor_with_xi_and_saves_it():
    # One image with three nuclei (peaks 0.8, 0.7, 0.6), one blank image whose background
    # ripples (0.05, 0.04) pass any xi: the floor must rise above 0.05 and stay <= 0.6.
    nuclei = np.zeros((20, 40), np.float32)
    for x, v in ((5, 0.8), (15, 0.7), (25, 0.6)):
        nuclei[5, x] = v
    blank = np.zeros((20, 40), np.float32)
    blank[5, 5], blank[5, 15] = 0.05, 0.04
    cfg = TrainConfig(model="micronet", mpp=0.5, val_radius_um=1.0, xi_grid=(0.1, 0.5), min_distance_grid=(3,))
    images = [PreparedImage("a", np.zeros((20, 40, 3), np.float32), np.array([[5.0, 5], [15, 5], [25, 5]]), None),
              PreparedImage("b", np.zeros((20, 40, 3), np.float32), np.zeros((0, 2)), None)]
    val = DetectionTask("proximity", cfg).validate([nuclei[None], blank[None]], images)
    floor = val.postprocess["threshold_abs"]
    assert set(val.postprocess) == {"threshold_rel", "min_distance", "threshold_abs"}
    assert floor in FLOOR_GRID and 0.05 < floor < 0.6
    assert floor == max(f for f in FLOOR_GRID if f < 0.6)  # the largest floor that loses no nucleus
    assert val.record["threshold_abs"] == floor and val.score == 1.0 == val.record["val_f1"]
