"""Weights laid out as both routes' register tiles load them, zero-padded to whole vectors."""

from __future__ import annotations

from typing import Any

import numpy as np


def padded_vector(vector: Any, width: int) -> np.ndarray:
    """A per-column (or per-channel) array as float32, zero-padded to `width`."""
    out = np.zeros(width, dtype=np.float32)
    values = np.asarray(vector, dtype=np.float32)
    out[: values.size] = values
    return out


def panel_layout(kernel: Any, width: int, count: int) -> np.ndarray:
    """Kernel [K, N] -> zero-padded column panels [count, K, width]: a tile reads one panel
    row after another, contiguously."""
    matrix = np.asarray(kernel, dtype=np.float32)
    k, n = matrix.shape
    padded = np.zeros((k, width * count), dtype=np.float32)
    padded[:, :n] = matrix
    return np.ascontiguousarray(padded.reshape(k, count, width).transpose(1, 0, 2))
