"""Cold start of a fresh install: the wheel with only the `tvm` extra, as a user installs it.

    python benchmarks/bench_cold_start.py [--out benchmarks/cold-start] [--runs 7]

Builds kerasport's wheel and installs it into a new venv with `[tvm]` from the package index:
the newest versions pyproject's ranges allow, no lock, what a user gets on the day. A second
venv is the same install with ml_dtypes 0.7.0 forced in (the release the `tvm` extra's cap
keeps out: tvm-ffi imports ml_dtypes on every library load). Exports the embedded model with a
TVM library for this CPU, then times the cold start (interpreter, import, load, first call)
of ONNX Runtime and TVM in each venv, every run a fresh single-threaded process, and prints
the table, the versions that were installed, and the goal (<= 0.35 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 0.35
ENGINES = ("kerasport-onnxruntime", "kerasport-tvm")
VERSIONS_OF = ("numpy", "onnxruntime", "apache-tvm-ffi", "ml_dtypes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "cold-start")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per figure")
    args = parser.parse_args()

    from kerasport.assets import DEFAULT_MODEL
    from kerasport.bench.process_cost import cold_start
    from kerasport.export import export_bundle
    from kerasport.manifest import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        venvs = {
            "fresh install": fresh_venv(work / "fresh", wheel, []),
            "same, ml_dtypes 0.7.0 forced": fresh_venv(work / "mld07", wheel, ["ml_dtypes==0.7.0"]),
        }
        bundle = export_bundle(DEFAULT_MODEL, work / "bundle", tvm_targets=["auto"])
        manifest = read_manifest(bundle)
        tvm_key = next(k for k, a in manifest.artifacts.items() if a.backend == "tvm")
        results = {}
        for name, python in venvs.items():
            results[name] = {
                "versions": installed_versions(python),
                "cold_start": {
                    engine: cold_start(
                        engine.replace("kerasport-tvm", f"kerasport-{tvm_key}"),
                        bundle,
                        DEFAULT_MODEL,
                        manifest.num_features,
                        runs=args.runs,
                        python=str(python),
                    )
                    for engine in ENGINES
                },
            }
    text = table(results, tvm_key)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "COLD_START.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def build_wheel(work: Path) -> Path:
    """kerasport's wheel from this checkout, built as `pip wheel` builds it for a user."""
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)])
    return next(dist.glob("kerasport-*.whl"))


def fresh_venv(where: Path, wheel: Path, extra: list[str]) -> Path:
    """A new venv with `wheel[tvm]` (and `extra` requirements after it); its python."""
    _run([sys.executable, "-m", "venv", str(where)])
    python = where / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[tvm]"])
    if extra:
        _run([str(python), "-m", "pip", "install", "-q", *extra])
    return python


def installed_versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(python), "-c", code, *VERSIONS_OF], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def table(results: dict, tvm_key: str) -> str:
    """Markdown: median cold start per venv and engine, its stages, and the goal."""
    lines = [
        f"| install | versions | engine | cold start (median) | import | load | first call | "
        f"<= {GOAL_S} s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        for engine, figure in result["cold_start"].items():
            stages = figure["stages_s"]
            label = engine.replace("kerasport-tvm", f"kerasport-{tvm_key}")
            lines.append(
                f"| {name} | {versions} | {label} | {figure['cold_start_s']:.3f} s | "
                f"{stages['import']:.3f} s | {stages['load']:.3f} s | "
                f"{stages['first_call']:.4f} s | "
                f"{'met' if figure['cold_start_s'] <= GOAL_S else '**missed**'} |"
            )
    runs = next(iter(next(iter(results.values()))["cold_start"].values()))["runs"]
    lines.append("")
    lines.append(
        f"Median of {runs} fresh processes each (one more discarded first to warm the page "
        "cache); the cold start also counts the interpreter's own start."
    )
    return "\n".join(lines) + "\n"


def _run(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr}")


if __name__ == "__main__":
    main()
