"""Invariance checks: a backend must not depend on how rows are batched, or on luck.

DeepVariant hands the classifier one region's candidates at a time (1 to hundreds of rows),
so a backend whose output for a row depends on its neighbours in the batch, or which is
not deterministic from run to run, makes calls that depend on region boundaries and on
the run. This module runs the same rows at several batch sizes and twice, and reports how
far apart the results are. It only needs a `predict(examples, batch_size)` function.
Outputs may be (N, C) or (N, ..., C); decisions and gate answers are compared per decision
unit (a row, or a row and position), as the comparator takes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from kerasport.verify.decisions import decide
from kerasport.verify.policies import DecisionPolicy
from kerasport.verify.settings import Settings
from kerasport.verify.ulp import ulp_distance

PredictFn = Callable[[np.ndarray, int], np.ndarray]
REPEAT_BATCH_SIZE = 128  # DeepVariant's default --small_model_inference_batch_size


@dataclass
class Invariance:
    """How much one backend's outputs move with batch size and between repeated runs.

    `batch_sizes` lists the sizes run; the sample was also run all at once.
    """

    rows: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    max_batch_ulp: int = 0
    batch_argmax_changes: int = 0
    batch_gate_flips: int = 0
    repeat_bit_identical: bool = True
    repeat_max_ulp: int = 0

    def merge(self, other: Invariance) -> None:
        if self.rows and other.rows and self.batch_sizes != other.batch_sizes:
            raise ValueError(
                f"invariance checks ran different batch sizes: {self.batch_sizes} vs "
                f"{other.batch_sizes}"
            )
        if other.rows:
            self.batch_sizes = list(other.batch_sizes)
        self.rows += other.rows
        self.max_batch_ulp = max(self.max_batch_ulp, other.max_batch_ulp)
        self.batch_argmax_changes += other.batch_argmax_changes
        self.batch_gate_flips += other.batch_gate_flips
        self.repeat_bit_identical = self.repeat_bit_identical and other.repeat_bit_identical
        self.repeat_max_ulp = max(self.repeat_max_ulp, other.repeat_max_ulp)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "all_at_once": True}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Invariance:
        return cls(
            rows=int(data["rows"]),
            batch_sizes=[int(b) for b in data["batch_sizes"]],
            max_batch_ulp=int(data["max_batch_ulp"]),
            batch_argmax_changes=int(data["batch_argmax_changes"]),
            batch_gate_flips=int(data["batch_gate_flips"]),
            repeat_bit_identical=bool(data["repeat_bit_identical"]),
            repeat_max_ulp=int(data["repeat_max_ulp"]),
        )


def _max_ulp(a: np.ndarray, b: np.ndarray) -> int:
    finite = np.isfinite(a) & np.isfinite(b)
    return int(ulp_distance(a, b)[finite].max(initial=0))


def _units_disagreeing(decisions: list[np.ndarray]) -> int:
    stacked = np.stack(decisions)
    differs = stacked != stacked[0]
    return int(differs.reshape(*differs.shape[:2], -1).any(axis=(0, 2)).sum())


def _units(output: np.ndarray) -> np.ndarray:
    """(N, ..., C) outputs as (N * positions, C) decision units."""
    return output.reshape(-1, output.shape[-1]) if output.ndim != 2 else output


def check_invariance(
    predict: PredictFn,
    examples: np.ndarray,
    context: np.ndarray | None,
    settings: Settings,
    head: str = "softmax",
    policy: DecisionPolicy | None = None,
) -> Invariance:
    """Run `examples` at each batch size, all at once, and twice at batch size 128.

    `context` is each row's gate context (DeepVariant: is_snp flags) or None; `policy`
    defaults to the one `settings` names.
    """
    policy = policy or settings.policy()
    rows = len(examples)
    sizes = sorted(set(settings.batch_sizes))
    if rows == 0:
        return Invariance(batch_sizes=sizes)
    outputs = [np.asarray(predict(examples, size), dtype=np.float32) for size in sizes]
    outputs.append(np.asarray(predict(examples, rows), dtype=np.float32))
    repeat_a = np.asarray(predict(examples, REPEAT_BATCH_SIZE), dtype=np.float32)
    repeat_b = np.asarray(predict(examples, REPEAT_BATCH_SIZE), dtype=np.float32)

    per_row = len(_units(outputs[0])) // rows
    unit_context = None if context is None else np.repeat(np.asarray(context), per_row)
    units = [_units(out) for out in outputs]
    # (N, per_row, ...) so a unit's disagreement is counted once, as one decision
    decisions = [decide(u, head).reshape(rows * per_row, -1) for u in units]
    gates = [policy.accepts(u, unit_context).reshape(rows * per_row, 1) for u in units]
    return Invariance(
        rows=rows,
        batch_sizes=sizes,
        max_batch_ulp=max((_max_ulp(a, b) for a, b in combinations(outputs, 2)), default=0),
        batch_argmax_changes=_units_disagreeing(decisions),
        batch_gate_flips=_units_disagreeing(gates),
        repeat_bit_identical=bool(
            np.array_equal(repeat_a.view(np.uint32), repeat_b.view(np.uint32))
        ),
        repeat_max_ulp=_max_ulp(repeat_a, repeat_b),
    )
