"""A measuring process: `python -m kerasport.bench.worker JOB.json`.

The parent (`kerasport.bench.run`) writes the job, starts this process with one-thread
settings (`engines.single_thread_env`) and reads the JSON it leaves at `job["result"]`.
Tasks:

- `measure`: trace replay and latency by batch size for every engine of a group (or the
  ones `job["engines"]` names; `job["floors"]` false leaves the floors out), on
  `job["threads"]` threads (default 1), and the process' resident and peak memory after.
- `large`: peak resident memory of one engine classifying one very large region.
- `throughput`: trace replay in one of several processes started together; it prints
  `ready`, waits for a line on stdin, then runs, so all processes start at once.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.bench.engines import Engine, open_group
from kerasport.bench.memory import MB, PeakRss, hwm_bytes, rss_bytes
from kerasport.bench.timing import summarize, time_batch, time_calls
from kerasport.bench.workload import Workload

WORKLOAD_FILE = "workload.npz"


def replay(engine: Engine, workload: Workload, settings: dict[str, Any]) -> dict[str, Any]:
    """Time one call per trace region, on the whole trace or on its seeded sample.

    A pilot over the first `pilot_calls` sampled calls estimates the whole trace; engines
    whose estimate fits `full_budget_s` replay every call (measured), the others replay the
    seeded sample and are extrapolated from it (labelled so). Before timing, one call per
    distinct row count warms up shape-specialized code (XLA, tf.function traces).
    """
    calls_total = workload.counts.size
    sample = workload.sample
    warmed = _warm_up(engine, workload, sample)
    pilot = sample[: settings["pilot_calls"]]
    pilot_times = time_calls(engine, [workload.call(int(i)) for i in pilot])
    estimate = float(pilot_times.mean()) * calls_total / 1e9
    if sample.size < calls_total and estimate <= settings["full_budget_s"]:
        chosen = np.arange(calls_total)
        warmed += _warm_up(engine, workload, chosen, skip=set(workload.counts[sample].tolist()))
    else:
        chosen = sample
    times = time_calls(engine, [workload.call(int(i)) for i in chosen])
    rows = int(workload.counts[chosen].sum())
    result: dict[str, Any] = summarize(times, rows)
    measured = chosen.size == calls_total
    result.update(
        mode="measured" if measured else "extrapolated",
        calls_timed=int(chosen.size),
        rows_timed=rows,
        calls_total=int(calls_total),
        rows_total=int(workload.counts.sum()),
        whole_trace_s=result["total_s"] * calls_total / chosen.size,
        warmup_calls=warmed,
        pilot_estimate_s=estimate,
    )
    return result


def _warm_up(
    engine: Engine, workload: Workload, calls: np.ndarray, skip: set[int] | None = None
) -> int:
    first_of_size: dict[int, int] = {}
    for index in calls.tolist():
        size = int(workload.counts[index])
        if size not in first_of_size and size not in (skip or set()):
            first_of_size[size] = index
    for index in first_of_size.values():
        engine.run(engine.prepare(workload.call(index)))
    return len(first_of_size)


def _open(job: dict[str, Any], floors: bool) -> tuple[list[Engine], dict[str, Any]]:
    """The job's engines: its group's, those `job["engines"]` names if it names any."""
    workdir = Path(job["workdir"])
    threads = int(job.get("threads", 1))
    group = open_group(job["group"], Path(job["bundle"]), Path(job["model"]), workdir, floors,
                       threads)
    wanted = job.get("engines")
    return [e for e in group.engines if wanted is None or e.key in wanted], group.info


def measure(job: dict[str, Any]) -> dict[str, Any]:
    workdir = Path(job["workdir"])
    engines, info = _open(job, bool(job.get("floors", True)))
    workload = Workload.load(workdir / WORKLOAD_FILE, with_trace=job["trace"])
    sizes = [int(n) for n in job["batch_sizes"]]
    batch = workload.batch(max(sizes)) if sizes else workload.pool[:0]
    out: dict[str, Any] = {"info": info, "engines": {}, "trace": {}, "latency": {}}
    for engine in engines:
        out["engines"][engine.key] = {"label": engine.label, "kind": engine.kind}
        out["latency"][engine.key] = {}
        if job["trace"]:
            out["trace"][engine.key] = replay(engine, workload, job["replay"])
            _progress(f"{engine.label}: trace replayed")
    for n in sizes:
        timed = time_batch(
            engines,
            batch[:n],
            min_time=job["min_time"],
            min_reps=job["min_reps"],
            warmup=1 if n >= 10_000 else job["warmup"],  # one is enough for a call of seconds
        )
        for key, result in timed.items():
            out["latency"][key][str(n)] = result
        _progress(f"{job['group']}: {n:,} rows timed")
    out["memory"] = {"rss_mb": rss_bytes() / MB, "peak_rss_mb": hwm_bytes() / MB}
    return out


def large(job: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of one call on `rows` rows, and how far it exceeds input plus output."""
    workdir = Path(job["workdir"])
    engine = next(e for e in _open(job, False)[0] if e.key == job["engine"])
    workload = Workload.load(workdir / WORKLOAD_FILE, with_trace=False)
    engine.run(engine.prepare(workload.pool[:2]))  # first-call allocations are not the region's
    gc.collect()
    base = rss_bytes()
    x = workload.block(int(job["rows"]))
    with_input = rss_bytes()
    gc.collect()
    with PeakRss() as peak:
        start = time.perf_counter()
        y = np.asarray(engine.run(engine.prepare(x)))
        seconds = time.perf_counter() - start
    growth = peak.peak - base - x.nbytes - y.nbytes
    return {
        "engine": engine.key,
        "label": engine.label,
        "rows": int(x.shape[0]),
        "seconds": seconds,
        "input_mb": x.nbytes / MB,
        "output_mb": y.nbytes / MB,
        "rss_before_mb": base / MB,
        "rss_with_input_mb": with_input / MB,
        "peak_rss_mb": peak.peak / MB,
        "growth_beyond_arrays_mb": growth / MB,
        "hwm_reset": peak.hwm_reset,
    }


def throughput(job: dict[str, Any]) -> dict[str, Any]:
    workdir = Path(job["workdir"])
    engine = next(e for e in _open(job, False)[0] if e.key == job["engine"])
    workload = Workload.load(workdir / WORKLOAD_FILE)
    chosen = np.arange(workload.counts.size) if job["full"] else workload.sample
    inputs = [workload.call(int(i)) for i in chosen]
    _warm_up(engine, workload, chosen)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for x in inputs:
        engine.run(engine.prepare(x))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "calls": len(inputs), "rows": int(workload.counts[chosen].sum())}


TASKS = {"measure": measure, "large": large, "throughput": throughput}


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    result = TASKS[job["task"]](job)
    Path(job["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
