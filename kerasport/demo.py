"""`kerasport demo`: the whole pipeline on the embedded real model and examples.

Export the bundled model, serve it from the runtime, call genotypes on the bundled real
NA12878 examples, and verify the bundle against Keras: the story a new user should see run
before trusting the toolkit with their own model.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from kerasport.atomic import atomic_path
from kerasport.examples import CLASS_NAMES
from kerasport.outputs import Output, check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="export, serve and verify the embedded real model",
        description="Run export -> runtime -> verify on the embedded DeepVariant-shaped model "
        "and its real NA12878 examples, and say where the files went.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("kerasport-demo"), help="output directory (%(default)s)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kerasport import runtime
    from kerasport.assets import DEFAULT_EXAMPLES, DEFAULT_MODEL
    from kerasport.examples import read_examples
    from kerasport.export import export_bundle
    from kerasport.verify import render_table, verify_bundle, write_html, write_json
    from kerasport.verify.gq import genotype_quality

    out: Path = args.out
    check_output_dir(Output("--out", out), [], files=("calls.tsv", "verify.json", "verify.html"))
    out.mkdir(parents=True, exist_ok=True)
    targets = _tvm_targets()
    print(f"1/3 export {DEFAULT_MODEL.name} -> {out / 'bundle'} (ONNX"
          + (", TVM for this CPU)" if targets else "; TVM needs pip install 'kerasport[tvm]')"))
    bundle = export_bundle(DEFAULT_MODEL, out / "bundle", tvm_targets=targets)

    examples = read_examples(DEFAULT_EXAMPLES)
    classifier = runtime.load(bundle)  # auto: TVM where the bundle has a library for this CPU
    classifier.check_feature_names(examples.feature_names or ())
    probabilities = runtime.classify(classifier, examples.features, batch_size=128)
    called = probabilities.argmax(axis=1)
    gq = genotype_quality(probabilities)
    print(f"2/3 classify {len(called)} real examples with the {classifier.backend} runtime "
          f"({classifier.artifact}; their {classifier.num_features} feature names match the "
          "model's small_model_info.json)")
    print(_calls_table(called, examples.labels))
    calls = out / "calls.tsv"
    _write_calls(calls, examples.positions, examples.labels, called, gq, probabilities)

    print("3/3 verify every backend of the bundle against Keras on the same examples")
    report = verify_bundle(DEFAULT_MODEL, bundle, [DEFAULT_EXAMPLES], backends="all")
    print(render_table(report))
    write_json(report, out / "verify.json")
    files = [f"{bundle}/ (bundle)", str(calls), str(out / "verify.json")]
    if importlib.util.find_spec("matplotlib") is not None:
        write_html(report, out / "verify.html")
        files.append(str(out / "verify.html"))
    else:
        print("(verify.html needs matplotlib: pip install 'kerasport[report]')")
    print("\nfiles: " + ", ".join(files))
    print("verdict: " + ("PASS" if report.passed else "FAIL") + " (exit code "
          f"{report.exit_code})")
    return report.exit_code


def _tvm_targets() -> list[str]:
    """["auto"] when the tvm extra is installed and this CPU runs a TVM target, else []."""
    if importlib.util.find_spec("tvm") is None:
        return []
    from kerasport.export.tvm import runnable_targets

    return ["auto"] if runnable_targets() else []


def _calls_table(called: np.ndarray, labels: np.ndarray | None) -> str:
    counts = np.bincount(called, minlength=len(CLASS_NAMES))
    lines = ["  genotype  called" + ("  truth" if labels is not None else "")]
    truth = np.bincount(labels, minlength=len(CLASS_NAMES)) if labels is not None else None
    for index, name in enumerate(CLASS_NAMES):
        line = f"  {name:<8}  {counts[index]:>6}"
        lines.append(line + (f"  {truth[index]:>5}" if truth is not None else ""))
    if labels is not None:
        lines.append(f"  concordance with truth: {(called == labels).mean():.3f}")
    return "\n".join(lines)


def _write_calls(
    path: Path,
    positions: np.ndarray | None,
    labels: np.ndarray | None,
    called: np.ndarray,
    gq: np.ndarray,
    probabilities: np.ndarray,
) -> None:
    """Write the calls table whole or not at all (a sibling temporary file, renamed)."""
    header = "\t".join(["row", "position", "truth", "call", "gq",
                        *(f"p_{name.lower()}" for name in CLASS_NAMES)])
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(header + "\n")
        for row in range(len(called)):
            position = "" if positions is None else str(positions[row])
            truth = "" if labels is None else CLASS_NAMES[labels[row]]
            p = "\t".join(f"{value:.6g}" for value in probabilities[row])
            call = CLASS_NAMES[called[row]]
            handle.write(f"{row}\t{position}\t{truth}\t{call}\t{gq[row]:.2f}\t{p}\n")
