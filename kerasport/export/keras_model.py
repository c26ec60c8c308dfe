"""Load a saved Keras classifier and read the shape of its signature."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from kerasport.errors import ExportError
from kerasport.quiet import quiet_import

# Layers that are the identity at inference: the head is the layer before them.
_INFERENCE_IDENTITY = frozenset(
    {"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization"}
)
# What each non-softmax head means for a reader of probabilities.
_HEAD_MEANING = {
    "linear": "logits or a regression",
    "sigmoid": "independent probabilities, one per output",
}


def check_model_file(path: str | Path) -> Path:
    """Refuse a missing path, a directory, or a `.keras` file that is not a Keras archive,
    naming which, before Keras is imported (Keras calls a truncated file "not found")."""
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
            if "config.json" not in archive.namelist():
                raise ExportError(
                    f"{path}: not a Keras model: the archive has no config.json "
                    f"(it holds {sorted(archive.namelist())[:5]})"
                )
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path}: unreadable Keras model ({exc})") from exc
    return path


def load_keras_model(path: str | Path) -> Any:
    """Load `model.keras` for inference only, and check that it is a servable classifier
    (see `classifier_shape`), so every refusal names the file.

    `compile=False` skips the compile config, so a model that names custom metrics that are
    not registered here (DeepVariant's do) still loads; `safe_mode=True` refuses lambdas.
    """
    path = check_model_file(path)
    keras = quiet_import("keras")

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for corrupt or foreign files
        raise ExportError(f"cannot load Keras model {path}: {exc}") from exc
    try:
        classifier_shape(model)
    except ExportError as exc:
        raise ExportError(f"{path}: {exc}") from None
    return model


def classifier_shape(model: Any) -> tuple[int, int]:
    """(features, classes) of a model that maps (batch, F) to float32 (batch, C).

    Bundles serve float32, as DeepVariant's small model computes; a float64 or float16
    output is refused here rather than rounded without a word (or failing later, in the
    runtime's check of the ONNX file against the manifest).
    """
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(
            f"expected one input and one output; the model has {len(inputs)} and {len(outputs)}"
        )
    in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(in_shape) != 2 or in_shape[1] is None or len(out_shape) != 2 or out_shape[1] is None:
        raise ExportError(
            f"expected a (batch, features) -> (batch, classes) classifier; the model maps "
            f"{in_shape} -> {out_shape}"
        )
    dtype = str(getattr(outputs[0].dtype, "name", outputs[0].dtype))
    if dtype != "float32":
        raise ExportError(
            f"the model's output is {dtype}; kerasport serves float32 outputs only (as "
            "DeepVariant's small model computes): give the last layer dtype='float32'"
        )
    return int(in_shape[1]), int(out_shape[1])


def head_warning(model: Any) -> str | None:
    """A warning when the model's output is not a softmax over its classes.

    DeepVariant reads each row as probabilities: arg-max is the genotype and max(p) the
    GQ. A sigmoid, linear (logits) or regression head exports and serves as faithfully, but
    those readings would be wrong, so export says so rather than call it a classifier.
    The head is the last layer that is not the identity at inference (Dropout and the like).
    """
    layers = [layer for layer in model.layers if type(layer).__name__ not in _INFERENCE_IDENTITY]
    layer = layers[-1] if layers else None
    classes = int(model.outputs[0].shape[-1])
    if _is_softmax(layer) and classes > 1:
        return None
    head = getattr(getattr(layer, "activation", None), "__name__", None) or type(layer).__name__
    meaning = "always 1" if _is_softmax(layer) else _HEAD_MEANING.get(head)
    return (
        f"the model's head is {head!r} over {classes} output(s)"
        + (f" ({meaning})" if meaning else "")
        + ", not a softmax over classes: its outputs are not genotype probabilities, so "
        "arg-max and GQ readings may not apply"
    )


def _is_softmax(layer: Any) -> bool:
    """A softmax over the last axis: a layer's softmax activation, or a Softmax layer."""
    if getattr(getattr(layer, "activation", None), "__name__", None) == "softmax":
        return True
    return type(layer).__name__ == "Softmax" and getattr(layer, "axis", None) in (-1, 1)
