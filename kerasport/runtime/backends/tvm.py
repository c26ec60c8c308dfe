"""TVM runner: calls the kernels of a Dense-graph library without importing the compiler.

`import tvm` loads the compiler library (about 260 MB on disk, 1.8 s, 190 MB resident). A
serving process needs none of it: this module loads TVM's small runtime library
(libtvm_runtime.so from the installed apache-tvm wheel, found without executing the `tvm`
package) with RTLD_GLOBAL, then loads the model library through `tvm_ffi` alone.

Why the careful buffers: the kernels assume 64-byte aligned data and nothing checks it (a
misaligned array segfaults), and wrapping a numpy array as a TVM tensor costs more than a
1-row kernel call. So each thread owns aligned buffers per row count, wrapped once, and a call
only casts the input into place, calls the kernel, and copies the output out.

Threads: the kernels contain no parallel loops, so TVM's thread pool is never started and a
call runs on the caller's thread; the `threads` that `load` passes every backend does not
apply here. Threads may share one runner (buffers are per thread).
"""

from __future__ import annotations

import ctypes
import importlib.util
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.cpu import host_cpu_features, missing_features
from kerasport.errors import BackendUnavailableError, BundleError
from kerasport.manifest import Artifact, Manifest, artifacts_of, checked_bytes
from kerasport.runtime.backends import MAX_CHUNK_BYTES, MAX_CHUNK_ROWS
from kerasport.runtime.backends.tvm_plan import (
    BLOCK_ROWS,
    KernelPlan,
    parse_plan,
    required_cpu_features,
)

INSTALL_HINT = "pip install 'kerasport[tvm]'"
ALIGN_BYTES = 64
_RUNTIME_LOCK = threading.Lock()
_RUNTIME: ctypes.CDLL | None = None
_LOADS = 0


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """A C-contiguous array whose data starts on a 64-byte boundary (over-allocate, slice)."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(count * dt.itemsize + ALIGN_BYTES, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN_BYTES
    return raw[start : start + count * dt.itemsize].view(dt).reshape(shape)


def find_tvm_runtime_library() -> Path:
    """libtvm_runtime.so of the installed apache-tvm, located without importing `tvm`.

    find_spec on a top-level package reads its location but does not execute it.
    TVM_LIBRARY_PATH (a directory), as TVM itself honours, takes priority.
    """
    candidates: list[Path] = []
    override = os.environ.get("TVM_LIBRARY_PATH")
    if override:
        candidates.append(Path(override) / "libtvm_runtime.so")
    spec = importlib.util.find_spec("tvm")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "lib" / "libtvm_runtime.so")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BackendUnavailableError(
        "the TVM backend needs TVM's runtime library (libtvm_runtime.so from the apache-tvm "
        "package); none found" + (f" at {', '.join(map(str, candidates))}" if candidates else "")
        + f"; {INSTALL_HINT}"
    )


def load_tvm_runtime() -> ctypes.CDLL:
    """Load libtvm_runtime.so once per process, with its symbols global.

    Compiled modules resolve the runtime's backend hooks from the global namespace; without
    this a module loads but its first call can crash.
    """
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            path = find_tvm_runtime_library()
            try:
                import tvm_ffi  # noqa: F401  (libtvm_ffi.so first: the runtime links to it)
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"the TVM backend needs apache-tvm-ffi: {INSTALL_HINT}"
                ) from exc
            try:
                _RUNTIME = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as exc:
                raise BundleError(f"cannot load TVM's runtime library {path}: {exc}") from exc
        return _RUNTIME


def _unique_fd_path(fd: int) -> str:
    """A path to `fd` that no earlier load in this process used.

    The dynamic loader reuses an already-loaded library whose path string matches, and fd
    numbers are reused once closed. So each load spells /proc/self/fd/N differently: the bits
    of a load counter become "./" or "../fd/" steps, at most 64 of them however many loads.
    """
    global _LOADS
    with _RUNTIME_LOCK:
        _LOADS += 1
        count = _LOADS
    steps = "".join("../fd/" if bit == "1" else "./" for bit in f"{count:b}")
    return f"/proc/self/fd/{steps}{fd}"


def _load_module_from_bytes(library_bytes: bytes) -> Any:
    """Load a compiled library from bytes already hash-checked, never from the bundle path.

    Linux: an anonymous memfd, loaded through /proc/self/fd (nothing on disk to swap).
    Elsewhere: a private 0700 temporary directory, deleted right after loading.
    """
    import tvm_ffi

    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and Path("/proc/self/fd").is_dir():
        fd = memfd_create("kerasport-tvm", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(library_bytes)
            while view:
                view = view[os.write(fd, view) :]
            # load_module picks the loader from the file extension, which a /proc/self/fd
            # path lacks; call the shared-library loader it would pick by name.
            loader = tvm_ffi.get_global_func("ffi.Module.load_from_file.so")
            return loader(_unique_fd_path(fd), "so")
        finally:
            os.close(fd)
    with tempfile.TemporaryDirectory(prefix="kerasport-tvm-") as private:
        path = Path(private) / "model.so"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(library_bytes)
        return tvm_ffi.load_module(str(path))


@dataclass(frozen=True)
class _Kernels:
    """What every slot of a runner shares: the weights as TVM tensors, the example's shape
    and class count, and a convolution front's kernel (run before the graph's, on the
    first `front_arrays` weights) if the library has one."""

    weights: list[Any]
    shape: tuple[int, ...]
    classes: int
    front: Callable[..., Any] | None = None
    front_arrays: int = 0


class _Slot:
    """One thread's aligned buffers for one row count, wrapped as TVM tensors once, and the
    kernels' whole argument tuples and the caller's view of the output built once: a 1-row
    call on a small model is mostly this Python, so none of it is redone per call."""

    def __init__(
        self, shared: _Kernels, inputs: np.ndarray, scratch: list[np.ndarray],
        hidden: list[np.ndarray], outputs: np.ndarray, kernel: Callable[..., Any], *extra: int,
    ) -> None:
        import tvm_ffi

        self.shared, self.flat_inputs = shared, inputs
        self.inputs = inputs.reshape(inputs.shape[0], *shared.shape)  # a caller's chunk, as a view
        self.scratch, self.hidden, self.outputs = scratch, hidden, outputs
        self.scores = outputs[:, : shared.classes]  # the columns a caller gets, as a view
        x, *buffers, o = [tvm_ffi.from_dlpack(a) for a in (inputs, *scratch, *hidden, outputs)]
        self.kernel = kernel
        if shared.front is None:
            self.args = (x, *shared.weights, *buffers, o, *extra)
            self.call = self._graph
        else:  # x -> front -> F (the first hidden buffer) -> graph
            split, front = shared.front_arrays, shared.front
            scratch_tensors, (flat, *rest) = buffers[: len(scratch)], buffers[len(scratch) :]
            self.front_args = (x, *shared.weights[:split], *scratch_tensors, flat)
            self.args = (flat, *shared.weights[split:], *rest, o, *extra)
            self.front = front
            self.call = self._front_then_graph

    def head(self, rows: int, *extra: int) -> _Slot:
        """A slot over this one's first `rows` rows (kernels check exact shapes); the
        per-call scratch buffers are shared."""
        return _Slot(self.shared, self.flat_inputs[:rows], self.scratch,
                     [h[:rows] for h in self.hidden], self.outputs[:rows], self.kernel, *extra)

    def _graph(self) -> None:
        self.kernel(*self.args)

    def _front_then_graph(self) -> None:
        self.front(*self.front_args)
        self.kernel(*self.args)


class TvmRunner:
    """Runs chunks through a Dense-graph library: static kernels for 1..8 rows, the blocked
    kernel for multiples of 8 rows (leftover rows go to a static kernel)."""

    def __init__(
        self, module: Any, weights: list[np.ndarray], plan: KernelPlan, num_features: int,
        num_classes: int, input_shape: tuple[int, ...] | None = None,
    ) -> None:
        import tvm_ffi

        self._module = module  # keeps the library loaded while the runner lives
        try:
            self._static: dict[int, Callable[..., Any]] = {
                rows: module[name] for rows, name in plan.static.items()
            }
            self._blocked: Callable[..., Any] = module[plan.blocked]
            front = None if plan.front is None else module[plan.front]
        except Exception as exc:  # tvm_ffi raises its own error types from C++
            message = f"the TVM library lacks a kernel named in its manifest: {exc}"
            raise BundleError(message) from exc
        self._weights = weights  # the tensors below view these arrays
        self._hidden = list(plan.hidden)
        self._scratch = list(plan.scratch)
        self._padded_out = plan.padded_out
        self._block_capacity = _block_capacity(plan, num_features)
        self.num_features = num_features
        self.input_shape = (num_features,) if input_shape is None else tuple(input_shape)
        if math.prod(self.input_shape) != num_features:
            raise BundleError(f"input shape {self.input_shape} is not {num_features} features")
        self._shared = _Kernels([tvm_ffi.from_dlpack(w) for w in weights], self.input_shape,
                                num_classes, front, plan.front_arrays)
        self.num_classes = num_classes
        self.artifact = ""  # the manifest key, set by open_artifact
        self._local = threading.local()
        self._try_every_kernel()

    def _new_slot(self, rows: int, kernel: Callable[..., Any], *extra: int) -> _Slot:
        """Fresh aligned buffers for `rows` rows (see aligned_empty for why aligned)."""
        return _Slot(
            self._shared, aligned_empty((rows, self.num_features)), self._thread_scratch(),
            [aligned_empty((rows, width)) for width in self._hidden],
            aligned_empty((rows, self._padded_out)), kernel, *extra,
        )

    def _thread_scratch(self) -> list[np.ndarray]:
        """This thread's per-call scratch buffers, shared by all its slots (a thread runs
        one call at a time; a large CNN's scratch is megabytes)."""
        scratch: list[np.ndarray] | None = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = [aligned_empty((size,)) for size in self._scratch]
        return scratch

    def _try_every_kernel(self) -> None:
        """Call each kernel once on zeros: a kernel compiled for other shapes than the
        manifest describes fails TVM's own argument checks here, not in a caller's run."""
        slots = [self._new_slot(rows, kernel) for rows, kernel in self._static.items()]
        slots.append(self._new_slot(BLOCK_ROWS, self._blocked, 1))
        for slot in slots:
            slot.inputs[:] = 0
            try:
                slot.call()
            except Exception as exc:  # tvm_ffi raises its own error types from C++
                raise BundleError(
                    f"the TVM library does not run with the shapes its manifest describes: {exc}"
                ) from exc

    def _slots(self) -> dict[int, _Slot]:
        """This thread's slots: 1..8 rows for the static kernels, and one per multiple of 8
        rows (the blocked kernel) on views of one buffer set of `_block_capacity` rows."""
        slots: dict[int, _Slot] | None = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = {}
        return slots

    def _static_slot(self, rows: int) -> _Slot:
        slots = self._slots()
        slot = slots.get(rows)
        if slot is None:
            slot = slots[rows] = self._new_slot(rows, self._static[rows])
        return slot

    def _blocked_slot(self, rows: int) -> _Slot:
        """The blocked kernel on the first `rows` rows (a multiple of 8) of the big buffers
        (kernels check exact shapes, so each row count has its own views)."""
        slots = self._slots()
        slot = slots.get(-rows)
        if slot is None:
            capacity = self._block_capacity
            big = slots.get(-capacity)
            if big is None:
                big = slots[-capacity] = self._new_slot(
                    capacity, self._blocked, capacity // BLOCK_ROWS
                )
            slot = slots[-rows] = big.head(rows, rows // BLOCK_ROWS)
        return slot

    def _slots_for(self, rows: int) -> list[tuple[int, int, _Slot]]:
        """(start, stop, slot) covering a chunk of `rows` rows (at most `_block_capacity`
        per blocked call, the rest through a static kernel)."""
        plan = []
        for start in range(0, rows, self._block_capacity):
            stop = min(rows, start + self._block_capacity)
            blocked = (stop - start) // BLOCK_ROWS * BLOCK_ROWS
            if blocked:
                plan.append((start, start + blocked, self._blocked_slot(blocked)))
            if stop - start - blocked:
                plan.append((start + blocked, stop, self._static_slot(stop - start - blocked)))
        return plan

    def run(self, chunk: np.ndarray) -> np.ndarray:
        """Probabilities (n, C) float32 for a checked (n, F) chunk of any real dtype."""
        rows = chunk.shape[0]
        if 0 < rows <= BLOCK_ROWS:  # the per-region call: one kernel, no extra copy
            slot = self._slots().get(rows) or self._static_slot(rows)
            slot.inputs[...] = chunk  # the same rounding as astype; faster than np.copyto
            slot.call()
            return slot.scores.copy()
        result = np.empty((rows, self.num_classes), dtype=np.float32)
        for start, stop, slot in self._slots_for(rows):
            slot.inputs[...] = chunk[start:stop]
            slot.call()
            result[start:stop] = slot.scores
        return result

    def bound_kernels(self, chunk: np.ndarray) -> Callable[[], None]:
        """The kernel calls for `chunk` with the chunk already in their input buffers: a
        call without checks, cast, copies or Python layers above it (the bench's floor)."""
        plan = self._slots_for(int(chunk.shape[0]))
        for start, stop, slot in plan:
            slot.inputs[...] = chunk[start:stop]
        slots = [slot for _, _, slot in plan]

        def run() -> None:
            for slot in slots:
                slot.call()

        return run


def _block_capacity(plan: KernelPlan, num_features: int) -> int:
    """Rows of the blocked kernel's buffers: MAX_CHUNK_ROWS, or fewer (a multiple of 8)
    where a row's buffers (a convolution's flat features can be wide) would take more than
    MAX_CHUNK_BYTES at that many rows."""
    row_bytes = 4 * (num_features + sum(plan.hidden) + plan.padded_out)
    rows = min(MAX_CHUNK_ROWS, MAX_CHUNK_BYTES // row_bytes) // BLOCK_ROWS * BLOCK_ROWS
    return max(BLOCK_ROWS, rows)


def _weights_from_bytes(weights_bytes: bytes, plan: KernelPlan) -> list[np.ndarray]:
    """Aligned float32 arrays (w0, b0, w1, b1, ...) copied out of the weights file."""
    total = len(weights_bytes) // 4
    if len(weights_bytes) % 4:
        raise BundleError("the TVM weights file is not a whole number of float32 values")
    if any(spec.offset + spec.size > total for spec in plan.arrays):
        raise BundleError("the TVM weights file does not match its description")
    flat = aligned_empty((total,))
    flat[:] = np.frombuffer(weights_bytes, dtype="<f4")
    return [flat[spec.offset : spec.offset + spec.size].reshape(spec.shape) for spec in plan.arrays]


def open_tvm_library(
    library_bytes: bytes,
    weights_bytes: bytes,
    details: dict[str, Any],
    num_features: int,
    num_classes: int,
    input_shape: tuple[int, ...] | None = None,
) -> TvmRunner:
    """Load a library from hash-checked bytes and return its runner for examples of
    `input_shape` (default: rows of `num_features`); the CPU features and the description
    are checked before any of its code is loaded."""
    plan = parse_plan(details, num_features, num_classes)
    missing = missing_features(plan.cpu_features, host_cpu_features())
    if missing:
        raise BackendUnavailableError(
            f"the TVM library for {plan.target!r} needs CPU features this machine "
            f"lacks: {', '.join(missing)}"
        )
    weights = _weights_from_bytes(weights_bytes, plan)
    load_tvm_runtime()
    try:
        module = _load_module_from_bytes(library_bytes)
    except Exception as exc:  # tvm_ffi raises its own error types from C++
        raise BundleError(f"cannot load the TVM library: {exc}") from exc
    return TvmRunner(module, weights, plan, num_features, num_classes, input_shape)


def rank(artifact: Artifact) -> int:
    """Widest vectors first: an AVX-512 library beats an AVX2 one where both run
    (benchmarks/tvm/TVM.md)."""
    lanes = artifact.details.get("lanes")
    return -lanes if isinstance(lanes, int) else 0


def can_serve(artifact: Artifact) -> bool:
    """The TVM runtime is installed and this CPU has every feature the library needs."""
    installed = all(importlib.util.find_spec(name) is not None for name in ("tvm", "tvm_ffi"))
    required = required_cpu_features(artifact.details)
    return installed and not missing_features(required, host_cpu_features())


def open_artifact(bundle_dir: Path, manifest: Manifest, key: str, threads: int) -> TvmRunner:
    """Open one TVM library of the bundle from hash-checked bytes (`threads` does not apply:
    the kernels run on the calling thread)."""
    del threads
    artifact = manifest.artifacts[key]
    if "weights" not in artifact.extra_files:
        raise BundleError(f"TVM artifact {key!r} lists no weights file")
    library = checked_bytes(bundle_dir, artifact)
    weights = checked_bytes(bundle_dir, artifact.extra_files["weights"])
    runner = open_tvm_library(
        library, weights, artifact.details, manifest.num_features, manifest.num_classes,
        manifest.inputs.shape,
    )
    runner.artifact = key
    return runner


def open_runner(bundle_dir: Path, manifest: Manifest, threads: int) -> TvmRunner:
    """The bundle's best TVM library this CPU can run."""
    return open_artifact(bundle_dir, manifest, _best_runnable(manifest), threads)


def open_auto(bundle_dir: Path, manifest: Manifest, threads: int) -> TvmRunner:
    """The best library this CPU runs, if its manifest entry says `auto` should prefer it
    to ONNX Runtime (export times each library against ONNX Runtime and writes the rule)."""
    key = _best_runnable(manifest)
    if manifest.artifacts[key].details.get("preferred") is not True:
        raise BackendUnavailableError(f"{key} is not preferred to ONNX Runtime")
    return open_artifact(bundle_dir, manifest, key, threads)


def _best_runnable(manifest: Manifest) -> str:
    """The best-ranked library this CPU runs."""
    candidates = sorted(artifacts_of(manifest, "tvm").items(), key=lambda item: rank(item[1]))
    lacking = []
    for key, artifact in candidates:
        missing = missing_features(required_cpu_features(artifact.details), host_cpu_features())
        if not missing:
            return key
        lacking.append(f"{key} needs {', '.join(missing)}")
    raise BackendUnavailableError(
        f"no TVM library in this bundle runs on this CPU ({'; '.join(lacking)}); "
        "use backend='onnxruntime' or export for this CPU with --target host"
    )
