"""DeepVariant's per-region workload: how many rows each classify() call gets.

make_examples' `--runtime_by_region` table has one line per region with its `num examples`;
DeepVariant calls the small model once per region that has at least one example, so the
non-zero counts, in file order, are the real sequence of classify() batch sizes.

A full trace (5 MB of TSV) is not shipped; the package carries its summary instead
(`kerasport/assets/trace-summary.json`, made by `scripts/build_trace_summary.py`): the exact
number of calls for each row count, totals and provenance. Its calls are that exact multiset
in a seeded shuffle, so a bench on it replays the same calls and rows as on the full trace;
only the order differs, which the per-call timings do not depend on once every row count has
been warmed up.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.assets import ASSETS
from kerasport.bench import BenchError
from kerasport.jsonfile import read_json_file

COUNT_COLUMN = "num examples"
TRACE_GLOB = "make_examples_runtime-*.tsv"
_TRACE_SUBDIR = Path("shared") / "data" / "make-examples-runtime"
SUMMARY_PATH = ASSETS / "trace-summary.json"
SUMMARY_FORMAT = "kerasport trace summary 1"
MAX_SUMMARY_BYTES = 16 << 20  # the shipped one is 2.8 KB: one count per distinct call size
SHUFFLE_SEED = 1089  # fixes the order of a summary's calls, so runs replay the same sequence


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


def default_trace(find_full: Callable[[], list[Path]] | None = None) -> list[Path]:
    """The full trace that `find_full` (default: look in ../shared) finds, else the packaged
    summary; injectable so tests choose the source without hiding ../shared."""
    return (find_full or default_trace_paths)() or [SUMMARY_PATH]


def is_summary(paths: Sequence[Path]) -> bool:
    """A trace given as a summary (.json) rather than runtime-by-region TSV files."""
    return any(Path(p).suffix == ".json" for p in paths)


def read_trace(paths: Sequence[Path]) -> Trace:
    """Parse runtime-by-region TSV files, naming the first bad line, or one trace summary."""
    if not paths:
        raise BenchError(
            "no workload trace: pass --trace FILE.tsv (make_examples --runtime_by_region "
            f"output); none was found in ../{_TRACE_SUBDIR}"
        )
    if is_summary(paths):
        if len(paths) > 1:
            raise BenchError(f"a trace summary stands alone; got {', '.join(map(str, paths))}")
        return summary_trace(paths[0])
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


def calls_by_rows(counts: np.ndarray) -> dict[str, int]:
    """How many classify() calls got each row count, rows ascending (JSON keys are strings)."""
    rows, calls = np.unique(counts, return_counts=True)
    return {str(r): int(c) for r, c in zip(rows, calls, strict=True)}


def _histogram(summary: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A summary's (row counts, calls with that many rows) as int64 arrays."""
    pairs = [(int(rows), int(calls)) for rows, calls in summary["calls_by_rows"].items()]
    rows, calls = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
    return rows, calls


def summarize(trace: Trace, made_by: str, note: str) -> dict[str, Any]:
    """The JSON summary of a full trace: exact histogram, totals and where it came from."""
    from kerasport.manifest import sha256_file

    return {
        "format": SUMMARY_FORMAT,
        "what": "rows per classify() call of DeepVariant make_examples (--runtime_by_region "
        "'num examples' of every region with at least one example)",
        "regions": trace.regions,
        "calls": trace.calls,
        "rows": trace.rows,
        "calls_by_rows": calls_by_rows(trace.counts),
        "provenance": {
            "sources": [{"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                        for p in trace.files],
            "note": note,
            "made_by": made_by,
            "date": datetime.date.today().isoformat(),
        },
    }


def load_summary(path: Path = SUMMARY_PATH) -> dict[str, Any]:
    """Read a trace summary and check that its totals agree with its histogram."""
    summary = read_json_file(path, BenchError, "trace summary", max_bytes=MAX_SUMMARY_BYTES)
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
        raise BenchError(f"{path} is not a trace summary ({SUMMARY_FORMAT!r})")
    rows_of, calls_of = _histogram(summary)
    calls, rows = int(calls_of.sum()), int((rows_of * calls_of).sum())
    if (rows_of < 1).any() or (calls_of < 1).any() or (calls, rows) != (summary["calls"],
                                                                          summary["rows"]):
        raise BenchError(
            f"trace summary {path} is inconsistent: its histogram has {calls} calls and {rows} "
            f"rows, its totals say {summary['calls']} and {summary['rows']}"
        )
    return summary


def summary_trace(path: Path = SUMMARY_PATH) -> Trace:
    """The summary's exact multiset of calls, in a seeded shuffle (the same every run)."""
    summary = load_summary(path)
    counts = np.random.default_rng(SHUFFLE_SEED).permutation(np.repeat(*_histogram(summary)))
    return Trace((Path(path),), int(summary["regions"]), counts)


def describe_source(paths: Sequence[Path]) -> dict[str, Any]:
    """Where a run's calls came from, for the report: full trace files, or a summary and its
    provenance (the sources it was made from, their sha256, how and when)."""
    if not is_summary(paths):
        names = ", ".join(Path(p).name for p in paths)
        return {"kind": "full trace", "files": [str(p) for p in paths],
                "text": f"full trace {names}, replayed call by call in file order"}
    provenance = load_summary(paths[0])["provenance"]
    sources = ", ".join(f"{s['file']} (sha256 {s['sha256'][:12]}...)"
                        for s in provenance["sources"])
    packaged = Path(paths[0]).resolve() == SUMMARY_PATH
    return {
        "kind": "packaged summary" if packaged else "summary",
        "files": [str(paths[0])],
        "provenance": provenance,
        "text": f"{'packaged summary kerasport/assets/' if packaged else 'summary '}"
        f"{Path(paths[0]).name} of {sources}, made {provenance['date']} by "
        f"{provenance['made_by']}; its exact calls in a seeded shuffle (seed {SHUFFLE_SEED})",
    }
