"""ONNX Runtime runner, tuned for many tiny calls from many single-threaded processes."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from kerasport.errors import BundleError
from kerasport.manifest import INPUT_DTYPES, Artifact, Manifest, artifacts_of, checked_bytes

# Chunks up to this many rows run through a binding kept per row count (at most ~2.4 MB for
# a 70-feature model); DeepVariant's per-region calls have 3.5 rows on average. Large
# examples get bindings only while one slot stays within BOUND_MAX_BYTES.
BOUND_MAX_ROWS = 128
BOUND_MAX_BYTES = 4 << 20
_ONNX_TYPES = {name: f"tensor({name})" for name in INPUT_DTYPES} | {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
}


def session_options(threads: int) -> ort.SessionOptions:
    """Explicit thread counts and no spinning: 16 processes share one machine.

    ONNX Runtime's default pins one busy-waiting thread per core, which makes 16 processes
    fight each other; one thread that sleeps when idle is what a per-region caller wants.
    The CPU memory arena stays on (repeated calls then allocate nothing): it keeps what it
    grows, but no call here ever runs more than 1,024 rows, so it never grows past one such
    chunk's working set (tests/test_runtime.py measures the whole process).
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
        dtype = np.dtype(manifest.inputs.dtype)
        self.inputs = np.empty((rows, *manifest.inputs.shape), dtype=dtype)
        self.outputs = np.empty((rows, *manifest.outputs.shape), dtype=np.float32)
        self.binding = session.io_binding()
        self.binding.bind_input(
            manifest.input_name, "cpu", 0, dtype, self.inputs.shape, self.inputs.ctypes.data
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

    def __init__(
        self, model: bytes, manifest: Manifest, threads: int, artifact: str, where: str
    ) -> None:
        try:
            self._session = ort.InferenceSession(
                model, session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types for bad models
            raise BundleError(f"ONNX Runtime cannot load {where}: {exc}") from exc
        check_signature(self._session, manifest, where)
        self.artifact = artifact
        self._manifest = manifest
        self._dtype = np.dtype(manifest.inputs.dtype)
        io_bytes = self._dtype.itemsize * manifest.num_features + 4 * math.prod(
            manifest.outputs.shape
        )
        self._bound_rows = min(BOUND_MAX_ROWS, BOUND_MAX_BYTES // io_bytes)
        self._one_per_call = rows_per_call(manifest.artifacts[artifact], where) == 1
        self._output_names = [manifest.output_name]
        self._local = threading.local()

    def run(self, chunk: np.ndarray) -> np.ndarray:
        rows = chunk.shape[0]
        if self._one_per_call and rows > 1:
            return np.concatenate([self.run(chunk[i : i + 1]) for i in range(rows)])
        if rows > self._bound_rows:
            inputs = np.ascontiguousarray(chunk, dtype=self._dtype)
            result: np.ndarray = self._session.run(
                self._output_names, {self._manifest.input_name: inputs}
            )[0]
            return result
        slot = self._slot(rows)
        slot.inputs[...] = chunk  # the same rounding as astype; faster than np.copyto
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


def rows_per_call(artifact: Artifact, where: str) -> int | None:
    """The artifact's `rows_per_call` (1: a graph whose bits depend on how many examples
    share a call, found at export), or None: any number of rows."""
    value = artifact.details.get("rows_per_call")
    if value is not None and (value != 1 or isinstance(value, bool)):
        raise BundleError(f"{where}: malformed manifest: rows_per_call must be 1, got {value!r}")
    return value


def check_signature(session: ort.InferenceSession, manifest: Manifest, where: str) -> None:
    """Refuse a model whose inputs or outputs are not the ones the manifest promises.

    Without this a mismatched bundle loads and then fails on every call with an error that
    blames the caller's input, or returns the wrong number of classes.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected = [
        ("input count", 1, len(inputs)),
        ("output count", 1, len(outputs)),
        ("input name", manifest.input_name, inputs[0].name if inputs else None),
        ("output name", manifest.output_name, outputs[0].name if outputs else None),
        ("input dtype", _ONNX_TYPES[manifest.inputs.dtype], inputs[0].type if inputs else None),
        ("output dtype", "tensor(float)", outputs[0].type if outputs else None),
        _shape_check("input", "feature", manifest.inputs.shape, inputs),
        _shape_check("output", "class", manifest.outputs.shape, outputs),
    ]
    for what, promised, actual in expected:
        if promised != actual:
            raise BundleError(
                f"{where} does not match its manifest: {what} is {actual!r} in the model but "
                f"{promised!r} in the manifest"
            )


def _shape_check(
    role: str, unit: str, promised: tuple[int, ...], args: list[Any]
) -> tuple[str, Any, Any]:
    """(what, promised, actual) for one example's shape: a (batch, width) signature is
    compared as its width ("feature count", "class count"), any other as a shape. An axis
    the graph leaves symbolic is taken as promised: only fixed sizes can disagree."""
    if not args:
        return f"{role} shape", promised, None
    shape = list(args[0].shape)
    if len(shape) != len(promised) + 1:
        return f"{role} shape", promised, tuple(shape)
    actual = tuple(
        d if isinstance(d, int) else p for d, p in zip(shape[1:], promised, strict=True)
    )
    if len(promised) == 1:
        return f"{unit} count", promised[0], actual[0]
    return f"{role} shape", promised, actual


def can_serve(artifact: Artifact) -> bool:
    """ONNX Runtime is the runtime's own dependency: it serves every ONNX artifact."""
    return True


def rank(artifact: Artifact) -> int:
    """A bundle holds one ONNX model: nothing to order."""
    return 0


def open_artifact(
    bundle_dir: Path, manifest: Manifest, key: str, threads: int
) -> OnnxRuntimeRunner:
    artifact = manifest.artifacts[key]
    model = checked_bytes(bundle_dir, artifact)
    return OnnxRuntimeRunner(model, manifest, threads, key, str(bundle_dir / artifact.file))


def open_runner(bundle_dir: Path, manifest: Manifest, threads: int) -> OnnxRuntimeRunner:
    key = next(iter(artifacts_of(manifest, "onnxruntime")))
    return open_artifact(bundle_dir, manifest, key, threads)
