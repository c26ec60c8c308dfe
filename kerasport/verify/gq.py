"""DeepVariant's genotype quality (GQ) and the small-model gate that follows classify().

What must never change between backends is the arg-max and which side of each threshold GQ
falls on, so the comparator recomputes GQ exactly as DeepVariant does:

    GQ = ptrue_to_bounded_phred(max(p), 1 - 1e-7) = -10 * log10(1 - min(max(p), 1 - 1e-7))

capped at ~70. DeepVariant evaluates this on a float32 max(p); we do it in float64, which
gives the same 1 - p (exact for any float32 p in [0.5, 1], the range where thresholds sit).
A call is accepted when GQ >= threshold; a threshold of -1 (any negative) disables the small
model for that variant type, so nothing of that type is accepted and nothing can flip.
"""

from __future__ import annotations

import numpy as np

MAX_CONFIDENCE = 1.0 - 1e-7
GQ_CAP = float(-10.0 * np.log10(1.0 - MAX_CONFIDENCE))


def genotype_quality(probabilities: np.ndarray) -> np.ndarray:
    """GQ of each row of an (N, C) probability array, as float64 (NaN rows give NaN)."""
    if probabilities.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    top = np.max(probabilities, axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -10.0 * np.log10(1.0 - np.minimum(top, MAX_CONFIDENCE))


def gate_passes(
    gq: np.ndarray, is_snp: np.ndarray, snp_threshold: float, indel_threshold: float
) -> np.ndarray:
    """Whether DeepVariant would accept each row's small-model call (bool array).

    NaN GQ never passes. A negative threshold disables that variant type.
    """
    threshold = np.where(is_snp, float(snp_threshold), float(indel_threshold))
    with np.errstate(invalid="ignore"):
        return (threshold >= 0) & (gq >= threshold)
