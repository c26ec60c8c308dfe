"""What a process costs, measured from outside it: cold start, resident memory, peak memory,
and throughput of several processes at once.

Each measurement starts fresh processes (`probe.py`, `worker.py`) with one-thread settings,
so a number never includes a library that the measured engine would not import itself.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kerasport.bench import BenchError
from kerasport.bench.engines import thread_env


def group_of(engine: str) -> str:
    """The measuring-process group an engine key belongs to."""
    if engine.startswith("kerasport-"):
        return "kerasport"
    if engine.startswith("keras-tf"):
        return "keras-tf"
    if engine.startswith("keras-jax"):
        return "keras-jax"
    return "python"


def run_worker(job: dict[str, Any], workdir: Path, timeout: float | None = None) -> Any:
    """Run one `worker.py` job in a fresh process and return the JSON it wrote."""
    job_file, result_file = _job_files(job, workdir)
    env = thread_env(job["group"], int(job.get("threads", 1)))
    proc = subprocess.run(
        [sys.executable, "-m", "kerasport.bench.worker", str(job_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 or not result_file.is_file():
        raise BenchError(
            f"the {job['task']} measurement of {job['group']} failed (exit {proc.returncode}):\n"
            + _tail(proc.stderr)
        )
    return json.loads(result_file.read_text())


def _job_files(job: dict[str, Any], workdir: Path) -> tuple[Path, Path]:
    handle, name = tempfile.mkstemp(prefix=f"{job['task']}-", suffix=".json", dir=workdir)
    job_file = Path(name)
    result_file = job_file.with_suffix(".result.json")
    with open(handle, "w") as out:
        json.dump({**job, "result": str(result_file), "workdir": str(workdir)}, out)
    return job_file, result_file


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def cold_start(
    engine: str,
    bundle: Path,
    model: Path,
    first: int | Path,
    runs: int,
    discard: int = 1,
    python: str = sys.executable,
    threads: int = 1,
) -> dict[str, Any]:
    """Median over `runs` fresh processes of: start -> imported -> loaded -> first call.

    The first call classifies `first`: an int is a number of features (2 rows of ones, a
    small DeepVariant region), a path a .npy of examples of the model's input spec.
    The first `discard` runs only warm the page cache, so the figure is a process start on a
    machine that has the files in memory, as every make_examples shard but the first sees.
    `python` is the interpreter to start: another environment's, to measure a fresh install.
    `threads` is the engine's compute threads (`engines.thread_env`).
    """
    command = [
        python,
        "-m",
        "kerasport.bench.probe",
        engine,
        str(bundle),
        str(model),
        str(first),
        str(threads),
    ]
    env = thread_env(group_of(engine), threads)
    records = []
    for attempt in range(discard + runs):
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        wall = time.perf_counter() - start
        _, stderr = proc.communicate()
        if proc.returncode != 0 or not line.strip():
            raise BenchError(f"cold-start probe of {engine} failed:\n{_tail(stderr)}")
        record = json.loads(line)
        record["wall_s"] = wall
        if attempt >= discard:
            records.append(record)
    best = min(records, key=lambda r: r["wall_s"])
    median = statistics.median(r["wall_s"] for r in records)
    typical = min(records, key=lambda r: abs(r["wall_s"] - median))
    stages = dict(typical["stages_s"])
    stages["interpreter"] = typical["wall_s"] - sum(stages.values())
    return {
        "runs": runs,
        "discarded": discard,
        "cold_start_s": median,
        "cold_start_min_s": best["wall_s"],
        "stages_s": stages,
        "rss_mb": typical["rss_mb"],
        "imported": typical["imported"],
    }


def large_region(engine: str, rows: int, workdir: Path, common: dict[str, Any]) -> Any:
    """Peak memory of one engine on one `rows`-row region, in a process of its own."""
    job = {**common, "task": "large", "group": group_of(engine), "engine": engine, "rows": rows}
    return run_worker(job, workdir)


def throughput(
    engine: str, processes: int, full: bool, workdir: Path, common: dict[str, Any]
) -> dict[str, Any]:
    """Total rows per second of `processes` processes replaying the trace at the same time.

    Each process loads its own classifier on one thread, warms up, says `ready`; all are
    released together and the span from release to the last one's end is the wall time.
    """
    job = {**common, "task": "throughput", "group": group_of(engine), "engine": engine}
    job["full"] = full
    env = thread_env(job["group"], int(job.get("threads", 1)))
    procs = []
    for _ in range(processes):
        job_file, result_file = _job_files(job, workdir)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kerasport.bench.worker", str(job_file)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((proc, result_file))
    for proc, _ in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            for other, _ in procs:
                other.kill()
            _, stderr = proc.communicate()
            raise BenchError(f"throughput worker for {engine} failed:\n{_tail(stderr)}")
    start = time.perf_counter()
    for proc, _ in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc, result_file in procs:
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"throughput worker for {engine} failed:\n{_tail(stderr)}")
        results.append(json.loads(result_file.read_text()))
    span = time.perf_counter() - start  # includes exits; the slowest process' own clock does not
    slowest = max(r["wall_s"] for r in results)
    rows = sum(r["rows"] for r in results)
    return {
        "processes": processes,
        "calls_per_process": results[0]["calls"],
        "rows_per_process": results[0]["rows"],
        "span_s": span,
        "slowest_s": slowest,
        "rows_per_s": rows / slowest,
        "per_process_rows_per_s": [r["rows"] / r["wall_s"] for r in results],
    }
