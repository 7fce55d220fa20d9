"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def shared_data() -> Path:
    from nucleikit.io.datasets.base import find_shared_dir

    shared = find_shared_dir(HERE)
    if shared is None:
        sys.exit("benchmarks need ../shared/data (or NUCLEIKIT_SHARED)")
    return shared / "data"


def machine() -> dict:
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE).stdout.strip()
    except OSError:
        commit = ""
    from nucleikit.infer.precision import native_bf16

    return {
        "cpu": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_flags": _cpu_flags(),
        # what --precision auto needs from the CPU (AMX or AVX512-BF16); the weights' verdict is per model
        "native_bf16": native_bf16(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": commit,
    }


def _cpu_model() -> str:
    from nucleikit.infer.precision import cpu_model

    return cpu_model()


def _cpu_flags() -> list[str]:
    """The CPU features that decide bf16 speed (AMX, AVX-512 BF16/VNNI, AVX2), read as the package reads them."""
    from nucleikit.infer.precision import cpu_flags

    return sorted(f for f in cpu_flags() if f.startswith(("amx", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")))


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")
    return path


def reference_forward(model, pixels_list, mean, std, align: int = 16) -> float:
    """Seconds of the PROTOCOL.md section 4 reference over every (H, W, C) image.

    The reference is the plain fp32 eager forward pass: NCHW, ``torch.no_grad``, no
    tiling, each image reflect-padded on the bottom/right to a multiple of ``align``
    (the network's downsampling) and standardised; only the forward calls are timed.
    """
    import time

    import numpy as np
    import torch

    model = model.to(memory_format=torch.contiguous_format).eval()
    t = 0.0
    for px in pixels_list:
        h, w = px.shape[:2]
        x = (np.pad(px, ((0, -h % align), (0, -w % align), (0, 0)), mode="reflect") - mean) / std
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32))
        t0 = time.perf_counter()
        with torch.no_grad():
            model(xt)
        t += time.perf_counter() - t0
    return t
