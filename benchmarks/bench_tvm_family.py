"""TVM against ONNX Runtime across the MLP family, in one run, single-threaded.

    python benchmarks/bench_tvm_family.py [--out benchmarks/tvm-family] [--quick]

Exports DeepVariant's embedded model (70-750-750-3) and six MLP-family models of the same
size class (70 features, hidden 750-750, 3-class softmax; built with Keras from a fixed seed
and trained one epoch on random rows so BatchNormalization statistics move): a
BatchNormalization MLP, a LayerNormalization MLP, a residual MLP (Add of two Dense outputs),
a gelu MLP, a silu MLP, and a pre-norm residual MLP (h + Dense(relu(Dense(BatchNorm(h)))),
the tabular ResNet's block), and three convolutional classifiers on the convolution route
(issue "Beyond one model family"'s 2-D CNN of the test zoo, its Conv1D sequence model,
Keras' MNIST convnet: 28x28x1, Conv2D 32 and 64 with max pooling, Flatten, Dense 10, and
keras.applications' MobileNetV2 at 32x32x3, alpha 0.35, 10 classes), each
with `export_bundle(..., tvm_targets=["auto"])` (this CPU's
widest target: x86-64-v4 with AVX-512, else x86-64-v3). A model the TVM route refuses is
exported for ONNX Runtime alone and the refusal printed in its rows. Each bundle then goes
through `kerasport bench --sections latency` (every engine in its own fresh single-threaded
process): mean whole Python call, `classify(classifier, x, 128)`, at 1, 2, 5, 8, 32, 128 and
1,024 rows, beside the TVM library's kernels alone (arguments bound, rows already in place).
DeepVariant's model also replays the real per-region trace (`--sections trace`: every call
of ../shared's make_examples trace, or the packaged summary of it). Prints, and writes to
OUT/TVM_FAMILY.md, a table model x rows with ONNX Runtime, TVM, the ratio ONNX Runtime /
TVM and the TVM kernel floor, and per model the goals (TVM >= 1.0x at every row count; for
DeepVariant's model >= 1.3x on the whole trace and the whole call within 10% of the kernel
floor at 1-8 rows) met or missed, and each model's export time (ONNX conversion, TVM compile,
the check against Keras, the timing against ONNX Runtime); the raw figures go to
OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
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
TRACE_GOAL = 1.3  # DeepVariant's model: ONNX Runtime / TVM on the whole real trace
FLOOR_GOAL = 0.10  # DeepVariant's model: whole call at most 10% over the kernels, 1-8 rows
FLOOR_ROWS = (1, 2, 5, 8)


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

    def prenorm(x: Any) -> Any:  # h + Dense(relu(Dense(BatchNorm(h)))), once
        h = keras.layers.Dense(HIDDEN)(x)
        z = keras.layers.Dense(HIDDEN, activation="relu")(keras.layers.BatchNormalization()(h))
        return keras.layers.Add()([h, keras.layers.Dense(HIDDEN)(z)])

    builders = {
        "batchnorm-mlp": batchnorm,
        "layernorm-mlp": layernorm,
        "residual-mlp": residual,
        "gelu-mlp": lambda x: dense_stack(x, "gelu"),
        "silu-mlp": lambda x: dense_stack(x, "silu"),
        "prenorm-resnet": prenorm,
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


def build_cnns(directory: Path) -> dict[str, Path]:
    """The convolutional classifiers, trained one epoch on seeded random examples."""
    import keras
    import numpy as np

    from kerasport.testing_zoo import ZOO

    L = keras.layers

    def mnist(keras: Any) -> Any:
        return keras.Sequential([
            keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
            L.Dropout(0.5), L.Dense(10, activation="softmax"),
        ])

    def mobilenet_v2(keras: Any) -> Any:
        return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                              weights=None, classes=10)

    builders = {"cnn2d": ZOO["cnn2d"].build, "conv1d": ZOO["conv1d"].build, "mnist-cnn": mnist,
                "mobilenet-v2": mobilenet_v2}
    rng = np.random.default_rng(SEED)
    paths = {}
    for name, build in builders.items():
        keras.utils.set_random_seed(SEED)
        model = build(keras)
        shape, classes = tuple(model.input_shape[1:]), int(model.output_shape[-1])
        x_train = rng.normal(size=(TRAIN_ROWS // 4, *shape)).astype(np.float32)
        y_train = rng.integers(0, classes, size=TRAIN_ROWS // 4)
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


def bench(bundle: Path, model: Path, out: Path, quick: bool, trace: bool) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "kerasport", "bench", str(bundle), "--model", str(model),
        "--out", str(out), "--baselines", "", "--sections",
        "latency,trace" if trace else "latency", "--batch-sizes", ",".join(map(str, ROWS)),
    ]
    subprocess.run(command + (["--quick"] if quick else []), check=True)
    return json.loads((out / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "tvm-family")
    parser.add_argument("--quick", action="store_true",
                        help="kerasport bench --quick: far fewer repetitions (smoke test)")
    args = parser.parse_args()

    from kerasport.assets import DEFAULT_MODEL
    from kerasport.cpu import host_cpu_name
    from kerasport.export.tvm import resolve_targets

    started = time.perf_counter()
    load_before = os.getloadavg()
    target = resolve_targets(["auto"])[0].name
    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"deepvariant": Path(DEFAULT_MODEL), **build_family(Path(tmp)),
                  **build_cnns(Path(tmp))}
        for name, model in models.items():
            print(f"== {name}: export", file=sys.stderr, flush=True)
            exporting = time.perf_counter()
            bundle, refused = export(model, Path(tmp) / f"{name}-bundle")
            export_s = time.perf_counter() - exporting
            print(f"== {name}: bench", file=sys.stderr, flush=True)
            results = bench(bundle, model, Path(tmp) / f"{name}-bench", args.quick,
                            trace=name == "deepvariant")
            latency = results["latency"]
            tvm = next((e for e in latency if e.startswith("kerasport-tvm")), None)
            figures[name] = {
                "tvm_engine": tvm,
                "tvm_refused": refused,
                "export_s": export_s,
                "latency": latency,
                "trace": results.get("trace"),
                "trace_source": results["meta"].get("trace_source"),
                "settings": results["meta"].get("settings"),
            }
    load_after = os.getloadavg()
    meta = {
        "cpu": host_cpu_name(),
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
    """Markdown: model x rows, ONNX Runtime and TVM mean per call, ratio, TVM's kernel floor;
    the goals per model."""
    def load(values: list[float]) -> str:
        return " / ".join(f"{v:.2f}" for v in values)

    lines = [
        "# TVM vs ONNX Runtime across the MLP family and CNNs (one run, one thread "
        "per process)",
        "",
        f"- CPU: {meta['cpu']} ({meta['cores']} cores); TVM library: {meta['tvm_target']} "
        "(export target `auto`)",
        "- Per-call time is the mean of the whole Python call (classify(classifier, x, 128):",
        "  numpy in, a new float32 array out), every engine in its own fresh process;",
        "  ratio = ONNX Runtime / TVM (> 1: TVM wins). TVM kernels: the library's kernels",
        "  alone, arguments bound once and the rows already in place (median); over: the",
        "  whole call's median over it.",
        f"- Repetitions: {'`--quick` (short: noisy figures)' if meta['quick'] else 'full'}"
        f" (`kerasport bench` latency: at least 1 s or 5 calls per row count); run took "
        f"{meta['wall_s']:.0f} s.",
        f"- Load average (1/5/15 min) before: {load(meta['loadavg_before'])}, after: "
        f"{load(meta['loadavg_after'])}.",
        "",
        "| model | rows | ONNX Runtime | TVM | ratio | TVM kernels | over |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, entry in figures.items():
        latency, tvm = entry["latency"], entry["tvm_engine"]
        ratios = []
        for rows in ROWS:
            ort = latency[ORT][str(rows)]["mean_us"]
            if tvm is None:
                lines.append(f"| {name} | {rows:,} | {ort:,.1f} µs | refused at export | | | |")
                continue
            value = latency[tvm][str(rows)]["mean_us"]
            ratios.append(ort / value)
            floor = _floor(entry, rows)
            over = f"{100 * _over(entry, rows):+.0f}%" if floor is not None else "-"
            kernels = f"{floor:,.1f} µs" if floor is not None else "-"
            lines.append(f"| {name} | {rows:,} | {ort:,.1f} µs | {value:,.1f} µs | "
                         f"{ort / value:.2f}x | {kernels} | {over} |")
        if tvm is None:
            verdicts.append(
                f"- {name}: **missed**, no TVM library, export refused it: {entry['tvm_refused']}"
            )
            continue
        worst = min(ratios)
        at = ROWS[ratios.index(worst)]
        status = "met" if worst >= GOAL else "**missed**"
        below = [f"{r:,}" for r, q in zip(ROWS, ratios, strict=True) if q < GOAL]
        verdicts.append(
            f"- {name}: {status} (>= {GOAL}x at every row count; worst {worst:.2f}x at "
            f"{at:,} rows" + (f"; below at {', '.join(below)} rows" if below else "") + ")"
        )
        if name == "deepvariant":
            verdicts += _deepvariant_goals(entry)
    lines += ["", "## Goals", "", *verdicts]
    lines += ["", "## Export (ONNX, TVM compile, check against Keras, timing), seconds", "",
              "| model | export |", "|---|---|"]
    lines += [f"| {name} | {entry['export_s']:.1f} s |" for name, entry in figures.items()]
    trace_line = _trace_line(figures.get("deepvariant"))
    if trace_line:
        lines += ["", trace_line]
    return "\n".join(lines) + "\n"


def _floor(entry: dict[str, Any], rows: int) -> float | None:
    key = "floor-" + entry["tvm_engine"].removeprefix("kerasport-")
    found = entry["latency"].get(key, {}).get(str(rows))
    return None if found is None else float(found["p50_us"])


def _over(entry: dict[str, Any], rows: int) -> float:
    """The whole call's median over the kernels' median."""
    floor = _floor(entry, rows)
    assert floor is not None
    return float(entry["latency"][entry["tvm_engine"]][str(rows)]["p50_us"]) / floor - 1


def _deepvariant_goals(entry: dict[str, Any]) -> list[str]:
    out = []
    trace = entry.get("trace") or {}
    tvm = entry["tvm_engine"]
    if ORT in trace and tvm in trace:
        ratio = trace[ORT]["whole_trace_s"] / trace[tvm]["whole_trace_s"]
        status = "met" if ratio >= TRACE_GOAL else "**missed**"
        floor = trace.get("floor-" + tvm.removeprefix("kerasport-"))
        bound = ""
        if floor:
            kernels = trace[ORT]["whole_trace_s"] / floor["whole_trace_s"]
            bound = f"; the TVM kernels alone would give {kernels:.2f}x"
        out.append(f"- deepvariant, whole real trace: {status} ({ratio:.2f}x{bound}; goal >= "
                   f"{TRACE_GOAL}x)")
    overs = {rows: _over(entry, rows) for rows in FLOOR_ROWS if _floor(entry, rows) is not None}
    if overs:
        worst = max(overs.values())
        status = "met" if worst <= FLOOR_GOAL else "**missed**"
        measured = ", ".join(f"{rows}: {100 * v:+.0f}%" for rows, v in overs.items())
        out.append(f"- deepvariant, whole call over the TVM kernels at 1-8 rows: {status} "
                   f"({measured}; goal <= {100 * FLOOR_GOAL:.0f}%)")
    return out


def _trace_line(entry: dict[str, Any] | None) -> str:
    if not entry or not entry.get("trace"):
        return ""
    trace = entry["trace"]
    parts = [f"{key}: {value['whole_trace_s']:.3f} s" for key, value in trace.items()]
    source = (entry.get("trace_source") or {}).get("text", "")
    return f"DeepVariant trace ({source}), whole trace per engine: " + "; ".join(parts) + "."


if __name__ == "__main__":
    main()
