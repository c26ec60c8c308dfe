"""Per-call time of Keras predict(), a direct Keras call and kerasport, side by side.

    python benchmarks/bench_latency.py [--model MODEL.keras] [--out DIR] [kerasport bench flags]

Runs the latency and process-cost sections of `kerasport bench` at batch sizes 1, 5, 128 and
1024 (one thread, each engine in its own process) and prints one table: the median time per
call of each engine at each batch size, and the resident memory of a process that loaded it.
Nothing is written unless --out is given.
"""

from __future__ import annotations

import sys

from _bench_common import run_bench

if __name__ == "__main__":
    defaults = ["--sections", "latency,process", "--batch-sizes", "1,5,128,1024"]
    sys.exit(run_bench(__doc__.splitlines()[0], defaults, None))
