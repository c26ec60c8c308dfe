"""What a decision is for each head kind, and which outputs no consumer could use.

Verify compares decisions, not only numbers. A decision unit is C output values (one row
of an (N, C) output, or one row and position of an (N, ..., C) output). Its decision is the
arg-max class, or, for a sigmoid head (C independent probabilities), the set of classes
with p >= 0.5. Which values are unusable depends on the head too: a softmax gives
probabilities that sum to 1, a sigmoid probabilities that need not, and a linear head
scores of any finite value.
"""

from __future__ import annotations

import numpy as np

SIGMOID_THRESHOLD = 0.5


def decide(units: np.ndarray, head: str) -> np.ndarray:
    """Decisions of (M, C) units: (M,) arg-max classes, or (M, C) bools for a sigmoid."""
    if head == "sigmoid":
        with np.errstate(invalid="ignore"):
            return units >= SIGMOID_THRESHOLD
    return units.argmax(axis=1)


def differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M,) bool: units whose decisions, as `decide` gives them, are not the same."""
    if a.ndim == 2:
        return (a != b).any(axis=1)
    return a != b


def rule(head: str) -> str:
    """How a decision is taken, for tables and messages."""
    return f"p >= {SIGMOID_THRESHOLD:g}" if head == "sigmoid" else "arg-max"


def invalid_masks(
    units: np.ndarray, sum_tolerance: float, head: str = "softmax"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint unit masks: any NaN; else a value out of range; else a sum off 1 by > tol.

    Out of range is outside [0, 1] for probabilities (softmax, sigmoid; infinities
    included) and an infinity for a linear head's scores. Only a softmax must sum to 1.
    """
    nan = np.isnan(units).any(axis=1)
    with np.errstate(invalid="ignore"):
        bad = np.isinf(units) if head == "linear" else (units < 0) | (units > 1)
    out_of_range = ~nan & bad.any(axis=1)
    if head != "softmax":
        return nan, out_of_range, np.zeros_like(nan)
    rest = ~nan & ~out_of_range
    off = np.abs(units.astype(np.float64).sum(axis=1) - 1.0) > sum_tolerance
    return nan, out_of_range, rest & off
