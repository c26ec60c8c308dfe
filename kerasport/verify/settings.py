"""Every tolerance and threshold a verification uses, in one place.

A verdict is only meaningful together with the settings that produced it, so the settings
are stored in every report, and reports are merged only when the settings that change the
numbers agree. Nothing here is a hidden tolerance: each field is a command-line option.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from kerasport.errors import InputError
from kerasport.verify.policies import DecisionPolicy, parse_gate, policy_for

# Fields that change the numbers in a report: merging reports that differ in these would
# add up counts that mean different things. `gate` is checked first, by merge, by name.
COMPARISON_FIELDS = ("gate", "snp_threshold", "indel_threshold", "is_snp_column", "sum_tolerance")
# The options of DeepVariant's gate: giving one asks for that gate.
DEEPVARIANT_FIELDS = ("snp_threshold", "indel_threshold", "is_snp_column")
# Fields that only change the verdict: a merge may override them.
VERDICT_FIELDS = ("max_ulp", "max_batch_ulp")


@dataclass(frozen=True)
class Settings:
    """Options of one verification.

    `gate` is the decision policy as `--gate` names it (`policies.parse_gate`); None means
    not chosen: `verify_bundle` then chooses by the bundle and the examples, and stores
    its choice, and a comparator handed these settings directly judges by DeepVariant's
    gate. The DeepVariant thresholds default to DeepVariant WGS's gate (20/28).
    """

    snp_threshold: int = 20
    indel_threshold: int = 28
    is_snp_column: int = 12
    sum_tolerance: float = 1e-5
    max_ulp: int | None = None
    max_batch_ulp: int | None = None
    batch_sizes: tuple[int, ...] = (1, 7, 128)
    invariance_rows: int = 4096
    list_rows: int = 1000
    worst_rows: int = 20
    gate: str | None = None

    def __post_init__(self) -> None:
        if self.gate is not None:
            object.__setattr__(self, "gate", parse_gate(self.gate))
        if self.is_snp_column < 0:
            raise InputError(f"is_snp_column must be >= 0, got {self.is_snp_column}")
        if not self.sum_tolerance >= 0:
            raise InputError(f"sum_tolerance must be >= 0, got {self.sum_tolerance}")
        for name in ("max_ulp", "max_batch_ulp"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"{name} must be >= 0, got {value}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise InputError(f"batch_sizes must be positive, got {self.batch_sizes}")
        for name in ("invariance_rows", "list_rows", "worst_rows"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")

    def policy(self) -> DecisionPolicy:
        """The decision policy these settings name (DeepVariant's when `gate` is None)."""
        return policy_for(self.gate, self.snp_threshold, self.indel_threshold, self.is_snp_column)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "batch_sizes" in values:
            values["batch_sizes"] = tuple(values["batch_sizes"])
        return cls(**values)
