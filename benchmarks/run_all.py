"""The full benchmark behind benchmarks/RESULTS.md.

    python benchmarks/run_all.py [--model MODEL.keras] [--bundle DIR] [--out benchmarks]
                                 [any `kerasport bench` flag, e.g. --quick]

Exports the embedded real model (or `--model`) to a temporary bundle and runs every section
of `kerasport bench` on DeepVariant's make_examples trace (../shared) and the embedded real
examples, writing RESULTS.md, bench.png and results.json next to this script. A full run
takes about 20 minutes on two cores, most of it in the Keras baselines.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _bench_common import run_bench

if __name__ == "__main__":
    sys.exit(run_bench(__doc__.splitlines()[0], [], Path(__file__).resolve().parent))
