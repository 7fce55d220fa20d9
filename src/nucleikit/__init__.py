"""nucleikit: find, outline and type cell nuclei in microscopy and H&E images.

Importing nucleikit changes nothing outside it: no logging set-up, no
environment variables, no thread settings. Heavy modules (torch) are imported
only by the functions that need them: the main API below is loaded on first
use.

>>> import nucleikit
>>> image = nucleikit.read_image("tile.png")                          # doctest: +SKIP
>>> nuclei = nucleikit.Detector.from_weights("micronet").detect(image.pixels, mpp=image.mpp)  # doctest: +SKIP
>>> outlines = nucleikit.Segmenter.from_weights("unet_he").segment(image.pixels, mpp=image.mpp)  # doctest: +SKIP
>>> table = nucleikit.to_dataframe(nuclei)  # x, y, score (needs nucleikit[pandas])  # doctest: +SKIP

Main API: ``read_image``, ``sample_image_path``, ``Detector`` (+ ``InferenceConfig``),
``Segmenter``, ``AutoSegmenter``, ``Classifier``, ``analyze_image`` (detect, then type),
``to_dataframe`` / ``classification_dataframe`` (results as pandas DataFrames) and
``napari_csv`` (a points table napari opens).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: Public name -> module that defines it (imported when first asked for).
_API = {
    "read_image": "nucleikit.io.images",
    "sample_image_path": "nucleikit.io.images",
    "Detector": "nucleikit.infer.predict",
    "InferenceConfig": "nucleikit.infer.predict",
    "Segmenter": "nucleikit.infer.segment",
    "AutoSegmenter": "nucleikit.infer.segment",
    "Classifier": "nucleikit.infer.classify",
    "analyze_image": "nucleikit.infer.pipelines",
    "to_dataframe": "nucleikit.frames",
    "classification_dataframe": "nucleikit.frames",
    "napari_csv": "nucleikit.export.napari",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'nucleikit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
