"""Turn the results of a run into RESULTS.md, a plot and results.json.

The goals of the benchmark issue are checked here, and where one is missed the report says
why from the measurements themselves (for instance: what the pre-bound ONNX Runtime floor
alone costs, which bounds any adapter's speed-up), so a reader never has to guess.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerasport.atomic import atomic_path
from kerasport.bench.engines import floor_key

RESULTS_FILE = "RESULTS.md"
PLOT_FILE = "bench.png"
JSON_FILE = "results.json"

# (baseline engine, least speed-up of the whole trace) from the issue.
SPEEDUP_GOALS = (("keras-tf-call", 30.0), ("keras-tf-predict", 500.0), ("keras-jax-predict", 20.0))
OVERHEAD_BATCHES = (1, 2, 5, 8)
MAX_OVERHEAD = 0.10
MAX_RSS_MB = 100.0
MAX_COLD_S = 0.35
MAX_GROWTH_MB = 40.0
CONSOLE_BATCHES = (1, 5, 128, 1024)


LATENCY_TEXT = """\
Median time of one call on N rows (the same real rows for every engine), one thread.
kerasport runs `classify(classifier, x, 128)`, chunking at 128 rows as DeepVariant asks.
Floors: ONNX Runtime with float32 inputs and outputs bound before the call (IOBinding, the
runtime's session options); each TVM library's kernels with their arguments bound and the
rows already in the input buffer (no checks, cast or copies); for reference ONNX Runtime
`run()` with a dict holding a ready float32 array; and numpy's float32 matrix chain of the
model's shapes on one BLAS thread (GFLOP/s from its median). The floors run the whole batch
at once, so at very large batches they can be slower than kerasport's 128-row chunks, whose
intermediates stay in cache."""

GENERIC_LATENCY_TEXT = """\
Median time of one call on N examples (the same examples for every engine), one thread.
kerasport runs `classify(classifier, x, 128)`; Keras `predict(x, batch_size=128)` and
`model(x)`. Floors: ONNX Runtime with inputs and outputs bound before the call (IOBinding,
the runtime's session options), each TVM library's kernels with their arguments bound, and
ONNX Runtime `run()` with a dict holding a ready array."""

LARGE_TEXT = """\
One call on one huge region (int64 rows), each engine in its own process: peak RSS (kernel
high-water mark reset before the call, plus 1 ms sampling) minus RSS before the input
existed, minus the input and output arrays. kerasport and `predict` chunk at 128 rows;
`model(x)` is PR 1089's single forward pass."""

GENERIC_LARGE_TEXT = """\
One call on one large batch of examples, each engine in its own process: peak RSS (kernel
high-water mark reset before the call, plus 1 ms sampling) minus RSS before the input
existed, minus the input and output arrays. kerasport and `predict` chunk (kerasport also
by bytes of working memory); `model(x)` is one forward pass over every example."""


@dataclass
class Goal:
    name: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run
    why: str = ""

    @property
    def status(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


# ---------------------------------------------------------------- formatting


def fmt_us(us: float) -> str:
    if us < 1000:
        return f"{us:.1f} µs"
    if us < 1e6:
        return f"{us / 1e3:.2f} ms"
    return f"{us / 1e6:.2f} s"


def fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 100:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds:,.0f} s ({seconds / 60:.0f} min)"
    return f"{seconds:,.0f} s ({seconds / 3600:.1f} h)"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _engines(results: dict[str, Any], kind: str) -> list[str]:
    return [k for k, e in results["engines"].items() if e["kind"] == kind]


def _label(results: dict[str, Any], key: str) -> str:
    engine = results["engines"].get(key)
    return engine["label"] if engine else key


# ---------------------------------------------------------------- goals


def adapter_overhead(results: dict[str, Any], backend: str) -> dict[int, float]:
    """Fraction by which `backend`'s median call exceeds its own floor (ONNX Runtime
    pre-bound, or the TVM library's kernels bound), per batch size."""
    latency = results["latency"]
    floor_engine = floor_key(backend)
    if backend not in latency or floor_engine not in latency:
        return {}
    out = {}
    for n in OVERHEAD_BATCHES:
        if str(n) in latency[backend] and str(n) in latency[floor_engine]:
            ours = latency[backend][str(n)]["p50_us"]
            floor = latency[floor_engine][str(n)]["p50_us"]
            out[n] = ours / floor - 1.0
    return out


def deepvariant_shaped(results: dict[str, Any]) -> bool:
    """Whether the run benched DeepVariant's model (results before this field: always)."""
    return bool(results.get("meta", {}).get("deepvariant_shaped", True))


def goals(results: dict[str, Any]) -> list[Goal]:
    """The benchmark issue's goals; they are DeepVariant's, so none for any other model."""
    out: list[Goal] = []
    if not deepvariant_shaped(results):
        return out
    trace = results["trace"]
    floor = trace.get("floor-ort")
    for backend in _engines(results, "backend"):
        name = _label(results, backend)
        ours = trace.get(backend)
        for baseline, target in SPEEDUP_GOALS:
            goal_name = f"{name}: whole trace vs {_label(results, baseline)}"
            if ours is None or baseline not in trace:
                why = "JAX is not installed" if "jax" in baseline else "baseline not run"
                out.append(Goal(goal_name, f">= {target:.0f}x", "-", None, why))
                continue
            theirs = trace[baseline]
            speedup = theirs["whole_trace_s"] / ours["whole_trace_s"]
            why = ""
            if speedup < target and floor is not None:
                bound = theirs["whole_trace_s"] / floor["whole_trace_s"]
                if bound < target:
                    why = (
                        f"the pre-bound ONNX Runtime floor alone takes "
                        f"{fmt_s(floor['whole_trace_s'])} on this trace, so even an adapter "
                        f"costing nothing would reach only {bound:.1f}x: the gap is the model's "
                        f"arithmetic per call on this CPU, not the adapter"
                    )
                else:
                    why = (
                        f"the pre-bound floor would reach {bound:.1f}x; the rest is adapter "
                        f"overhead per call (see the adapter goal)"
                    )
            out.append(
                Goal(
                    goal_name,
                    f">= {target:.0f}x",
                    f"{speedup:,.1f}x ({fmt_s(ours['whole_trace_s'])} vs "
                    f"{fmt_s(theirs['whole_trace_s'])})",
                    speedup >= target,
                    why,
                )
            )
        overhead = adapter_overhead(results, backend)
        if overhead:
            worst = max(overhead, key=lambda n: overhead[n])
            measured = ", ".join(f"{n}: {100 * v:+.0f}%" for n, v in overhead.items())
            why = ""
            if overhead[worst] > MAX_OVERHEAD:
                why = _overhead_cause(results, backend, worst)
            out.append(
                Goal(
                    f"{name}: adapter over its floor ({_label(results, floor_key(backend))}), "
                    "batch 1-8",
                    f"<= {100 * MAX_OVERHEAD:.0f}%",
                    measured,
                    overhead[worst] <= MAX_OVERHEAD,
                    why,
                )
            )
        out += _process_goals(results, backend, name)
    return out


def _overhead_cause(results: dict[str, Any], backend: str, batch: int) -> str:
    latency = results["latency"]
    floor = latency[floor_key(backend)][str(batch)]["p50_us"]
    ours = latency[backend][str(batch)]["p50_us"]
    parts = [f"at batch {batch} a call costs {ours - floor:.1f} µs more than the floor"]
    if floor_key(backend) == "floor-ort" and str(batch) in latency.get("ort-run-dict", {}):
        plain = latency["ort-run-dict"][str(batch)]["p50_us"]
        parts.append(
            f"{plain - floor:.1f} µs of it is ONNX Runtime's `run(dict)` path itself (wrapping "
            f"the input, allocating and converting the output) and {ours - plain:.1f} µs the "
            f"adapter's Python (checks, float32 cast, chunking)"
        )
    return "; ".join(parts)


def _process_goals(results: dict[str, Any], backend: str, name: str) -> list[Goal]:
    out = []
    process = results.get("process", {}).get(backend)
    python = results.get("process", {}).get("python")
    if process:
        rss = process["rss_mb"]["load"]
        why = ""
        if rss > MAX_RSS_MB and python:
            why = (
                f"a bare Python with numpy is {python['rss_mb']['import']:.0f} MB; importing the "
                f"engine adds {process['rss_mb']['import'] - python['rss_mb']['import']:.0f} MB"
                f", loading the model {process['rss_mb']['load'] - process['rss_mb']['import']:.0f}"
                " MB"
            )
        out.append(
            Goal(
                f"{name}: resident memory after load",
                f"<= {MAX_RSS_MB:.0f} MB",
                f"{rss:.1f} MB (after first call {process['rss_mb']['first_call']:.1f} MB)",
                rss <= MAX_RSS_MB,
                why,
            )
        )
        cold = process["cold_start_s"]
        stages = process["stages_s"]
        why = ""
        if cold > MAX_COLD_S:
            why = "stages: " + ", ".join(f"{k} {v:.3f} s" for k, v in stages.items())
        out.append(
            Goal(
                f"{name}: cold start (import, load, first call)",
                f"<= {MAX_COLD_S:.2f} s",
                f"{cold:.3f} s",
                cold <= MAX_COLD_S,
                why,
            )
        )
    large = results.get("large", {}).get(backend)
    if large:
        growth = large["growth_beyond_arrays_mb"]
        out.append(
            Goal(
                f"{name}: peak growth on {large['rows']:,} rows beyond input and output",
                f"<= {MAX_GROWTH_MB:.0f} MB",
                f"{growth:.1f} MB",
                growth <= MAX_GROWTH_MB,
                "" if large["rows"] >= 1_000_000 else f"measured on {large['rows']:,} rows only",
            )
        )
    return out


# ---------------------------------------------------------------- sections


def _header(results: dict[str, Any]) -> str:
    meta = results["meta"]
    info: dict[str, Any] = results.get("info", {}).get("keras-tf") or next(
        (v for v in results.get("info", {}).values() if v), {}
    )
    layers = " -> ".join(str(shape[1]) for shape in info.get("layers", []))
    model = f"{meta['num_features']} -> {layers}" if layers else f"{meta['num_features']} inputs"
    if not deepvariant_shaped(results):
        model = meta["model_spec"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    settings = meta["settings"]
    lines = [
        "# kerasport benchmark results",
        "",
        f"- Date: {meta['date']}"
        + (" (**--quick run**: small samples)" if meta["settings"]["quick"] else ""),
        f"- CPU: {meta['cpu']}, {meta['cores']} cores; {meta['platform']}; Python {meta['python']}",
        f"- Versions: {versions}",
        f"- Model: {model}" + (f" ({info['params']:,} parameters)" if "params" in info else ""),
        f"- Examples: {meta['examples']}",
    ]
    if meta.get("trace_source"):
        lines.append(
            f"- Trace: {meta['trace_source']['text']}: {meta['trace_regions']:,} regions, "
            f"{meta['trace_calls']:,} with examples (one classify() call each), "
            f"{meta['trace_rows']:,} rows"
        )
    elif not deepvariant_shaped(results):
        lines.append(
            "- No trace: the model is not DeepVariant's (batch, features) -> (batch, classes), "
            "so DeepVariant's per-region replay and its goals do not apply"
        )
    lines += [
        "- Every measurement runs in a fresh process with one compute thread (OMP, OpenBLAS, "
        "TF intra/inter-op, XLA) and imports only what its engine needs. Keras runs with "
        "`compile=False, safe_mode=True` loading, `predict(x, batch_size=128, verbose=0)` as "
        "DeepVariant's `classify()`, and `np.asarray(model(x, training=False))` as PR 1089.",
    ]
    for note in meta.get("notes", []):
        lines.append(f"- Capped by memory: {note}")
    for warning in meta.get("warnings", []):
        lines.append(f"- **Warning**: {warning}")
    if meta.get("skipped_baselines"):
        lines.append(f"- Not run (not installed): {', '.join(meta['skipped_baselines'])}")
    sample = (
        f"; sample of slow baselines: {settings['sample_calls']:,} calls, seed fixed"
        if meta.get("trace_source") else ""
    )
    lines.append(f"- Whole benchmark took {meta.get('bench_s', 0):.0f} s{sample}.")
    return "\n".join(lines)


def _goals_section(goal_list: list[Goal]) -> str:
    rows = [[g.name, g.target, g.measured, g.status, g.why] for g in goal_list]
    return "## Goals\n\n" + table(["Goal", "Target", "Measured", "Status", "Why"], rows)


def _trace_section(results: dict[str, Any]) -> str:
    trace = results["trace"]
    rows = []
    for key, r in trace.items():
        if r["mode"] == "measured":
            whole = f"{fmt_s(r['whole_trace_s'])} measured"
        else:
            whole = (
                f"{fmt_s(r['whole_trace_s'])} extrapolated from {r['calls_timed']:,} seeded calls"
            )
        rows.append(
            [
                _label(results, key),
                f"{r['calls_timed']:,}",
                fmt_us(r["mean_us"]),
                fmt_us(r["p50_us"]),
                fmt_us(r["p99_us"]),
                fmt_rate(r["rows_per_s"]),
                whole,
            ]
        )
    text = [
        "## 1. Trace replay",
        "",
        "One call per region with examples, each with that region's number of real rows, in "
        "trace order, after one warm-up call per distinct row count. An engine whose estimate "
        "(from a pilot on the seeded sample) fits the time budget replays every call "
        "(measured: the sum of its per-call times); the others replay the fixed seeded "
        "sample and are extrapolated (sample mean x number of calls).",
        "",
        table(["Engine", "Calls timed", "Mean", "p50", "p99", "Rows/s", "Whole trace"], rows),
    ]
    baselines = [b for b in _engines(results, "baseline") if b in trace]
    fast = [k for k in trace if results["engines"][k]["kind"] != "baseline"]
    if baselines and fast:
        speed = [
            [_label(results, k)]
            + [f"{trace[b]['whole_trace_s'] / trace[k]['whole_trace_s']:,.1f}x" for b in baselines]
            for k in fast
        ]
        text += [
            "",
            "Speed-up of the whole trace over each baseline:",
            "",
            table(["Engine"] + [_label(results, b) for b in baselines], speed),
        ]
    return "\n".join(text)


def _latency_section(results: dict[str, Any]) -> str:
    latency = results["latency"]
    keys = list(latency)
    sizes = sorted({int(n) for per in latency.values() for n in per})
    backends = _engines(results, "backend")
    header = ["Rows"] + [_label(results, k) for k in keys]
    if "floor-gemm" in latency:
        header.append("GEMM GFLOP/s")
    floored = [b for b in backends if floor_key(b) in latency]
    header += [f"{_label(results, b)} over its floor" for b in floored]
    rows = []
    for n in sizes:
        row = [f"{n:,}"] + [
            fmt_us(latency[k][str(n)]["p50_us"]) if str(n) in latency[k] else "-" for k in keys
        ]
        if "floor-gemm" in latency:
            gemm = latency["floor-gemm"].get(str(n))
            row.append(f"{gemm['gflops']:.1f}" if gemm else "-")
        for b in floored:
            floor = latency[floor_key(b)].get(str(n))
            if floor is not None and str(n) in latency[b]:
                ratio = latency[b][str(n)]["p50_us"] / floor["p50_us"] - 1
                row.append(f"{100 * ratio:+.0f}%")
            else:
                row.append("-")
        rows.append(row)
    return "\n".join(
        [
            "## 2. Latency by batch size",
            "",
            LATENCY_TEXT if deepvariant_shaped(results) else GENERIC_LATENCY_TEXT,
            "",
            table(header, rows),
        ]
    )


def _process_section(results: dict[str, Any]) -> str:
    process = results.get("process", {})
    rows = []
    for key, p in process.items():
        stages = p["stages_s"]
        label = "Python + numpy" if key == "python" else _label(results, key)
        if key.startswith("keras-") and key not in results["engines"]:
            label = "Keras " + ("TensorFlow" if key == "keras-tf" else "JAX")
        rows.append(
            [
                label,
                f"{p['cold_start_s']:.3f} s",
                f"{stages['interpreter']:.3f}",
                f"{stages['import']:.3f}",
                f"{stages['load']:.3f}",
                f"{stages['first_call']:.3f}",
                f"{p['rss_mb']['load']:.1f} MB",
                f"{p['rss_mb']['first_call']:.1f} MB",
                ", ".join(p["imported"]) or "-",
            ]
        )
    first: dict[str, Any] = next(iter(process.values()), {})
    runs, discarded = first.get("runs", 0), first.get("discarded", 0)
    warmed = f" after {discarded} discarded run(s) that warm the page cache" if discarded else ""
    return "\n".join(
        [
            "## 3. Cost of a process",
            "",
            f"A fresh process (median of {runs}{warmed}) imports its engine, loads the model "
            "and classifies 2 rows (Keras: `predict`). Cold start is measured by the parent "
            "from spawn to the first result; resident memory is VmRSS.",
            "",
            table(
                [
                    "Process",
                    "Cold start",
                    "interpreter s",
                    "import s",
                    "load s",
                    "first call s",
                    "RSS after load",
                    "RSS after first call",
                    "Heavy modules imported",
                ],
                rows,
            ),
        ]
    )


def _large_section(results: dict[str, Any]) -> str:
    rows = []
    for key, r in results.get("large", {}).items():
        rows.append(
            [
                _label(results, key),
                f"{r['rows']:,}",
                f"{r['input_mb']:.0f} MB",
                f"{r['output_mb']:.1f} MB",
                f"{r['rss_before_mb']:.0f} MB",
                f"{r['peak_rss_mb']:.0f} MB",
                f"{r['growth_beyond_arrays_mb']:,.1f} MB",
                f"{r['seconds']:.1f} s",
            ]
        )
    dv = deepvariant_shaped(results)
    return "\n".join(
        [
            "## 4. Memory under large regions" if dv else "## 4. Memory under a large batch",
            "",
            LARGE_TEXT if dv else GENERIC_LARGE_TEXT,
            "",
            table(
                [
                    "Engine",
                    "Rows",
                    "Input",
                    "Output",
                    "RSS before",
                    "Peak RSS",
                    "Growth beyond input+output",
                    "Time",
                ],
                rows,
            ),
        ]
    )


def _processes_section(results: dict[str, Any]) -> str:
    rows = []
    for key, runs in results.get("processes", {}).items():
        single = runs[0]["rows_per_s"] if runs else 0.0
        for r in runs:
            rows.append(
                [
                    _label(results, key),
                    str(r["processes"]),
                    fmt_rate(r["rows_per_s"]),
                    ", ".join(fmt_rate(v) for v in r["per_process_rows_per_s"]),
                    f"{r['rows_per_s'] / single:.2f}x" if single else "-",
                ]
            )
    first: dict[str, Any] = next(iter(results.get("processes", {}).values()), [{}])[0]
    calls = first.get("calls_per_process", 0)
    return "\n".join(
        [
            "## 5. Processes",
            "",
            f"N processes, each with its own classifier on one thread, replay {calls:,} trace "
            "calls at the same time (released together after warm-up). Total rows/s = all rows / "
            "the slowest process' time. The machine is shared, so scaling is a lower bound.",
            "",
            table(["Engine", "Processes", "Total rows/s", "Per process rows/s", "Scaling"], rows),
        ]
    )


def render_markdown(results: dict[str, Any], plot_name: str | None) -> str:
    """RESULTS.md: header, goals (DeepVariant's model), then each section this run measured."""
    goal_list = goals(results)
    parts = [_header(results)] + ([_goals_section(goal_list)] if goal_list else [])
    sections = (
        ("trace", _trace_section),
        ("latency", _latency_section),
        ("process", _process_section),
        ("large", _large_section),
        ("processes", _processes_section),
    )
    for key, render in sections:
        if any(results.get(key, {}).values()):
            parts.append(render(results))
    if plot_name:
        parts.append(f"![latency by batch size and whole-trace time]({plot_name})")
    return "\n\n".join(parts) + "\n"


def console_summary(results: dict[str, Any]) -> str:
    """The side-by-side table: per-call time at a few batch sizes and each process' RSS."""
    latency = results["latency"]
    keys = [
        k
        for k in latency
        if latency[k] and results["engines"][k]["kind"] in ("baseline", "backend")
    ]
    measured = sorted({int(n) for k in keys for n in latency[k]})
    shown = CONSOLE_BATCHES if deepvariant_shaped(results) else measured
    sizes = [n for n in shown if all(str(n) in latency[k] for k in keys)]
    rows = [
        [f"{n:,} row{'s' if n > 1 else ''}"] + [fmt_us(latency[k][str(n)]["p50_us"]) for k in keys]
        for n in sizes
    ]
    process = results.get("process", {})
    rss = []
    for k in keys:
        probe = k if k in process else "-".join(k.split("-")[:2])
        rss.append(f"{process[probe]['rss_mb']['load']:.0f} MB" if probe in process else "-")
    rows.append(["RSS after load", *rss])
    lines = [table(["per call", *(_label(results, k) for k in keys)], rows), ""]
    lines += [f"capped by memory: {note}" for note in results.get("meta", {}).get("notes", [])]
    for goal in goals(results):
        status = goal.status.strip("*").upper()
        lines.append(f"{status:>12}  {goal.name}: {goal.measured} (target {goal.target})")
    return "\n".join(lines)


# ---------------------------------------------------------------- plot and files


def plot(results: dict[str, Any], path: Path) -> bool:
    """Latency by batch size (log-log) and whole-trace time per engine.

    Returns False, writing nothing, without matplotlib or without either section's data.
    """
    latency = {k: v for k, v in results.get("latency", {}).items() if v}
    trace = results.get("trace", {})
    if not latency and not trace:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = int(bool(latency)) + int(bool(trace))
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5), squeeze=False)
    column = iter(axes[0])
    if latency:
        left = next(column)
        for key, per in latency.items():
            sizes = sorted(int(n) for n in per)
            style = "--" if results["engines"][key]["kind"] in ("floor", "reference") else "-"
            times = [per[str(n)]["p50_us"] for n in sizes]
            left.plot(sizes, times, style, marker="o", label=_label(results, key))
        left.set(
            xscale="log",
            yscale="log",
            xlabel="rows per call",
            ylabel="median time per call (µs)",
            title="Latency by batch size, one thread",
        )
        left.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8)
    if trace:
        right = next(column)
        keys = sorted(trace, key=lambda k: trace[k]["whole_trace_s"])
        seconds = [trace[k]["whole_trace_s"] for k in keys]
        colors = {"baseline": "tab:gray", "backend": "tab:blue"}
        bars = right.barh(
            [_label(results, k) for k in keys],
            seconds,
            color=[colors.get(results["engines"][k]["kind"], "tab:green") for k in keys],
        )
        for bar, key in zip(bars, keys, strict=True):
            if trace[key]["mode"] != "measured":
                bar.set_hatch("//")
        right.set(
            xscale="log",
            xlabel="seconds (hatched: extrapolated from a seeded sample; green: floors)",
            title=f"Whole trace: {results['meta']['trace_calls']:,} classify() calls",
        )
        right.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Write RESULTS.md, bench.png (when matplotlib is installed) and results.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / JSON_FILE) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")
    plotted = plot(results, out_dir / PLOT_FILE)
    path = out_dir / RESULTS_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(render_markdown(results, PLOT_FILE if plotted else None))
    return path
