"""Run-length encoded masks in the Kaggle convention (2018 Data Science Bowl).

An encoding is a space-separated list of ``start length`` pairs:

- pixels are numbered **column-major** (top to bottom, then left to right) and
  **1-based**: pixel ``(row r, column c)`` of an ``H x W`` image has number
  ``c * H + r + 1``;
- ``start`` is the number of the first pixel of a run of foreground pixels and
  ``length`` (>= 1) the number of pixels in the run;
- runs are ascending and disjoint. Adjacent runs (one ending where the next
  starts) are accepted when decoding; :func:`rle_encode` always merges them.

Decoding is strict, because a truth file that decodes to something slightly
wrong gives plausible but wrong scores: an odd number of values, a value that
is not a plain decimal integer, a start below 1, a length below 1, a run
reaching beyond pixel ``H * W``, and runs that are out of order or overlap are
each an :class:`~nucleikit.errors.InputError` naming the source (file and line,
when given) and the offending run. The empty string encodes the empty mask.

CSV files (``ImageId,EncodedPixels[,Height,Width,...]``, one nucleus a row)
are read by :func:`read_rle_csv`; :func:`rle_to_labels` turns the rows of one
image into a label image (row ``k`` -> label ``k + 1``, the later row winning
where two overlap, as PROTOCOL.md section 2 says).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nucleikit.errors import InputError, missing_reason
from nucleikit.io.labels import labels_from_indices

__all__ = [
    "RLETable",
    "read_rle_csv",
    "rle_decode",
    "rle_encode",
    "rle_pixel_indices",
    "rle_to_labels",
]

# A row is optional whitespace around tokens of ASCII digits (with an optional
# sign, so that "-3" is reported as a start below 1 rather than as garbage).
# Python's int() would also take "1_000" or non-ASCII digits; this does not.
_RLE_TEXT = re.compile(r"\s*(?:[+-]?[0-9]+(?:\s+[+-]?[0-9]+)*)?\s*")
_TOKEN = re.compile(r"[+-]?[0-9]+")


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got {shape!r}")
    return height, width


def _runs(encoded: str, n_pixels: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated runs: 0-based column-major ``starts`` and ``lengths`` (int64)."""
    if not isinstance(encoded, str):
        raise InputError(source, f"run-length encoding must be a string, got {type(encoded).__name__}")
    if not _RLE_TEXT.fullmatch(encoded):
        bad = next(token for token in encoded.split() if not _TOKEN.fullmatch(token))
        raise InputError(source, f"run-length encoding holds {bad[:20]!r}, which is not an integer")
    tokens = encoded.split()
    if len(tokens) % 2:
        reason = f"run-length encoding has an odd number of values ({len(tokens)}); expected start length pairs"
        raise InputError(source, reason)
    try:
        values = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        raise InputError(source, "run-length encoding holds a value too large for a pixel number") from None
    starts, lengths = values[:, 0], values[:, 1]
    if len(starts) == 0:
        return starts, lengths
    _first_bad(source, starts < 1, starts, lengths, "start below 1 (starts are 1-based)")
    _first_bad(source, lengths < 1, starts, lengths, "length below 1")
    beyond = starts - 1 + lengths > n_pixels
    _first_bad(source, beyond, starts, lengths, f"run beyond the last pixel ({n_pixels} = H x W)")
    ends = starts + lengths  # 1-based, exclusive
    before = np.flatnonzero(starts[1:] <= starts[:-1])
    overlap = np.flatnonzero(starts[1:] < ends[:-1])
    if before.size or overlap.size:
        k = int(min(before.min(initial=len(starts)), overlap.min(initial=len(starts)))) + 1
        what = "is not after" if starts[k] <= starts[k - 1] else "overlaps"
        raise InputError(
            source,
            f"run {k + 1} (start {starts[k]}, length {lengths[k]}) {what} run {k} "
            f"(start {starts[k - 1]}, length {lengths[k - 1]}); runs must be ascending and disjoint",
        )
    return starts - 1, lengths


def _first_bad(source: str, bad: np.ndarray, starts: np.ndarray, lengths: np.ndarray, reason: str) -> None:
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(source, f"run {k + 1} (start {starts[k]}, length {lengths[k]}): {reason}")


def rle_pixel_indices(encoded: str, shape: Sequence[int], *, source: str | Path = "<rle>") -> np.ndarray:
    """Row-major flat indices of the foreground pixels of one encoding.

    Parameters
    ----------
    encoded : str
        ``"start length start length ..."`` (Kaggle convention, module docstring).
    shape : (H, W) ints
        Image height and width.
    source : str or Path
        Names the encoding in error messages, e.g. ``"labels.csv, line 17"``.

    Returns
    -------
    (K,) ndarray of int64
        ``row * W + col`` of each foreground pixel, ascending column-major
        order (not sorted row-major). Index an (H, W) array's ``.ravel()``.

    Raises
    ------
    InputError
        A malformed encoding (see the module docstring).
    ValueError
        ``shape`` is not two integers >= 1.
    """
    height, width = _check_shape(shape)
    starts, lengths = _runs(encoded, height * width, str(source))
    total = int(lengths.sum())
    # Column-major numbers of every run pixel without a loop over runs:
    # start of the run repeated, plus the offset inside it.
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    column_major = np.repeat(starts, lengths) + offsets
    col, row = np.divmod(column_major, height)
    return row * width + col


def rle_decode(encoded: str, shape: Sequence[int], *, source: str | Path = "<rle>") -> np.ndarray:
    """Decode one run-length encoding into a binary mask.

    Parameters
    ----------
    encoded : str
        ``"start length ..."``: column-major, 1-based starts (module docstring).
        ``""`` (or only whitespace) is the empty mask.
    shape : (H, W) ints
        Image height and width.
    source : str or Path
        Names the encoding in error messages (file and line).

    Returns
    -------
    (H, W) ndarray of bool
        C-contiguous; True on the encoded pixels.

    Raises
    ------
    InputError
        Odd number of values, a value that is not an integer, start < 1,
        length < 1, a run beyond pixel ``H * W``, runs not ascending or
        overlapping. The message starts with ``source``.
    ValueError
        ``shape`` is not two integers >= 1.

    Examples
    --------
    >>> rle_decode("2 2 6 1", (3, 2)).astype(int)
    array([[0, 0],
           [1, 0],
           [1, 1]])
    """
    height, width = _check_shape(shape)
    starts, lengths = _runs(encoded, height * width, str(source))
    # +1 at each run start, -1 after its end; the running sum is 1 inside runs.
    # Runs are disjoint (checked), so the sum never exceeds 1.
    edges = np.zeros(height * width + 1, dtype=np.int8)
    edges[starts] += 1  # starts are distinct, and so are ends: no repeated index
    edges[starts + lengths] -= 1
    flat = np.cumsum(edges[:-1], dtype=np.int8).astype(bool)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def rle_encode(mask: np.ndarray) -> str:
    """Run-length encode a binary mask (Kaggle convention, runs merged).

    Parameters
    ----------
    mask : (H, W) array_like
        Foreground where non-zero (bool, or {0, 1} / {0, 255} integers).

    Returns
    -------
    str
        ``"start length ..."`` with 1-based column-major starts, ascending,
        adjacent runs merged; ``""`` for an empty mask.

    Raises
    ------
    ValueError
        ``mask`` is not 2-D.

    Examples
    --------
    >>> rle_encode([[0, 0], [1, 0], [1, 1]])
    '2 2 6 1'
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {array.shape}")
    flat = (array != 0).T.ravel()  # column-major order
    padded = np.concatenate([[False], flat, [False]]).view(np.int8)
    change = np.flatnonzero(np.diff(padded))  # run starts and ends, alternating (0-based)
    starts, ends = change[0::2], change[1::2]
    pairs = np.column_stack([starts + 1, ends - starts])
    return " ".join(map(str, pairs.ravel().tolist()))


def rle_to_labels(
    encodings: Sequence[str],
    shape: Sequence[int],
    *,
    sources: Sequence[str | Path] | None = None,
) -> np.ndarray:
    """Label image of several encodings of one image (one nucleus each).

    Parameters
    ----------
    encodings : sequence of str
        One encoding per nucleus, in file order.
    shape : (H, W) ints
        Image height and width.
    sources : sequence of str, optional
        One name per encoding for error messages (e.g. ``"x.csv, line 17"``);
        default ``"<rle row k>"``.

    Returns
    -------
    (H, W) ndarray of int32
        0 = background; encoding ``k`` (0-based) has label ``k + 1``. Where
        encodings overlap, the later one wins (PROTOCOL.md section 2), so an
        encoding hidden entirely by later ones leaves its label unused.

    Raises
    ------
    InputError
        A malformed encoding, or an empty one (a nucleus without pixels).
    """
    if sources is None:
        sources = [f"<rle row {k + 1}>" for k in range(len(encodings))]
    if len(sources) != len(encodings):
        raise ValueError(f"{len(sources)} sources for {len(encodings)} encodings")
    indices = []
    for encoded, source in zip(encodings, sources):
        pixels = rle_pixel_indices(encoded, shape, source=source)
        if pixels.size == 0:
            raise InputError(source, "empty run-length encoding (a nucleus without pixels)")
        indices.append(pixels)
    return labels_from_indices(indices, _check_shape(shape))


# --- CSV files -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RLETable(Mapping[str, tuple[str, ...]]):
    """The rows of an RLE CSV file, grouped by image.

    Behaves as a read-only ``dict`` from ImageId to the tuple of its encodings,
    in file order (images in order of first appearance).

    Attributes
    ----------
    path : Path
        The file read.
    encodings : dict of str to tuple of str
        ImageId -> encodings (one nucleus each), file order. An image listed
        only with empty ``EncodedPixels`` cells (a Kaggle submission's "no
        nuclei" row) maps to an empty tuple.
    lines : dict of str to tuple of int
        ImageId -> 1-based line number of each encoding (header = line 1).
    shapes : dict of str to (H, W)
        From the ``Height`` and ``Width`` columns; empty when the file has none.
    """

    path: Path
    encodings: dict[str, tuple[str, ...]]
    lines: dict[str, tuple[int, ...]]
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __getitem__(self, image_id: str) -> tuple[str, ...]:
        return self.encodings[image_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.encodings)

    def __len__(self) -> int:
        return len(self.encodings)

    @property
    def n_rows(self) -> int:
        """Number of (non-empty) encodings in the file."""
        return sum(len(rows) for rows in self.encodings.values())

    def sources(self, image_id: str) -> list[str]:
        """``"<path>, line N"`` for each encoding of ``image_id``, for error messages."""
        return [f"{self.path}, line {line}" for line in self.lines[image_id]]

    def labels(self, image_id: str, shape: Sequence[int] | None = None) -> np.ndarray:
        """Label image of ``image_id`` (see :func:`rle_to_labels`).

        ``shape`` defaults to the file's Height/Width; when both are known they
        must agree.
        """
        known = self.shapes.get(image_id)
        if shape is None:
            if known is None:
                raise ValueError(f"{self.path} has no Height/Width for {image_id}: give the shape")
            shape = known
        elif known is not None and tuple(int(v) for v in shape) != known:
            raise InputError(
                f"{self.path}, line {self.lines[image_id][0]}",
                f"Height x Width {known[0]} x {known[1]} of {image_id} differ from the image's {shape[0]} x {shape[1]}",
            )
        return rle_to_labels(self.encodings[image_id], shape, sources=self.sources(image_id))


def read_rle_csv(path: str | Path) -> RLETable:
    """Read an RLE CSV file (``ImageId,EncodedPixels[,Height,Width,...]``).

    Parameters
    ----------
    path : str or Path
        A Kaggle-style CSV: a header naming ``ImageId`` and ``EncodedPixels``
        (any case), optionally ``Height`` and ``Width`` (both or neither);
        other columns (e.g. ``Usage``) are ignored. One nucleus per row.

    Returns
    -------
    RLETable
        Encodings grouped by ImageId in file order, their line numbers, and
        the (H, W) of each image when the file has Height/Width. Encodings
        are not decoded here (that needs the image size): decoding checks them.

    Raises
    ------
    InputError
        Missing or unreadable file; no header or missing columns; a row with a
        different number of fields than the header; an empty ImageId;
        Height/Width that are not integers >= 1 or differ between rows of one image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing_reason(path, "RLE file not found") if not path.exists() else "not a file")
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc
    encodings: dict[str, list[str]] = {}
    lines: dict[str, list[int]] = {}
    shapes: dict[str, tuple[int, int]] = {}
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(path, "file is empty (no header)")
            columns = _rle_columns(path, header)
            id_col, rle_col = columns["imageid"], columns["encodedpixels"]
            shape_cols = (columns["height"], columns["width"]) if "height" in columns else None
            for row in reader:
                line = reader.line_num
                if not row:
                    continue  # blank line
                if len(row) != len(header):
                    raise InputError(path, f"line {line} has {len(row)} fields, the header has {len(header)}")
                image_id = row[id_col].strip()
                if not image_id:
                    raise InputError(path, f"line {line}: empty ImageId")
                rows = encodings.setdefault(image_id, [])
                numbers = lines.setdefault(image_id, [])
                if shape_cols is not None:
                    _record_shape(path, line, image_id, row, shape_cols, shapes)
                encoded = row[rle_col].strip()
                if encoded:
                    rows.append(encoded)
                    numbers.append(line)
        except csv.Error as exc:
            raise InputError(path, f"malformed CSV (line {reader.line_num}: {exc})") from exc
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not a UTF-8 text file (byte {exc.start})") from exc
    return RLETable(
        path=path,
        encodings={key: tuple(value) for key, value in encodings.items()},
        lines={key: tuple(value) for key, value in lines.items()},
        shapes=shapes,
    )


def _rle_columns(path: Path, header: list[str]) -> dict[str, int]:
    names = [cell.strip().lower() for cell in header]
    columns: dict[str, int] = {}
    for name in ("imageid", "encodedpixels", "height", "width"):
        found = [index for index, cell in enumerate(names) if cell == name]
        if len(found) > 1:
            raise InputError(path, f"the header names column {name!r} {len(found)} times")
        if found:
            columns[name] = found[0]
    if "imageid" not in columns or "encodedpixels" not in columns:
        raise InputError(path, f"header has no ImageId and EncodedPixels columns (found: {', '.join(header)})")
    if ("height" in columns) != ("width" in columns):
        raise InputError(path, "header has only one of the Height and Width columns")
    return columns


def _record_shape(
    path: Path,
    line: int,
    image_id: str,
    row: list[str],
    shape_cols: tuple[int, int],
    shapes: dict[str, tuple[int, int]],
) -> None:
    try:
        shape = (int(row[shape_cols[0]]), int(row[shape_cols[1]]))
    except ValueError:
        cells = f"{row[shape_cols[0]]!r}, {row[shape_cols[1]]!r}"
        raise InputError(path, f"line {line}: Height/Width {cells} are not integers") from None
    if min(shape) < 1:
        raise InputError(path, f"line {line}: Height x Width {shape[0]} x {shape[1]} must be >= 1")
    known = shapes.setdefault(image_id, shape)
    if known != shape:
        raise InputError(
            path,
            f"line {line}: Height x Width {shape[0]} x {shape[1]} of {image_id} "
            f"differ from {known[0]} x {known[1]} on an earlier line",
        )
