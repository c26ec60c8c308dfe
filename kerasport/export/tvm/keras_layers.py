"""Read a Keras model as a Dense chain: the layers the fast TVM route compiles.

The route compiles a chain of Dense (or EinsumDense acting as Dense) layers, each with an
activation pipeline computed on the register tile (see activations.py). Everything else an
ordinary MLP holds is rewritten into that shape at export, with the weights Keras infers
with, so the kernel never needs another kind of layer:
- activation layers (Activation, ReLU, LeakyReLU, ELU, Softmax) join the activation of the
  Dense before them; PReLU, whose slope is per column, becomes relu over [z, -z] (the Dense
  doubled) and the next Dense reads relu(-z) with its rows scaled by -alpha;
- per-feature affine layers (BatchNormalization with its moving statistics, Rescaling,
  Normalization, and LayerNormalization's gamma and beta) fold into the Dense before them
  when its activation is linear, else into the next Dense's kernel and bias;
- LayerNormalization and UnitNormalization are a row pass after their Dense;
- a merge of two tensors (Add, Subtract, Multiply, Average, Maximum, Minimum) where one is an
  earlier Dense's output on the path (a residual block) is a step of the later Dense's
  pipeline that reads the earlier layer's output buffer;
- layers that are the identity at inference (Dropout and its kin) are skipped.
Anything else is refused by name: the route never guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.export.tvm.activations import ELEMENTWISE, Activation, row_step
from kerasport.export.tvm.dense_chain import Layer

_IDENTITY_AT_INFERENCE = frozenset({
    "InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity",
})
# Keras activation functions the kernel computes, by their __name__ (swish and hard_swish
# are the same functions as silu and hard_silu, so they carry those names).
_KERAS_ACTIVATIONS = frozenset({*ELEMENTWISE, "softmax", "log_softmax"}) - {"gelu_tanh"}
_WHAT_COMPILES = (
    "it compiles Dense and EinsumDense layers with any elementwise Keras activation or a "
    "softmax/log_softmax, activation layers, BatchNormalization, Rescaling, Normalization, "
    "LayerNormalization, UnitNormalization, residual merges and the dropout family"
)


def _refuse(layer: Any, why: str = "") -> ExportError:
    kind = type(layer).__name__
    return ExportError(
        f"the TVM Dense-chain route cannot compile layer {layer.name!r} ({kind})"
        + (f": {why}" if why else f"; {_WHAT_COMPILES}")
        + " (export without --tvm to serve it on ONNX Runtime)"
    )


@dataclass
class _Affine:
    """y = x * scale + shift, per feature (float64), and the layer it came from."""

    scale: np.ndarray
    shift: np.ndarray
    layer: Any

    def then(self, other: _Affine) -> _Affine:
        return _Affine(self.scale * other.scale, self.shift * other.scale + other.shift, self.layer)

    @property
    def is_identity(self) -> bool:
        return bool(np.all(self.scale == 1.0) and np.all(self.shift == 0.0))


@dataclass
class _Dense:
    """One chain layer being built: float64 kernel [in, out] and bias, its activation."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: Activation
    layer: Any
    version: int = 0  # bumped by every change, so a merge can tell its input is still there


@dataclass
class _Builder:
    """The chain so far, and what waits for the next Dense: an affine on its input, or a
    PReLU's slopes (its Dense already emits [z, -z])."""

    chain: list[_Dense] = field(default_factory=list)
    pending: _Affine | None = None
    prelu: tuple[np.ndarray, Any] | None = None

    def dense(self, layer: Any, kernel: np.ndarray, bias: np.ndarray, act: Activation) -> None:
        """Append a Dense, folding what waits for it into its kernel and bias."""
        if self.pending is not None:
            bias = bias + self.pending.shift @ kernel
            kernel = self.pending.scale[:, None] * kernel
            self.pending = None
        if self.prelu is not None:
            alpha, _ = self.prelu
            kernel = np.concatenate([kernel, -alpha[:, None] * kernel])
            self.prelu = None
        self.chain.append(_Dense(kernel, bias, act, layer))

    def activate(self, layer: Any, act: Activation) -> None:
        """Append an activation step to the last Dense's pipeline."""
        self._no_waiting(layer)
        if not self.chain:
            raise _refuse(layer, "no Dense comes before it")
        last = self.chain[-1]
        if row_step(last.activation) is not None and not act.is_linear:
            raise _refuse(
                layer, f"it follows {last.activation}, which needs the whole row; the route "
                "computes nothing after a row-wise step before the next Dense"
            )
        last.activation = last.activation.followed_by(act)
        last.version += 1

    def affine(self, affine: _Affine) -> None:
        """Fold a per-feature affine into the Dense before it, or keep it for the next one."""
        if self.prelu is not None:
            raise _refuse(self.prelu[1], "an affine layer after PReLU is not folded")
        if self.pending is not None:
            self.pending = self.pending.then(affine)
        elif self.chain and self.chain[-1].activation.is_linear:
            last = self.chain[-1]
            last.kernel = last.kernel * affine.scale[None, :]
            last.bias = last.bias * affine.scale + affine.shift
            last.version += 1
        else:
            self.pending = affine

    def split_prelu(self, layer: Any, alpha: np.ndarray) -> None:
        """PReLU(z) = relu(z) - alpha * relu(-z): the Dense before it emits [z, -z] with relu,
        and the next Dense reads the second half with its rows scaled by -alpha."""
        self._no_waiting(layer)
        if not self.chain or not self.chain[-1].activation.is_linear:
            raise _refuse(layer, "PReLU compiles only directly after a Dense with no activation")
        last = self.chain[-1]
        last.kernel = np.concatenate([last.kernel, -last.kernel], axis=1)
        last.bias = np.concatenate([last.bias, -last.bias])
        last.activation = Activation("relu")
        last.version += 1
        self.prelu = (_per_feature(alpha, last.bias.shape[0] // 2, layer), layer)

    def location(self) -> tuple[int, int] | None:
        """Where the current value lives: (chain index, version) of the Dense whose output
        buffer holds it, or None while an affine or PReLU still waits for the next Dense."""
        if not self.chain or self.pending is not None or self.prelu is not None:
            return None
        return len(self.chain) - 1, self.chain[-1].version

    def merge(self, layer: Any, source: tuple[int, int] | None, skip_first: bool) -> None:
        """Combine the current value with an earlier Dense's output, read from its buffer."""
        self._no_waiting(layer)
        current = self.location()
        if source is None or current is None or source[0] >= current[0]:
            raise _refuse(layer, "its other input is not the output of an earlier Dense")
        index, version = source
        if self.chain[index].version != version:
            raise _refuse(
                layer, f"its other input is {self.chain[index].layer.name!r} before a later "
                "layer folded into it"
            )
        kind = type(layer).__name__
        name = "rsubtract_skip" if kind == "Subtract" and skip_first else _MERGES[kind]
        self.activate(layer, Activation.of(name, source=index))

    def finish(self) -> list[Layer]:
        if self.prelu is not None:
            raise _refuse(self.prelu[1], "no Dense follows it")
        if self.pending is not None and not self.pending.is_identity:
            # (LayerNormalization's gamma and beta wait here even when they are 1 and 0)
            raise _refuse(self.pending.layer, "no Dense follows it to fold it into")
        if not self.chain:
            raise ExportError("the model has no Dense layer for the TVM route to compile")
        return [
            (d.kernel.astype(np.float32), d.bias.astype(np.float32), d.activation)
            for d in self.chain
        ]

    def _no_waiting(self, layer: Any) -> None:
        waiting = self.pending.layer if self.pending is not None else None
        if self.prelu is not None:
            waiting = self.prelu[1]
        if waiting is not None:
            raise _refuse(
                waiting, f"{layer.name!r} ({type(layer).__name__}) follows it before any Dense, "
                "and it folds only into a Dense"
            )


@dataclass(frozen=True)
class _Call:
    """One layer call on the model's path; in a functional model also the tensor it made
    and, for a merge, its other input (`skip`, and whether that is the merge's first)."""

    layer: Any
    output: Any = None
    skip: Any = None
    skip_first: bool = False


def dense_chain_layers(model: Any) -> list[Layer]:
    """(kernel [in, out], bias [out], activation) for each Dense layer, in order."""
    _check_input(model)
    builder = _Builder()
    where: dict[int, tuple[int, int] | None] = {}  # tensor id -> its location in the chain
    for call in _call_order(model):
        if call.skip is not None:
            builder.merge(call.layer, where.get(id(call.skip)), call.skip_first)
        else:
            _add(builder, call.layer)
        if call.output is not None:
            where[id(call.output)] = builder.location()
    return builder.finish()


def _check_input(model: Any) -> None:
    """The kernel reads rows of features; a Dense on a wider input acts per position."""
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return  # a subclassed model: its Dense layers' shapes are checked when packed
    if len(shape) != 2:
        raise ExportError(
            f"the TVM Dense-chain route compiles models whose input is (batch, features); "
            f"this model's input is {shape} (export without --tvm to serve it on ONNX Runtime)"
        )


def _call_order(model: Any) -> list[_Call]:
    """The layers as the model calls them, nested Sequential and functional models opened.

    A Sequential model's layers are its call order. A functional model's are walked from its
    output back to its input, so a layer called twice is compiled twice, a residual merge
    keeps its other input, and any other layer with more than one input (Concatenate, a
    merge of two branches) is refused by name. A subclassed model's call order is its
    Python code, which the route cannot read, so it is refused.
    """
    if type(model).__name__ == "Sequential":
        order = [_Call(layer) for layer in model.layers]
    elif _is_functional(model):
        order = _graph_path(model)
    else:
        raise ExportError(
            f"the TVM Dense-chain route cannot compile {model.name!r}, a subclassed "
            f"keras.Model ({type(model).__name__}): its call order is Python code; build it "
            "as a Sequential or functional model (or export without --tvm to serve it on "
            "ONNX Runtime)"
        )
    calls: list[_Call] = []
    for call in order:
        layer = call.layer
        if type(layer).__name__ == "Sequential" or _is_functional(layer):
            inner = _call_order(layer)
            if call.output is not None and inner:  # the nested model's output is the call's
                inner[-1] = _Call(inner[-1].layer, call.output, inner[-1].skip,
                                  inner[-1].skip_first)
            calls.extend(inner)
        else:
            calls.append(call)
    return calls


def _is_functional(model: Any) -> bool:
    """A model built from tensors (keras.Model(inputs, outputs), or a subclass of that)."""
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - Keras moved it
        return type(model).__name__ == "Functional"
    return isinstance(model, Functional)


def _graph_path(model: Any) -> list[_Call]:
    """A one-input, one-output functional model's calls from input to output."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError("the TVM Dense-chain route compiles models of one input and one output")
    path: list[_Call] = []
    tensor, source = model.outputs[0], model.inputs[0]
    while tensor is not source:
        layer, node_index, tensor_index = tensor._keras_history
        inputs = list(layer._inbound_nodes[node_index].input_tensors)
        if tensor_index != 0:
            raise _refuse(layer)
        if len(inputs) == 1:
            path.append(_Call(layer, tensor))
            tensor = inputs[0]
            continue
        if type(layer).__name__ not in _MERGES or len(inputs) != 2:
            raise _refuse(layer)
        main, skip, skip_first = _residual(layer, inputs)
        path.append(_Call(layer, tensor, skip, skip_first))
        tensor = main
    return path[::-1]


def _residual(layer: Any, inputs: list[Any]) -> tuple[Any, Any, bool]:
    """(main input, skip input, whether the skip is the first): the skip is the input the
    other one was computed from; two independent branches are refused."""
    first, second = inputs
    if first is not second and id(first) in _ancestors(second):
        return second, first, True
    if first is not second and id(second) in _ancestors(first):
        return first, second, False
    raise _refuse(layer, "it merges two branches; the route compiles a merge only with an "
                  "earlier output of the same path (a residual block)")


def _ancestors(tensor: Any) -> set[int]:
    """Ids of every tensor `tensor` was computed from, itself included."""
    seen: set[int] = set()
    stack = [tensor]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        history = getattr(current, "_keras_history", None)
        if history is not None:
            layer, node_index, _ = history
            stack.extend(layer._inbound_nodes[node_index].input_tensors)
    return seen


# Keras' merge layers of two tensors, as pipeline steps (x is the path's value, h the skip).
_MERGES = {
    "Add": "add_skip",
    "Subtract": "subtract_skip",
    "Multiply": "multiply_skip",
    "Average": "average_skip",
    "Maximum": "maximum_skip",
    "Minimum": "minimum_skip",
}


def _add(builder: _Builder, layer: Any) -> None:
    """Dispatch one Keras layer to the builder (see the module docstring for the rules)."""
    kind = type(layer).__name__
    if kind in _IDENTITY_AT_INFERENCE:
        return
    if kind == "Dense":
        _check_not_quantized(layer)
        kernel = _array(layer.kernel)
        bias = _array(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1])
        builder.dense(layer, kernel, bias, _keras_activation(layer, layer.activation))
    elif kind == "EinsumDense":
        builder.dense(layer, *_einsum_as_dense(layer), _keras_activation(layer, layer.activation))
    elif kind in _ACTIVATION_LAYERS:
        builder.activate(layer, _ACTIVATION_LAYERS[kind](layer))
    elif kind == "PReLU":
        builder.split_prelu(layer, _array(layer.alpha))
    elif kind in _AFFINE_LAYERS:
        builder.affine(_AFFINE_LAYERS[kind](layer, _width(builder, layer)))
    elif kind == "LayerNormalization":
        _layer_norm(builder, layer)
    elif kind == "UnitNormalization":
        _check_last_axis(layer, layer.axis)
        builder.activate(layer, Activation("unit_norm"))
    else:
        raise _refuse(layer)


def _array(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _check_not_quantized(layer: Any) -> None:
    mode = getattr(layer, "quantization_mode", None)
    if mode is not None:
        raise _refuse(layer, f"its kernel is quantized ({mode})")


def _einsum_as_dense(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """An EinsumDense that is a Dense: 'ab,bc->ac' (or '...b,bc->...c'), a bias on the output
    axis or none; the kernel may be stored [out, in]."""
    _check_not_quantized(layer)
    match = re.fullmatch(r"(\.\.\.|[a-z])([a-z]),([a-z])([a-z])->(\.\.\.|[a-z])([a-z])",
                         str(layer.equation).replace(" ", ""))
    kernel = _array(layer.kernel)
    if match is None or kernel.ndim != 2:
        raise _refuse(layer, f"equation {layer.equation!r} is not a Dense")
    batch, k, first, second, out_batch, n = match.groups()
    if batch != out_batch or batch in (k, n) or k == n or {first, second} != {k, n}:
        raise _refuse(layer, f"equation {layer.equation!r} is not a Dense")
    if first == n:
        kernel = kernel.T
    bias = np.zeros(kernel.shape[1])
    if layer.bias is not None:
        if layer.bias_axes != n:
            raise _refuse(layer, f"bias_axes {layer.bias_axes!r} is not the output axis")
        bias = _array(layer.bias).reshape(-1)
    return kernel, bias


def _keras_activation(layer: Any, function: Any) -> Activation:
    """The built-in Keras activation `function` is, by identity (a custom function that only
    shares a built-in's name is refused)."""
    import keras

    name = getattr(function, "__name__", repr(function))
    if name not in _KERAS_ACTIVATIONS or getattr(keras.activations, name, None) is not function:
        raise ExportError(
            f"the TVM Dense-chain route cannot compile activation {name!r} of layer "
            f"{layer.name!r}; it compiles {', '.join(sorted(_KERAS_ACTIVATIONS))}"
        )
    return Activation(str(name))


def _check_last_axis(layer: Any, axis: Any) -> None:
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if axes not in ([-1], [1]):
        raise _refuse(layer, f"axis {axis!r} is not the feature axis")


def _softmax_layer(layer: Any) -> Activation:
    _check_last_axis(layer, layer.axis)
    return Activation("softmax")


_ACTIVATION_LAYERS = {
    "Activation": lambda layer: _keras_activation(layer, layer.activation),
    "ReLU": lambda layer: Activation.of(
        "relu", negative_slope=layer.negative_slope, max_value=layer.max_value,
        threshold=layer.threshold,
    ),
    "LeakyReLU": lambda layer: Activation.of("leaky_relu", negative_slope=layer.negative_slope),
    "ELU": lambda layer: Activation.of("elu", alpha=layer.alpha),
    "Softmax": _softmax_layer,
}


def _width(builder: _Builder, layer: Any) -> int:
    """The feature count an affine layer acts on: the last Dense's output, or the input's."""
    if builder.chain:
        width = builder.chain[-1].kernel.shape[1]
        return width // 2 if builder.prelu is not None else width
    try:
        return int(layer.input.shape[-1])
    except (AttributeError, TypeError, ValueError) as exc:
        raise _refuse(layer, "its input width is unknown") from exc


def _per_feature(value: Any, width: int, layer: Any) -> np.ndarray:
    """A scalar or per-feature parameter as a vector of `width` (Keras broadcasts it)."""
    array = _array(value)
    try:
        return np.broadcast_to(array.reshape(-1) if array.size == width else array, (width,)).copy()
    except ValueError as exc:
        raise _refuse(layer, f"a parameter of shape {array.shape} is not per feature") from exc


def _batch_norm(layer: Any, width: int) -> _Affine:
    """Inference BatchNormalization as tf.nn.batch_normalization computes it:
    x * (gamma * rsqrt(var + eps)) + (beta - mean * gamma * rsqrt(var + eps))."""
    _check_last_axis(layer, layer.axis)
    inv = 1.0 / np.sqrt(_per_feature(layer.moving_variance, width, layer) + float(layer.epsilon))
    if layer.scale:
        inv = inv * _per_feature(layer.gamma, width, layer)
    shift = -_per_feature(layer.moving_mean, width, layer) * inv
    if layer.center:
        shift = shift + _per_feature(layer.beta, width, layer)
    return _Affine(inv, shift, layer)


def _rescaling(layer: Any, width: int) -> _Affine:
    """x * scale + offset."""
    return _Affine(
        _per_feature(layer.scale, width, layer), _per_feature(layer.offset, width, layer), layer
    )


def _normalization(layer: Any, width: int) -> _Affine:
    """(x - mean) / max(sqrt(variance), epsilon), or its inverse, as Keras' Normalization
    computes it (epsilon is keras.config.epsilon(), 1e-7 by default)."""
    import keras

    if layer.mean is None:
        raise _refuse(layer, "it was never adapted or given a mean and variance")
    mean = _per_feature(layer.mean, width, layer)
    std = np.maximum(np.sqrt(_per_feature(layer.variance, width, layer)),
                     float(np.float32(keras.config.epsilon())))
    if layer.invert:
        return _Affine(std, mean, layer)
    return _Affine(1.0 / std, -mean / std, layer)


_AFFINE_LAYERS = {
    "BatchNormalization": _batch_norm,
    "Rescaling": _rescaling,
    "Normalization": _normalization,
}


def _layer_norm(builder: _Builder, layer: Any) -> None:
    """A row pass (x - mean) * rsqrt(var + eps) on the last Dense, then gamma and beta as an
    affine the next Dense folds in (none where center and scale are off)."""
    _check_last_axis(layer, layer.axis)
    if getattr(layer, "rms_scaling", False):
        raise _refuse(layer, "rms_scaling=True is not compiled")
    builder.activate(layer, Activation.of("layer_norm", epsilon=float(layer.epsilon)))
    width = _width(builder, layer)
    scale = _per_feature(layer.gamma, width, layer) if layer.scale else np.ones(width)
    shift = _per_feature(layer.beta, width, layer) if layer.center else np.zeros(width)
    builder.affine(_Affine(scale, shift, layer))
