"""Check what callers pass as examples before a backend casts it to float32.

DeepVariant hands `np.array(list_of_int_lists)` (int64); other callers pass float arrays or
plain lists. Keras converts all of these to float32 with a plain cast; the backends do the
same cast chunk by chunk, and the checks here also run per chunk, so that checking a million
rows never needs a second full-size copy.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from kerasport.errors import InputError
from kerasport.manifest import InputSpec

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def as_examples_array(examples: Any, spec: InputSpec) -> np.ndarray:
    """View `examples` as a numeric array of shape (N, *spec.shape), without copying arrays."""
    if (
        type(examples) is np.ndarray
        and examples.shape[1:] == spec.shape
        and examples.dtype.kind in _NUMERIC_KINDS
    ):
        return examples  # what every per-region call passes: the checks below all hold
    if isinstance(examples, np.ndarray):
        array = examples
    elif examples is None or isinstance(examples, (dict, str, bytes, Iterator)):
        raise InputError(
            "examples must be an array or a list of rows of numbers; got "
            f"{type(examples).__name__}"
        )
    else:
        try:
            array = np.asarray(examples)
        except ValueError as exc:  # ragged lists
            raise InputError(f"examples are not a rectangular table of numbers: {exc}") from exc
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InputError(f"examples must be numeric (int or float); got dtype {array.dtype}")
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, *spec.shape)
    if len(spec.shape) == 1:
        _check_table(array, spec.shape[0])
    elif array.shape[1:] != spec.shape:
        raise InputError(
            f"examples must be shaped (N, {', '.join(map(str, spec.shape))}); got an array of "
            f"shape {array.shape}"
        )
    return array


def _check_table(array: np.ndarray, num_features: int) -> None:
    if array.ndim != 2:
        raise InputError(
            f"examples must be 2-D (rows, {num_features} features); got {array.ndim}-D "
            f"array of shape {array.shape}"
        )
    if array.shape[1] != num_features:
        raise InputError(
            f"examples have {array.shape[1]} features per row; this model takes {num_features}"
        )


def chunk_check(spec: InputSpec) -> Callable[[np.ndarray, int], None]:
    """The value checks a chunk of `spec`'s examples needs before the engine sees it,
    chosen once per classifier (not per call): integers inside the vocabulary or the dtype
    for an integer input or an Embedding's indices; finite values for a float input."""
    if spec.index_range is not None or np.dtype(spec.dtype).kind in "iu":
        return lambda chunk, first_row: check_indices(chunk, first_row, spec)
    return _check_float_chunk


def _check_float_chunk(chunk: np.ndarray, first_row: int) -> None:
    if chunk.dtype.kind == "f":  # integer chunks are finite in any float dtype
        check_finite(chunk, first_row)


def check_finite(chunk: np.ndarray, first_row: int) -> None:
    """Refuse NaN or infinity in a float chunk (after the float32 cast), naming the row.

    Integer chunks need no check: every integer is finite in float32. A float64 value beyond
    float32's range becomes infinity in the cast, so it is refused too.
    """
    if chunk.dtype.itemsize > 4:
        with np.errstate(over="ignore"):
            chunk = chunk.astype(np.float32)
    finite = np.isfinite(chunk)
    if finite.all():
        return
    row, position, value = _first_bad(finite, chunk)
    raise InputError(
        f"examples row {first_row + row}{_at(position, table_too=False)} contains {value} "
        "(NaN or infinity after the float32 cast); examples must be finite"
    )


def check_indices(chunk: np.ndarray, first_row: int, spec: InputSpec) -> None:
    """Refuse what an integer input cannot take as an integer, naming the row and position:
    a non-integral or non-finite float, or (for an Embedding) an index outside [low, high).

    Keras would cast such a value or clamp the index without a word; a wrong token is a
    wrong answer, so it is an error here.
    """
    if chunk.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(chunk) & (np.floor(chunk) == chunk)
        if not integral.all():
            row, position, value = _first_bad(integral, chunk)
            raise InputError(
                f"examples row {first_row + row}{_at(position)} holds {value}, but this model "
                f"takes integers ({spec.dtype})"
            )
    low, high = spec.index_range or _dtype_range(spec.dtype)
    inside = (chunk >= low) & (chunk < high)
    if not inside.all():
        row, position, value = _first_bad(inside, chunk)
        what = (
            f"the Embedding's vocabulary [{low}, {high})"
            if spec.index_range is not None
            else f"{spec.dtype}"
        )
        raise InputError(
            f"examples row {first_row + row}{_at(position)} holds {value}, outside {what}"
        )


def _dtype_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max) + 1


def _first_bad(mask: np.ndarray, chunk: np.ndarray) -> tuple[int, tuple[int, ...], Any]:
    """The row, in-row position and value of the chunk where its mask is first False."""
    index = tuple(int(i) for i in np.unravel_index(int(np.argmin(mask.reshape(-1))), mask.shape))
    return index[0], index[1:], chunk[index]


def _at(position: tuple[int, ...], table_too: bool = True) -> str:
    """ ", position (i, j)" inside one example; a table's NaN message names the row only,
    as it always has (`table_too=False`)."""
    if not position or (len(position) == 1 and not table_too):
        return ""
    return f", position {position[0] if len(position) == 1 else position}"


def positive_int(value: Any, name: str) -> int:
    """`value` as an int if it is a positive integer (numpy integers too, never a bool)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise InputError(f"{name} must be a positive integer; got {value!r}")
    return number
