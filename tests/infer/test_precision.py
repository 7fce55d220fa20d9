"""--precision auto|fp32|bf16: the choice follows the CPU flags and the weights' stored verdict."""

from __future__ import annotations

import pytest

from nucleikit.errors import ConfigError
from nucleikit.infer import precision as prec
from nucleikit.infer.precision import Precision, choose_precision, requested_precision

ICE_LAKE = {"avx2", "avx512f", "avx512_vnni"}            # this machine: no native bf16
COOPER_LAKE = ICE_LAKE | {"avx512_bf16"}
SAPPHIRE_RAPIDS = COOPER_LAKE | {"amx_bf16", "amx_tile", "amx_int8"}
AMX_ONLY = {"avx512f", "amx_bf16", "amx_tile"}


@pytest.mark.parametrize("requested, flags, bf16_ok, used, reason", [
    # auto: bf16 only with native bf16 AND a stored "holds" verdict
    ("auto", SAPPHIRE_RAPIDS, True, "bf16", "auto: bf16, CPU has amx_bf16/avx512_bf16 and the weights hold under bf16"),
    ("auto", AMX_ONLY, True, "bf16", "auto: bf16, CPU has amx_bf16 and the weights hold under bf16"),
    ("auto", COOPER_LAKE, True, "bf16", "auto: bf16, CPU has avx512_bf16 and the weights hold under bf16"),
    ("auto", ICE_LAKE, True, "fp32", "auto: fp32, CPU has no AMX/AVX512-BF16"),
    ("auto", set(), True, "fp32", "auto: fp32, CPU has no AMX/AVX512-BF16"),  # no /proc/cpuinfo: unknown = no
    ("auto", SAPPHIRE_RAPIDS, None, "fp32", "auto: fp32, the weights' accuracy under bf16 not measured (bf16_ok)"),
    ("auto", SAPPHIRE_RAPIDS, False, "fp32", "auto: fp32, the weights' accuracy under bf16 does not hold (bf16_ok)"),
    ("auto", ICE_LAKE, False, "fp32", "auto: fp32, CPU has no AMX/AVX512-BF16"),
    # forced: whatever the CPU and the verdict
    ("fp32", SAPPHIRE_RAPIDS, True, "fp32", "fp32: asked for"),
    ("bf16", ICE_LAKE, False, "bf16", "bf16: asked for"),
    ("bf16", set(), None, "bf16", "bf16: asked for"),
])
def test_choice_follows_cpu_flags_and_stored_verdict(requested, flags, bf16_ok, used, reason):
    p = choose_precision(requested, cpu_flags=flags, bf16_ok=bf16_ok)
    assert p == Precision(used=used, requested=requested, reason=reason)
    assert p.bf16 is (used == "bf16")
    assert p.record == {"used": used, "requested": requested, "reason": reason}


def test_only_a_true_verdict_counts():
    for verdict in ("yes", 1, "true", [True]):
        assert choose_precision("auto", cpu_flags=SAPPHIRE_RAPIDS, bf16_ok=verdict).used == "fp32"


def test_flags_are_read_from_cpuinfo(monkeypatch):
    text = "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n"
    monkeypatch.setattr(prec, "_cpuinfo", lambda: text)
    assert prec.cpu_flags() == {"fpu", "avx512f", "amx_bf16", "amx_tile"}
    assert prec.cpu_model() == "Some Xeon" and prec.native_bf16()
    assert prec.resolve_precision("auto", {"bf16_ok": True}).used == "bf16"
    assert prec.resolve_precision("auto", {}).used == "fp32"
    monkeypatch.setattr(prec, "_cpuinfo", lambda: "")
    assert prec.cpu_flags() == frozenset() and not prec.native_bf16()
    assert prec.resolve_precision("auto", {"bf16_ok": True}).reason == "auto: fp32, CPU has no AMX/AVX512-BF16"


@pytest.mark.parametrize("precision, bf16, expected", [
    ("auto", None, "auto"), ("fp32", None, "fp32"), ("bf16", None, "bf16"),
    ("auto", True, "bf16"), ("auto", False, "fp32"),          # the older switch, as it behaved
    ("bf16", True, "bf16"), ("fp32", False, "fp32"),
])
def test_old_bf16_switch_is_an_alias(precision, bf16, expected):
    assert requested_precision(precision, bf16) == expected


def test_bad_or_contradictory_requests_are_refused():
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16"):
        requested_precision("fp16", None)
    with pytest.raises(ConfigError, match="contradicts"):
        requested_precision("fp32", True)
    with pytest.raises(ConfigError):
        choose_precision("half", cpu_flags=(), bf16_ok=True)


def test_configs_take_precision_and_keep_bf16(monkeypatch):
    from nucleikit.infer.classify import PatchInferenceConfig
    from nucleikit.infer.predict import InferenceConfig

    for config in (InferenceConfig, PatchInferenceConfig):
        assert config().requested_precision == "auto"
        assert config(bf16=True).requested_precision == "bf16"
        assert config(bf16=False).requested_precision == "fp32"
        assert config(precision="bf16").requested_precision == "bf16"
        with pytest.raises(ConfigError):
            config(precision="fp32", bf16=True)
        with pytest.raises(ConfigError):
            config(precision="float32")


def test_detector_runs_what_the_choice_says(monkeypatch):
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.models import build_model

    model = build_model("micronet", width=4)
    meta = {"model": "micronet", "mpp": 0.55, "mean": [0.5] * 3, "std": [0.2] * 3, "halo": 64}
    monkeypatch.setattr("nucleikit.infer.predict.cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    assert Detector(model, meta).precision.used == "fp32"                      # no verdict
    assert Detector(model, {**meta, "bf16_ok": True}).precision.used == "bf16"
    assert Detector(model, {**meta, "bf16_ok": True}, config=InferenceConfig(precision="fp32")).precision.used == "fp32"
    assert Detector(model, meta, config=InferenceConfig(bf16=True)).precision.reason == "bf16: asked for"
    monkeypatch.setattr("nucleikit.infer.predict.cpu_flags", lambda: frozenset(ICE_LAKE))
    assert Detector(model, {**meta, "bf16_ok": True}).precision.used == "fp32"
    # and the forward pass really runs under the chosen autocast
    import numpy as np

    monkeypatch.setattr("nucleikit.infer.predict.cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    fp32 = Detector(model, meta).predictor.forward(x)
    bf16 = Detector(model, {**meta, "bf16_ok": True}).predictor.forward(x)
    assert not np.array_equal(fp32, bf16) and np.abs(fp32 - bf16).max() < 0.05
