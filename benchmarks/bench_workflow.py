"""Wall time of the cohort workflow (`kerasport workflow verify`) run locally, by core count.

    python benchmarks/bench_workflow.py [--cores 1,2] [--repeats 2] [--regions 8] \
        [--out benchmarks/workflow]

Input: the shared NA12878 reads (../shared/data/deepvariant-testdata) split into --regions
equal regions of their 100 kb, as a sample sheet (featurize -> verify -> merge); without
../shared, the embedded 312 real examples split into files of 64 rows (verify -> merge).
The model is the embedded one, exported once beforehand (not timed). Each run is its own
process in a fresh run directory (nothing to resume), timed from start to exit. For scale,
the same work as single commands is timed too: one featurize of the whole 100 kb and one
verify over all its rows (or one verify over the embedded examples). Prints the table and
writes RESULTS.md and results.json under --out.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "deepvariant-testdata"
BAM = DATA / "NA12878_S1.chr20.10_10p1mb.bam"
REF = DATA / "ucsc.hg19.chr20.unittest.fasta.gz"
CONTIG, START, END = "chr20", 10_000_000, 10_100_000  # the reads' 100 kb, 0-based half-open
EMBEDDED_SHARD_ROWS = 64
# Snakemake samples a job's memory as it starts (its shell) and then every 0.5 s: a job
# shorter than this may end unsampled, and its peak is not reported.
SAMPLED_JOB_SECONDS = 1.0
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def kerasport(*args: str | Path, log: Path) -> float:
    """Run `kerasport ARGS` as its own process; its wall time in seconds (exit 0 required)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "kerasport", *map(str, args)],
                              stdout=out, stderr=subprocess.STDOUT, env=ENV, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise SystemExit(f"kerasport {args[0]} exited {done.returncode}; its log ends:\n{tail}")
    return seconds


def region(start: int, end: int) -> str:
    return f"{CONTIG}:{start + 1:,}-{end:,}"


def shared_reads_input(root: Path, regions: int) -> tuple[list[str], str, list[list[str]]]:
    """Workflow arguments for a sample sheet of `regions` regions, their description, and
    the single commands doing the same work (MODEL and BUNDLE stand for those paths)."""
    edges = np.linspace(START, END, regions + 1).astype(int)
    lines = ["sample\treads\tregion"]
    lines += [f"NA12878\t{BAM}\t{region(a, b)}" for a, b in itertools.pairwise(edges.tolist())]
    sheet = root / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    whole = root / "whole.npz"
    single = [
        ["featurize", str(BAM), "--ref", str(REF), "--region", region(START, END), "-o",
         str(whole)],
        ["verify", "MODEL", "BUNDLE", "--examples", str(whole), "--quiet"],
    ]
    described = (f"shared NA12878 reads, {region(START, END)} in {regions} regions of "
                 f"{(END - START) // regions:,} bp: {regions} featurize + {regions} verify + "
                 "1 merge jobs; single commands: one featurize of the whole 100 kb, one "
                 "verify of its rows")
    return ["--samples", str(sheet), "--ref", str(REF)], described, single


def embedded_input(root: Path) -> tuple[list[str], str, list[list[str]]]:
    from kerasport.assets import DEFAULT_EXAMPLES
    from kerasport.examples import read_examples

    features = read_examples(DEFAULT_EXAMPLES).features
    shards = root / "shards"
    shards.mkdir()
    for index, start in enumerate(range(0, len(features), EMBEDDED_SHARD_ROWS)):
        np.save(shards / f"part{index:02d}.npy", features[start : start + EMBEDDED_SHARD_ROWS])
    count = len(list(shards.iterdir()))
    described = (f"embedded examples ({len(features)} rows) in {count} files of "
                 f"{EMBEDDED_SHARD_ROWS} rows: {count} verify + 1 merge jobs; single command: "
                 "one verify of all rows")
    single = [["verify", "MODEL", "BUNDLE", "--examples", str(DEFAULT_EXAMPLES), "--quiet"]]
    return ["--examples", str(shards / "*.npy")], described, single


def job_usage(run: Path) -> dict[str, list[dict[str, float]]]:
    """Per rule, each job's Snakemake benchmark record (seconds, peak RSS in MB)."""
    usage: dict[str, list[dict[str, float]]] = {}
    for record in sorted((run / "usage").rglob("*.tsv")):
        rule = record.parent.name if record.parent.name != "usage" else record.stem
        with open(record) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        usage.setdefault(rule, []).append({"s": float(row["s"]),
                                           "max_rss_mb": float(row["max_rss"])})
    return usage


def environment() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    versions = {name: metadata.version(name)
                for name in ("kerasport", "snakemake", "tensorflow-cpu", "keras", "onnxruntime")}
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def render(results: dict[str, Any]) -> str:
    """The Markdown report: method, environment and the table of wall times."""
    env, runs = results["environment"], results["runs"]
    lowest = min(int(c) for c in runs)
    best_lowest = min(runs[str(lowest)])
    lines = [
        "# Cohort workflow: local wall time by core count",
        "",
        f"Printed by `python benchmarks/bench_workflow.py` on {env['date']}: {env['cpu']}, "
        f"{env['cores']} cores (load average {env['load_average_before'][0]:.2f} before the "
        f"runs; the machine is shared), {env['platform']}, Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        "",
        f"Input: {results['input']}. Model: the embedded 70-750-750-3 model, exported "
        "beforehand (not timed). Each run: `kerasport workflow verify ... --cores N` in a fresh "
        "run directory, its own process, timed from start to exit (Snakemake's start-up "
        "included). Every job runs one thread.",
        "",
        "Wall time of a whole run:",
        "",
        f"| | runs (s) | best (s) | speed-up of best over --cores {lowest} | 1-min load "
        "average after each run |",
        "|---|---|---|---|---|",
    ]
    for cores, seconds in runs.items():
        shown = ", ".join(f"{s:.1f}" for s in seconds)
        load = ", ".join(f"{a:.2f}" for a in results["load_after"][cores])
        lines.append(f"| workflow, --cores {cores} | {shown} | {min(seconds):.1f} | "
                     f"{best_lowest / min(seconds):.2f}x | {load} |")
    single = results["single_commands_seconds"]
    lines.append(f"| the same work as single commands, one process each | {single:.1f} | "
                 f"{single:.1f} | | |")
    lines += [
        "",
        f"Each job, from Snakemake's benchmark records of the --cores {lowest} runs (under "
        "usage/ in a run directory):",
        "",
        "| rule | jobs per run | mean job (s) | peak memory, largest job (MB) |",
        "|---|---|---|---|",
    ]
    for rule, jobs in results["job_usage"].items():
        per_run = len(jobs) // len(runs[str(lowest)])
        mean = sum(job["s"] for job in jobs) / len(jobs)
        sampled = [job["max_rss_mb"] for job in jobs if job["s"] >= SAMPLED_JOB_SECONDS]
        peak = f"{max(sampled):,.0f}" if sampled else (
            f"not sampled (every job under {SAMPLED_JOB_SECONDS:g} s)"
        )
        lines.append(f"| {rule} | {per_run} | {mean:.1f} | {peak} |")
    lines += ["", "Snakemake samples a job's memory every 0.5 s, so a shorter job ends unsampled."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="1,2", help="core counts to run (default: 1,2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per core count")
    parser.add_argument("--regions", type=int, default=8, help="regions of the shared reads")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "workflow")
    args = parser.parse_args()
    cores = [int(c) for c in args.cores.split(",")]

    from kerasport.assets import DEFAULT_MODEL
    from kerasport.export import export_bundle

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-workflow-") as tmp:
        root = Path(tmp)
        bundle = export_bundle(DEFAULT_MODEL, root / "bundle")
        workflow_input, described, single = (
            shared_reads_input(root, args.regions) if BAM.exists() else embedded_input(root)
        )
        results: dict[str, Any] = {
            "environment": environment(), "input": described, "runs": {}, "load_after": {},
            "job_usage": {},
        }
        print(f"input: {described}", flush=True)
        # Core counts alternate, so a load that comes and goes on a shared machine falls on
        # each of them alike.
        for repeat in range(args.repeats):
            for count in cores:
                run = root / f"run-{count}-{repeat}"
                seconds = kerasport("workflow", "verify", DEFAULT_MODEL, bundle, *workflow_input,
                                    "--out", run, "--cores", str(count),
                                    log=root / f"run-{count}-{repeat}.log")
                seconds = round(seconds, 2)  # printed and stored alike
                results["runs"].setdefault(str(count), []).append(seconds)
                results["load_after"].setdefault(str(count), []).append(os.getloadavg()[0])
                if count == min(cores):
                    for rule, jobs in job_usage(run).items():
                        results["job_usage"].setdefault(rule, []).extend(jobs)
                print(f"--cores {count}, run {repeat + 1}: {seconds:.1f} s (load average "
                      f"{os.getloadavg()[0]:.2f})", flush=True)
        commands = [[str(DEFAULT_MODEL) if w == "MODEL" else str(bundle) if w == "BUNDLE" else w
                     for w in command] for command in single]
        total = sum(kerasport(*command, log=root / "single.log") for command in commands)
        results["single_commands_seconds"] = round(total, 2)
    report = render(results)
    print(report)
    (args.out / "RESULTS.md").write_text(report)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out / 'RESULTS.md'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
