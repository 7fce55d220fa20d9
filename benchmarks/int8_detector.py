"""PyTorch's x86 int8 quantisation of a bundled detector: speed against fp32 and validation F1 (issue 15 item 5).

    python benchmarks/int8_detector.py                          # micronet_he, 2 threads
    python benchmarks/int8_detector.py --model micronet_he_fast --threads 2

What is measured, in one process so the ratios hold on a shared machine:

- **int8**: post-training static quantisation with the x86 backend through FX graph mode
  (``torch.ao.quantization.quantize_fx``: observers calibrated on ``--calibrate`` CRCHisto
  *training* images, per-channel int8 weights, conv-BN-activation fused). This is the int8
  path torch 2.13 itself still carries; the PT2E/X86InductorQuantizer path has moved to the
  separate ``torchao`` package, which nucleikit does not depend on.
- **fp32**: the same network as a plain eager forward pass (``torch.inference_mode``).
- Both run on the same CRCHisto *validation* images (at the model's resolution, padded to its
  alignment); timing is the best of ``--repeat`` passes; the self-time of the three most
  expensive operators of each is recorded (where int8 spends its time).
- **Accuracy**: the peaks of each map with the post-processing stored in the weights, matched
  to the validation points at r = 6 px (PROTOCOL.md), and the largest absolute map difference.
  Test images are not used: a variant is shipped only if validation F1 holds within 0.01.

Writes ``benchmarks/results/int8_<model>.json`` with the CPU model and flags.

Measured on 2026-12-07 (Xeon Ice Lake, AVX512-VNNI, no AMX; 1 thread on a loaded machine, so
only the ratios count): int8 0.78x the speed of fp32 and validation F1 0.208 against 0.796;
with the last block in fp32, 0.98x and 0.072. int8 convolutions ran no faster than oneDNN's
fp32 ones on this CPU, quantised ELU ran about 15x slower than float ELU, and the int8 maps
differ from fp32 by up to 0.55 (the maps peak near 0.13). Not shipped. Why the maps break
(activation ranges of the concatenated context branches are the suspect) was not pursued,
since no variant was faster.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def padded_batch(pixels: np.ndarray, mean, std, align: int):
    """(1, C, H', W') float tensor: standardised, reflect-padded bottom/right to ``align``."""
    import torch

    h, w = pixels.shape[:2]
    ph, pw = (-h) % align, (-w) % align
    x = (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32))


def quantise(model, calibration_inputs, float_modules: tuple[str, ...] = ()):
    """An int8 copy of ``model`` (x86 backend, FX graph mode), observers run over ``calibration_inputs``.

    ``float_modules`` (qualified module names) stay in fp32.
    """
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantisation is deprecated upstream in favour of torchao
        mapping = get_default_qconfig_mapping("x86")
        for name in float_modules:
            mapping = mapping.set_module_name(name, None)
        prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, (calibration_inputs[0],))
        with torch.inference_mode():
            for x in calibration_inputs:
                prepared(x)
        return convert_fx(prepared)


def forward_seconds(net, inputs, repeat: int) -> tuple[float, list[np.ndarray]]:
    import torch

    best, maps = float("inf"), []
    with torch.inference_mode():
        for r in range(repeat):
            t0 = time.perf_counter()
            out = [net(x) for x in inputs]
            best = min(best, time.perf_counter() - t0)
            if r == 0:
                maps = [o[0, 0].float().numpy() for o in out]
    return best, maps


def top_operators(net, x, k: int = 3) -> list[dict]:
    import torch

    with torch.inference_mode(), torch.profiler.profile() as prof:
        net(x)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:k]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1.0
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total}
            for e in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="micronet_he")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibrate", type=int, default=8, help="CRCHisto training images for the observers")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "experiments" / "pooled_he.json")
    args = ap.parse_args()

    import torch

    from _common import machine, save

    from nucleikit.experiments.config import load_config, prepare
    from nucleikit.infer.predict import Detector, model_alignment
    from nucleikit.metrics.points import evaluate_points
    from nucleikit.models.weights import load_weights, resolve_weights
    from nucleikit.transforms import resample, scale_factor, scale_points

    torch.set_num_threads(args.threads)
    model, meta = load_weights(resolve_weights(args.model))
    model.eval()
    detector = Detector(model, meta)
    align = model_alignment(model)
    crchisto = prepare(load_config(args.config))["crchisto"]

    def at_model_resolution(sample):
        factor = scale_factor(sample.mpp, detector.mpp)
        return resample(detector.image(sample.load_image()), factor), scale_points(sample.points, factor)

    calibration = [padded_batch(at_model_resolution(s)[0], meta["mean"], meta["std"], align)
                   for s in crchisto.samples("train")[: args.calibrate]]
    validation = [at_model_resolution(s) for s in crchisto.samples("validation")]
    inputs = [padded_batch(p, meta["mean"], meta["std"], align) for p, _ in validation]
    megapixels = sum(p.shape[0] * p.shape[1] for p, _ in validation) / 1e6

    # int8 everywhere, and int8 with the last block (fusion and the 1x1 output head) kept in fp32
    heads = tuple(name for name, _ in model.named_modules() if name.endswith(".head"))
    last_block = tuple({name.rsplit(".", 1)[0] for name in heads})
    variants = {"fp32": model, "int8": quantise(model, calibration),
                "int8_fp32_head": quantise(model, calibration, last_block)}
    radius = 6.0 * 0.55 / detector.mpp  # PROTOCOL.md: 6 px at CRCHisto's 0.55 um/px
    results = {}
    for name, net in variants.items():
        seconds, maps = forward_seconds(net, inputs, args.repeat)
        maps = [m[: p.shape[0], : p.shape[1]] for m, (p, _) in zip(maps, validation)]
        preds = [detector.peaks(m)[0] for m in maps]
        report = evaluate_points(preds, [pts for _, pts in validation], radius)
        results[name] = {"seconds": seconds, "mp_per_s": megapixels / seconds, "val_f1": report.pooled.f1,
                         "top_operators": top_operators(net, inputs[0]), "maps": maps}
    reference = results["fp32"].pop("maps")
    verdict = {}
    for name in variants:
        if name == "fp32":
            continue
        r = results[name]
        r["max_abs_map_difference"] = max(float(np.abs(a - b).max()) for a, b in zip(reference, r.pop("maps")))
        r["speed_vs_fp32"] = results["fp32"]["seconds"] / r["seconds"]
        r["f1_change"] = r["val_f1"] - results["fp32"]["val_f1"]
        verdict[name] = abs(r["f1_change"]) <= 0.01 and r["speed_vs_fp32"] > 1.0
    out = save(f"int8_{args.model}", {"machine": machine(), "model": args.model, "images": len(inputs),
                                      "megapixels": megapixels, "results": results, "ship": verdict})
    for name, r in results.items():
        extra = (f", {r['speed_vs_fp32']:.2f}x fp32, F1 change {r['f1_change']:+.4f}, ship: {verdict[name]}"
                 if name in verdict else "")
        print(f"{name}: {r['mp_per_s']:.2f} MP/s, validation F1 {r['val_f1']:.4f}, top op "
              f"{r['top_operators'][0]['op']} ({r['top_operators'][0]['share']:.0%}){extra}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
