"""Mergeable histograms: the only state a report keeps about distributions.

A report over a million rows cannot keep the rows, and a cohort report must be the exact
sum of its parts. So every distribution is stored as integer counts over fixed bins, and
every statistic drawn from it (ULP percentiles, plots) is a function of those counts alone.
Merging is then adding counts, and a merged report is identical to one computed in a single
pass over the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------
# ULP histogram: exact bins for small distances, power-of-two buckets beyond.
# ---------------------------------------------------------------------------------------

ULP_SCHEME = "exact-below-1024-then-pow2"
EXACT_BELOW = 1024  # distances 0..1023 each get their own bin
_EXACT_BITS = 10  # log2(EXACT_BELOW)
_TOP_BITS = 32  # every float32 ULP distance is below 2**32
ULP_BINS = EXACT_BELOW + (_TOP_BITS - _EXACT_BITS)  # + buckets [2^10, 2^11) ... [2^31, 2^32)


def ulp_bin_index(ulps: np.ndarray) -> np.ndarray:
    """Bin of each non-negative int64 ULP distance."""
    index = np.asarray(ulps, dtype=np.int64).copy()
    big = index >= EXACT_BELOW
    if big.any():
        # frexp(v) = m * 2**e with m in [0.5, 1): floor(log2 v) = e - 1, exact for v < 2**53.
        _, exponent = np.frexp(index[big].astype(np.float64))
        index[big] = EXACT_BELOW + (exponent.astype(np.int64) - 1) - _EXACT_BITS
    return index


def ulp_bin_bounds(index: int) -> tuple[int, int]:
    """Inclusive [low, high] of the ULP distances a bin holds."""
    if not 0 <= index < ULP_BINS:
        raise ValueError(f"ULP bin index {index} out of range")
    if index < EXACT_BELOW:
        return index, index
    power = index - EXACT_BELOW + _EXACT_BITS
    return 1 << power, (1 << (power + 1)) - 1


def nearest_rank(quantile_percent: float, total: int) -> int:
    """1-based nearest rank of a percentile: ceil(q/100 * n), at least 1.

    Computed with fractions so that 99.9% of 1000 is rank 999, not 1000 by rounding.
    """
    rank = math.ceil(Fraction(str(quantile_percent)) * total / 100)
    return max(1, rank)


class UlpHistogram:
    """Counts of ULP distances; percentiles are defined on this binning.

    Percentile definition (the report's, documented in docs/verify-report-schema.md): the
    nearest-rank percentile of the binned distances. If the rank falls in an exact bin
    (distance < 1024) it is the exact value. If it falls in a power-of-two bucket it is the
    bucket's upper edge, clipped to the observed maximum: never below the true percentile,
    and a function of the counts and the maximum only, so merged reports agree exactly.
    """

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = np.zeros(ULP_BINS, dtype=np.int64) if counts is None else counts

    def add(self, ulps: np.ndarray) -> None:
        if ulps.size:
            self.counts += np.bincount(ulp_bin_index(ulps), minlength=ULP_BINS)

    def merge(self, other: UlpHistogram) -> None:
        self.counts += other.counts

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, quantile_percent: float, max_value: int) -> int:
        """Nearest-rank percentile on this binning (0 for an empty histogram)."""
        total = self.total
        if total == 0:
            return 0
        rank = nearest_rank(quantile_percent, total)
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        low, high = ulp_bin_bounds(index)
        return low if low == high else min(high, max_value)

    def to_json(self) -> dict[str, Any]:
        bins = [[*ulp_bin_bounds(int(i)), int(self.counts[i])] for i in np.flatnonzero(self.counts)]
        return {"scheme": ULP_SCHEME, "exact_below": EXACT_BELOW, "bins": bins}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UlpHistogram:
        if data.get("scheme") != ULP_SCHEME or data.get("exact_below") != EXACT_BELOW:
            raise ValueError(
                f"ULP histogram scheme {data.get('scheme')!r} is not {ULP_SCHEME!r}: "
                "reports with different binnings cannot be merged exactly"
            )
        hist = cls()
        for low, high, count in data["bins"]:
            index = int(ulp_bin_index(np.array([low]))[0])
            if ulp_bin_bounds(index) != (low, high):
                raise ValueError(f"ULP histogram bin [{low}, {high}] is not on the scheme's grid")
            hist.counts[index] += int(count)
        return hist


# ---------------------------------------------------------------------------------------
# 2-D histograms for the plots: a linear x axis, and a log axis of differences.
# ---------------------------------------------------------------------------------------


class LogAxis:
    """Bins for non-negative differences: bin 0 holds exact zeros, then half-decades.

    Bin j >= 1 holds [10**(lo + (j-1)/per_decade), 10**(lo + j/per_decade)); the first and
    last non-zero bins are open-ended so nothing is dropped.
    """

    def __init__(self, low_exp: int, high_exp: int, per_decade: int = 2) -> None:
        self.low_exp, self.high_exp, self.per_decade = low_exp, high_exp, per_decade
        self.size = 1 + (high_exp - low_exp) * per_decade

    def index(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(values.shape, dtype=np.int64)
        nonzero = values > 0
        if nonzero.any():
            scaled = np.floor((np.log10(values[nonzero]) - self.low_exp) * self.per_decade)
            out[nonzero] = 1 + np.clip(scaled, 0, self.size - 2).astype(np.int64)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "log10",
            "zero_bin": True,
            "low_exp": self.low_exp,
            "high_exp": self.high_exp,
            "per_decade": self.per_decade,
        }


class LinearAxis:
    """`size` equal bins over [low, high]; values outside are clipped into the end bins."""

    def __init__(self, low: float, high: float, size: int) -> None:
        self.low, self.high, self.size = low, high, size

    def index(self, values: np.ndarray) -> np.ndarray:
        scaled = np.floor((values - self.low) / (self.high - self.low) * self.size)
        return np.clip(scaled, 0, self.size - 1).astype(np.int64)

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear", "low": self.low, "high": self.high, "size": self.size}


class Histogram2D:
    """Counts over (x bin, y bin); stored sparse as [x, y, count] triples."""

    def __init__(self, x_axis: LinearAxis, y_axis: LogAxis) -> None:
        self.x_axis, self.y_axis = x_axis, y_axis
        self.counts = np.zeros((x_axis.size, y_axis.size), dtype=np.int64)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        if x.size:
            flat = self.x_axis.index(x) * self.y_axis.size + self.y_axis.index(y)
            self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def merge(self, other: Histogram2D) -> None:
        self.counts += other.counts

    def to_json(self) -> dict[str, Any]:
        cells = [[int(i), int(j), int(self.counts[i, j])] for i, j in np.argwhere(self.counts)]
        return {"x": self.x_axis.describe(), "y": self.y_axis.describe(), "cells": cells}

    def load_cells(self, data: dict[str, Any]) -> None:
        """Add stored cells, after checking the stored axes are this histogram's."""
        if data.get("x") != self.x_axis.describe() or data.get("y") != self.y_axis.describe():
            raise ValueError("2-D histogram axes differ from this kerasport's: cannot merge")
        for i, j, count in _triples(data["cells"]):
            self.counts[i, j] += count


def _triples(cells: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    return [(int(i), int(j), int(c)) for i, j, c in cells]


def dp_vs_p_histogram() -> Histogram2D:
    """|dp| (per probability) against the reference p: 20 bins of p, half-decades of |dp|."""
    return Histogram2D(LinearAxis(0.0, 1.0, 20), LogAxis(-10, 0))


def gq_diff_histogram() -> Histogram2D:
    """|GQ difference| against the reference GQ: one bin per phred 0..70."""
    return Histogram2D(LinearAxis(0.0, 71.0, 71), LogAxis(-10, 2))
