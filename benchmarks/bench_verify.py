"""How long `kerasport verify` takes on a million rows of a DeepVariant-shaped model.

    python benchmarks/bench_verify.py [--rows 1000000] [--hidden 750,750] [--features 70]

Builds (in a temporary directory) a Dense-relu MLP of DeepVariant's WGS small-model shape
(70 -> 750 -> 750 -> 3 softmax), trains it briefly so its outputs are confident, exports it
to a bundle, writes `--rows` synthetic int64 examples to a .npy file, then times
`verify_bundle` over them (reference: Keras on TensorFlow, predict(batch_size=128);
candidate: ONNX Runtime, 1 thread) and prints the time, the rate and the peak memory.
Setup (training, export, writing the examples) is not part of the timing.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


BLOCK_ROWS = 65536


def write_examples(path: Path, rows: int, features: int) -> None:
    """kerasport.testing's synthetic rows (0-100, 0/1 is_snp), written in seeded blocks.

    Block k is `synthetic_examples(..., seed=k + 1)` (seed 0 made the training rows), so
    memory holds one block and the file is the same for a given `--rows` on every run.
    """
    from kerasport.testing import synthetic_examples

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=(rows, features))
    for block, start in enumerate(range(0, rows, BLOCK_ROWS)):
        stop = min(rows, start + BLOCK_ROWS)
        out[start:stop] = synthetic_examples(stop - start, features, seed=block + 1)[0]
    out.flush()
    del out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=70)
    parser.add_argument("--hidden", default="750,750", help="hidden layer sizes")
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))

    from kerasport.export import export_bundle
    from kerasport.testing import train_small_model
    from kerasport.verify import render_table, verify_bundle

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        train_small_model(root / "model.keras", args.features, hidden, epochs=2)
        export_bundle(root / "model.keras", root / "bundle")
        write_examples(root / "examples.npy", args.rows, args.features)
        setup = time.perf_counter() - start
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        start = time.perf_counter()
        report = verify_bundle(
            root / "model.keras",
            root / "bundle",
            [root / "examples.npy"],
            chunk_rows=args.chunk_rows,
            progress=args.progress,
        )
        elapsed = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(render_table(report))
    print()
    shape = " -> ".join(str(n) for n in (args.features, *hidden, 3))
    print(f"model {shape}; {report.rows:,} rows; setup {setup:.1f} s (not timed)")
    print(
        f"verify: {elapsed:.1f} s ({report.rows / elapsed:,.0f} rows/s); reference "
        f"{report.reference.seconds:.1f} s, onnxruntime "
        f"{report.backends['onnxruntime'].seconds:.1f} s (overlapping)"
    )
    print(f"peak RSS: {rss_before:,.0f} MiB before verify, {rss_after:,.0f} MiB after")
    print(f"cpu count: {os.cpu_count()}; python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
