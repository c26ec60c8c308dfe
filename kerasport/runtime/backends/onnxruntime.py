"""ONNX Runtime runner, tuned for many tiny calls from many single-threaded processes."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kerasport.errors import BundleError
from kerasport.manifest import Manifest, checked_artifact_path

# Chunks up to this many rows run through a binding kept per row count (at most ~2.4 MB for
# a 70-feature model); DeepVariant's per-region calls have 3.5 rows on average.
BOUND_MAX_ROWS = 128


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


class _BoundSlot:
    """Input and output buffers of one row count, bound to the session once."""

    def __init__(self, session: ort.InferenceSession, manifest: Manifest, rows: int) -> None:
        self.inputs = np.empty((rows, manifest.num_features), dtype=np.float32)
        self.outputs = np.empty((rows, manifest.num_classes), dtype=np.float32)
        self.binding = session.io_binding()
        self.binding.bind_input(
            manifest.input_name, "cpu", 0, np.float32, self.inputs.shape, self.inputs.ctypes.data
        )
        self.binding.bind_output(
            manifest.output_name, "cpu", 0, np.float32, self.outputs.shape,
            self.outputs.ctypes.data,
        )


class OnnxRuntimeRunner:
    """Holds one session; small chunks reuse pre-bound buffers, large ones use `run`.

    For a few rows, `session.run` with a dict spends about as long wrapping the input and
    allocating and converting the output as the model spends computing (measured in
    benchmarks/RESULTS.md). Casting straight into a bound input buffer and copying the bound
    output removes that. Bindings are per thread, so threads may share a runner.
    """

    def __init__(self, model_path: Path, manifest: Manifest, threads: int) -> None:
        try:
            self._session = ort.InferenceSession(
                str(model_path), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for bad models
            raise BundleError(f"ONNX Runtime cannot load {model_path}: {exc}") from exc
        self._manifest = manifest
        self._output_names = [manifest.output_name]
        self._local = threading.local()

    def run(self, chunk: np.ndarray) -> np.ndarray:
        rows = chunk.shape[0]
        if rows > BOUND_MAX_ROWS:
            inputs = np.ascontiguousarray(chunk, dtype=np.float32)
            result: np.ndarray = self._session.run(
                self._output_names, {self._manifest.input_name: inputs}
            )[0]
            return result
        slot = self._slot(rows)
        np.copyto(slot.inputs, chunk, casting="unsafe")  # the same rounding as astype
        self._session.run_with_iobinding(slot.binding)
        return slot.outputs.copy()

    def _slot(self, rows: int) -> _BoundSlot:
        try:
            slots: dict[int, _BoundSlot] = self._local.slots
        except AttributeError:
            slots = self._local.slots = {}
        slot = slots.get(rows)
        if slot is None:
            slot = slots[rows] = _BoundSlot(self._session, self._manifest, rows)
        return slot


def open_runner(bundle_dir: Path, manifest: Manifest, threads: int) -> OnnxRuntimeRunner:
    path = checked_artifact_path(bundle_dir, manifest, "onnxruntime")
    return OnnxRuntimeRunner(path, manifest, threads)
