"""What gets measured: the kerasport backends, Keras as DeepVariant runs it, and two floors.

Engines come in groups, one group per measuring process, because Keras' backend is fixed
when Keras is imported and because the runtime's process must never import TensorFlow:

- `kerasport`: `classify(classifier, x, 128)` on every backend in the bundle, plus the floors
  (ONNX Runtime with pre-bound float32 inputs and outputs, and a numpy float32 GEMM chain of
  the model's shapes) that say how much of a call is arithmetic and how much is adapter.
- `keras-tf` / `keras-jax`: `model.predict(x, batch_size=128, verbose=0)` (DeepVariant's
  classify) and `np.asarray(model(x, training=False))` (PR 1089's direct call).

An engine is `prepare` (untimed: for the floors, the float32 conversion and binding that a
real caller would pay) and `run` (timed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KERNELS_FILE = "kernels.npz"
PREDICT_BATCH = 128  # DeepVariant's --small_model_inference_batch_size default


def _identity(x: np.ndarray) -> Any:
    return x


@dataclass
class Engine:
    key: str
    label: str
    kind: str  # "backend", "baseline", "floor" or "reference"
    run: Callable[[Any], Any]
    prepare: Callable[[np.ndarray], Any] = _identity
    flops_per_row: float | None = None  # set for the GEMM floor, to report GFLOP/s


@dataclass
class Group:
    """The engines one process measures, and what it learned about the model on the way."""

    engines: list[Engine]
    info: dict[str, Any] = field(default_factory=dict)


def single_thread_env(group: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a measuring process: one compute thread in every library.

    DeepVariant runs one make_examples process per core, so one thread per process is the
    setting that matters; the variables must be set before the libraries are imported.
    """
    return thread_env(group, 1, base)


def thread_env(group: str, threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a measuring process with `threads` compute threads per library.

    A short job that owns its machine (DeepCell's tiles) uses every core, so the bench can
    measure that too. XLA has no flag for an exact count: JAX with more than one thread runs
    XLA's default pool, one thread per core, so ask for as many threads as the machine has.
    """
    env = dict(os.environ if base is None else base)
    count = str(threads)
    env.update(
        OMP_NUM_THREADS=count,
        OPENBLAS_NUM_THREADS=count,
        MKL_NUM_THREADS=count,
        TF_NUM_INTRAOP_THREADS=count,
        TF_NUM_INTEROP_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    if group == "keras-jax":
        env["KERAS_BACKEND"] = "jax"
        if threads == 1:
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
        env["JAX_PLATFORMS"] = "cpu"
    elif group == "keras-tf":
        env["KERAS_BACKEND"] = "tensorflow"
    return env


def open_group(
    group: str, bundle: Path, model: Path, workdir: Path, floors: bool = True, threads: int = 1
) -> Group:
    """Load the engines of `group`; call only in a process started with `thread_env(group,
    threads)`.

    `floors=False` leaves the floors out, for processes whose memory is being measured.
    """
    if group == "kerasport":
        return _kerasport_group(bundle, workdir, floors, threads)
    if group in ("keras-tf", "keras-jax"):
        return _keras_group(group, model, workdir, threads)
    raise ValueError(f"unknown engine group {group!r}")


def _kerasport_group(bundle: Path, workdir: Path, floors: bool, threads: int) -> Group:
    from kerasport import runtime

    engines = []
    served = runtime.servable_artifacts(bundle)
    for backend in served:
        classifier = runtime.load(bundle, backend=backend, threads=threads)
        engines.append(
            Engine(
                f"kerasport-{backend}",
                f"kerasport ({backend})",
                "backend",
                _classify_with(runtime.classify, classifier),
            )
        )
    if not floors:
        return Group(engines)
    if "onnxruntime" in served:
        engines += _ort_floors(bundle, threads)
    engines += _tvm_floors(bundle, served)
    kernels = workdir / KERNELS_FILE
    if kernels.is_file():
        engines.append(_gemm_floor(kernels))
    return Group(engines)


def _classify_with(classify: Callable[..., Any], classifier: Any) -> Callable[[Any], Any]:
    """DeepVariant's call, `classify(classifier, examples, batch_size)`, bound to one classifier."""

    def run(x: np.ndarray) -> Any:
        return classify(classifier, x, PREDICT_BATCH)

    return run


def _ort_floors(bundle: Path, threads: int) -> list[Engine]:
    """ONNX Runtime with the runtime's session options, called the two cheapest ways.

    `floor-ort`: inputs and outputs bound ahead of time. One binding per row count is made on
    first sight and the float32 input copied into its bound buffer, both in `prepare`
    (untimed); only `run_with_iobinding` is timed, which leaves ONNX Runtime's own cost.
    `ort-run-dict`: `session.run` with a dict of an already float32 array, and
    `ort-run-ortvalues`: `run_with_ort_values` with the input already wrapped as an OrtValue:
    the two other call paths ONNX Runtime offers, measured to choose the runtime's (it binds
    buffers per row count for chunks up to 128 rows, and uses `run` beyond).
    """
    import onnxruntime as ort

    from kerasport.manifest import artifacts_of, checked_bytes, read_manifest
    from kerasport.runtime.backends.onnxruntime import session_options

    manifest = read_manifest(bundle)
    artifact = next(iter(artifacts_of(manifest, "onnxruntime").values()))
    session = ort.InferenceSession(
        checked_bytes(bundle, artifact), session_options(threads),
        providers=["CPUExecutionProvider"],
    )
    dtype = np.dtype(manifest.inputs.dtype)  # what the ONNX graph takes
    bound: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}

    def prepare(x: np.ndarray) -> Any:
        rows = x.shape[0]
        if rows not in bound:
            inputs = np.empty((rows, *manifest.inputs.shape), dtype=dtype)
            outputs = np.empty((rows, *manifest.outputs.shape), dtype=np.float32)
            binding = session.io_binding()
            binding.bind_ortvalue_input(
                manifest.input_name, ort.OrtValue.ortvalue_from_numpy(inputs)
            )
            binding.bind_ortvalue_output(
                manifest.output_name, ort.OrtValue.ortvalue_from_numpy(outputs)
            )
            bound[rows] = (binding, inputs, outputs)
        binding, inputs, _ = bound[rows]
        np.copyto(inputs, x, casting="unsafe")
        return binding

    names = [manifest.output_name]
    return [
        Engine(
            "floor-ort",
            "floor: ORT pre-bound",
            "floor",
            lambda binding: session.run_with_iobinding(binding),
            prepare,
        ),
        Engine(
            "ort-run-dict",
            f"ORT run(dict), {dtype} ready",
            "reference",
            lambda x: session.run(names, {manifest.input_name: x}),
            lambda x: np.ascontiguousarray(x, dtype=dtype),
        ),
        Engine(
            "ort-run-ortvalues",
            "ORT run_with_ort_values, OrtValue ready",
            "reference",
            lambda value: session.run_with_ort_values(names, {manifest.input_name: value}),
            lambda x: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x, dtype=dtype)),
        ),
    ]


def floor_key(backend: str) -> str:
    """The floor engine measured beside a backend engine (`kerasport-<artifact>`)."""
    artifact = backend.removeprefix("kerasport-")
    return "floor-ort" if artifact == "onnxruntime" else f"floor-{artifact}"


def _tvm_floors(bundle: Path, artifacts: list[str]) -> list[Engine]:
    """Each TVM library's kernels with their arguments bound and the chunk already in the
    input buffers (`prepare`, untimed): only the kernel calls are timed, so the whole call's
    distance from it is the input checks, cast, copies and Python layers."""
    from kerasport.manifest import read_manifest
    from kerasport.runtime.backends.tvm import open_artifact

    manifest = read_manifest(bundle)
    engines = []
    for key in (a for a in artifacts if a.startswith("tvm-")):
        runner = open_artifact(bundle, manifest, key, 1)
        engines.append(
            Engine(f"floor-{key}", f"floor: {key} kernels bound", "floor",
                   lambda call: call(), runner.bound_kernels)
        )
    return engines


def _gemm_floor(kernels_path: Path) -> Engine:
    """The model's matrix products alone, float32, in numpy on one BLAS thread."""
    with np.load(kernels_path) as data:
        kernels = [np.ascontiguousarray(data[f"k{i}"], dtype=np.float32) for i in range(len(data))]
    flops = 2.0 * sum(k.shape[0] * k.shape[1] for k in kernels)

    def run(x: np.ndarray) -> np.ndarray:
        for kernel in kernels:
            x = x @ kernel
        return x

    def prepare(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    return Engine("floor-gemm", "floor: numpy GEMM", "floor", run, prepare, flops)


def _keras_group(group: str, model_path: Path, workdir: Path, threads: int) -> Group:
    from kerasport.export.keras_model import load_keras_model
    from kerasport.quiet import quiet_import

    keras = quiet_import("keras")
    if group == "keras-tf":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    name = group.split("-", 1)[1]
    model = load_keras_model(model_path)
    kernels = dense_chain_kernels(model)
    info: dict[str, Any] = {
        "keras_backend": keras.backend.backend(),
        "layers": [list(k.shape) for k in kernels or []],
        "params": int(model.count_params()),
    }
    if group == "keras-tf" and kernels:  # the GEMM floor, measured in the runtime's process
        np.savez(workdir / KERNELS_FILE, **{f"k{i}": k for i, k in enumerate(kernels)})  # type: ignore[arg-type]
    label = "TensorFlow" if name == "tf" else "JAX"
    return Group(
        [
            Engine(
                f"keras-{name}-predict",
                f"Keras {label} predict()",
                "baseline",
                lambda x: model.predict(x, batch_size=PREDICT_BATCH, verbose=0),
            ),
            Engine(
                f"keras-{name}-call",
                f"Keras {label} model(x)",
                "baseline",
                lambda x: np.asarray(model(x, training=False)),
            ),
        ],
        info,
    )


def dense_chain_kernels(model: Any) -> list[np.ndarray] | None:
    """The kernels of a (batch, features) model whose kernels form one matrix chain
    (DeepVariant's Dense stack), the only shape the GEMM floor measures; else None."""
    kernels = [np.asarray(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")]
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or not kernels:
        return None
    widths = [inputs[0].shape[1]] + [k.shape[1] for k in kernels if k.ndim == 2]
    chained = all(k.ndim == 2 and k.shape[0] == widths[i] for i, k in enumerate(kernels))
    return kernels if chained else None
