"""Shared by the benchmark scripts: find or build the model, export it, run `kerasport bench`.

The scripts benchmark the embedded real model (`kerasport/assets/model.keras`) when it is
there; otherwise they train a stand-in of the same WGS shape (70 -> 750 -> 750 -> 3, seeded),
so a checkout without the assets still produces comparable numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_MODEL = REPO / "kerasport" / "assets" / "model.keras"


def run_bench(description: str, defaults: list[str], default_out: Path | None) -> int:
    """Parse `--model/--bundle/--out`, prepare the bundle, pass the rest to `kerasport bench`."""
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Other arguments go to `kerasport bench` (e.g. --quick, --trace, --sections).",
    )
    parser.add_argument("--model", type=Path, help="model.keras (default: the embedded model)")
    parser.add_argument("--bundle", type=Path, help="an existing bundle of --model to reuse")
    parser.add_argument("--out", type=Path, default=default_out, help="output directory")
    args, rest = parser.parse_known_args()

    from kerasport.bench import command as bench_command
    from kerasport.errors import KerasportError
    from kerasport.testing import train_small_model

    with tempfile.TemporaryDirectory(prefix="kerasport-bench-") as tmp:
        model = args.model
        if model is None:
            if EMBEDDED_MODEL.is_file():
                model = EMBEDDED_MODEL
            else:
                print("no embedded model: training a 70-750-750-3 stand-in", file=sys.stderr)
                model = train_small_model(Path(tmp) / "model.keras", epochs=2)
        bundle = args.bundle
        if bundle is None:
            from kerasport.export import export_bundle

            bundle = export_bundle(model, Path(tmp) / "bundle")
        out = args.out if args.out is not None else Path(tmp) / "out"
        bench = argparse.ArgumentParser(prog="kerasport")
        bench_command.register(bench.add_subparsers(dest="command", required=True))
        argv = ["bench", str(bundle), "--model", str(model), "--out", str(out), *defaults, *rest]
        bench_args = bench.parse_args(argv)
        try:
            code = int(bench_args.func(bench_args))
        except KerasportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.out is None:
            print("(that was a temporary directory, now removed: pass --out DIR to keep it)")
        return code
