"""DeepVariant's per-region workload: how many rows each classify() call gets.

make_examples' `--runtime_by_region` table has one line per region with its `num examples`;
DeepVariant calls the small model once per region that has at least one example, so the
non-zero counts, in file order, are the real sequence of classify() batch sizes.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasport.bench import BenchError

COUNT_COLUMN = "num examples"
TRACE_GLOB = "make_examples_runtime-*.tsv"
_TRACE_SUBDIR = Path("shared") / "data" / "make-examples-runtime"


@dataclass(frozen=True)
class Trace:
    """Rows per classify() call, in trace order; regions without examples are left out."""

    files: tuple[Path, ...]
    regions: int  # every region in the files, with or without examples
    counts: np.ndarray  # int64, one entry per call, each >= 1

    @property
    def calls(self) -> int:
        return int(self.counts.size)

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


def default_trace_paths(start: Path | None = None) -> list[Path]:
    """The shared make_examples trace, looked for in ../shared from the cwd and the checkout.

    Both places are tried because the command may run from the repository root (the
    documented layout puts `shared/` beside it) or from an installed copy.
    """
    here = Path(__file__).resolve()
    roots = [(start or Path.cwd()).resolve(), here.parents[2]]
    for root in roots:
        for base in (root.parent, root):
            folder = base / _TRACE_SUBDIR
            files = sorted(folder.glob(TRACE_GLOB))
            if files:
                return files
    return []


def read_trace(paths: Sequence[Path]) -> Trace:
    """Parse one or more runtime-by-region TSV files, naming the first bad line."""
    if not paths:
        raise BenchError(
            "no workload trace: pass --trace FILE.tsv (make_examples --runtime_by_region "
            f"output); none was found in ../{_TRACE_SUBDIR}"
        )
    counts: list[int] = []
    regions = 0
    for path in paths:
        try:
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle, delimiter="\t")
                if reader.fieldnames is None or COUNT_COLUMN not in reader.fieldnames:
                    raise BenchError(f"{path}: no {COUNT_COLUMN!r} column; is it a runtime TSV?")
                for line, record in enumerate(reader, start=2):
                    regions += 1
                    try:
                        count = int(record[COUNT_COLUMN])
                    except (TypeError, ValueError):
                        raise BenchError(
                            f"{path}:{line}: {COUNT_COLUMN!r} is {record[COUNT_COLUMN]!r}, "
                            "not an integer"
                        ) from None
                    if count < 0:
                        raise BenchError(f"{path}:{line}: negative {COUNT_COLUMN!r} {count}")
                    if count:
                        counts.append(count)
        except OSError as exc:
            raise BenchError(f"cannot read trace {path}: {exc}") from exc
    if not counts:
        raise BenchError(f"the trace ({', '.join(map(str, paths))}) has no region with examples")
    return Trace(tuple(Path(p) for p in paths), regions, np.asarray(counts, dtype=np.int64))


def seeded_sample(calls: int, size: int, seed: int) -> np.ndarray:
    """Indices of a fixed random subset of calls, kept in trace order (all when size >= calls)."""
    if size >= calls:
        return np.arange(calls, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(calls, size=size, replace=False)).astype(np.int64)
