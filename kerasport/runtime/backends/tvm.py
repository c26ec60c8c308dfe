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
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.cpu import host_cpu_features, missing_features
from kerasport.errors import BackendUnavailableError, BundleError
from kerasport.manifest import Artifact, Manifest, artifacts_of, checked_bytes
from kerasport.runtime.backends.tvm_plan import (
    BLOCK_ROWS,
    KernelPlan,
    parse_plan,
    required_cpu_features,
)

INSTALL_HINT = "pip install 'kerasport[tvm]'"
ALIGN_BYTES = 64
MAX_CHUNK_ROWS = 1024  # large inputs run in chunks of this many rows: bounded memory
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


class _Slot:
    """One thread's aligned buffers for one row count, wrapped as TVM tensors once."""

    def __init__(self, rows: int, num_features: int, hidden: list[int], padded_out: int) -> None:
        import tvm_ffi

        self.rows = rows
        self.inputs = aligned_empty((rows, num_features))
        self.hidden = [aligned_empty((rows, width)) for width in hidden]
        self.outputs = aligned_empty((rows, padded_out))
        self.tensors = [tvm_ffi.from_dlpack(a) for a in (self.inputs, *self.hidden, self.outputs)]


class TvmRunner:
    """Runs chunks through a Dense-graph library: static kernels for 1..8 rows, the blocked
    kernel for multiples of 8 rows (leftover rows go to a static kernel)."""

    def __init__(
        self, module: Any, weights: list[np.ndarray], plan: KernelPlan, num_features: int,
        num_classes: int,
    ) -> None:
        import tvm_ffi

        self._module = module  # keeps the library loaded while the runner lives
        try:
            self._static: dict[int, Callable[..., Any]] = {
                rows: module[name] for rows, name in plan.static.items()
            }
            self._blocked: Callable[..., Any] = module[plan.blocked]
        except Exception as exc:  # tvm_ffi raises its own error types from C++
            message = f"the TVM library lacks a kernel named in its manifest: {exc}"
            raise BundleError(message) from exc
        self._weights = weights  # the tensors below view these arrays
        self._weight_tensors = [tvm_ffi.from_dlpack(w) for w in weights]
        self._hidden = list(plan.hidden)
        self._padded_out = plan.padded_out
        self.num_features = num_features
        self.num_classes = num_classes
        self.artifact = ""  # the manifest key, set by open_artifact
        self._local = threading.local()
        self._try_every_kernel()

    def _try_every_kernel(self) -> None:
        """Call each kernel once on zeros: a kernel compiled for other shapes than the
        manifest describes fails TVM's own argument checks here, not in a caller's run."""
        for rows, kernel in (*self._static.items(), (BLOCK_ROWS, self._blocked)):
            slot = _Slot(rows, self.num_features, self._hidden, self._padded_out)
            slot.inputs[:] = 0
            extra = (1,) if kernel is self._blocked else ()
            try:
                self._call(kernel, slot.tensors, *extra)
            except Exception as exc:  # tvm_ffi raises its own error types from C++
                raise BundleError(
                    f"the TVM library does not run with the shapes its manifest describes: {exc}"
                ) from exc

    def _slot(self, rows: int) -> _Slot:
        """This thread's buffers for `rows` rows (1..8, or MAX_CHUNK_ROWS for big chunks)."""
        slots: dict[int, _Slot] | None = getattr(self._local, "slots", None)
        if slots is None:
            slots = self._local.slots = {}
        slot = slots.get(rows)
        if slot is None:
            slot = slots[rows] = _Slot(rows, self.num_features, self._hidden, self._padded_out)
        return slot

    def _views(self, slot: _Slot, rows: int) -> list[Any]:
        """Tensors over the first `rows` rows of a big slot (kernels check exact shapes)."""
        import tvm_ffi

        cache: dict[int, list[Any]] = slot.__dict__.setdefault("views", {})
        views = cache.get(rows)
        if views is None:
            arrays = (slot.inputs, *slot.hidden, slot.outputs)
            views = cache[rows] = [tvm_ffi.from_dlpack(a[:rows]) for a in arrays]
        return views

    def _call(self, kernel: Callable[..., Any], tensors: list[Any], *extra: int) -> None:
        x, *hidden, out = tensors
        kernel(x, *self._weight_tensors, *hidden, out, *extra)

    def run(self, chunk: np.ndarray) -> np.ndarray:
        """Probabilities (n, C) float32 for a checked (n, F) chunk of any real dtype."""
        rows = int(chunk.shape[0])
        classes = self.num_classes
        if rows <= BLOCK_ROWS:
            if rows == 0:
                return np.empty((0, classes), dtype=np.float32)
            slot = self._slot(rows)
            np.copyto(slot.inputs, chunk, casting="unsafe")  # the same rounding as astype
            self._call(self._static[rows], slot.tensors)
            return slot.outputs[:, :classes].copy()
        result = np.empty((rows, classes), dtype=np.float32)
        big = self._slot(MAX_CHUNK_ROWS)
        for start in range(0, rows, MAX_CHUNK_ROWS):
            stop = min(rows, start + MAX_CHUNK_ROWS)
            blocked = (stop - start) // BLOCK_ROWS * BLOCK_ROWS
            if blocked:
                np.copyto(big.inputs[:blocked], chunk[start : start + blocked], casting="unsafe")
                self._call(self._blocked, self._views(big, blocked), blocked // BLOCK_ROWS)
                result[start : start + blocked] = big.outputs[:blocked, :classes]
            tail = stop - start - blocked
            if tail:
                slot = self._slot(tail)
                np.copyto(slot.inputs, chunk[start + blocked : stop], casting="unsafe")
                self._call(self._static[tail], slot.tensors)
                result[start + blocked : stop] = slot.outputs[:, :classes]
        return result


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
) -> TvmRunner:
    """Load a Dense-graph library from hash-checked bytes and return its runner; the CPU
    features and the description are checked before any of its code is loaded."""
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
    return TvmRunner(module, weights, plan, num_features, num_classes)


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
        library, weights, artifact.details, manifest.num_features, manifest.num_classes
    )
    runner.artifact = key
    return runner


def open_runner(bundle_dir: Path, manifest: Manifest, threads: int) -> TvmRunner:
    """The bundle's best TVM library this CPU can run."""
    return open_artifact(bundle_dir, manifest, _best_runnable(manifest), threads)


def open_auto(bundle_dir: Path, manifest: Manifest, threads: int) -> TvmRunner:
    """The best library this CPU runs, if its manifest entry says `auto` should prefer it
    to ONNX Runtime (export writes the rule per target, from benchmarks/tvm/TVM.md)."""
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
