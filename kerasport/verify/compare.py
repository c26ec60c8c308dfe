"""The comparator: a streaming, mergeable accumulator of reference-vs-candidate differences.

It knows nothing about backends, files or models: it is fed float32 probability chunks from
two sources (the reference and one candidate), the `is_snp` flag of each row and each row's
id, and it keeps only counts, maxima, sums, histograms and a bounded list of row ids. So
memory stays flat over any number of rows, and two accumulators (or two stored reports)
merge into exactly the accumulator of their union.

Numeric statistics (|dp|, ULP, GQ) are taken over values where both sides are finite;
rows with NaN, values outside [0, 1] or sums off 1 are counted as invalid instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from kerasport.verify.gq import gate_passes, genotype_quality
from kerasport.verify.histograms import (
    Histogram2D,
    UlpHistogram,
    dp_vs_p_histogram,
    gq_diff_histogram,
)
from kerasport.verify.rows import RowId, RowList, WorstRow
from kerasport.verify.settings import Settings
from kerasport.verify.ulp import ulp_distance


def invalid_masks(p: np.ndarray, sum_tolerance: float) -> tuple[np.ndarray, ...]:
    """Disjoint row masks: any NaN; else any value outside [0, 1]; else sum off 1 by > tol."""
    nan = np.isnan(p).any(axis=1)
    with np.errstate(invalid="ignore"):
        out_of_range = ~nan & ((p < 0) | (p > 1)).any(axis=1)
    rest = ~nan & ~out_of_range
    off = np.abs(p.astype(np.float64).sum(axis=1) - 1.0) > sum_tolerance
    return nan, out_of_range, rest & off


class Validity:
    """Counts of rows whose probabilities DeepVariant could not use, for one side."""

    def __init__(self, limit: int) -> None:
        self.nan_rows = 0
        self.out_of_range_rows = 0
        self.not_normalized_rows = 0
        self.rows = RowList(limit)

    @property
    def invalid_rows(self) -> int:
        return self.nan_rows + self.out_of_range_rows + self.not_normalized_rows

    def update(
        self, p: np.ndarray, sum_tolerance: float, source: str, row_ids: np.ndarray
    ) -> np.ndarray:
        """Count a chunk's invalid rows; return the mask of them."""
        nan, out_of_range, not_normalized = invalid_masks(p, sum_tolerance)
        self.nan_rows += int(nan.sum())
        self.out_of_range_rows += int(out_of_range.sum())
        self.not_normalized_rows += int(not_normalized.sum())
        invalid = nan | out_of_range | not_normalized
        self.rows.extend(source, row_ids[invalid])
        return invalid

    def merge(self, other: Validity) -> None:
        self.nan_rows += other.nan_rows
        self.out_of_range_rows += other.out_of_range_rows
        self.not_normalized_rows += other.not_normalized_rows
        self.rows.merge(other.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "invalid_rows": self.invalid_rows,
            "nan_rows": self.nan_rows,
            "out_of_range_rows": self.out_of_range_rows,
            "not_normalized_rows": self.not_normalized_rows,
            "rows": self.rows.to_json(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.nan_rows += int(data["nan_rows"])
        self.out_of_range_rows += int(data["out_of_range_rows"])
        self.not_normalized_rows += int(data["not_normalized_rows"])
        self.rows.load(data["rows"])


class Comparison:
    """Accumulated differences between a reference and one candidate, over any rows.

    Feed chunks with `update`; combine with `merge`; store with `to_json` / `from_json`.
    """

    # Scalar state, by how it merges: added, or the larger kept.
    SUMMED = (
        "rows",
        "compared_values",
        "bit_identical_rows",
        "argmax_changes",
        "gate_flips_snp",
        "gate_flips_indel",
        "snp_rows",
        "gate_accepted_reference",
        "gate_accepted_candidate",
        "sum_abs_diff",
        "gq_rows",
        "sum_gq_diff",
    )
    MAXIMA = ("max_abs_diff", "max_ulp", "max_gq_diff")

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        limit = self.settings.list_rows
        self.num_classes: int | None = None
        self.rows = 0
        self.compared_values = 0
        self.bit_identical_rows = 0
        self.argmax_changes = 0
        self.argmax_change_rows = RowList(limit)
        self.gate_flips_snp = 0
        self.gate_flips_indel = 0
        self.gate_flip_rows = RowList(limit)
        self.snp_rows = 0
        self.gate_accepted_reference = 0
        self.gate_accepted_candidate = 0
        self.max_abs_diff = 0.0
        self.sum_abs_diff = 0.0
        self.max_ulp = 0
        self.ulp_histogram = UlpHistogram()
        self.gq_rows = 0
        self.max_gq_diff = 0.0
        self.sum_gq_diff = 0.0
        self.reference_validity = Validity(limit)
        self.candidate_validity = Validity(limit)
        self.dp_vs_p: Histogram2D = dp_vs_p_histogram()
        self.gq_diff_vs_gq: Histogram2D = gq_diff_histogram()
        self.worst: list[WorstRow] = []

    # -- derived values ------------------------------------------------------------------

    @property
    def gate_flips(self) -> int:
        return self.gate_flips_snp + self.gate_flips_indel

    @property
    def bit_identical_fraction(self) -> float:
        return self.bit_identical_rows / self.rows if self.rows else 1.0

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.compared_values if self.compared_values else 0.0

    @property
    def mean_gq_diff(self) -> float:
        return self.sum_gq_diff / self.gq_rows if self.gq_rows else 0.0

    def ulp_percentile(self, quantile_percent: float) -> int:
        return self.ulp_histogram.percentile(quantile_percent, self.max_ulp)

    # -- accumulation --------------------------------------------------------------------

    def update(
        self,
        reference: np.ndarray,
        candidate: np.ndarray,
        is_snp: np.ndarray,
        row_ids: np.ndarray,
        source: str = "",
    ) -> None:
        """Add one chunk: (N, C) float32 reference and candidate, (N,) is_snp and row ids."""
        ref = np.ascontiguousarray(reference, dtype=np.float32)
        cand = np.ascontiguousarray(candidate, dtype=np.float32)
        snp = np.asarray(is_snp).astype(bool)
        ids = np.asarray(row_ids, dtype=np.int64)
        if ref.ndim != 2 or ref.shape != cand.shape:
            raise ValueError(f"reference {ref.shape} and candidate {cand.shape} must be (N, C)")
        n, classes = ref.shape
        if snp.shape != (n,) or ids.shape != (n,):
            raise ValueError(f"is_snp {snp.shape} and row_ids {ids.shape} must be ({n},)")
        if self.num_classes is None:
            self.num_classes = classes
        elif classes != self.num_classes:
            raise ValueError(f"chunk has {classes} classes, earlier chunks had {self.num_classes}")
        if n == 0:
            return
        settings = self.settings
        self.rows += n
        self.snp_rows += int(snp.sum())
        same_bits = (ref.view(np.uint32) == cand.view(np.uint32)).all(axis=1)
        self.bit_identical_rows += int(same_bits.sum())

        finite = np.isfinite(ref) & np.isfinite(cand)
        self.compared_values += int(finite.sum())
        abs_diff = np.where(finite, np.abs(ref.astype(np.float64) - cand), 0.0)
        ulps = np.where(finite, ulp_distance(ref, cand), 0)
        self.max_abs_diff = max(self.max_abs_diff, float(abs_diff.max()))
        self.sum_abs_diff += float(abs_diff.sum())
        self.max_ulp = max(self.max_ulp, int(ulps.max()))
        self.ulp_histogram.add(ulps[finite])
        self.dp_vs_p.add(ref[finite].astype(np.float64), abs_diff[finite])

        argmax_ref, argmax_cand = ref.argmax(axis=1), cand.argmax(axis=1)
        changed = argmax_ref != argmax_cand
        self.argmax_changes += int(changed.sum())
        self.argmax_change_rows.extend(source, ids[changed])

        gq_ref, gq_cand = genotype_quality(ref), genotype_quality(cand)
        gq_ok = np.isfinite(gq_ref) & np.isfinite(gq_cand)
        gq_diff = np.where(gq_ok, np.abs(gq_ref - gq_cand), 0.0)
        self.gq_rows += int(gq_ok.sum())
        self.max_gq_diff = max(self.max_gq_diff, float(gq_diff.max()))
        self.sum_gq_diff += float(gq_diff.sum())
        self.gq_diff_vs_gq.add(gq_ref[gq_ok], gq_diff[gq_ok])

        thresholds = (settings.snp_threshold, settings.indel_threshold)
        pass_ref = gate_passes(gq_ref, snp, *thresholds)
        pass_cand = gate_passes(gq_cand, snp, *thresholds)
        flips = pass_ref != pass_cand
        self.gate_flips_snp += int((flips & snp).sum())
        self.gate_flips_indel += int((flips & ~snp).sum())
        self.gate_flip_rows.extend(source, ids[flips])
        self.gate_accepted_reference += int(pass_ref.sum())
        self.gate_accepted_candidate += int(pass_cand.sum())

        invalid = self.reference_validity.update(ref, settings.sum_tolerance, source, ids)
        invalid |= self.candidate_validity.update(cand, settings.sum_tolerance, source, ids)

        if settings.worst_rows:
            row_dp = abs_diff.max(axis=1)
            row_ulp = ulps.max(axis=1)
            score = 4.0 * invalid + 2.0 * (changed | flips) + np.minimum(row_dp, 1.0)
            eligible = np.flatnonzero(~same_bits)
            if eligible.size:
                order = np.lexsort((ids[eligible], -row_ulp[eligible], -score[eligible]))
                picked = eligible[order[: settings.worst_rows]]
                self._keep_worst(
                    WorstRow(
                        id=RowId(source, int(ids[i])),
                        score=float(score[i]),
                        max_ulp=int(row_ulp[i]),
                        max_abs_diff=float(row_dp[i]),
                        is_snp=bool(snp[i]),
                        reference=[float(v) for v in ref[i]],
                        candidate=[float(v) for v in cand[i]],
                        gq_reference=float(gq_ref[i]),
                        gq_candidate=float(gq_cand[i]),
                        argmax_reference=int(argmax_ref[i]),
                        argmax_candidate=int(argmax_cand[i]),
                        gate_reference=bool(pass_ref[i]),
                        gate_candidate=bool(pass_cand[i]),
                    )
                    for i in picked
                )

    def _keep_worst(self, rows: Iterable[WorstRow]) -> None:
        merged = sorted([*self.worst, *rows], key=WorstRow.sort_key)
        self.worst = merged[: self.settings.worst_rows]

    def merge(self, other: Comparison) -> None:
        """Add another accumulator's rows (settings must agree; the caller checks)."""
        if other.num_classes is not None:
            if self.num_classes not in (None, other.num_classes):
                raise ValueError(
                    f"cannot merge {other.num_classes}-class results into {self.num_classes}"
                )
            self.num_classes = other.num_classes
        for name in self.SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in self.MAXIMA:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        self.argmax_change_rows.merge(other.argmax_change_rows)
        self.gate_flip_rows.merge(other.gate_flip_rows)
        self.ulp_histogram.merge(other.ulp_histogram)
        self.reference_validity.merge(other.reference_validity)
        self.candidate_validity.merge(other.candidate_validity)
        self.dp_vs_p.merge(other.dp_vs_p)
        self.gq_diff_vs_gq.merge(other.gq_diff_vs_gq)
        self._keep_worst(other.worst)

    # -- storage -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The per-backend numbers of a report (derived values included, for readers)."""
        return {
            "rows": self.rows,
            "num_classes": self.num_classes,
            "argmax_changes": self.argmax_changes,
            "argmax_change_rows": self.argmax_change_rows.to_json(),
            "gate_flips": self.gate_flips,
            "gate_flips_snp": self.gate_flips_snp,
            "gate_flips_indel": self.gate_flips_indel,
            "gate_flip_rows": self.gate_flip_rows.to_json(),
            "snp_rows": self.snp_rows,
            "gate_accepted_reference": self.gate_accepted_reference,
            "gate_accepted_candidate": self.gate_accepted_candidate,
            "bit_identical_rows": self.bit_identical_rows,
            "bit_identical_fraction": self.bit_identical_fraction,
            "compared_values": self.compared_values,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "sum_abs_diff": self.sum_abs_diff,
            "max_ulp": self.max_ulp,
            "ulp_p50": self.ulp_percentile(50),
            "ulp_p99": self.ulp_percentile(99),
            "ulp_p999": self.ulp_percentile(99.9),
            "ulp_histogram": self.ulp_histogram.to_json(),
            "gq_rows": self.gq_rows,
            "max_gq_diff": self.max_gq_diff,
            "mean_gq_diff": self.mean_gq_diff,
            "sum_gq_diff": self.sum_gq_diff,
            "invalid": {
                "reference": self.reference_validity.to_json(),
                "candidate": self.candidate_validity.to_json(),
            },
            "dp_vs_p": self.dp_vs_p.to_json(),
            "gq_diff_vs_gq": self.gq_diff_vs_gq.to_json(),
            "worst_rows": [row.to_json() for row in self.worst],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], settings: Settings) -> Comparison:
        """Rebuild an accumulator from a stored report entry (derived values are recomputed)."""
        comp = cls(settings)
        comp.num_classes = data["num_classes"]
        for name in (*cls.SUMMED, *cls.MAXIMA):
            kind = type(getattr(comp, name))  # int counts, float sums and diffs
            setattr(comp, name, kind(data[name]))
        comp.argmax_change_rows.load(data["argmax_change_rows"])
        comp.gate_flip_rows.load(data["gate_flip_rows"])
        comp.ulp_histogram = UlpHistogram.from_json(data["ulp_histogram"])
        comp.reference_validity.load(data["invalid"]["reference"])
        comp.candidate_validity.load(data["invalid"]["candidate"])
        comp.dp_vs_p.load_cells(data["dp_vs_p"])
        comp.gq_diff_vs_gq.load_cells(data["gq_diff_vs_gq"])
        comp._keep_worst(WorstRow.from_json(row) for row in data["worst_rows"])
        return comp
