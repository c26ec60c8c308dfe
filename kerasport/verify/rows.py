"""Row identities and the rows a report lists: bounded, ordered, and mergeable.

A report names rows (arg-max changes, gate flips, the worst rows) so that they can be found
again in the input; for an output with positions (N, ..., C), a row and the position in
it (an index tuple, () for an (N, C) output). Lists are bounded so memory stays flat, and
their order is defined (input order; worst first with a total tie-break) so that merged
lists equal single-pass lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, order=True)
class RowId:
    """Where a decision came from: its input (file name or label), its row index there,
    and its position in the row's output (() when the output is one vector per row)."""

    input: str
    row: int
    position: tuple[int, ...] = ()

    def __str__(self) -> str:
        where = f"{self.input}:{self.row}"
        return where + (f"@{','.join(map(str, self.position))}" if self.position else "")

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "row": self.row, "position": list(self.position)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowId:
        position = tuple(int(i) for i in data.get("position", ()))
        return cls(str(data["input"]), int(data["row"]), position)


def positions_of(flat: np.ndarray, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Index tuples of flat positions within a row's output of position shape `shape`."""
    if not shape:
        return [() for _ in range(len(flat))]
    axes = np.unravel_index(flat, shape)
    return [tuple(int(i) for i in index) for index in zip(*axes, strict=True)]


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _floats(values: np.ndarray) -> list[float | None]:
    return [_finite_or_none(v) for v in values.tolist()]


def _nan_if_none(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


class RowList:
    """Ids of rows with some property: the first `limit` in input order (callers count all)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ids: list[RowId] = []

    def extend(
        self,
        source: str,
        rows: np.ndarray,
        positions: np.ndarray | None = None,
        shape: tuple[int, ...] = (),
    ) -> None:
        """Add rows in order, with their flat positions in a row's output of `shape`."""
        room = self.limit - len(self.ids)
        if room > 0 and rows.size:
            kept = rows[:room].tolist()
            where = positions_of(positions[:room], shape) if positions is not None else None
            if where is None:
                self.ids.extend(RowId(source, int(r)) for r in kept)
            else:
                self.ids.extend(RowId(source, int(r), p) for r, p in zip(kept, where, strict=True))

    def add(self, ids: list[RowId]) -> None:
        self.ids.extend(ids[: max(0, self.limit - len(self.ids))])

    def merge(self, other: RowList) -> None:
        self.add(other.ids)

    def to_json(self) -> list[dict[str, Any]]:
        return [row.to_json() for row in self.ids]

    def load(self, data: list[dict[str, Any]]) -> None:
        self.add([RowId.from_json(d) for d in data])


@dataclass(frozen=True)
class WorstRow:
    """One of the most different decision units, with enough context to reproduce and
    judge it; `group` is the unit's group under the gate (DeepVariant: snp or indel)."""

    id: RowId
    score: float
    max_ulp: int
    max_abs_diff: float
    group: str | None
    reference: list[float]
    candidate: list[float]
    gq_reference: float
    gq_candidate: float
    argmax_reference: int
    argmax_candidate: int
    gate_reference: bool
    gate_candidate: bool

    def sort_key(self) -> tuple[float, int, str, int, tuple[int, ...]]:
        """Worst first; ties broken by row id so merged lists equal single-pass lists."""
        return (-self.score, -self.max_ulp, self.id.input, self.id.row, self.id.position)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.id.to_json(),
            "score": self.score,
            "max_ulp": self.max_ulp,
            "max_abs_diff": _finite_or_none(self.max_abs_diff),
            "group": self.group,
            "reference": _floats(np.array(self.reference)),
            "candidate": _floats(np.array(self.candidate)),
            "gq_reference": _finite_or_none(self.gq_reference),
            "gq_candidate": _finite_or_none(self.gq_candidate),
            "argmax_reference": self.argmax_reference,
            "argmax_candidate": self.argmax_candidate,
            "gate_reference": self.gate_reference,
            "gate_candidate": self.gate_candidate,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorstRow:
        def num(key: str) -> float:
            value = data[key]
            return float("nan") if value is None else float(value)

        return cls(
            id=RowId.from_json(data),
            score=float(data["score"]),
            max_ulp=int(data["max_ulp"]),
            max_abs_diff=num("max_abs_diff"),
            group=None if data["group"] is None else str(data["group"]),
            reference=_nan_if_none(data["reference"]),
            candidate=_nan_if_none(data["candidate"]),
            gq_reference=num("gq_reference"),
            gq_candidate=num("gq_candidate"),
            argmax_reference=int(data["argmax_reference"]),
            argmax_candidate=int(data["argmax_candidate"]),
            gate_reference=bool(data["gate_reference"]),
            gate_candidate=bool(data["gate_candidate"]),
        )
