"""A Keras layer as a step of the TVM route's pipelines (see activations.py), with Keras'
own parameters and arithmetic; shared by the Dense graph (keras_layers.py) and the
convolution front (keras_conv.py). Nothing is folded into a neighbouring kernel."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.export.tvm.activations import ELEMENTWISE, Activation, param_keys

# Keras activation functions the kernel computes, by their __name__ (swish and hard_swish
# are the same functions as silu and hard_silu, so they carry those names).
_KERAS_ACTIVATIONS = frozenset({*ELEMENTWISE, "softmax", "log_softmax"}) - {
    "gelu_tanh", "divide"
}
_WHAT_COMPILES = (
    "it compiles Dense and EinsumDense layers with any elementwise Keras activation or a "
    "softmax/log_softmax, activation layers, BatchNormalization, Rescaling, Normalization, "
    "LayerNormalization, UnitNormalization, merges, Concatenate and the dropout family"
)


def refuse(layer: Any, why: str = "") -> ExportError:
    """The error naming a layer the route cannot compile, and why."""
    kind = type(layer).__name__
    return ExportError(
        f"the TVM route cannot compile layer {layer.name!r} ({kind})"
        + (f": {why}" if why else f"; {_WHAT_COMPILES}")
        + " (export without --tvm to serve it on ONNX Runtime)"
    )


def with_step(
    activation: Activation, params: list[np.ndarray], step: Activation,
    step_params: list[np.ndarray],
) -> tuple[Activation, list[np.ndarray]]:
    """`activation` followed by `step`, whose parameter indices (from 0) now count after the
    `params` already there (ELU's alpha is a number, not an index)."""
    offset, indices = len(params), param_keys(step)
    step = Activation(step.name, tuple(
        (key, v + offset if key in indices else v) for key, v in step.args
    ))
    return activation.followed_by(step), [*params, *step_params]


def is_step_layer(layer: Any) -> bool:
    """Whether `step_of` reads this layer (else it is not a step)."""
    return type(layer).__name__ in _STEP_LAYERS


# Keras' merge layers, as pipeline steps (x is the node's value, h the other operand).
MERGE_LAYERS = {
    "Add": "add_skip",
    "Subtract": "subtract_skip",
    "Multiply": "multiply_skip",
    "Average": "average_skip",
    "Maximum": "maximum_skip",
    "Minimum": "minimum_skip",
}


def merge_steps(kind: str, operands: int, first: int) -> tuple[str, Activation | None]:
    """How Keras' merge `kind` of `operands` values is computed on operand `first`'s value:
    the step that merges each other operand in turn, and the step after all of them (an
    Average of more than two is a sum, then one divide). A merge of two is symmetric, so it
    may run on either operand (Subtract on the second is rsubtract)."""
    if kind == "Average" and operands > 2:
        return "add_skip", Activation.of("divide", by=float(operands))
    if kind == "Subtract" and first == 1:
        return "rsubtract_skip", None
    return MERGE_LAYERS[kind], None


def step_of(layer: Any, width: int, rank: int = 2) -> tuple[Activation, list[np.ndarray]]:
    """The pipeline step of a single-input layer that is not a Dense, and its arrays, on a
    value of `rank` axes (the batch included) whose last axis has `width` features."""
    kind = type(layer).__name__
    if kind in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[kind](layer), []
    if kind == "PReLU":
        return Activation.of("prelu", alpha=0), [_per_feature(layer.alpha, width, layer)]
    if kind == "BatchNormalization":
        return Activation.of("affine", scale=0, shift=1), list(_batch_norm(layer, width, rank))
    if kind == "Rescaling":
        scale = _per_feature(layer.scale, width, layer)
        return Activation.of("affine", scale=0, shift=1), [
            scale, _per_feature(layer.offset, width, layer)
        ]
    if kind == "Normalization":
        return _normalization(layer, width)
    if kind == "LayerNormalization":
        return _layer_norm(layer, width)
    if kind == "UnitNormalization":
        check_last_axis(layer, layer.axis)
        return Activation("unit_norm"), []
    raise refuse(layer)


def array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def check_not_quantized(layer: Any) -> None:
    mode = getattr(layer, "quantization_mode", None)
    if mode is not None:
        raise refuse(layer, f"its kernel is quantized ({mode})")


def keras_activation(layer: Any, function: Any) -> Activation:
    """The built-in Keras activation `function` is, by identity (a custom function that only
    shares a built-in's name is refused)."""
    import keras

    name = getattr(function, "__name__", repr(function))
    if name not in _KERAS_ACTIVATIONS or getattr(keras.activations, name, None) is not function:
        raise ExportError(
            f"the TVM route cannot compile activation {name!r} of layer "
            f"{layer.name!r}; it compiles {', '.join(sorted(_KERAS_ACTIVATIONS))}"
        )
    return Activation(str(name))


def check_last_axis(layer: Any, axis: Any, rank: int = 2) -> None:
    """The layer acts on the last axis of a value of `rank` axes (the batch included)."""
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if axes not in ([-1], [rank - 1]):
        raise refuse(layer, f"axis {axis!r} is not the feature axis")


def _softmax_layer(layer: Any) -> Activation:
    check_last_axis(layer, layer.axis)
    return Activation("softmax")


_ACTIVATION_LAYERS = {
    "Activation": lambda layer: keras_activation(layer, layer.activation),
    "ReLU": lambda layer: Activation.of(
        "relu", negative_slope=layer.negative_slope, max_value=layer.max_value,
        threshold=layer.threshold,
    ),
    "LeakyReLU": lambda layer: Activation.of("leaky_relu", negative_slope=layer.negative_slope),
    "ELU": lambda layer: Activation.of("elu", alpha=layer.alpha),
    "Softmax": _softmax_layer,
}


def _per_feature(value: Any, width: int, layer: Any) -> np.ndarray:
    """A scalar or per-feature parameter as a vector of `width` (Keras broadcasts it over
    the last axis; one that varies along another axis, per position, is refused)."""
    values = array(value)
    if values.ndim and (any(n != 1 for n in values.shape[:-1]) or values.shape[-1] not in (
        1, width
    )):
        raise refuse(layer, f"a parameter of shape {values.shape} is not per feature")
    return np.broadcast_to(values.reshape(-1), (width,)).copy()


def _batch_norm(layer: Any, width: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as tf.nn.batch_normalization computes it, in float32:
    inv = rsqrt(var + eps) * gamma; x * inv + (beta - mean * inv)."""
    check_last_axis(layer, layer.axis, rank)
    f32 = np.float32
    variance = _per_feature(layer.moving_variance, width, layer).astype(f32)
    inv = f32(1.0) / np.sqrt(variance + f32(layer.epsilon))
    if layer.scale:
        inv = inv * _per_feature(layer.gamma, width, layer).astype(f32)
    shift = -_per_feature(layer.moving_mean, width, layer).astype(f32) * inv
    if layer.center:
        shift = _per_feature(layer.beta, width, layer).astype(f32) + shift
    return inv.astype(np.float64), shift.astype(np.float64)


def _normalization(layer: Any, width: int) -> tuple[Activation, list[np.ndarray]]:
    """(x - mean) / max(sqrt(variance), epsilon), or mean + x * that, as Keras'
    Normalization computes it (epsilon is keras.config.epsilon(), 1e-7 by default)."""
    import keras

    if layer.mean is None:
        raise refuse(layer, "it was never adapted or given a mean and variance")
    f32 = np.float32
    mean = _per_feature(layer.mean, width, layer).astype(f32)
    std = np.maximum(np.sqrt(_per_feature(layer.variance, width, layer).astype(f32)),
                     f32(keras.config.epsilon()))
    if layer.invert:
        return Activation.of("affine", scale=0, shift=1), [std.astype(float), mean.astype(float)]
    return Activation.of("normalize", mean=0, std=1), [mean.astype(float), std.astype(float)]


def _layer_norm(layer: Any, width: int) -> tuple[Activation, list[np.ndarray]]:
    """A row-wise step with Keras' gamma and beta as the node's arrays (when it has them)."""
    check_last_axis(layer, layer.axis)
    if getattr(layer, "rms_scaling", False):
        raise refuse(layer, "rms_scaling=True is not compiled")
    params: list[np.ndarray] = []
    keys: dict[str, float] = {}
    for key, on, weight in (("gamma", layer.scale, "gamma"), ("beta", layer.center, "beta")):
        if on:
            keys[key] = len(params)
            params.append(_per_feature(getattr(layer, weight), width, layer))
    return Activation.of("layer_norm", epsilon=float(layer.epsilon), **keys), params


_STEP_LAYERS = frozenset({
    *_ACTIVATION_LAYERS, "PReLU", "BatchNormalization", "Rescaling", "Normalization",
    "LayerNormalization", "UnitNormalization",
})
