"""TVM against ONNX Runtime, side by side in one run, single-threaded.

    python benchmarks/bench_tvm.py [--out benchmarks/tvm] [--quick]

Exports the embedded DeepVariant-shaped model (70-750-750-3) with one TVM library per named
target (x86-64-v4: AVX-512, x86-64-v3: AVX2; each measured only where this CPU runs it) and
runs `kerasport bench` on it: per-call time at 1, 2, 5, 8, 32, 128 and 1,024 rows, the real
whole-genome trace (the full one in ../shared, else the packaged summary), cold start and
resident memory, every engine in its own fresh single-threaded process. Then prints, and
writes to OUT/TVM.md, each TVM library's figures beside ONNX Runtime's with the ratio, and
the issue's goals: >= 1.2x faster at 1-8 rows and on the trace, no slower at 32-1,024 rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = (1, 2, 5, 8, 32, 128, 1024)
ORT = "kerasport-onnxruntime"
SMALL, LARGE = (1, 2, 5, 8), (32, 128, 1024)
GOAL_SMALL = 1.2  # TVM at least this much faster than ONNX Runtime at 1-8 rows and on the trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "tvm")
    parser.add_argument("--quick", action="store_true", help="short repetitions (smoke test)")
    args = parser.parse_args()

    from kerasport.assets import DEFAULT_MODEL
    from kerasport.export import export_bundle

    with tempfile.TemporaryDirectory() as tmp:
        bundle = export_bundle(
            DEFAULT_MODEL, Path(tmp) / "bundle", tvm_targets=["x86-64-v4", "x86-64-v3"]
        )
        command = [
            sys.executable, "-m", "kerasport", "bench", str(bundle), "--model",
            str(DEFAULT_MODEL), "--out", str(args.out), "--baselines", "",
            "--sections", "trace,latency,process",
            "--batch-sizes", ",".join(map(str, ROWS)),
        ]
        subprocess.run(command + (["--quick"] if args.quick else []), check=True)
    results = json.loads((args.out / "results.json").read_text())
    text = comparison(results)
    print(text)
    (args.out / "TVM.md").write_text(text)


def comparison(results: dict) -> str:
    """Markdown: per TVM library, its figures beside ONNX Runtime's, the ratio, the goals."""
    latency, trace, process = results["latency"], results["trace"], results["process"]
    libraries = [e for e in latency if e.startswith("kerasport-tvm")]
    lines = [
        "# TVM vs ONNX Runtime (one run, one thread per process)",
        "",
        f"- CPU: {results['meta'].get('cpu', 'see RESULTS.md')}; trace: "
        f"{results['meta']['trace_source']['text']}",
        "- Per-call time is the mean of the whole Python call (classify(classifier, x, 128):",
        "  numpy int64 in, a new float32 array out); ratio = ONNX Runtime / TVM (> 1: TVM wins).",
        "",
    ]
    header = "| | ONNX Runtime | " + " | ".join(
        f"{name.removeprefix('kerasport-')} | ratio" for name in libraries
    ) + " |"
    lines += [header, "|---" * (2 + 2 * len(libraries)) + "|"]

    def row(label: str, ort: float, values: list[float], unit: str, fmt: str) -> str:
        cells = [f"{ort:{fmt}} {unit}"]
        for value in values:
            cells += [f"{value:{fmt}} {unit}", f"{ort / value:.2f}x"]
        return f"| {label} | " + " | ".join(cells) + " |"

    for rows in ROWS:
        key = str(rows)
        ort = latency[ORT][key]["mean_us"]
        lines.append(row(f"{rows:,} rows", ort, [latency[n][key]["mean_us"] for n in libraries],
                         "µs", ",.1f"))
    lines.append(row("trace, mean per call", trace[ORT]["mean_us"],
                     [trace[n]["mean_us"] for n in libraries], "µs", ",.1f"))
    lines.append(row("trace, whole genome", trace[ORT]["whole_trace_s"],
                     [trace[n]["whole_trace_s"] for n in libraries], "s", ",.2f"))
    def cold(name: str) -> str:
        return f"{process[name]['cold_start_s']:.3f} s"

    def rss(name: str) -> str:
        return f"{process[name]['rss_mb']['first_call']:.1f} MB"

    for label, cell in (("cold start (import, load, first call)", cold),
                        ("resident memory after first call", rss)):
        lines.append(f"| {label} | {cell(ORT)} | " + "".join(f"{cell(n)} | | " for n in libraries))

    lines += ["", "## Goals", "", "| library | goal | measured | status |", "|---|---|---|---|"]
    for name in libraries:
        ratios = {r: latency[ORT][str(r)]["mean_us"] / latency[name][str(r)]["mean_us"]
                  for r in ROWS}
        small = min(ratios[r] for r in SMALL)
        large = min(ratios[r] for r in LARGE)
        on_trace = trace[ORT]["mean_us"] / trace[name]["mean_us"]
        label = name.removeprefix("kerasport-")
        for goal, value, met in (
            (f">= {GOAL_SMALL}x at 1-8 rows (worst row count)", small, small >= GOAL_SMALL),
            (f">= {GOAL_SMALL}x on the trace", on_trace, on_trace >= GOAL_SMALL),
            ("no slower at 32-1,024 rows (worst row count)", large, large >= 1.0),
        ):
            lines.append(f"| {label} | {goal} | {value:.2f}x | {'met' if met else '**missed**'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
