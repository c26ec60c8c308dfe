"""What the bench needs to know about a model's shape, and how many rows one call can afford.

DeepVariant's small model takes (batch, features) float rows and returns (batch, classes):
the trace replay, the multi-process replay, the GEMM floor and the issue's speed goals are
about that workload only. Any other model (images, tiles, token indices) is benched on its
own input spec. One of its examples can be megabytes (a 256x256x2 tile, and its activations
many times that), so the rows of one call are capped by a memory budget, and the report
says so, rather than a run dying of an out-of-memory kill halfway through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasport.manifest import InputSpec, Manifest

MB = 1024 * 1024
DEFAULT_BUDGET = 2 << 30  # bytes one call may hold; DeepVariant's 100,000-row call needs ~1.3 GB
QUICK_BUDGET = 256 << 20
# Keras' direct call runs every row through one pass: a layer's input and output, and the
# tensors that skip connections keep alive, are held at once. Twice the manifest's per-example
# estimate (its largest layer's input and output) covers that.
WORKING_FACTOR = 2


def is_table(inputs: InputSpec) -> bool:
    """Rows of float features, as DeepVariant's examples are (any reader can hold them)."""
    return len(inputs.shape) == 1 and inputs.dtype == "float32" and inputs.index_range is None


def deepvariant_shaped(manifest: Manifest) -> bool:
    """(batch, features) float rows in, (batch, classes) out: DeepVariant's small model."""
    return is_table(manifest.inputs) and len(manifest.outputs.shape) == 1


def example_bytes(inputs: InputSpec) -> int:
    """Bytes of one example as the model takes it."""
    return math.prod(inputs.shape) * np.dtype(inputs.dtype).itemsize


def describe(manifest: Manifest) -> str:
    """'(256, 256, 2) float32 -> (256, 256, 3) softmax', for reports."""
    inputs, outputs = manifest.inputs, manifest.outputs
    index = f", indices in [{inputs.index_range[0]}, {inputs.index_range[1]})" if (
        inputs.index_range is not None) else ""
    return f"{inputs.shape} {inputs.dtype}{index} -> {outputs.shape} {outputs.head}"


def mem_available() -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class RowCap:
    """The most rows one measured call may have under a memory budget."""

    rows: int
    budget_bytes: int
    row_bytes: int  # what one row of a call may hold at once, input and output included

    def cap(self, sizes: Sequence[int]) -> tuple[tuple[int, ...], list[int]]:
        """`sizes` with every size above the cap replaced by the cap; and the sizes replaced."""
        capped = [n for n in sizes if n > self.rows]
        return tuple(sorted({min(n, self.rows) for n in sizes})), capped

    def note(self, capped: Sequence[int], what: str = "batch sizes") -> str:
        """A line for the report: which sizes were capped, and why."""
        sizes = ", ".join(f"{n:,}" for n in capped)
        return (
            f"{what} {sizes} capped to {self.rows:,} rows: one row of a call may hold "
            f"{fmt_bytes(self.row_bytes)} (input, output and {WORKING_FACTOR}x the engine's "
            f"working memory), and one call is held to {fmt_bytes(self.budget_bytes)}"
        )


def fmt_bytes(count: float) -> str:
    """'9.3 MB', '12.0 kB', '512 B' (binary units, as RSS is reported)."""
    for unit, size in (("GB", 1 << 30), ("MB", MB), ("kB", 1 << 10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:.0f} B"


def row_cap(manifest: Manifest, input_itemsize: int, budget: int | None = None) -> RowCap:
    """The cap for `manifest`'s model when its rows are fed as `input_itemsize`-byte values.

    `budget` defaults to DEFAULT_BUDGET, or half the memory now available if that is less.
    """
    if budget is None:
        available = mem_available()
        budget = DEFAULT_BUDGET if available is None else min(DEFAULT_BUDGET, available // 2)
    row_bytes = (
        input_itemsize * manifest.num_features
        + 4 * math.prod(manifest.outputs.shape)
        + WORKING_FACTOR * (manifest.row_bytes or 0)
    )
    return RowCap(max(1, budget // row_bytes), budget, row_bytes)
