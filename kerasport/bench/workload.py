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
from kerasport.bench.spec import example_bytes, is_table
from kerasport.export.check import probe_examples
from kerasport.manifest import InputSpec

SYNTHETIC_ROWS = 65_536
SYNTHETIC_BYTES = 64 << 20  # 128 tiles of 256x256x2 float32: enough distinct examples
POOL_MAX_BYTES = 256 << 20  # of an --examples .npy, the rows every process loads
DRAW_SEED = 20_260_623  # fixed so every run and every process draws the same rows


def load_pool(
    path: Path | None, inputs: InputSpec | int, header: str = "auto"
) -> tuple[np.ndarray, str]:
    """The example pool and a line saying where it came from.

    `inputs` is the model's input spec (an int: that many float features). Rows of float
    features are read by any examples reader (DeepVariant's formats; `header` as
    `read_examples` takes it); any other input (an image, a tile, token indices) comes from
    a .npy shaped (N, *input shape), or is drawn for the spec (`synthetic_pool`).
    """
    spec = InputSpec((inputs,)) if isinstance(inputs, int) else inputs
    if is_table(spec):
        return _table_pool(path, spec.shape[0], header)
    if path is None:
        return synthetic_pool(spec)
    return _array_pool(path, spec)


def _table_pool(path: Path | None, num_features: int, header: str) -> tuple[np.ndarray, str]:
    """DeepVariant-style rows.

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
    pool = read_examples(candidate, header=header).features  # int64 (N, F)
    if pool.shape[1] != num_features or pool.shape[0] == 0:
        message = (
            f"{candidate} holds features of shape {pool.shape}; the model takes {num_features}"
        )
        if explicit:
            raise BenchError(message)
        return probe_examples(num_features, SYNTHETIC_ROWS), f"synthetic ({message})"
    return np.ascontiguousarray(pool), f"real: {candidate.name} ({len(pool):,} rows)"


def synthetic_pool(spec: InputSpec) -> tuple[np.ndarray, str]:
    """Seeded examples of the spec (`probe_examples`), as many as fit SYNTHETIC_BYTES."""
    rows = max(1, min(SYNTHETIC_ROWS, SYNTHETIC_BYTES // example_bytes(spec)))
    if spec.index_range is not None:
        values = f"indices drawn over [{spec.index_range[0]}, {spec.index_range[1]})"
    elif spec.dtype != "float32":
        values = "integers 0-100"
    else:
        values = "standard normal values"
    return probe_examples(spec, rows), (
        f"synthetic ({rows:,} seeded examples of shape {spec.shape}, {spec.dtype}: {values})"
    )


def _array_pool(path: Path, spec: InputSpec) -> tuple[np.ndarray, str]:
    """Examples from a .npy of shape (N, *spec.shape): its first POOL_MAX_BYTES of them.

    The values are checked as the runtime would check them (integers for an integer input,
    indices inside an Embedding's vocabulary), so a bad file fails here, naming itself,
    rather than in a measuring process.
    """
    expected = f"(N, {', '.join(map(str, spec.shape))})"
    if path.suffix != ".npy":
        raise BenchError(
            f"{path}: a model taking examples of shape {spec.shape} reads --examples from a "
            f".npy of shape {expected}"
        )
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read examples {path}: {exc}") from exc
    if array.ndim != len(spec.shape) + 1 or array.shape[1:] != spec.shape or not len(array):
        raise BenchError(
            f"{path} holds examples of shape {array.shape}; the model takes {expected}"
        )
    integer = spec.dtype != "float32"
    if array.dtype.kind not in ("iu" if integer else "fiu"):
        kind = "integers" if integer else "numbers"
        raise BenchError(
            f"{path} holds {array.dtype} values; the model takes {kind} ({spec.dtype})"
        )
    rows = max(1, min(len(array), POOL_MAX_BYTES // example_bytes(spec)))
    pool = np.ascontiguousarray(array[:rows], dtype=spec.dtype)
    if spec.index_range is not None:
        low, high = spec.index_range
        bad = np.argwhere((array[:rows] < low) | (array[:rows] >= high))
        if len(bad):
            row, *position = (int(i) for i in bad[0])
            raise BenchError(
                f"{path}: row {row} position {tuple(position)} holds "
                f"{array[tuple(bad[0])]}, outside the Embedding's indices [{low}, {high})"
            )
    part = f"first {rows:,} of {len(array):,}" if rows < len(array) else f"{rows:,}"
    return pool, f"real: {path.name} ({part} examples of shape {spec.shape})"


def draw(pool_rows: int, total: int, seed: int = DRAW_SEED) -> np.ndarray:
    """Which pool row feeds each trace row: a seeded draw with replacement."""
    return np.random.default_rng(seed).integers(0, pool_rows, size=total, dtype=np.int64)


def write_workload(path: Path, pool: np.ndarray, counts: np.ndarray, sample: np.ndarray) -> None:
    """Save what the measuring processes need: pool, per-call counts, row draw, call sample."""
    np.savez(path, pool=pool, counts=counts, draw=draw(len(pool), int(counts.sum())), sample=sample)


@dataclass
class Workload:
    """Per-call arrays of the trace, as views into one block (each C-contiguous); int64 rows
    for DeepVariant's model, the model's own examples for any other."""

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
        """A large block of pool examples built in place, without a full-size temporary."""
        out = np.empty((rows, *self.pool.shape[1:]), dtype=self.pool.dtype)
        for start in range(0, rows, len(self.pool)):
            stop = min(start + len(self.pool), rows)
            out[start:stop] = self.pool[: stop - start]
        return out
