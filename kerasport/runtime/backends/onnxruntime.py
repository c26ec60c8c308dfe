"""ONNX Runtime runner, tuned for many tiny calls from many single-threaded processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from kerasport.errors import BundleError
from kerasport.manifest import Manifest, checked_artifact_path


def session_options(threads: int) -> ort.SessionOptions:
    """Explicit thread counts and no spinning: 16 processes share one machine.

    ONNX Runtime's default pins one busy-waiting thread per core, which makes 16 processes
    fight each other; one thread that sleeps when idle is what a per-region caller wants.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxRuntimeRunner:
    """Holds one session and the names it is called with, resolved once at load."""

    def __init__(self, model_path: Path, manifest: Manifest, threads: int) -> None:
        try:
            self._session = ort.InferenceSession(
                str(model_path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for bad models
            raise BundleError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        self._output_names = [manifest.output_name]
        self._input_name = manifest.input_name

    def run(self, chunk: np.ndarray) -> np.ndarray:
        # `run` with a plain dict measured as fast as IOBinding and OrtValue paths for
        # the 1-128 row calls this serves (benchmarks/bench_latency.py).
        result: np.ndarray = self._session.run(self._output_names, {self._input_name: chunk})[0]
        return result


def open_runner(bundle_dir: Path, manifest: Manifest, threads: int) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(
        checked_artifact_path(bundle_dir, manifest, "onnxruntime"), manifest, threads
    )
