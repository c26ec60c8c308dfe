"""Serve an exported bundle with the Keras calling convention, without TensorFlow.

    classifier = kerasport.runtime.load("bundle/")
    probabilities = kerasport.runtime.classify(classifier, examples, batch_size=128)

Importing this package loads numpy only; the backend's engine is imported by `load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kerasport.errors import BundleError
from kerasport.manifest import is_partial_bundle, read_manifest
from kerasport.runtime.backends import AUTO, BACKENDS, open_runner, servable
from kerasport.runtime.classifier import Classifier
from kerasport.runtime.inputs import positive_int

__all__ = [
    "AUTO",
    "BACKENDS",
    "Classifier",
    "available_backends",
    "classify",
    "load",
    "load_partial",
    "servable_artifacts",
]


def load(bundle_dir: str | Path, backend: str = AUTO, threads: int = 1) -> Classifier:
    """Open a bundle on one backend after checking its manifest and artifact checksums.

    `backend="auto"` serves from TVM when the bundle has a library this CPU runs and the
    `tvm` extra is installed, else from ONNX Runtime; `classifier.backend` says which.
    `threads` defaults to 1 because DeepVariant runs one process per core. The directory an
    export is still writing (or was killed writing) is refused: it was never checked.
    """
    if is_partial_bundle(bundle_dir):
        raise BundleError(
            f"{bundle_dir} is the directory of an unfinished export (still running, or killed): "
            "load the bundle it is renamed to when done, or run kerasport export again"
        )
    return load_partial(bundle_dir, backend, threads)


def load_partial(bundle_dir: str | Path, backend: str = AUTO, threads: int = 1) -> Classifier:
    """`load` without the unfinished-export refusal: only for export's own check of the
    bundle it is writing, before renaming it into place."""
    threads = positive_int(threads, "threads")
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    runner = open_runner(backend, bundle, manifest, threads)
    return Classifier(
        runner,
        manifest.inputs,
        manifest.outputs,
        manifest.row_bytes or 1,
        manifest.artifacts[runner.artifact].backend,
        runner.artifact,
        manifest.feature_names,
    )


def available_backends(bundle_dir: str | Path) -> list[str]:
    """Backends that have an artifact in the bundle (whether this host can run them or not)."""
    backends = read_manifest(bundle_dir).backends()
    return [name for name in BACKENDS if name in backends]


def servable_artifacts(bundle_dir: str | Path) -> list[str]:
    """Keys of the bundle's artifacts this host can serve, each a valid `load` backend.

    ONNX Runtime's first, then each TVM library this CPU runs (widest vectors first): verify
    and bench test every one of them, not only the one `auto` would pick.
    """
    return servable(read_manifest(bundle_dir))


def classify(classifier: Any, examples: Any, batch_size: int) -> np.ndarray:
    """DeepVariant's `small_model.inference.classify`: predict in chunks of `batch_size`."""
    result: np.ndarray = classifier.predict(examples, batch_size=batch_size, verbose=0)
    return result
