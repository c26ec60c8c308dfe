"""Check what callers pass as examples before a backend casts it to float32.

DeepVariant hands `np.array(list_of_int_lists)` (int64); other callers pass float arrays or
plain lists. Keras converts all of these to float32 with a plain cast; the backends do the
same cast chunk by chunk, and the checks here also run per chunk, so that checking a million
rows never needs a second full-size copy.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import numpy as np

from kerasport.errors import InputError

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def as_examples_array(examples: Any, num_features: int) -> np.ndarray:
    """View `examples` as a 2-D numeric array of shape (N, num_features), without copying arrays."""
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
        array = array.reshape(0, num_features)
    if array.ndim != 2:
        raise InputError(
            f"examples must be 2-D (rows, {num_features} features); got {array.ndim}-D "
            f"array of shape {array.shape}"
        )
    if array.shape[1] != num_features:
        raise InputError(
            f"examples have {array.shape[1]} features per row; this model takes {num_features}"
        )
    return array


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
    bad = int(np.flatnonzero(~finite.all(axis=1))[0])
    value = chunk[bad][~finite[bad]][0]
    raise InputError(
        f"examples row {first_row + bad} contains {value} (NaN or infinity after the "
        f"float32 cast); examples must be finite"
    )


def positive_int(value: Any, name: str) -> int:
    """`value` as an int if it is a positive integer (numpy integers too, never a bool)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise InputError(f"{name} must be a positive integer; got {value!r}")
    return number
