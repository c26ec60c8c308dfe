"""The comparator: a streaming, mergeable accumulator of reference-vs-candidate differences.

It knows nothing about backends, files, models or DeepVariant: it is fed float32 output
chunks from two sources (the reference and one candidate) shaped (N, C) or (N, ..., C)
with the class axis last, each row's gate context and id, and it keeps only counts, maxima,
sums, histograms and a bounded list of row ids. So memory stays flat over any number of
rows, and two accumulators (or two stored reports) merge into exactly the accumulator of
their union.

Decisions are taken per decision unit: the C values of a row, or of a row and position
(`decisions`: arg-max, or p >= 0.5 per class for a sigmoid head). Which calls count as
accepted is the decision policy's question (`policies`): the comparator asks it per unit
and compares the answers of the two sides. Numeric statistics (|dp|, ULP, GQ) are taken
over values where both sides are finite; units with NaN, values out of range or (for a
softmax) sums off 1 are counted as invalid instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from kerasport.verify.decisions import decide, differ, invalid_masks
from kerasport.verify.gq import genotype_quality
from kerasport.verify.histograms import (
    Histogram2D,
    UlpHistogram,
    dp_vs_p_histogram,
    gq_diff_histogram,
)
from kerasport.verify.policies import DecisionPolicy
from kerasport.verify.rows import RowId, RowList, WorstRow, positions_of
from kerasport.verify.settings import Settings
from kerasport.verify.ulp import ulp_distance

__all__ = ["Comparison", "GroupCounts", "Validity", "invalid_masks"]


class Validity:
    """Counts of decision units whose outputs no consumer could use, for one side."""

    def __init__(self, limit: int) -> None:
        self.nan_rows = 0
        self.out_of_range_rows = 0
        self.not_normalized_rows = 0
        self.rows = RowList(limit)

    @property
    def invalid_rows(self) -> int:
        return self.nan_rows + self.out_of_range_rows + self.not_normalized_rows

    def update(
        self, units: np.ndarray, sum_tolerance: float, head: str, where: _Units
    ) -> np.ndarray:
        """Count a chunk's invalid units; return the mask of them."""
        nan, out_of_range, not_normalized = invalid_masks(units, sum_tolerance, head)
        self.nan_rows += int(nan.sum())
        self.out_of_range_rows += int(out_of_range.sum())
        self.not_normalized_rows += int(not_normalized.sum())
        invalid = nan | out_of_range | not_normalized
        where.list_into(self.rows, invalid)
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


class GroupCounts:
    """Decision units of one group of the gate (DeepVariant: snp, indel) and their flips."""

    def __init__(self, rows: int = 0, gate_flips: int = 0) -> None:
        self.rows, self.gate_flips = rows, gate_flips

    def to_json(self) -> dict[str, int]:
        return {"rows": self.rows, "gate_flips": self.gate_flips}


class _Units:
    """Where each decision unit of a chunk came from: its file, row and flat position."""

    def __init__(self, source: str, rows: np.ndarray, per_row: int, shape: tuple[int, ...]):
        self.source, self.shape = source, shape
        self.rows = rows if per_row == 1 else np.repeat(rows, per_row)
        self.positions = np.tile(np.arange(per_row), len(rows)) if shape else None

    def list_into(self, row_list: RowList, mask: np.ndarray) -> None:
        positions = None if self.positions is None else self.positions[mask]
        row_list.extend(self.source, self.rows[mask], positions, self.shape)

    def id(self, index: int) -> RowId:
        position = () if self.positions is None else positions_of(
            self.positions[index : index + 1], self.shape
        )[0]
        return RowId(self.source, int(self.rows[index]), position)


class Comparison:
    """Accumulated differences between a reference and one candidate, over any rows.

    Feed chunks with `update`; combine with `merge`; store with `to_json` / `from_json`.
    `head` (softmax, sigmoid or linear) says what a decision is and which outputs are
    invalid; `policy` is the gate (default: the one `settings` names).
    """

    # Scalar state, by how it merges: added, or the larger kept.
    SUMMED = (
        "rows",
        "decisions",
        "compared_values",
        "bit_identical_rows",
        "argmax_changes",
        "gate_flips",
        "gate_accepted_reference",
        "gate_accepted_candidate",
        "sum_abs_diff",
        "gq_rows",
        "sum_gq_diff",
    )
    MAXIMA = ("max_abs_diff", "max_ulp", "max_gq_diff")

    def __init__(
        self,
        settings: Settings | None = None,
        head: str = "softmax",
        policy: DecisionPolicy | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.head = head
        self.policy = policy or self.settings.policy()
        limit = self.settings.list_rows
        self.num_classes: int | None = None
        self.positions: tuple[int, ...] | None = None  # a row's output shape before classes
        self.rows = 0
        self.decisions = 0
        self.compared_values = 0
        self.bit_identical_rows = 0
        self.argmax_changes = 0
        self.argmax_change_rows = RowList(limit)
        self.gate_flips = 0
        self.gate_flip_rows = RowList(limit)
        self.groups = {name: GroupCounts() for name in self.policy.groups}
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

    def __getattr__(self, name: str) -> int:
        """Group counts by name: `gate_flips_<group>` and `<group>_rows` (under
        DeepVariant's gate: gate_flips_snp, gate_flips_indel, snp_rows, indel_rows)."""
        groups = self.__dict__.get("groups") or {}
        if name.startswith("gate_flips_") and name[len("gate_flips_") :] in groups:
            return int(groups[name[len("gate_flips_") :]].gate_flips)
        if name.endswith("_rows") and name[: -len("_rows")] in groups:
            return int(groups[name[: -len("_rows")]].rows)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def bit_identical_fraction(self) -> float:
        return self.bit_identical_rows / self.decisions if self.decisions else 1.0

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.compared_values if self.compared_values else 0.0

    @property
    def mean_gq_diff(self) -> float:
        return self.sum_gq_diff / self.gq_rows if self.gq_rows else 0.0

    def ulp_percentile(self, quantile_percent: float) -> int:
        return self.ulp_histogram.percentile(quantile_percent, self.max_ulp)

    # -- accumulation --------------------------------------------------------------------

    def _check_shape(self, ref: np.ndarray, cand: np.ndarray, ids: np.ndarray,
                     context: np.ndarray | None) -> None:
        if ref.ndim < 2 or ref.shape != cand.shape:
            raise ValueError(
                f"reference {ref.shape} and candidate {cand.shape} must be (N, C) or "
                "(N, ..., C) of one shape"
            )
        n = ref.shape[0]
        if ids.shape != (n,) or (context is not None and context.shape != (n,)):
            shown = None if context is None else context.shape
            raise ValueError(f"context {shown} and row_ids {ids.shape} must be ({n},)")
        positions, classes = tuple(ref.shape[1:-1]), ref.shape[-1]
        if self.num_classes is None:
            self.num_classes, self.positions = classes, positions
        elif (positions, classes) != (self.positions, self.num_classes):
            raise ValueError(
                f"chunk has outputs {(*positions, classes)} per row, earlier chunks had "
                f"{(*(self.positions or ()), self.num_classes)}"
            )

    def update(
        self,
        reference: np.ndarray,
        candidate: np.ndarray,
        context: np.ndarray | None,
        row_ids: np.ndarray,
        source: str = "",
    ) -> None:
        """Add one chunk: float32 reference and candidate outputs, (N, C) or (N, ..., C);
        `context`, (N,), is what the policy decides with (DeepVariant: is_snp flags), or
        None; `row_ids`, (N,), each row's index in `source`."""
        ref = np.ascontiguousarray(reference, dtype=np.float32)
        cand = np.ascontiguousarray(candidate, dtype=np.float32)
        ids = np.asarray(row_ids, dtype=np.int64)
        ctx = None if context is None else np.asarray(context)
        self._check_shape(ref, cand, ids, ctx)
        n = ref.shape[0]
        if n == 0:
            return
        classes = ref.shape[-1]
        shape = tuple(ref.shape[1:-1])
        per_row = math.prod(shape)
        ref, cand = ref.reshape(n * per_row, classes), cand.reshape(n * per_row, classes)
        if ctx is not None and per_row != 1:
            ctx = np.repeat(ctx, per_row)
        where = _Units(source, ids, per_row, shape)
        self._add_units(ref, cand, ctx, where)
        self.rows += n

    def _add_units(
        self, ref: np.ndarray, cand: np.ndarray, ctx: np.ndarray | None, where: _Units
    ) -> None:
        """The comparison proper, over (M, C) units."""
        settings, policy = self.settings, self.policy
        self.decisions += len(ref)
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

        changed = differ(decide(ref, self.head), decide(cand, self.head))
        self.argmax_changes += int(changed.sum())
        where.list_into(self.argmax_change_rows, changed)

        if self.head == "linear":  # scores, not probabilities: no phred of max(p)
            gq_ref = gq_cand = np.full(len(ref), np.nan)
        else:
            gq_ref, gq_cand = genotype_quality(ref), genotype_quality(cand)
        gq_ok = np.isfinite(gq_ref) & np.isfinite(gq_cand)
        gq_diff = np.where(gq_ok, np.abs(gq_ref - gq_cand), 0.0)
        self.gq_rows += int(gq_ok.sum())
        self.max_gq_diff = max(self.max_gq_diff, float(gq_diff.max()))
        self.sum_gq_diff += float(gq_diff.sum())
        self.gq_diff_vs_gq.add(gq_ref[gq_ok], gq_diff[gq_ok])

        pass_ref, pass_cand = policy.accepts(ref, ctx), policy.accepts(cand, ctx)
        flips = pass_ref != pass_cand
        self.gate_flips += int(flips.sum())
        group = policy.group_index(ctx, len(ref))
        if group is not None:
            for index, counts in enumerate(self.groups.values()):
                members = group == index
                counts.rows += int(members.sum())
                counts.gate_flips += int((flips & members).sum())
        where.list_into(self.gate_flip_rows, flips)
        self.gate_accepted_reference += int(pass_ref.sum())
        self.gate_accepted_candidate += int(pass_cand.sum())

        invalid = self.reference_validity.update(ref, settings.sum_tolerance, self.head, where)
        invalid |= self.candidate_validity.update(cand, settings.sum_tolerance, self.head, where)

        if settings.worst_rows:
            row_dp = abs_diff.max(axis=1)
            row_ulp = ulps.max(axis=1)
            score = 4.0 * invalid + 2.0 * (changed | flips) + np.minimum(row_dp, 1.0)
            eligible = np.flatnonzero(~same_bits)
            if eligible.size:
                order = np.lexsort(
                    (where.rows[eligible], -row_ulp[eligible], -score[eligible])
                )
                picked = eligible[order[: settings.worst_rows]]
                self._keep_worst(
                    WorstRow(
                        id=where.id(int(i)),
                        score=float(score[i]),
                        max_ulp=int(row_ulp[i]),
                        max_abs_diff=float(row_dp[i]),
                        group=None if group is None else policy.groups[int(group[i])],
                        reference=[float(v) for v in ref[i]],
                        candidate=[float(v) for v in cand[i]],
                        gq_reference=float(gq_ref[i]),
                        gq_candidate=float(gq_cand[i]),
                        argmax_reference=int(ref[i].argmax()),
                        argmax_candidate=int(cand[i].argmax()),
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
            mine = (*(self.positions or ()), self.num_classes)
            theirs = (*(other.positions or ()), other.num_classes)
            if self.num_classes is not None and mine != theirs:
                raise ValueError(f"cannot merge results of outputs {theirs} per row into {mine}")
            self.num_classes, self.positions = other.num_classes, other.positions
        if other.decisions == 0:  # nothing to add (a 0-row report may have another gate)
            return
        if set(self.groups) != set(other.groups):
            raise ValueError(
                f"cannot merge gate groups {sorted(other.groups)} into {sorted(self.groups)}"
            )
        for name in self.SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in self.MAXIMA:
            setattr(self, name, max(getattr(self, name), getattr(other, name)))
        for name, counts in self.groups.items():
            counts.rows += other.groups[name].rows
            counts.gate_flips += other.groups[name].gate_flips
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
            "positions": None if self.positions is None else list(self.positions),
            "decisions": self.decisions,
            "argmax_changes": self.argmax_changes,
            "argmax_change_rows": self.argmax_change_rows.to_json(),
            "gate_flips": self.gate_flips,
            "gate_groups": {name: counts.to_json() for name, counts in self.groups.items()},
            "gate_flip_rows": self.gate_flip_rows.to_json(),
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
    def from_json(
        cls,
        data: dict[str, Any],
        settings: Settings,
        head: str = "softmax",
        policy: DecisionPolicy | None = None,
    ) -> Comparison:
        """Rebuild an accumulator from a stored report entry (derived values are recomputed)."""
        comp = cls(settings, head, policy)
        comp.num_classes = data["num_classes"]
        positions = data["positions"]
        comp.positions = None if positions is None else tuple(int(d) for d in positions)
        for name in (*cls.SUMMED, *cls.MAXIMA):
            kind = type(getattr(comp, name))  # int counts, float sums and diffs
            setattr(comp, name, kind(data[name]))
        groups = data["gate_groups"]
        if set(groups) != set(comp.groups):
            raise ValueError(
                f"gate groups {sorted(groups)} are not those of the {comp.policy.name} gate "
                f"({sorted(comp.groups)})"
            )
        for name, counts in groups.items():
            comp.groups[name] = GroupCounts(int(counts["rows"]), int(counts["gate_flips"]))
        comp.argmax_change_rows.load(data["argmax_change_rows"])
        comp.gate_flip_rows.load(data["gate_flip_rows"])
        comp.ulp_histogram = UlpHistogram.from_json(data["ulp_histogram"])
        comp.reference_validity.load(data["invalid"]["reference"])
        comp.candidate_validity.load(data["invalid"]["candidate"])
        comp.dp_vs_p.load_cells(data["dp_vs_p"])
        comp.gq_diff_vs_gq.load_cells(data["gq_diff_vs_gq"])
        comp._keep_worst(WorstRow.from_json(row) for row in data["worst_rows"])
        return comp
