"""Backend runners: one per execution engine, all behind the same small interface.

A runner takes a checked numeric chunk of shape (n, F) (any real dtype, finite), casts it to
float32 as Keras does, and returns a new C-contiguous (n, C) float32 array of probabilities.
Runners are imported lazily by name so that a process asking for ONNX Runtime never imports
another engine.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from kerasport.errors import BackendUnavailableError, BundleError
from kerasport.manifest import Manifest


class Runner(Protocol):
    """Runs one chunk of rows through a compiled model."""

    artifact: str  # the manifest key of the artifact it serves

    def run(self, chunk: np.ndarray) -> np.ndarray: ...


_RUNNER_MODULES = {
    "onnxruntime": "kerasport.runtime.backends.onnxruntime",
    "tvm": "kerasport.runtime.backends.tvm",
}

BACKENDS = tuple(_RUNNER_MODULES)
AUTO = "auto"


def open_runner(backend: str, bundle_dir: Path, manifest: Manifest, threads: int) -> Runner:
    """Import the named backend's module and open its runner on the bundle.

    `auto` takes TVM when the bundle has a library this CPU can run and the TVM runtime is
    installed (TVM's hand-scheduled kernels beat ONNX Runtime on this model family, see
    benchmarks/RESULTS.md), and ONNX Runtime otherwise. Only a backend that is unavailable
    here is skipped: a tampered or broken TVM library is an error, never a silent fallback.
    """
    if backend == AUTO:
        if "tvm" in manifest.backends():
            try:
                return open_runner("tvm", bundle_dir, manifest, threads)
            except BackendUnavailableError:
                pass
        return open_runner("onnxruntime", bundle_dir, manifest, threads)
    if backend not in _RUNNER_MODULES:
        raise BundleError(
            f"unknown backend {backend!r}; choose from {', '.join((AUTO, *BACKENDS))}"
        )
    module = importlib.import_module(_RUNNER_MODULES[backend])
    runner: Runner = module.open_runner(bundle_dir, manifest, threads)
    return runner
