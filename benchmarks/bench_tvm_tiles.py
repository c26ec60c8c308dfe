"""How many accumulators a 1- to 8-row TVM tile should take: each static kernel, timed alone.

    python benchmarks/bench_tvm_tiles.py [--target x86-64-v4] [--budgets 24,18] [--processes 4]

Compiles DeepVariant's embedded model (70-750-750-3) for one target (default: this CPU's
widest) once per
accumulator budget (`TvmTarget.acc_registers`: how many vector registers a tile of few rows
may fill with accumulators, which sets how many weight panels it takes at once), and times
each static kernel (1..8 rows) with its arguments bound, in several fresh processes, since a
tile that spills varies from process to process. Prints a table budget x rows, each cell the
range of per-call medians over the processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = range(1, 9)


def measure(target_name: str, budget: int) -> dict[int, float]:
    """In this process: compile with `budget`, return µs per call of each static kernel."""
    import numpy as np

    from kerasport.assets import DEFAULT_MODEL
    from kerasport.export.keras_model import load_keras_model
    from kerasport.export.tvm import resolve_targets
    from kerasport.export.tvm.dense_graph import compile_dense_graph
    from kerasport.export.tvm.keras_layers import tvm_network
    from kerasport.runtime.backends.tvm import open_tvm_library

    network = tvm_network(load_keras_model(Path(DEFAULT_MODEL)))
    nodes, features = network.nodes, network.num_features
    target = dataclasses.replace(resolve_targets([target_name])[0], acc_registers=budget)
    with tempfile.TemporaryDirectory() as tmp:
        details = compile_dense_graph(nodes, features, target, Path(tmp), "m")
        runner = open_tvm_library((Path(tmp) / "m.so").read_bytes(),
                                  (Path(tmp) / "m.weights.bin").read_bytes(), details,
                                  features, details["num_classes"])
    out = {}
    for rows in ROWS:
        call = runner.bound_kernels(np.zeros((rows, features), np.float32))
        for _ in range(200):
            call()
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(1000):
                call()
            rounds.append((time.perf_counter() - start) * 1e3)  # µs per call
        out[rows] = statistics.median(rounds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="auto")
    parser.add_argument("--budgets", default="24,18")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.target, args.measure)))
        return
    budgets = [int(b) for b in args.budgets.split(",")]
    figures: dict[int, list[dict[str, float]]] = {b: [] for b in budgets}
    for _ in range(args.processes):
        for budget in budgets:
            command = [sys.executable, __file__, "--target", args.target, "--measure",
                       str(budget)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            figures[budget].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"µs per call of each static kernel alone, min-max over {args.processes} fresh "
          f"processes (DeepVariant's 70-750-750-3 model, target {args.target})\n")
    print("| accumulators | " + " | ".join(f"{r} rows" for r in ROWS) + " |")
    print("|---|" + "---|" * len(ROWS))
    for budget, runs in figures.items():
        cells = []
        for rows in ROWS:
            values = [run[str(rows)] for run in runs]
            cells.append(f"{min(values):.1f}-{max(values):.1f}")
        print(f"| {budget} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
