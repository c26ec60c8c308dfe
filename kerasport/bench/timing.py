"""Per-call timing: each call timed alone with perf_counter_ns, summarized by its percentiles.

Per-call times (not one wall time over a loop) are kept because the question is what one
classify() costs a region, and its tail matters as much as its mean. Preparation that a real
caller would not pay per call (the floors' binding) is done outside the timed span.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasport.bench.engines import Engine


def time_calls(engine: Engine, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Nanoseconds of each call of `engine.run` on each input, in order."""
    times = np.empty(len(inputs), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, x in enumerate(inputs):
        handle = engine.prepare(x)
        start = clock()
        engine.run(handle)
        times[i] = clock() - start
    return times


def summarize(times_ns: np.ndarray, rows: int) -> dict[str, float]:
    """Mean, median and 99th percentile per call (µs), rows per second and total seconds."""
    total_s = float(times_ns.sum()) / 1e9
    return {
        "mean_us": float(times_ns.mean()) / 1e3,
        "p50_us": float(np.percentile(times_ns, 50)) / 1e3,
        "p99_us": float(np.percentile(times_ns, 99)) / 1e3,
        "rows_per_s": rows / total_s if total_s > 0 else float("nan"),
        "total_s": total_s,
    }


def time_batch(
    engines: Sequence[Engine],
    x: np.ndarray,
    min_time: float,
    min_reps: int,
    max_reps: int = 10_000,
    warmup: int = 2,
    turn_s: float = 0.02,
) -> dict[str, dict[str, Any]]:
    """Time one batch on several engines, taking turns in short blocks, until each is done.

    An engine is done after `min_reps` calls and `min_time` seconds of calls (or `max_reps`
    calls). Each turn is a block of about `turn_s` seconds of back-to-back calls of one
    engine: within a block caches are as warm as in a tight loop, so the figures are each
    engine's own steady cost, and because the engines alternate, a burst of load from
    elsewhere on a shared machine lands on all of them alike, keeping their ratios (the
    adapter's overhead over the floor) meaningful. The first `warmup` calls (compilation,
    first-shape tracing) are not counted; the last of them sizes the blocks.
    """
    clock = time.perf_counter_ns
    block: dict[str, int] = {}
    for engine in engines:
        elapsed = 0
        for _ in range(max(warmup, 1)):
            handle = engine.prepare(x)
            start = clock()
            engine.run(handle)
            elapsed = clock() - start
        block[engine.key] = max(1, min(1000, int(turn_s * 1e9 / max(elapsed, 1))))
    times: dict[str, list[int]] = {engine.key: [] for engine in engines}
    spent = dict.fromkeys(times, 0)
    running = list(engines)
    while running:
        for engine in list(running):
            record = times[engine.key]
            for _ in range(block[engine.key]):
                handle = engine.prepare(x)
                start = clock()
                engine.run(handle)
                elapsed = clock() - start
                record.append(elapsed)
                spent[engine.key] += elapsed
                reps = len(record)
                done = reps >= min_reps and spent[engine.key] >= min_time * 1e9
                if reps >= max_reps or done:
                    running.remove(engine)
                    break
    results = {}
    for engine in engines:
        per = np.asarray(times[engine.key], dtype=np.int64)
        result: dict[str, Any] = summarize(per, x.shape[0] * per.size)
        result["reps"] = int(per.size)
        if engine.flops_per_row is not None:
            result["gflops"] = engine.flops_per_row * x.shape[0] / (result["p50_us"] * 1e3)
        results[engine.key] = result
    return results
