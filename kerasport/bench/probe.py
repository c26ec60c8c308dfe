"""Cold-start probe: `python -m kerasport.bench.probe ENGINE BUNDLE MODEL FIRST [THREADS]`.

Runs in a fresh process and does what a production process does first: import, load the
model, classify its first input. FIRST is that input: a number of features (2 rows of ones,
one small DeepVariant region) or a .npy of examples of the model's input spec (a tile of a
segmentation model, token indices), read inside the first-call stage as a job reads its
first input. THREADS (default 1) is the engine's compute threads. It prints one JSON line
(stage times, resident memory after each stage, which heavy modules got imported) as soon as
the first call returns, so the parent can stamp the cold start without counting interpreter
teardown. Only the standard library is imported before the timed stages; ENGINE decides what
is imported after:

- `python`: numpy only, the floor any Python process pays;
- `kerasport-BACKEND`: kerasport.runtime and that backend's engine (never TensorFlow);
- `keras-tf` / `keras-jax`: keras on the backend set by KERAS_BACKEND in the environment.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import importlib  # noqa: E402  (after the clock starts, on purpose)
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HEAVY_MODULES = ("tensorflow", "jax", "keras", "torch", "onnxruntime")


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(engine: str, bundle: str, model: str, first: str, threads: int = 1) -> dict[str, Any]:
    stages: dict[str, float] = {}
    rss: dict[str, float] = {"start": _rss_mb()}
    mark = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        stages[name] = now - mark
        rss[name] = _rss_mb()
        mark = now

    import numpy as np

    def first_input() -> Any:
        if first.isdigit():
            return np.ones((2, int(first)), np.int64)
        return np.load(first, allow_pickle=False)

    if engine == "python":
        stage("import")
        stage("load")
        stage("first_call")
    elif engine.startswith("kerasport-"):
        backend = engine.split("-", 1)[1]
        runtime = importlib.import_module("kerasport.runtime")
        manifest = importlib.import_module("kerasport.manifest").read_manifest(bundle)
        importlib.import_module(f"kerasport.runtime.backends.{manifest.artifacts[backend].backend}")
        stage("import")
        classifier = runtime.load(bundle, backend=backend, threads=threads)
        stage("load")
        runtime.classify(classifier, first_input(), 128)
        stage("first_call")
    else:
        keras = importlib.import_module("keras")
        if engine == "keras-tf":
            tf = importlib.import_module("tensorflow")
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        stage("import")
        # Keras' own load, as a production process pays it: bench.run checked the file first.
        model_ = keras.saving.load_model(model, compile=False, safe_mode=True)
        stage("load")
        model_.predict(first_input(), batch_size=128, verbose=0)
        stage("first_call")
    return {
        "in_process_s": time.perf_counter() - _T0,
        "stages_s": stages,
        "rss_mb": rss,
        "imported": [name for name in HEAVY_MODULES if name in sys.modules],
    }


if __name__ == "__main__":
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    result = run(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], threads)
    print(json.dumps(result), flush=True)
