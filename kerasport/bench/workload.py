"""The rows every engine is fed: real examples when we have them, drawn deterministically.

Every measuring process rebuilds the same arrays from one `workload.npz` (the example pool,
the per-call counts and the row draw), so all engines see identical inputs without shipping
hundreds of megabytes between processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasport.assets import DEFAULT_EXAMPLES
from kerasport.bench import BenchError
from kerasport.export.check import probe_examples

SYNTHETIC_ROWS = 65_536
DRAW_SEED = 20_260_623  # fixed so every run and every process draws the same rows


def load_pool(path: Path | None, num_features: int) -> tuple[np.ndarray, str]:
    """The example pool and a line saying where it came from.

    An explicit `path` (any examples format) must fit the model: an unreadable one raises
    the reader's ExamplesError, which names the file and the problem. The bundled real
    examples are used when they fit and otherwise replaced by synthetic rows, so a bench of
    another model shape still runs.
    """
    from kerasport.examples import read_examples  # not at import: the workers never need it

    explicit = path is not None
    candidate = path if path is not None else DEFAULT_EXAMPLES
    if not explicit and not candidate.is_file():
        source = "synthetic (seeded int64 0-100; no real examples)"
        return probe_examples(num_features, SYNTHETIC_ROWS), source
    pool = read_examples(candidate).features  # int64 (N, F)
    if pool.shape[1] != num_features or pool.shape[0] == 0:
        message = (
            f"{candidate} holds features of shape {pool.shape}; the model takes {num_features}"
        )
        if explicit:
            raise BenchError(message)
        return probe_examples(num_features, SYNTHETIC_ROWS), f"synthetic ({message})"
    return np.ascontiguousarray(pool), f"real: {candidate.name} ({len(pool):,} rows)"


def draw(pool_rows: int, total: int, seed: int = DRAW_SEED) -> np.ndarray:
    """Which pool row feeds each trace row: a seeded draw with replacement."""
    return np.random.default_rng(seed).integers(0, pool_rows, size=total, dtype=np.int64)


def write_workload(path: Path, pool: np.ndarray, counts: np.ndarray, sample: np.ndarray) -> None:
    """Save what the measuring processes need: pool, per-call counts, row draw, call sample."""
    np.savez(path, pool=pool, counts=counts, draw=draw(len(pool), int(counts.sum())), sample=sample)


@dataclass
class Workload:
    """Per-call arrays of the trace, as views into one int64 block (each C-contiguous)."""

    pool: np.ndarray
    counts: np.ndarray
    rows: np.ndarray
    offsets: np.ndarray
    sample: np.ndarray

    @classmethod
    def load(cls, path: Path, with_trace: bool = True) -> Workload:
        """Read the workload; `with_trace=False` skips the trace's rows (for memory tests)."""
        with np.load(path, allow_pickle=False) as data:
            pool, counts = data["pool"], data["counts"]
            rows = pool[data["draw"]] if with_trace else pool[:0]
            sample = data["sample"]
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        return cls(pool, counts, rows, offsets, sample)

    def call(self, index: int) -> np.ndarray:
        start = int(self.offsets[index])
        return self.rows[start : start + int(self.counts[index])]

    def batch(self, rows: int) -> np.ndarray:
        """`rows` pool rows for the batch-size tests; the same rows in every process."""
        return self.pool[draw(len(self.pool), rows, seed=DRAW_SEED + 1)]

    def block(self, rows: int) -> np.ndarray:
        """A large int64 block built in place, without a full-size temporary."""
        out = np.empty((rows, self.pool.shape[1]), dtype=np.int64)
        for start in range(0, rows, len(self.pool)):
            stop = min(start + len(self.pool), rows)
            out[start:stop] = self.pool[: stop - start]
        return out
