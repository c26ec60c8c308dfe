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

from kerasport.errors import BundleError
from kerasport.manifest import Manifest


class Runner(Protocol):
    """Runs one chunk of rows through a compiled model."""

    def run(self, chunk: np.ndarray) -> np.ndarray: ...


_RUNNER_MODULES = {"onnxruntime": "kerasport.runtime.backends.onnxruntime"}

BACKENDS = tuple(_RUNNER_MODULES)


def open_runner(backend: str, bundle_dir: Path, manifest: Manifest, threads: int) -> Runner:
    """Import the named backend's module and open its runner on the bundle."""
    if backend not in _RUNNER_MODULES:
        raise BundleError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    module = importlib.import_module(_RUNNER_MODULES[backend])
    runner: Runner = module.open_runner(bundle_dir, manifest, threads)
    return runner
