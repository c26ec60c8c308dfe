"""Regenerate the packaged trace summary from DeepVariant's whole-genome make_examples trace.

    python scripts/build_trace_summary.py [--shared ../shared] [--out PATH]

Reads `SHARED/data/make-examples-runtime/make_examples_runtime-*.tsv` with the bench's own
trace reader and writes `kerasport/assets/trace-summary.json`: how many classify() calls got
each row count (exact), the totals, and provenance (the source files' sha256, this script,
the date), so `kerasport bench` has DeepVariant's real workload without `../shared`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kerasport.bench.trace import SUMMARY_PATH, TRACE_GLOB, read_trace, summarize

REPO = Path(__file__).resolve().parents[1]
NOTE = (
    "DeepVariant's public test data (BSD-3 licence, Copyright Google LLC): the per-region "
    "runtime table of a whole-genome make_examples run (1,000 bp regions sampling chr1-22, X "
    "and Y), read by kerasport.bench.trace.read_trace; regions without examples are not calls"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                        help="the shared data folder (default %(default)s)")
    parser.add_argument("--out", type=Path, default=SUMMARY_PATH,
                        help="summary to write (default %(default)s)")
    args = parser.parse_args()
    files = sorted((args.shared / "data" / "make-examples-runtime").glob(TRACE_GLOB))
    summary = summarize(read_trace(files), "scripts/build_trace_summary.py", NOTE)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}: {summary['regions']:,} regions, {summary['calls']:,} calls, "
          f"{summary['rows']:,} rows, {len(summary['calls_by_rows'])} distinct row counts")


if __name__ == "__main__":
    main()
