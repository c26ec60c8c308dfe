"""Distances between float32 values in units in the last place (ULP).

Two float32 outputs that differ by 1 ULP are neighbours: no float32 lies between them. The
ULP distance is the honest unit for "how different are two backends' numbers", because a
fixed absolute tolerance is far too loose near 0 and too tight near 1.

The trick: reinterpret the bits as a sign-magnitude integer and fold the negative half so
that the integers are in the same order as the floats and consecutive floats map to
consecutive integers. +0.0 and -0.0 both map to 0 (distance 0) although they are not
bit-identical; callers that care about bits compare the raw bits separately.
"""

from __future__ import annotations

import numpy as np


def ordered_int(values: np.ndarray) -> np.ndarray:
    """Map float32 values to int64 so adjacent floats map to adjacent integers."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise ULP distance between two float32 arrays of the same shape, as int64.

    Where either side is NaN the result is meaningless: mask NaNs before using it.
    """
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
    return np.abs(ordered_int(a) - ordered_int(b))
