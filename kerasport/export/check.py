"""Compare an exported model with the Keras original before anything is written."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasport.errors import ExportError

PROBE_ROWS = 256
DEFAULT_ATOL = 1e-5


def probe_examples(num_features: int, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Deterministic int64 rows in the 0-100 range the small model's features live in."""
    return np.random.default_rng(seed).integers(0, 101, size=(rows, num_features), dtype=np.int64)


def check_agreement(
    reference: np.ndarray, candidate: np.ndarray, atol: float = DEFAULT_ATOL
) -> None:
    """Refuse an export whose outputs differ by more than `atol` or whose arg-max moves.

    An arg-max change is forgiven only on rows whose top two reference probabilities are
    within `atol` of each other: there the order is a tie at this tolerance.
    """
    if reference.shape != candidate.shape:
        raise ExportError(
            f"exported model returns shape {candidate.shape}; Keras returns {reference.shape}"
        )
    diff = float(np.max(np.abs(reference - candidate), initial=0.0))
    if not diff <= atol:  # also catches NaN
        raise ExportError(
            f"exported model disagrees with Keras: max |difference| {diff:.3g} > {atol:g}"
        )
    top2 = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else None
    moved = reference.argmax(axis=1) != candidate.argmax(axis=1)
    if top2 is not None:
        moved &= (top2[:, 1] - top2[:, 0]) > atol
    if moved.any():
        raise ExportError(
            f"exported model changes the arg-max of {int(moved.sum())} probe rows "
            f"(first: row {int(np.flatnonzero(moved)[0])})"
        )


def keras_predict(model: Any, examples: np.ndarray) -> np.ndarray:
    """Keras' own answer, computed as DeepVariant computes it."""
    return np.asarray(model.predict(examples, batch_size=128, verbose=0), dtype=np.float32)
