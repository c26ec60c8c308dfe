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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
EMBEDDED_MODEL = REPO / "kerasport" / "assets" / "model.keras"


def train_stand_in(path: Path, features: int = 70, hidden: tuple[int, ...] = (750, 750)) -> Path:
    """A Dense-relu MLP of DeepVariant's WGS small-model shape, trained to be confident."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 101, size=(16384, features)).astype(np.float32)
    y = np.where(x[:, 4] < 25, 0, np.where(x[:, 4] < 75, 1, 2))
    model = keras.Sequential(
        [keras.Input((features,))]
        + [keras.layers.Dense(units, activation="relu") for units in hidden]
        + [keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=128, verbose=0)
    model.save(path)
    return path


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

    with tempfile.TemporaryDirectory(prefix="kerasport-bench-") as tmp:
        model = args.model
        if model is None:
            if EMBEDDED_MODEL.is_file():
                model = EMBEDDED_MODEL
            else:
                print("no embedded model: training a 70-750-750-3 stand-in", file=sys.stderr)
                model = train_stand_in(Path(tmp) / "model.keras")
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
