"""Self-describing weights files: one ``.safetensors`` file per trained model.

A file holds the model's state dict (parameters and buffers such as batch
normalisation running statistics; floating tensors stored as float32) and,
under the safetensors metadata key ``"nucleikit"``, a JSON object with at
least:

``model``
    Registry name (:func:`nucleikit.models.registry.list_models`).
``model_kwargs``
    Every builder keyword argument (a JSON object; :func:`save_weights`
    completes the caller's arguments with the builder's defaults, so a later
    change of a default cannot change what the file rebuilds).
``num_params``
    Number of parameter elements (buffers not counted), written by
    :func:`save_weights` and checked by :func:`load_weights`.
``format_version``
    Version of this layout (currently 1).

Anything else the caller puts in ``meta`` (µm/px, normalisation, detection
threshold, split, figures, training command) travels with the weights. One
optional key is read by inference:

``bf16_ok``
    ``true`` when the model's test figures were measured to hold under
    bfloat16 autocast, ``false`` when they were measured not to; absent means
    not measured. ``--precision auto`` runs bf16 only on ``true`` (and a CPU
    with AMX or AVX512-BF16; :mod:`nucleikit.infer.precision`). The
    measurement that decided it may travel as ``bf16_evidence``
    (``tools/weights_meta.py`` sets both without touching the tensors).

Reading a file checks its metadata once and types it: :func:`read_weights_meta`
and :func:`load_weights` return a frozen
:class:`~nucleikit.models.weights_meta.WeightsMeta` (typed attributes for every
key nucleikit reads, the legacy defaults of older files, everything else kept in
``extra``; ``to_dict()`` gives the JSON object back exactly).

Loading never executes code from the file: the tensors are read by
safetensors and the model is rebuilt through the registry by name. Every
problem with a file is a :class:`~nucleikit.errors.WeightsError` naming the
file and the reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError, WeightsError, dangling_link_reason
from .registry import build_model, get_spec
from .weights_meta import FORMAT_VERSION, WeightsMeta, to_json

__all__ = [
    "FORMAT_VERSION",
    "META_KEY",
    "save_weights",
    "load_weights",
    "read_weights_meta",
    "tensor_fingerprint",
    "bundled_weights_dir",
    "WeightsMeta",
    "resolve_weights",
]

META_KEY = "nucleikit"
SUFFIX = ".safetensors"

# First bytes of what torch.save writes: a zip archive (torch >= 1.6) or a bare pickle
# (protocol 2+ starts with 0x80). A user handing us a .pt/.pth file gets told what it is.
_TORCH_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"
#: One-line conversion of a PyTorch state dict into a nucleikit weights file (quoted in messages).
CONVERT_RECIPE = (
    "python -c \"import torch, nucleikit.models as m; net = m.build_model('ARCH'); "
    "net.load_state_dict(torch.load('IN.pt', weights_only=True)); "
    "m.save_weights('OUT.safetensors', net, {'model': 'ARCH', 'model_kwargs': {}, 'mpp': UM_PER_PX, "
    "'mean': [R, G, B], 'std': [R, G, B]})\" (mean and std: the per-channel input normalisation the "
    "network was trained with)"
)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _state_tensors(model: nn.Module, storage: str = "float32") -> dict[str, torch.Tensor]:
    """State dict as CPU tensors, each with its own storage.

    Floats are stored as float32, or as float16 with ``storage="float16"``
    (half the file size; loading casts back to float32). Batch-norm running
    statistics always stay float32: a variance can be smaller than float16
    resolves.
    """
    if storage not in ("float32", "float16"):
        raise ConfigError(f"storage must be 'float32' or 'float16', got {storage!r}")
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point():
            keep32 = storage == "float32" or key.endswith(("running_mean", "running_var"))
            value = value.to(torch.float32 if keep32 else torch.float16)
        # clone: safetensors refuses tensors that share storage.
        tensors[key] = value.contiguous().clone()
    return tensors


def _mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """Human-readable difference between two state dicts' keys and shapes, or None."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    wrong = [k for k in sorted(set(expected) & set(found)) if expected[k].shape != found[k].shape]
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensors of the wrong shape (e.g. {k}: {tuple(found[k].shape)}, "
            f"model expects {tuple(expected[k].shape)})"
        )
    return "; ".join(problems) or None


def save_weights(
    path: str | PathLike[str], model: nn.Module, meta: Mapping[str, Any], *, storage: str = "float32"
) -> Path:
    """Write ``model``'s weights and ``meta`` to one safetensors file, atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination, conventionally ``<name>.safetensors``; its folder must
        exist. An existing file is replaced.
    model : nn.Module
        The trained model; it must be what ``build_model(meta["model"],
        **meta["model_kwargs"])`` builds (same tensor names and shapes).
    meta : dict or WeightsMeta
        A JSON object (a :class:`~nucleikit.models.weights_meta.WeightsMeta` is
        written as its ``to_dict()``); must contain ``"model"`` (registry name) and
        ``"model_kwargs"`` (dict). The file stores ``model_kwargs``
        completed with the builder's defaults
        (:meth:`~nucleikit.models.registry.ModelSpec.full_kwargs`) and adds
        ``"num_params"`` and ``"format_version"`` (overwritten if present), and
        ``"task"`` from the registry when ``meta`` names none. Inference also
        needs ``"mean"`` and ``"std"`` (:func:`load_weights` refuses a file
        without them).
        ``meta`` itself is not modified.
    storage : {"float32", "float16"}
        Precision of the stored floating-point parameters (see
        :func:`_state_tensors`); the loaded model always computes in float32.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        ``meta`` lacks a key, is not JSON-serialisable, names an unknown
        model, or the registry's model does not match ``model``.
    WeightsError
        The destination folder does not exist or cannot be written.

    Notes
    -----
    The file is written under a temporary name in the same folder and then
    renamed over ``path`` (``os.replace``), so readers never see a partial
    file and a failed save leaves any previous file intact.
    """
    path = Path(path)
    if isinstance(meta, WeightsMeta):
        meta = meta.to_dict()
    if not isinstance(meta, dict) or "model" not in meta or "model_kwargs" not in meta:
        raise ConfigError("weights metadata must be a dict with 'model' and 'model_kwargs'")
    if not isinstance(meta["model_kwargs"], dict):
        raise ConfigError(f"'model_kwargs' must be a dict, got {type(meta['model_kwargs']).__name__}")
    model_kwargs = get_spec(meta["model"]).full_kwargs(**meta["model_kwargs"])
    tensors = _state_tensors(model, storage)
    reference = build_model(meta["model"], **model_kwargs).state_dict()
    problem = _mismatch(reference, tensors)
    if problem:
        raise ConfigError(f"model does not match {meta['model']!r} built with {meta['model_kwargs']}: {problem}")
    full = {
        # the architecture's task unless the caller names one (a converted state dict names none)
        "task": get_spec(meta["model"]).task,
        **meta,
        "model_kwargs": model_kwargs,
        "num_params": _num_params(model),
        "format_version": FORMAT_VERSION,
        "storage": storage,
    }
    try:
        header = json.dumps(full, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"weights metadata is not JSON-serialisable: {exc}") from None
    if not path.parent.is_dir():
        raise WeightsError(path, f"folder {path.parent} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WeightsError(path, f"cannot write in {path.parent} ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, tmp, metadata={META_KEY: header})
        # mkstemp creates 0600 (and save_file may recreate the file); the weights are a result
        # like any other, so they get the permissions the user's umask gives every other output.
        os.chmod(tmp, _umask_mode())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WeightsError(path, f"cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask_mode() -> int:
    """The mode a new file gets under the process's umask (``0o666 & ~umask``)."""
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _not_safetensors_reason(path: Path, exc: Exception) -> str:
    """Why ``path`` could not be opened by safetensors, naming a PyTorch pickle as such."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        head = b""
    if head.startswith(_TORCH_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC):
        return (f"this is a PyTorch pickle (torch.save), not a .safetensors weights file; a training run's "
                f"weights are its best.safetensors, and a state dict converts with: {CONVERT_RECIPE}")
    return f"not a readable safetensors file ({exc})"


def _non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def tensor_fingerprint(path: str | PathLike[str]) -> str:
    """SHA-256 (hex) of a weights file's tensors: names, dtypes, shapes and values, not its metadata.

    Two files with the same fingerprint start a training from the same network,
    wherever they are stored and whatever their metadata (a calibration or a note
    added later with ``tools/weights_meta.py`` does not change it).

    Raises
    ------
    WeightsError
        As :func:`read_weights_meta` for a missing or unreadable file.
    """
    import hashlib

    path = Path(path)
    read_weights_meta(path)  # one-line errors for a missing, damaged or foreign file
    digest = hashlib.sha256()
    with safe_open(path, framework="pt") as handle:
        for name in sorted(handle.keys()):
            tensor = handle.get_tensor(name).contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def read_weights_meta(path: str | PathLike[str]) -> WeightsMeta:
    """The ``"nucleikit"`` metadata of a weights file, checked and typed, without reading tensors.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save_weights`.

    Returns
    -------
    WeightsMeta
        The metadata (:class:`~nucleikit.models.weights_meta.WeightsMeta`: ``model``,
        ``model_kwargs``, ``mpp``, ``postprocess`` ... as typed attributes; ``meta["key"]``
        and ``to_dict()`` read the JSON object). ``mean`` and ``std`` may be None here;
        :func:`load_weights` refuses that.

    Raises
    ------
    WeightsError
        Missing file (or a folder, or a symbolic link loop), not a safetensors
        file (damaged, truncated, a PyTorch pickle), no nucleikit metadata,
        invalid JSON, missing keys, a format version newer than this nucleikit
        reads, or any value nucleikit cannot use (an ``mpp`` that is not a
        positive number, malformed ``mean``/``std``, an unknown ``colour``, a
        detector's ``postprocess`` without its xi ...:
        :meth:`WeightsMeta.from_dict <nucleikit.models.weights_meta.WeightsMeta.from_dict>`).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(path, _missing_reason(path))
    try:
        with safe_open(path, framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightsError(path, _not_safetensors_reason(path, exc)) from None
    if META_KEY not in header:
        raise WeightsError(path, f"no {META_KEY!r} metadata: not a nucleikit weights file")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise WeightsError(path, f"metadata is not valid JSON ({exc.msg})") from None
    return WeightsMeta.from_dict(meta, path)


def load_weights(path: str | PathLike[str], *, device: str | torch.device = "cpu") -> tuple[nn.Module, WeightsMeta]:
    """Rebuild a model from a weights file.

    Parameters
    ----------
    path : str or PathLike
        A file written by :func:`save_weights`.
    device : str or torch.device
        Where to put the model (default CPU).

    Returns
    -------
    model : nn.Module
        Built through the registry from ``meta.model`` and
        ``meta.model_kwargs``, state loaded strictly, in eval mode.
    meta : WeightsMeta
        The file's metadata, checked and typed (see :func:`read_weights_meta`);
        ``meta.mean`` and ``meta.std`` are set.

    Raises
    ------
    WeightsError
        Any problem of :func:`read_weights_meta`, an unknown model name,
        rejected model arguments, unreadable tensors, tensors that do not
        match the model (missing, unexpected or of the wrong shape), a
        tensor holding NaN or infinity, or a ``num_params`` that disagrees
        with the rebuilt model.
    """
    path = Path(path)
    meta = read_weights_meta(path)
    try:
        model = build_model(meta.model, **to_json(meta.model_kwargs))
    except ConfigError as exc:
        raise WeightsError(path, str(exc)) from None
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise WeightsError(path, f"cannot read the tensors ({exc})") from None
    problem = _mismatch(model.state_dict(), tensors)
    if problem:
        raise WeightsError(path, f"tensors do not fit model {meta.model!r}: {problem}")
    # A diverged training saves NaN; such a model answers every input with NaN or one class.
    bad = _non_finite_tensors(tensors)
    if bad:
        raise WeightsError(path, f"{len(bad)} tensors hold NaN or infinite values (e.g. {bad[0]}): "
                                 "the training diverged or the file is damaged")
    model.load_state_dict(tensors, strict=True)
    if meta.num_params != _num_params(model):
        raise WeightsError(path, f"metadata says {meta.num_params!r} parameters, the model has {_num_params(model)}")
    if meta.mean is None:
        # every command standardises its input with these: without them the outputs are meaningless
        raise WeightsError(path, "metadata has no input normalisation ('mean' and 'std' per channel, "
                                 "as the network was trained with)")
    return model.to(device).eval(), meta


def _missing_reason(path: Path) -> str:
    """Why ``path`` is not a weights file, for paths that exist in some form."""
    if path.is_dir():
        return "is a folder; give its weights file (e.g. best.safetensors of a training run)"
    if path.is_symlink():
        reason = dangling_link_reason(path)
        return "not a regular file" if reason == "no such file" else reason
    return "no such file"


def bundled_weights_dir() -> Path:
    """The folder of weights shipped with nucleikit (``nucleikit/weights/``)."""
    return Path(str(resources.files("nucleikit").joinpath("weights")))


def resolve_weights(name_or_path: str | PathLike[str]) -> Path:
    """An existing weights file, or the bundled weights of that name.

    Parameters
    ----------
    name_or_path : str or PathLike
        A path to a file, or the name of bundled weights (file stem in
        :func:`bundled_weights_dir`, e.g. ``"micronet_crchisto"``).

    Returns
    -------
    Path
        ``name_or_path`` if it is an existing file, else
        ``bundled_weights_dir() / f"{name}.safetensors"`` if that exists.

    Raises
    ------
    WeightsError
        Neither exists; the message lists the bundled names.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if candidate.is_dir() or candidate.is_symlink():
        raise WeightsError(candidate, _missing_reason(candidate))
    folder = bundled_weights_dir()
    name = str(name_or_path)
    if name and os.sep not in name and "/" not in name:
        bundled = folder / f"{name}{SUFFIX}"
        if bundled.is_file():
            return bundled
    names = sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    raise WeightsError(
        name_or_path, f"no such file and no bundled weights of that name (bundled: {', '.join(names) or 'none'})"
    )
