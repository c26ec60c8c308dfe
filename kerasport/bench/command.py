"""`kerasport bench BUNDLE --model MODEL.keras [--trace TSV ...] [--out DIR] [--quick]`.

DeepVariant's model is benched on DeepVariant's workload; any other model on examples of its
own input spec (`kerasport.bench.run` says which sections apply to which)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from kerasport.cliargs import positive_int
from kerasport.examples.text import HEADER_CHOICES, HEADER_HELP

DEFAULT_OUT = Path("bench-results")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of MB, got {text!r}")
    return value


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - {"tf", "jax"})
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baselines {unknown}; choose from tf, jax")
    return names


def _section_list(text: str) -> tuple[str, ...]:
    from kerasport.bench.run import SECTIONS

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown sections {unknown or text!r}; choose from {', '.join(SECTIONS)}"
        )
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark a bundle against Keras (DeepVariant's real workload, or any model's "
        "own input spec)",
        description="Time calls by batch size through every backend of the bundle and through "
        "Keras (predict() and a direct call; TensorFlow, and JAX when installed) against ONNX "
        "Runtime floors, measure cold start, resident and peak memory, and write RESULTS.md, "
        "bench.png and results.json. A DeepVariant-shaped model ((batch, features) float rows "
        "-> (batch, classes)) also replays DeepVariant's per-region workload (one process and "
        "several) against a GEMM floor; any other model is fed examples of its input spec "
        "(or --examples FILE.npy) at 1 to 1,024 rows, capped by --memory-budget-mb.",
    )
    parser.add_argument("bundle", type=Path, help="bundle directory (from kerasport export)")
    parser.add_argument("--model", type=Path, required=True, help="the Keras model (model.keras)")
    parser.add_argument(
        "--trace",
        type=Path,
        nargs="+",
        action="extend",
        help="make_examples --runtime_by_region TSV files, replayed call by call, or a trace "
        "summary .json (default: ../shared's trace if found, else the packaged summary of it)",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        help="real example rows, any examples format (.npy .npz .csv .tsv .tfrecord[.gz]); for "
        "a model whose examples are not rows of float features, a .npy shaped (N, *input "
        "shape) (default: the bundled real examples when they fit the model, else examples "
        "drawn for the model's input spec)",
    )
    parser.add_argument("--header", choices=HEADER_CHOICES, default="auto", help=HEADER_HELP)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory (default %(default)s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small samples and short repetitions (smoke test)"
    )
    parser.add_argument(
        "--baselines",
        type=_name_list,
        help="Keras backends to compare with: tf,jax (default both; jax only if installed)",
    )
    parser.add_argument(
        "--sample-calls",
        type=positive_int,
        help="size of the seeded sample of trace calls for slow baselines (default 3000)",
    )
    parser.add_argument(
        "--full-trace-budget",
        type=float,
        help="seconds: engines estimated to replay the whole trace within this are measured "
        "on every call, the others on the sample (default 300)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_int_list,
        help="latency batch sizes (default 1,2,5,8,32,128,1024, and 100000 for DeepVariant's "
        "model; sizes above the memory cap are capped)"
    )
    parser.add_argument(
        "--large-rows",
        type=positive_int,
        help="rows of the large-region memory test (default 1000000)",
    )
    parser.add_argument(
        "--processes", type=_int_list, help="process counts for throughput (default 1,2)"
    )
    parser.add_argument(
        "--cold-runs", type=positive_int, help="fresh processes per cold-start figure (default 5)"
    )
    parser.add_argument(
        "--sections",
        type=_section_list,
        help="comma-separated subset of trace,latency,process,large,processes (default all "
        "for DeepVariant's model, latency,process,large for any other)",
    )
    parser.add_argument(
        "--memory-budget-mb",
        type=_megabytes,
        help="memory one measured call may hold; larger row counts are capped to fit and the "
        "report says so (default 2048, or half the available memory if less; --quick 256)",
    )
    parser.set_defaults(func=run)


def _check_out(args: argparse.Namespace) -> None:
    """Refuse an --out that is, holds as a file it writes, or lies inside an input (the
    bundle, the model, a trace or the examples), before the minutes of timing."""
    from kerasport import outputs
    from kerasport.bench.report import JSON_FILE, PLOT_FILE, RESULTS_FILE

    reads = [
        outputs.Input("bundle", args.bundle),
        outputs.Input("model", args.model),
        *outputs.inputs("trace", args.trace),
        *outputs.inputs("examples file", [args.examples] if args.examples else None),
    ]
    outputs.check_output_dir(outputs.Output("--out", args.out), reads,
                             files=(JSON_FILE, PLOT_FILE, RESULTS_FILE))


def run(
    args: argparse.Namespace, find_full_trace: Callable[[], list[Path]] | None = None
) -> int:
    """Run the bench; without --trace, the full trace `find_full_trace` finds (default: in
    ../shared) or else the packaged summary, and the report names which."""
    from kerasport.bench.report import console_summary, write_report
    from kerasport.bench.run import Settings
    from kerasport.bench.run import run as run_bench
    from kerasport.bench.spec import deepvariant_shaped
    from kerasport.bench.trace import default_trace, describe_source
    from kerasport.manifest import read_manifest

    _check_out(args)
    trace = list(args.trace or [])
    if not trace and deepvariant_shaped(read_manifest(args.bundle)):
        trace = default_trace(find_full_trace)  # any other model has no per-region trace
    if trace:
        print(f"trace: {describe_source(trace)['text']}", file=sys.stderr)
    settings = Settings(
        args.bundle, args.model, trace, examples=args.examples, examples_header=args.header
    )
    if args.quick:
        settings.make_quick()
    overrides = {
        "baselines": args.baselines,
        "sample_calls": args.sample_calls,
        "full_budget_s": args.full_trace_budget,
        "batch_sizes": args.batch_sizes,
        "large_rows": args.large_rows,
        "processes": args.processes,
        "cold_runs": args.cold_runs,
        "sections": args.sections,
        "memory_budget_mb": args.memory_budget_mb,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    results = run_bench(settings)
    path = write_report(results, args.out)
    print(console_summary(results))
    print(f"\nwrote {path}")
    return 0
