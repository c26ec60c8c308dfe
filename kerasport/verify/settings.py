"""Every tolerance and threshold a verification uses, in one place.

A verdict is only meaningful together with the settings that produced it, so the settings
are stored in every report, and reports are merged only when the settings that change the
numbers agree. Nothing here is a hidden tolerance: each field is a command-line option.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from kerasport.errors import InputError

# Fields that change the numbers in a report: merging reports that differ in these would
# add up counts that mean different things.
COMPARISON_FIELDS = ("snp_threshold", "indel_threshold", "is_snp_column", "sum_tolerance")
# Fields that only change the verdict: a merge may override them.
VERDICT_FIELDS = ("max_ulp", "max_batch_ulp")


@dataclass(frozen=True)
class Settings:
    """Options of one verification. Defaults are DeepVariant WGS's gate (20/28)."""

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

    def __post_init__(self) -> None:
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
