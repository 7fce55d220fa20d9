import numpy as np
import pytest
from PIL import Image

from nucleikit.models import build_model
from nucleikit.models.weights import save_weights


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small untrained MicroNet saved as a complete weights file (mechanics only)."""
    import torch

    torch.manual_seed(0)
    model = build_model("micronet", width=4)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    meta = {
        "name": "tiny",
        "model": "micronet",
        "model_kwargs": {"width": 4},
        "task": "detection",
        "target": "proximity",
        "mpp": 0.5,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "postprocess": {"threshold_rel": 0.5, "min_distance": 3},
        "halo": 32,
    }
    return save_weights(path, model, meta)


@pytest.fixture
def disc_png(tmp_path):
    """A 96x80 RGB PNG with dark discs, and their centres."""
    h, w = 80, 96
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 230, np.uint8)
    centres = [(20, 20), (60, 30), (40, 60)]
    for x, y in centres:
        img[(xx - x) ** 2 + (yy - y) ** 2 <= 16] = (80, 40, 120)
    path = tmp_path / "discs.png"
    Image.fromarray(img).save(path)
    return path, np.array(centres, float)


@pytest.fixture(scope="session")
def tiny_classifier_weights(tmp_path_factory):
    """A small untrained DenseNet nucleus classifier (16x16 patches at 0.5 um/px) saved as weights."""
    import torch

    torch.manual_seed(0)
    kwargs = {"growth": 4, "stem_width": 8, "layers": [1, 1, 1, 1]}
    model = build_model("densenet", **kwargs)
    path = tmp_path_factory.mktemp("weights") / "tiny_classifier.safetensors"
    meta = {
        "name": "tiny_classifier",
        "model": "densenet",
        "model_kwargs": kwargs,
        "task": "classification",
        "target": "label",
        "classes": ["epithelial", "fibroblast", "inflammatory", "others"],
        "mpp": 0.5,
        "patch": 16,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    return save_weights(path, model, meta)
