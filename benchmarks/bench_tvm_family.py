"""TVM against ONNX Runtime across the MLP family, in one run, single-threaded.

    python benchmarks/bench_tvm_family.py [--out benchmarks/tvm-family] [--quick]

Exports DeepVariant's embedded model (70-750-750-3) and five MLP-family models of the same
size class (70 features, hidden 750-750, 3-class softmax; built with Keras from a fixed seed
and trained one epoch on random rows so BatchNormalization statistics move): a
BatchNormalization MLP, a LayerNormalization MLP, a residual MLP (Add of two Dense outputs),
a gelu MLP and a silu MLP, each with `export_bundle(..., tvm_targets=["auto"])` (this CPU's
widest target: x86-64-v4 with AVX-512, else x86-64-v3). A model the TVM route refuses is
exported for ONNX Runtime alone and the refusal printed in its rows. Each bundle then goes
through `kerasport bench --sections latency` (every engine in its own fresh single-threaded
process): mean whole Python call, `classify(classifier, x, 128)`, at 1, 2, 5, 8, 32, 128 and
1,024 rows. Prints, and writes to OUT/TVM_FAMILY.md, a table model x rows with ONNX Runtime,
TVM and the ratio ONNX Runtime / TVM, and per model the goal (TVM >= 1.0x at every row
count) met or missed; the raw figures go to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROWS = (1, 2, 5, 8, 32, 128, 1024)
ORT = "kerasport-onnxruntime"
FEATURES, HIDDEN, CLASSES = 70, 750, 3
SEED = 17
TRAIN_ROWS = 4096
GOAL = 1.0  # TVM at least as fast as ONNX Runtime at every row count


def build_family(directory: Path) -> dict[str, Path]:
    """The five MLP-family models, trained one epoch on seeded random rows, saved as .keras."""
    import keras
    import numpy as np

    def dense_stack(x: Any, activation: str) -> Any:
        for _ in range(2):
            x = keras.layers.Dense(HIDDEN, activation=activation)(x)
        return x

    def batchnorm(x: Any) -> Any:  # Dense -> BatchNormalization -> ReLU, twice
        for _ in range(2):
            x = keras.layers.Dense(HIDDEN)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
        return x

    def layernorm(x: Any) -> Any:  # Dense(relu) -> LayerNormalization, twice
        for _ in range(2):
            x = keras.layers.Dense(HIDDEN, activation="relu")(x)
            x = keras.layers.LayerNormalization()(x)
        return x

    def residual(x: Any) -> Any:  # h1 + Dense(h1)
        h1 = keras.layers.Dense(HIDDEN, activation="relu")(x)
        h2 = keras.layers.Dense(HIDDEN, activation="relu")(h1)
        return keras.layers.Add()([h1, h2])

    builders = {
        "batchnorm-mlp": batchnorm,
        "layernorm-mlp": layernorm,
        "residual-mlp": residual,
        "gelu-mlp": lambda x: dense_stack(x, "gelu"),
        "silu-mlp": lambda x: dense_stack(x, "silu"),
    }
    rng = np.random.default_rng(SEED)
    x_train = rng.normal(size=(TRAIN_ROWS, FEATURES)).astype(np.float32)
    y_train = rng.integers(0, CLASSES, size=TRAIN_ROWS)
    paths = {}
    for name, body in builders.items():
        keras.utils.set_random_seed(SEED)
        inputs = keras.Input((FEATURES,), name="features")
        outputs = keras.layers.Dense(CLASSES, activation="softmax")(body(inputs))
        model = keras.Model(inputs, outputs, name=name.replace("-", "_"))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x_train, y_train, epochs=1, batch_size=128, verbose=0)
        paths[name] = directory / f"{name}.keras"
        model.save(paths[name])
    return paths


def export(model: Path, out: Path) -> tuple[Path, str | None]:
    """The bundle with this CPU's TVM library, or (TVM refused) without one and the reason."""
    from kerasport.errors import ExportError
    from kerasport.export import export_bundle

    try:
        return export_bundle(model, out, tvm_targets=["auto"]), None
    except ExportError as error:
        fallback = out.with_name(out.name + "-ort")
        return export_bundle(model, fallback), str(error)


def bench(bundle: Path, model: Path, out: Path, quick: bool) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "kerasport", "bench", str(bundle), "--model", str(model),
        "--out", str(out), "--baselines", "", "--sections", "latency",
        "--batch-sizes", ",".join(map(str, ROWS)),
    ]
    subprocess.run(command + (["--quick"] if quick else []), check=True)
    return json.loads((out / "results.json").read_text())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "tvm-family")
    parser.add_argument("--quick", action="store_true",
                        help="kerasport bench --quick: far fewer repetitions (smoke test)")
    args = parser.parse_args()

    from kerasport.assets import DEFAULT_MODEL
    from kerasport.export.tvm import resolve_targets

    started = time.perf_counter()
    load_before = os.getloadavg()
    target = resolve_targets(["auto"])[0].name
    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"deepvariant": Path(DEFAULT_MODEL), **build_family(Path(tmp))}
        for name, model in models.items():
            print(f"== {name}: export", file=sys.stderr, flush=True)
            bundle, refused = export(model, Path(tmp) / f"{name}-bundle")
            print(f"== {name}: bench", file=sys.stderr, flush=True)
            results = bench(bundle, model, Path(tmp) / f"{name}-bench", args.quick)
            latency = results["latency"]
            tvm = next((e for e in latency if e.startswith("kerasport-tvm")), None)
            figures[name] = {
                "tvm_engine": tvm,
                "tvm_refused": refused,
                "latency": latency,
                "settings": results["meta"].get("settings"),
            }
    load_after = os.getloadavg()
    meta = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "tvm_target": target,
        "rows": list(ROWS),
        "quick": args.quick,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "wall_s": time.perf_counter() - started,
        "command": "python benchmarks/bench_tvm_family.py" + (" --quick" if args.quick else ""),
    }
    (args.out / "results.json").write_text(
        json.dumps({"meta": meta, "models": figures}, indent=1) + "\n"
    )
    text = table(meta, figures)
    print(text)
    (args.out / "TVM_FAMILY.md").write_text(text)


def table(meta: dict[str, Any], figures: dict[str, Any]) -> str:
    """Markdown: model x rows, ONNX Runtime and TVM mean per call, ratio; goals per model."""
    def load(values: list[float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    lines = [
        "# TVM vs ONNX Runtime across the MLP family (one run, one thread per process)",
        "",
        f"- CPU: {meta['cpu']} ({meta['cores']} cores); TVM library: {meta['tvm_target']} "
        "(export target `auto`)",
        "- Per-call time is the mean of the whole Python call (classify(classifier, x, 128):",
        "  numpy in, a new float32 array out), every engine in its own fresh process;",
        "  ratio = ONNX Runtime / TVM (> 1: TVM wins).",
        f"- Repetitions: {'`--quick` (short: noisy figures)' if meta['quick'] else 'full'}"
        f" (`kerasport bench` latency: at least 1 s or 5 calls per row count); run took "
        f"{meta['wall_s']:.0f} s.",
        f"- Load average (1/5/15 min) before: {load(meta['loadavg_before'])}, after: "
        f"{load(meta['loadavg_after'])}.",
        "",
        "| model | rows | ONNX Runtime | TVM | ratio |",
        "|---|---|---|---|---|",
    ]
    verdicts = []
    for name, entry in figures.items():
        latency, tvm = entry["latency"], entry["tvm_engine"]
        ratios = []
        for rows in ROWS:
            ort = latency[ORT][str(rows)]["mean_us"]
            if tvm is None:
                lines.append(f"| {name} | {rows:,} | {ort:,.1f} µs | refused at export | |")
                continue
            value = latency[tvm][str(rows)]["mean_us"]
            ratios.append(ort / value)
            lines.append(f"| {name} | {rows:,} | {ort:,.1f} µs | {value:,.1f} µs | "
                         f"{ort / value:.2f}x |")
        if tvm is None:
            verdicts.append(
                f"- {name}: **missed**, no TVM library, export refused it: {entry['tvm_refused']}"
            )
        else:
            worst = min(ratios)
            at = ROWS[ratios.index(worst)]
            status = "met" if worst >= GOAL else "**missed**"
            below = [f"{r:,}" for r, q in zip(ROWS, ratios, strict=True) if q < GOAL]
            verdicts.append(
                f"- {name}: {status} (>= {GOAL}x at every row count; worst {worst:.2f}x at "
                f"{at:,} rows" + (f"; below at {', '.join(below)} rows" if below else "") + ")"
            )
    lines += ["", "## Goal: TVM >= 1.0x ONNX Runtime at every row count", "", *verdicts]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
