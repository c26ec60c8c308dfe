"""Stream examples files as chunks that carry where each row came from.

The verifier never holds a whole file: it walks each file in chunks, and every chunk knows
its file and first row so that a row the report lists can be found again.

Two readings, chosen by the decision policy. DeepVariant's features are whole numbers, so
under its gate every format is read as today, through `kerasport.examples`, as int64
(rows, features) tables, and a fraction is an error. Any other model may take floats and
inputs of any rank: its `.npy` and `.npz` examples are read as they are stored, shaped
(rows, *input shape) (rows on the first axis), integers as int64 and floats kept; NaN or
infinity is refused, naming the row. CSV, TSV and TFRecord files hold DeepVariant's integer
tables and are read as such for every model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasport.errors import InputError
from kerasport.examples import arrays, formats
from kerasport.examples.model import ExamplesError, as_int64_array


@dataclass(frozen=True)
class Chunk:
    """Rows `first_row ..` of `source`: (n, *input shape), int64 or float."""

    source: str
    first_row: int
    features: np.ndarray

    @property
    def row_ids(self) -> np.ndarray:
        return np.arange(self.first_row, self.first_row + len(self.features), dtype=np.int64)


def _raw_array(path: Path) -> np.ndarray:
    """The stored array of a `.npy` (memory-mapped) or `.npz` (its features member)."""
    if formats.detect_format(path) == formats.NPY:
        return arrays.load_npy(path, mmap=True)
    return arrays.load_npz(path)[0]


def _is_array_file(path: str | Path) -> bool:
    return formats.detect_format(path) in (formats.NPY, formats.NPZ)


def _check_shape(path: str | Path, array: np.ndarray, input_shape: tuple[int, ...]) -> None:
    """Refuse an array that is not (rows, *input_shape), in today's words for tables."""
    if len(input_shape) == 1:
        if array.ndim != 2:
            raise ExamplesError(
                f"{path}: expected a 2-D table (rows, features); got {array.shape}"
            )
        if array.shape[1] != input_shape[0]:
            _wrong_width(path, array.shape[1], input_shape[0])
    elif array.ndim != 1 + len(input_shape) or tuple(array.shape[1:]) != input_shape:
        raise InputError(
            f"{path}: expected examples shaped (rows, {', '.join(map(str, input_shape))}) "
            f"for the model and bundle; got {array.shape}"
        )


def _wrong_width(path: str | Path, width: int, num_features: int) -> None:
    raise InputError(
        f"{path}: examples have {width} features per row; the model and bundle take "
        f"{num_features}"
    )


def as_numeric_examples(array: np.ndarray, what: str) -> np.ndarray:
    """A chunk of a generic model's examples: integers as int64, floats as stored.

    Booleans, complex numbers, text and integers beyond int64 are refused as
    `kerasport.examples` refuses them; NaN and infinity are refused, naming the row and
    position, since no backend gives a usable output for them.
    """
    kind = array.dtype.kind
    if kind != "f":
        return np.ascontiguousarray(as_int64_array(array, what))
    chunk = np.ascontiguousarray(array)
    finite = np.isfinite(chunk)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ExamplesError(
            f"{what}: value {chunk[index]} at index {list(index)} (row {index[0]} of the "
            "chunk); examples must be finite"
        )
    return chunk


def _array_chunks(
    path: str | Path, rows: int, input_shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """Chunks of a `.npy` / `.npz` as stored: (rows, *input_shape), floats kept."""
    array = _raw_array(formats.check_readable(path))
    _check_shape(path, array, input_shape)
    npz = formats.detect_format(path) == formats.NPZ
    for start in range(0, array.shape[0], rows):
        label = f"{path}: features" if npz else f"{path} rows {start}+"
        yield as_numeric_examples(array[start : start + rows], label)


def _file_chunks(
    path: str | Path, rows: int, input_shape: tuple[int, ...], integers: bool, header: str
) -> Iterator[np.ndarray]:
    if not integers and _is_array_file(path):
        yield from _array_chunks(path, rows, input_shape)
        return
    from kerasport.examples import iter_example_chunks

    for features in iter_example_chunks(path, rows, header=header):  # int64 (rows, F)
        if len(input_shape) != 1:
            raise InputError(
                f"{path}: a {formats.detect_format(path)} file holds a (rows, features) "
                f"table; the model takes rows shaped {input_shape}: give a .npy or .npz"
            )
        yield features


def iter_chunks(
    files: Sequence[str | Path],
    rows: int,
    input_shape: tuple[int, ...] | int,
    integers: bool = True,
    header: str = "auto",
) -> Iterator[Chunk]:
    """Chunks of every file in order, each (n, *input_shape).

    `integers` reads DeepVariant's way (int64 tables; see the module's docstring). An int
    `input_shape` is a (rows, features) table's width. `header` is the text files' header
    option (`kerasport.examples.read_examples`).
    """
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    for path in files:
        first = 0
        for features in _file_chunks(path, rows, shape, integers, header):
            if len(shape) == 1 and (features.ndim != 2 or features.shape[1] != shape[0]):
                _wrong_width(path, features.shape[-1], shape[0])
            yield Chunk(str(path), first, features)
            first += len(features)


def first_rows(
    files: Sequence[str | Path], rows: int, header: str = "auto"
) -> tuple[np.ndarray, str] | None:
    """The first non-empty chunk of raw rows, as stored, and its file; None when no file
    has rows. For choosing a default gate only: values are not checked here, so the
    stream that follows reads (and judges) them again with the reading the gate needs.
    """
    from kerasport.examples import iter_example_chunks

    for path in files:
        if _is_array_file(path):
            array = _raw_array(formats.check_readable(path))
            if array.ndim >= 1 and array.shape[0]:
                return np.asarray(array[:rows]), str(path)
            continue
        for features in iter_example_chunks(path, rows, header=header):
            if len(features):
                return features, str(path)
    return None


def count_rows(files: Sequence[str | Path]) -> int | None:
    """Total rows when it is cheap to know (every file a .npy: read from its header)."""
    total = 0
    for path in files:
        if Path(path).suffix.lower() != ".npy":
            return None
        try:
            total += int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        except (OSError, ValueError, IndexError, EOFError):  # EOFError: a 0-byte file
            return None  # the reader will report the problem with its own message
    return total
