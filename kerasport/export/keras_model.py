"""Load a saved Keras classifier and read the shape of its signature."""

from __future__ import annotations

import math
import zipfile
from collections import Counter
from pathlib import Path, PureWindowsPath
from typing import Any

from kerasport.errors import ExportError
from kerasport.manifest import INPUT_DTYPES, InputSpec, OutputSpec
from kerasport.quiet import quiet_import
from kerasport.ziplimits import inflation_problem

# Layers that are the identity at inference: the head is the layer before them.
_INFERENCE_IDENTITY = frozenset(
    {"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization"}
)
# What each non-softmax head means for a reader of probabilities.
_HEAD_MEANING = {
    "linear": "logits or a regression",
    "sigmoid": "independent probabilities, one per output",
}

# What Keras reads of a `.keras` archive: config.json, and the weights from one of these.
_CONFIG = "config.json"
_WEIGHTS = ("model.weights.h5", "model.weights.npz")
# Members Keras parses as JSON, into Python objects several times their size. DeepVariant's
# config.json is 3 KB and a thousand-layer model's about 1 MB: 16 MiB is ten times any real
# model's, and bounds what parsing a forged one takes.
_JSON_MEMBERS = (_CONFIG, "metadata.json")
_JSON_LIMIT = 16 << 20


def check_model_file(path: str | Path) -> Path:
    """Refuse a missing path, a directory, or a `.keras` file that is not a Keras archive or
    one Keras must not open (see `_archive_problem`), naming which, before Keras is imported
    (Keras calls a truncated file "not found", and inflates what an archive declares)."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"Keras model file not found: {path}")
    if not path.is_file():
        raise ExportError(f"{path} is not a file; give the saved model.keras itself")
    if path.suffix.lower() != ".keras":  # legacy .h5 files: Keras words their errors itself
        return path
    try:
        if not zipfile.is_zipfile(path):
            raise ExportError(
                f"{path}: not a Keras model: a .keras file is a zip archive and this is not a "
                "complete one (truncated, or another kind of file)"
            )
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
        problem = _archive_problem(members, path.stat().st_size)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}: unreadable Keras model ({exc})") from exc
    if problem:
        raise ExportError(f"{path}: {problem}")
    return path


def _archive_problem(members: list[zipfile.ZipInfo], archive_bytes: int) -> str | None:
    """Why Keras must not open an archive of these members, or None: no config.json or no
    weights (not a model), a name that is absolute or climbs out with `..` (Keras extracts
    assets into a folder), a name twice (which copy Keras reads would be zipfile's choice),
    a zip bomb (`inflation_problem`), or a JSON member over _JSON_LIMIT."""
    names = [info.filename for info in members]
    if _CONFIG not in names:
        return (
            f"not a Keras model: the archive has no {_CONFIG} (it holds {sorted(names)[:5]})"
        )
    if not any(name in names for name in _WEIGHTS):
        return f"not a Keras model: the archive has no weights ({' or '.join(_WEIGHTS)})"
    for name in names:
        parts = PureWindowsPath(name)  # either separator, and drive letters
        if parts.anchor or ".." in parts.parts:
            return f"member {name!r} is a path outside the archive (absolute, or with '..')"
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        return f"member {repeated[0]!r} is in the archive twice"
    problem = inflation_problem(members, archive_bytes)
    if problem:
        return problem
    sizes = {info.filename: info.file_size for info in members}
    for name in _JSON_MEMBERS:
        if sizes.get(name, 0) > _JSON_LIMIT:
            return (
                f"member {name!r} declares {sizes[name]:,} bytes, over the "
                f"{_JSON_LIMIT >> 20} MiB a model's {name} may take (a real one is kilobytes)"
            )
    return None


def load_keras_model(path: str | Path) -> Any:
    """Load `model.keras` for inference only, and check that it is a servable classifier
    (see `model_signature`), so every refusal names the file.

    `compile=False` skips the compile config, so a model that names custom metrics that are
    not registered here (DeepVariant's do) still loads; `safe_mode=True` refuses lambdas.
    """
    path = check_model_file(path)
    keras = quiet_import("keras")

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except MemoryError:
        raise ExportError(
            f"cannot load Keras model {path}: out of memory (Keras holds the weights of its "
            f"{path.stat().st_size:,}-byte archive, and the model, in memory)"
        ) from None
    except Exception as exc:  # Keras raises many types for corrupt or foreign files
        raise ExportError(f"cannot load Keras model {path}: {exc}") from exc
    try:
        model_signature(model)
    except ExportError as exc:
        raise ExportError(f"{path}: {exc}") from None
    return model


def all_layers(model: Any) -> list[Any]:
    """Every layer, those of nested models (and wrappers' inner layers) included."""
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if flatten else list(model.layers)


def largest_layer_bytes(model: Any) -> int:
    """The most float32 bytes one example's pass through a layer holds (its input and
    output), from Keras' own shapes: ONNX shape inference cannot size every tensor (an
    UpSampling's Resize output), and a low estimate would loosen the runtime's chunk bound.
    Layers of a subclassed model have no symbolic shapes and count 0 here."""
    largest = 0
    for layer in all_layers(model):
        try:
            tensors = [*_as_list(layer.input), *_as_list(layer.output)]
        except (AttributeError, ValueError):  # never called symbolically, or shared
            continue
        sizes = [_elements(tensor.shape) for tensor in tensors]
        largest = max(largest, 4 * sum(sizes))
    return largest


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _elements(shape: Any) -> int:
    """Values per example of a (batch, ...) shape, 0 when an axis is unknown."""
    dims = tuple(shape)[1:]
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else 0


def refuse_half_precision(model: Any) -> None:
    """Refuse a layer that computes in float16 or bfloat16 (a mixed-precision policy),
    naming it: ONNX Runtime's half-precision kernels round differently from TensorFlow's
    (5e-3 apart on a probe batch), so such a bundle could never pass the 1e-5 check, and the
    fix is the user's: give the layer dtype="float32"."""
    for layer in all_layers(model):
        compute = str(getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32"))
        if compute in ("float16", "bfloat16"):
            raise ExportError(
                f"layer {layer.name!r} ({type(layer).__name__}) computes in {compute} "
                f"(dtype policy {layer.dtype_policy.name!r}); kerasport serves float32 "
                "computation: build the model with dtype='float32'"
            )


def model_signature(model: Any) -> tuple[InputSpec, OutputSpec]:
    """The input and output specs of a model with one input (batch, d1, ..., dk) of fixed
    dimensions and one float32 output (batch, ..., classes).

    Bundles serve float32, as DeepVariant's small model computes; a float64 or float16
    output is refused here rather than rounded without a word. A subclassed model has no
    symbolic inputs: its build config gives the input shape and one call on zeros the
    output's.
    """
    in_shape, in_dtype, out_shape, out_dtype = _io_shapes(model)
    if len(in_shape) < 2 or len(out_shape) < 2:
        raise ExportError(
            f"expected a batch of examples in and a batch of class scores out; the model maps "
            f"{in_shape} -> {out_shape}"
        )
    for what, shape in (("input", in_shape), ("output", out_shape)):
        unfixed = [axis for axis, size in enumerate(shape) if axis and size is None]
        if unfixed:
            raise ExportError(
                f"the model's {what} {shape} has no fixed size on axis {unfixed[0]}; bundles "
                "serve fixed example shapes: build the model on keras.Input(shape=(...)) with "
                "every dimension given"
            )
    if out_dtype != "float32":
        raise ExportError(
            f"the model's output is {out_dtype}; kerasport serves float32 outputs only (as "
            "DeepVariant's small model computes): give the last layer dtype='float32'"
        )
    if in_dtype not in INPUT_DTYPES:
        raise ExportError(
            f"the model's input is {in_dtype}; kerasport serves {', '.join(INPUT_DTYPES)} inputs"
        )
    inputs = InputSpec(tuple(in_shape[1:]), in_dtype, _index_range(model))
    return inputs, OutputSpec(tuple(out_shape[1:]), head_kind(model))


def _io_shapes(model: Any) -> tuple[tuple[Any, ...], str, tuple[Any, ...], str]:
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:  # a subclassed model
        return _called_shapes(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(
            f"expected one input and one output; the model has {len(inputs)} and {len(outputs)}"
        )
    return (
        tuple(inputs[0].shape),
        _dtype_name(inputs[0].dtype),
        tuple(outputs[0].shape),
        _dtype_name(outputs[0].dtype),
    )


def _called_shapes(model: Any) -> tuple[tuple[Any, ...], str, tuple[Any, ...], str]:
    """Shapes of a subclassed model: its build config's input, and one call's output."""
    import numpy as np

    config = model.get_build_config() if hasattr(model, "get_build_config") else None
    shape = (config or {}).get("input_shape")
    if not isinstance(shape, (list, tuple)) or not shape or isinstance(shape[0], (list, tuple)):
        raise ExportError(
            "the subclassed model records no single input shape (it was never built or called "
            "on one array): call it once on a batch of examples before saving"
        )
    in_shape = (None, *shape[1:])
    if any(size is None for size in in_shape[1:]):
        return in_shape, "float32", (None,), "float32"  # refused by the caller, naming the axis
    try:
        output = model(np.zeros((2, *in_shape[1:]), np.float32), training=False)
    except Exception as exc:  # a model that cannot run on its own build shape
        raise ExportError(f"the model fails on a batch of its own input shape: {exc}") from exc
    if isinstance(output, (list, tuple, dict)):
        raise ExportError(f"expected one output; the model returns {len(output)}")
    return in_shape, "float32", (None, *tuple(output.shape)[1:]), _dtype_name(output.dtype)


def _dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


def _index_range(model: Any) -> tuple[int, int] | None:
    """[0, vocabulary) when the model's input feeds an Embedding directly, else None."""
    try:
        inbound = [layer for layer in model.layers if _reads_model_input(model, layer)]
    except AttributeError:
        return None
    sizes = [int(layer.input_dim) for layer in inbound if type(layer).__name__ == "Embedding"]
    return (0, min(sizes)) if sizes else None


def _reads_model_input(model: Any, layer: Any) -> bool:
    try:
        source = model.inputs[0]
        return any(t is source for node in layer._inbound_nodes for t in node.input_tensors)
    except (AttributeError, IndexError):
        return False


def head_kind(model: Any) -> str:
    """How the output reads: "softmax" over classes, "sigmoid" per class, or "linear"."""
    layer = _head_layer(model)
    if _is_softmax(layer):
        return "softmax"
    return "sigmoid" if _activation_name(layer) == "sigmoid" else "linear"


def head_warning(model: Any) -> str | None:
    """A warning when the model's output is not a softmax over its classes.

    DeepVariant reads each row as probabilities: arg-max is the genotype and max(p) the
    GQ. A sigmoid, linear (logits) or regression head exports and serves as faithfully, but
    those readings would be wrong, so export says so rather than call it a classifier.
    """
    layer = _head_layer(model)
    classes = model_signature(model)[1].shape[-1]
    if _is_softmax(layer) and classes > 1:
        return None
    head = _activation_name(layer) or type(layer).__name__
    meaning = "always 1" if _is_softmax(layer) else _HEAD_MEANING.get(head)
    return (
        f"the model's head is {head!r} over {classes} output(s)"
        + (f" ({meaning})" if meaning else "")
        + ", not a softmax over classes: its outputs are not genotype probabilities, so "
        "arg-max and GQ readings may not apply"
    )


def _head_layer(model: Any) -> Any:
    """The layer that computes the output, looking through layers that are the identity at
    inference (Dropout and the like): the output tensor's own layer in a Functional model,
    the last layer of a Sequential or subclassed one."""
    try:
        layer = model.outputs[0]._keras_history.operation
        while type(layer).__name__ in _INFERENCE_IDENTITY:
            layer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    except (AttributeError, IndexError):
        kept = [layer for layer in model.layers if type(layer).__name__ not in _INFERENCE_IDENTITY]
        layer = kept[-1] if kept else None
    while type(layer).__name__ == "TimeDistributed":  # its inner layer computes the head
        layer = layer.layer
    return layer


def _activation_name(layer: Any) -> str | None:
    return getattr(getattr(layer, "activation", None), "__name__", None)


def _is_softmax(layer: Any) -> bool:
    """A softmax over the last axis: a layer's softmax activation, or a Softmax layer."""
    if _activation_name(layer) == "softmax":
        return True
    if type(layer).__name__ != "Softmax":
        return False
    axis = getattr(layer, "axis", None)
    try:
        rank = len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer of a subclassed model has no symbolic output
        rank = 2
    return axis in (-1, rank - 1)
