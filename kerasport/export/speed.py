"""Time each TVM library against ONNX Runtime on the exporting CPU: the figures `auto` obeys.

Why measure at export: whether a hand-scheduled library beats ONNX Runtime depends on the
model's shapes and on the CPU (an AVX2 library lost from 5 rows up on DeepVariant's model;
a wide model at many rows is compute-bound in both). So export times both, the way
DeepVariant calls them (`classify(classifier, x, 128)`, one thread), at a few row counts,
records the figures in the library's manifest entry, and marks it `preferred` only where it
was at least as fast at every one: `load(backend="auto")` serves it then and ONNX Runtime
otherwise, while an explicit backend still serves it. One library serves all of a
classifier's calls, so results never depend on how rows are chunked. A library this CPU
cannot run has no figures and is not preferred.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.cpu import host_cpu_name

SPEED_ROWS = (1, 8, 128)
ROUNDS = 5  # rounds alternate the two engines, so a burst of load hits both
ROUND_S = 0.02  # each engine's share of a round
BATCH = 128  # DeepVariant's classify batch size


def measure_libraries(bundle: Path, keys: list[str], probe: np.ndarray) -> dict[str, Any]:
    """Per library key: {"cpu", "rows", "onnxruntime_us", "tvm_us"}, medians per call."""
    from kerasport import runtime

    if not keys:
        return {}
    ort = runtime.load_partial(bundle, backend="onnxruntime", threads=1)
    figures = {}
    for key in keys:
        tvm = runtime.load_partial(bundle, backend=key, threads=1)
        ort_us, tvm_us = [], []
        for rows in SPEED_ROWS:
            x = probe[np.arange(rows) % len(probe)]
            medians = _medians([ort, tvm], x)
            ort_us.append(round(medians[0], 2))
            tvm_us.append(round(medians[1], 2))
        figures[key] = {
            "cpu": host_cpu_name(),
            "rows": list(SPEED_ROWS),
            "onnxruntime_us": ort_us,
            "tvm_us": tvm_us,
        }
    return figures


def faster(figures: dict[str, Any] | None) -> bool:
    """Whether the library was at least as fast as ONNX Runtime at every row count timed."""
    if not figures:
        return False
    pairs = zip(figures["tvm_us"], figures["onnxruntime_us"], strict=True)
    return all(tvm <= ort for tvm, ort in pairs)


def _medians(classifiers: list[Any], x: np.ndarray) -> list[float]:
    """Median µs per call of each classifier on x, over alternating rounds."""
    from kerasport.runtime import classify

    counts = []
    for classifier in classifiers:
        classify(classifier, x, BATCH)  # warm: this row count's buffers
        start = time.perf_counter()
        classify(classifier, x, BATCH)
        once = max(time.perf_counter() - start, 1e-7)
        counts.append(max(1, int(ROUND_S / once)))
    samples: list[list[float]] = [[] for _ in classifiers]
    for _ in range(ROUNDS):
        for index, (classifier, count) in enumerate(zip(classifiers, counts, strict=True)):
            start = time.perf_counter()
            for _ in range(count):
                classify(classifier, x, BATCH)
            samples[index].append((time.perf_counter() - start) / count * 1e6)
    return [statistics.median(s) for s in samples]
