"""Load a saved Keras classifier and read the shape of its signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kerasport.errors import ExportError
from kerasport.quiet import quiet_import


def load_keras_model(path: str | Path) -> Any:
    """Load `model.keras` for inference only.

    `compile=False` skips the compile config, so a model that names custom metrics that are
    not registered here (DeepVariant's do) still loads; `safe_mode=True` refuses lambdas.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"Keras model file not found: {path}")
    keras = quiet_import("keras")

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for corrupt or foreign files
        raise ExportError(f"cannot load Keras model {path}: {exc}") from exc


def classifier_shape(model: Any) -> tuple[int, int]:
    """(features, classes) of a model that maps (batch, F) to (batch, C)."""
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
    return int(in_shape[1]), int(out_shape[1])


def head_warning(model: Any) -> str | None:
    """A warning when the model's output is not a softmax over its classes.

    DeepVariant reads each row as probabilities: arg-max is the genotype and max(p) the
    GQ. A sigmoid, linear (logits) or regression head exports and serves as faithfully, but
    those readings would be wrong, so export says so rather than call it a classifier.
    """
    layer = model.layers[-1] if model.layers else None
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    classes = int(model.outputs[0].shape[-1])
    if activation == "softmax" and classes > 1:
        return None
    head = activation or type(layer).__name__
    return (
        f"the model's head is {head!r} over {classes} output(s), not a softmax over classes: "
        "its outputs are not genotype probabilities, so arg-max and GQ readings may not apply"
    )
