"""Backend runners: one per execution engine, all behind the same small interface.

A runner takes a checked numeric chunk of shape (n, F) (any real dtype, finite), casts it to
float32 as Keras does, and returns a new C-contiguous (n, C) float32 array of probabilities.
Runners are imported lazily by name so that a process asking for ONNX Runtime never imports
another engine.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kerasport.errors import BackendUnavailableError, BundleError
from kerasport.manifest import Manifest

# The most rows one engine call sees: bounds the engine's working memory (for a 750-wide
# model, about 6 MB of activations) whatever batch size the caller asks for. `__call__` and
# `predict_on_batch`, which have no batch size in Keras, use this chunk too.
MAX_CHUNK_ROWS = 1024
# The most working memory (the manifest's per-example estimate times rows) one engine call
# may need: a DeepVariant-sized row needs 6 kB, so only large examples are held to fewer rows.
MAX_CHUNK_BYTES = 64 << 20

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

    `backend` is a backend name, `auto`, or one artifact's key in the manifest (such as
    `tvm-x86-64-v3`), which opens exactly that artifact: verify and bench test each library.

    `auto` takes TVM when the bundle has a library this CPU can run, the TVM runtime is
    installed, and the manifest marks that library as preferred to ONNX Runtime (export
    timed it at least as fast at 1, 8 and 128 rows on the exporting CPU); ONNX Runtime
    otherwise. Only a backend that is unavailable or not preferred here is skipped:
    a tampered or broken TVM library is an error, never a silent fallback.
    """
    if backend == AUTO:
        if "tvm" in manifest.backends():
            try:
                runner: Runner = _runner_module("tvm").open_auto(bundle_dir, manifest, threads)
                return runner
            except BackendUnavailableError:
                pass
        return open_runner("onnxruntime", bundle_dir, manifest, threads)
    if backend in _RUNNER_MODULES:
        runner = _runner_module(backend).open_runner(bundle_dir, manifest, threads)
        return runner
    artifact = manifest.artifacts.get(backend)
    if artifact is None or artifact.backend not in _RUNNER_MODULES:
        raise BundleError(
            f"unknown backend {backend!r}; choose from {', '.join((AUTO, *BACKENDS))} or an "
            f"artifact of this bundle ({', '.join(manifest.artifacts)})"
        )
    runner = _runner_module(artifact.backend).open_artifact(bundle_dir, manifest, backend, threads)
    return runner


def servable(manifest: Manifest) -> list[str]:
    """Keys of the artifacts this host can serve (its engine is installed, its CPU fits),
    backends in BACKENDS order and each backend's artifacts best first (its `rank`)."""
    keys = [
        key
        for key, artifact in manifest.artifacts.items()
        if artifact.backend in _RUNNER_MODULES
        and _runner_module(artifact.backend).can_serve(artifact)
    ]

    def order(key: str) -> tuple[int, int]:
        artifact = manifest.artifacts[key]
        return BACKENDS.index(artifact.backend), _runner_module(artifact.backend).rank(artifact)

    return sorted(keys, key=order)


def _runner_module(backend: str) -> Any:
    return importlib.import_module(_RUNNER_MODULES[backend])
