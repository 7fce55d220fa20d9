"""Set metadata keys of a nucleikit weights file without touching its tensors.

    python tools/weights_meta.py src/nucleikit/weights/micronet.safetensors --set bf16_ok=true \\
        --set 'bf16_evidence={"source": "..."}'

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header (tensor
names, dtypes, shapes and offsets into the data, and ``__metadata__``, where nucleikit keeps
its JSON under ``"nucleikit"``), then the tensor data. Only the header is rewritten: the
tensor entries are kept as they are (their offsets count from the start of the data, so
they still hold), the header is padded with spaces to a multiple of 8 bytes as safetensors
writes it, and the data bytes are copied unchanged; the tool checks that they are
byte-identical (SHA-256) and that nucleikit still loads the file before it replaces it.
``tools/detection_floor.py`` rewrites a whole file through ``save_weights``; this tool is for
facts about the weights that change no parameter, such as the bf16 verdict
(``bf16_ok``, :mod:`nucleikit.infer.precision`).

Keys that describe the tensors (``model``, ``model_kwargs``, ``num_params``,
``format_version``, ``storage``) are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

META_KEY = "nucleikit"
#: Keys whose value must match the tensors: changing them here would make a file that lies.
PROTECTED = ("model", "model_kwargs", "num_params", "format_version", "storage")


def split_file(raw: bytes) -> tuple[dict, bytes]:
    """(header dict, tensor data bytes) of a safetensors file's contents."""
    if len(raw) < 8:
        raise ValueError("too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"header length {n} runs past the end of the file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, raw[8 + n :]


def join_file(header: dict, data: bytes) -> bytes:
    """The file holding ``header`` and ``data``; the header padded with spaces to a multiple of 8."""
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def with_meta(raw: bytes, updates: dict) -> bytes:
    """``raw`` (a nucleikit weights file's bytes) with ``updates`` merged into its metadata.

    Raises
    ------
    ValueError
        Not a nucleikit safetensors file, or a protected key in ``updates``.
    """
    bad = sorted(set(updates) & set(PROTECTED))
    if bad:
        raise ValueError(f"refusing to change {', '.join(bad)}: they describe the tensors")
    header, data = split_file(raw)
    extra = header.get("__metadata__") or {}
    if META_KEY not in extra:
        raise ValueError(f"no {META_KEY!r} metadata: not a nucleikit weights file")
    meta = json.loads(extra[META_KEY])
    meta.update(updates)
    extra = dict(extra, **{META_KEY: json.dumps(meta, allow_nan=False, sort_keys=True)})
    return join_file(dict(header, __metadata__=extra), data)


def set_meta(path: Path, updates: dict, out: Path | None = None) -> Path:
    """Rewrite ``path`` with ``updates`` in its metadata, its tensor bytes unchanged (checked).

    ``out``: write the result there instead (``path`` is left as it is). Returns the file written.
    """
    from nucleikit.models.weights import load_weights

    raw = path.read_bytes()
    new = with_meta(raw, updates)
    before = hashlib.sha256(split_file(raw)[1]).hexdigest()
    after = hashlib.sha256(split_file(new)[1]).hexdigest()
    if before != after:  # cannot happen by construction; checked because a shipped file is at stake
        raise RuntimeError("tensor data changed")
    target = path if out is None else out
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(new)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        _, meta = load_weights(tmp)  # nucleikit reads it, tensors and all
        missing = [k for k in updates if meta.get(k) != updates[k]]
        if missing:
            raise RuntimeError(f"metadata not written: {missing}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _assignment(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"the value of {key} is not JSON: {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--set", dest="updates", action="append", type=_assignment, required=True, metavar="KEY=JSON",
                    help="a metadata key and its JSON value (repeatable)")
    args = ap.parse_args(argv)
    updates = dict(args.updates)
    for path in args.weights:
        try:
            set_meta(path, updates)
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        print(f"{path}: set {', '.join(sorted(updates))}; tensor bytes unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
