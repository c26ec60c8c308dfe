"""Read a Keras model as a graph of Dense nodes: the layers the fast TVM route compiles.

The route compiles Dense (and EinsumDense acting as Dense) nodes, each with a pipeline of
steps computed on its output (see activations.py), and map nodes (the same pipeline without
a kernel). The model's graph is walked in call order and each layer becomes a step of the
node whose output it reads, with Keras' own arithmetic and its own parameters (nothing is
folded into a neighbouring kernel, so the rounding stays Keras'):
- activations and activation layers (Activation, ReLU, LeakyReLU, ELU, PReLU, Softmax);
- per-feature layers: BatchNormalization with its moving statistics, Rescaling,
  Normalization; LayerNormalization and UnitNormalization as a row-wise step;
- merges (Add, Subtract, Multiply, Average, Maximum, Minimum) of any earlier values: a step
  of one operand's node reading the others' buffers;
- Concatenate on the feature axis: a Dense after it reads the parts' buffers in turn;
- layers that are the identity at inference (Dropout and its kin, Flatten of features).
A step joins the node that computed its input only when nothing else reads that value;
otherwise the value is kept in its buffer and the step starts a map node, so a pre-norm
residual block (x + f(LayerNorm(x))) or a branch read twice stays exact. A sequence or
image input is first read by the convolution front (keras_conv.py) up to its Flatten or
global pooling. Anything else is refused by name: the route never guesses.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.export.tvm.activations import (
    ROW_WISE,
    Activation,
    row_step,
)
from kerasport.export.tvm.conv_front import Embed, Grid
from kerasport.export.tvm.dense_graph import INPUT, Network, Node
from kerasport.export.tvm.keras_conv import FrontBuilder, Spatial
from kerasport.export.tvm.keras_steps import (
    MERGE_LAYERS,
    array,
    check_last_axis,
    check_not_quantized,
    keras_activation,
    merge_steps,
    refuse,
    step_of,
    with_step,
)

_IDENTITY_AT_INFERENCE = frozenset({
    "InputLayer", "Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity", "Flatten", "SpatialDropout1D", "SpatialDropout2D",
    # image augmentation: each returns its input unchanged when not training
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness",
})
@dataclass
class _Building:
    """A node being built: its pipeline grows while nothing else reads its output."""

    sources: tuple[int, ...]
    width: int
    steps: list[Activation]
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    params: list[np.ndarray] = field(default_factory=list)
    closed: bool = False  # its buffer is read: no more steps

    def activation(self) -> Activation:
        activation = Activation("linear")
        for step in self.steps:
            activation = activation.followed_by(step)
        return activation

    def node(self) -> Node:
        return Node(
            self.sources, self.width, self.activation(),
            None if self.kernel is None else self.kernel.astype(np.float32),
            None if self.bias is None else self.bias.astype(np.float32),
            tuple(p.astype(np.float32) for p in self.params),
        )


@dataclass
class _Value:
    """A tensor of the model: the input, a node's output after its first `steps` steps, or a
    concatenation of such; `uses` counts the layers still to read it."""

    width: int
    uses: int
    node: int | None = None  # None: the model's input (or a concatenation)
    steps: int = 0
    parts: tuple[_Value, ...] = ()


class _Graph:
    """The nodes so far, and the rules that put a layer's step on a node; `front` reads the
    spatial layers before them, for a sequence or image input."""

    def __init__(self) -> None:
        self.nodes: list[_Building] = []
        self.front: FrontBuilder | None = None

    def _read(self, value: _Value) -> tuple[int, ...]:
        """The buffers holding `value`, in column order; their nodes take no more steps."""
        if value.parts:
            return tuple(s for part in value.parts for s in self._read(part))
        if value.node is None:
            return (INPUT,)
        building = self.nodes[value.node]
        if len(building.steps) != value.steps:  # pragma: no cover - the use counts forbid it
            raise ExportError("internal error: a value was read after its node moved on")
        building.closed = True
        return (value.node,)

    def _open(self, value: _Value) -> _Building | None:
        """The node `value` may extend: its node's latest output, read by nothing else."""
        if value.node is None or value.parts or value.uses != 1:
            return None
        building = self.nodes[value.node]
        if building.closed or len(building.steps) != value.steps:
            return None
        return building

    def _new(self, building: _Building, uses: int) -> _Value:
        self.nodes.append(building)
        return _Value(building.width, uses, len(self.nodes) - 1, len(building.steps))

    def dense(self, value: _Value, kernel: np.ndarray, bias: np.ndarray, act: Activation,
              layer: Any, uses: int) -> _Value:
        if kernel.shape[0] != value.width:
            raise refuse(layer, f"its kernel takes {kernel.shape[0]} inputs, not {value.width}")
        sources = self._read(value)
        return self._new(_Building(sources, kernel.shape[1], [act], kernel, bias), uses)

    def step(self, value: _Value, step: Activation, params: list[np.ndarray],
             uses: int) -> _Value:
        """Apply one step (its per-column arrays indexed from 0) to `value`: on the node that
        computed it when nothing else reads it, else on a map node that copies it."""
        building = self._open(value)
        if building is None or (step.name in ROW_WISE and row_step(building.activation())):
            value = self._materialize(value)
            building = self.nodes[-1]
        activation, building.params = with_step(Activation("linear"), building.params, step,
                                                params)
        building.steps.append(activation)
        return _Value(building.width, uses, value.node, len(building.steps))

    def _materialize(self, value: _Value) -> _Value:
        """A new map node holding `value`, open for steps."""
        return self._new(_Building(self._read(value), value.width, []), 1)

    def merge(self, layer: Any, values: list[_Value], uses: int) -> _Value:
        """Keras' merge of values of one width, as steps of one operand's node reading the
        others' buffers: the first operand's, or for two operands the second's (every merge
        of two is symmetric, Subtract as rsubtract), or else a map node copying the first."""
        if len({v.width for v in values}) != 1:
            raise refuse(layer, f"its inputs differ in width ({[v.width for v in values]})")
        kind = type(layer).__name__
        for first in (0, 1) if len(values) == 2 else (0,):
            target, others = values[first], [v for i, v in enumerate(values) if i != first]
            if self._open(target) is not None and all(
                o.node is not None and not o.parts and o.node < (target.node or 0)
                for o in others
            ):
                break
        else:  # the others' buffers first, then a map node after all of them
            first, others = 0, [self._buffered(v) for v in values[1:]]
            target = self._materialize(values[0])
        name, after = merge_steps(kind, len(values), first)
        value = target
        for other in others:
            source = self._read(other)[0]
            value = self.step(value, Activation.of(name, source=source), [], 1)
        if after is not None:
            value = self.step(value, after, [], 1)
        value.uses = uses
        return value

    def _buffered(self, value: _Value) -> _Value:
        """`value` in one node's buffer of its padded width (a merge reads whole vectors)."""
        if value.node is not None and not value.parts:
            return value
        return self._materialize(value)

    def concatenate(self, values: list[_Value], uses: int) -> _Value:
        """The parts side by side: a Dense reads their buffers in turn, anything else copies
        them into a map node."""
        parts = tuple(p for v in values for p in (v.parts or (v,)))
        for part in parts:
            self._read(part)
        return _Value(sum(p.width for p in parts), uses, parts=parts)

    def finish(self, value: _Value, front: bool = False) -> list[Node]:
        """The nodes, the last one holding the model's output (a model without a front has
        at least one Dense: the route has nothing to compile otherwise)."""
        if not front and not any(b.kernel is not None for b in self.nodes):
            raise ExportError("the model has no Dense layer for the TVM route to compile")
        last = len(self.nodes) - 1
        if value.node != last or value.parts or len(self.nodes[last].steps) != value.steps:
            self._materialize(value)
        return [building.node() for building in self.nodes]




def tvm_network(model: Any) -> Network:
    """The model as the TVM route compiles it: for a sequence or image input its
    convolution front (keras_conv.py), then its Dense graph."""
    shape = _input_shape(model)
    graph = _Graph()
    value: _Value | Spatial = _Value(shape[0], 1)
    if len(shape) > 1:
        grid = Grid(1, *shape) if len(shape) == 2 else Grid(*shape)
        graph.front = FrontBuilder(grid, len(shape) + 1)
        value = Spatial(grid, 1)
    output = _walk(model, graph, value)
    if isinstance(output, Spatial):
        raise ExportError(
            f"the TVM route compiles classifiers of one row of classes per example; this "
            f"model's output is per position ({output.grid}) (export without --tvm to serve "
            "it on ONNX Runtime)"
        )
    front = None if graph.front is None else graph.front.front()
    return Network(graph.finish(output, front is not None), math.prod(shape), front)


def _subclassed(model: Any) -> ExportError:
    return ExportError(
        f"the TVM route cannot compile {model.name!r}, a subclassed "
        f"keras.Model ({type(model).__name__}): its call order is Python code; build it "
        "as a Sequential or functional model (or export without --tvm to serve it on "
        "ONNX Runtime)"
    )


def _input_shape(model: Any) -> tuple[int, ...]:
    """One example's shape: features, a sequence (length, channels) or an image (h, w,
    channels); the Dense graph reads rows of features, the convolution front the others."""
    if type(model).__name__ != "Sequential" and not _is_functional(model):
        raise _subclassed(model)
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        shape = ()
    if not 2 <= len(shape) <= 4 or not all(isinstance(n, int) for n in shape[1:]):
        raise ExportError(
            f"the TVM route compiles models whose input is (batch, features), (batch, length, "
            f"channels) or (batch, height, width, channels); this model's input is "
            f"{shape or 'unknown'} (export without --tvm to serve it on ONNX Runtime)"
        )
    return tuple(int(n) for n in shape[1:])


def _walk(model: Any, graph: _Graph, value: _Value | Spatial) -> _Value | Spatial:
    """Run `model`'s layers on `value` in call order, nested models opened, and return the
    output value. A Sequential's layers are its call order; a functional model's graph is
    walked from its output back to its input, so a shared layer is compiled per call and
    only what the output depends on is compiled. A subclassed model's call order is Python
    code, which the route cannot read, so it is refused."""
    if type(model).__name__ == "Sequential":
        for layer in model.layers:
            value = _apply(graph, layer, [value], 1)
        return value
    if not _is_functional(model):
        raise _subclassed(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError("the TVM route compiles models of one input and one output")
    calls, uses = _calls(model)
    source = model.inputs[0]
    # The input's readers inside this model replace the one use its caller counted.
    value.uses += uses[id(source)] - 1
    values = {id(source): value}
    for layer, inputs, output in calls:
        operands = [values[id(t)] for t in inputs]
        values[id(output)] = _apply(graph, layer, operands, uses[id(output)])
    return values[id(model.outputs[0])]


def _calls(model: Any) -> tuple[list[tuple[Any, list[Any], Any]], Counter[int]]:
    """(layer, input tensors, output tensor) of every call the output depends on, inputs
    first; and how many calls read each tensor (the output counts as read once)."""
    order: list[tuple[Any, list[Any], Any]] = []
    uses: Counter[int] = Counter({id(model.outputs[0]): 1})
    done: set[int] = {id(model.inputs[0])}
    stack: list[tuple[Any, bool]] = [(model.outputs[0], False)]
    while stack:
        tensor, expanded = stack.pop()
        if id(tensor) in done:
            continue
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            raise ExportError("the TVM route found a tensor no layer made")
        layer, node_index, tensor_index = history
        inputs = list(layer._inbound_nodes[node_index].input_tensors)
        if expanded:
            done.add(id(tensor))
            if tensor_index != 0:
                raise refuse(layer, "it has more than one output")
            order.append((layer, inputs, tensor))
            uses.update(id(t) for t in inputs)
            continue
        stack.append((tensor, True))
        stack.extend((t, False) for t in reversed(inputs) if id(t) not in done)
    return order, uses


def _is_functional(model: Any) -> bool:
    """A model built from tensors (keras.Model(inputs, outputs), or a subclass of that)."""
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - Keras moved it
        return type(model).__name__ == "Functional"
    return isinstance(model, Functional)


def _apply(
    graph: _Graph, layer: Any, operands: list[_Value | Spatial], uses: int
) -> _Value | Spatial:
    """One layer call on its operand values (see the module docstring for the rules); each
    operand is read once more, so its count of readers left drops afterwards."""
    kind = type(layer).__name__
    if kind == "Sequential" or _is_functional(layer):
        output = _walk(layer, graph, operands[0])  # its readers inside replace this one
        output.uses = uses
        return output
    spatial = any(isinstance(operand, Spatial) for operand in operands)
    if kind in _IDENTITY_AT_INFERENCE and len(operands) == 1 and not (
        spatial and kind == "Flatten"
    ):
        operands[0].uses += uses - 1  # the same tensor, read by this layer's readers
        return operands[0]
    result: _Value | Spatial
    if kind in ("Reshape", "Embedding") and not spatial:
        result = _start_front(graph, layer, operands[0], uses)
    elif spatial:
        assert graph.front is not None  # a spatial value comes from a spatial input
        made = graph.front.apply(layer, operands, uses)
        result = made if isinstance(made, Spatial) else _Value(made, uses)
    else:
        result = _feature_layer(graph, layer, [o for o in operands if isinstance(o, _Value)],
                                uses)
    for operand in operands:
        operand.uses -= 1
    return result


def _start_front(
    graph: _Graph, layer: Any, value: _Value | Spatial, uses: int
) -> _Value | Spatial:
    """A Reshape or an Embedding of the model's input row: a sequence or an image, the start
    of a convolution front (the input row is already the example in Keras' channels_last
    order; an Embedding makes each index a position of `output_dim` channels). A Reshape to
    the same row is the identity."""
    assert isinstance(value, _Value)
    kind = type(layer).__name__
    if kind == "Reshape":
        try:
            shape = tuple(int(n) for n in layer.compute_output_shape((None, value.width))[1:])
        except (TypeError, ValueError) as exc:
            raise refuse(layer, f"its target shape {layer.target_shape} does not fit") from exc
        if shape == (value.width,):
            value.uses += uses  # the same tensor, read by this layer's readers (one read ends)
            return value
        if len(shape) not in (2, 3):
            raise refuse(layer, f"a Reshape to {shape} is neither a sequence nor an image")
    elif getattr(layer, "mask_zero", False):
        raise refuse(layer, "mask_zero=True (a mask the layers after it would read) is not "
                     "compiled")
    if value.node is not None or value.parts or value.uses != 1 or graph.front is not None:
        raise refuse(layer, f"a {kind} compiles only on the model's input, read by nothing else")
    if kind == "Reshape":
        grid = Grid(1, *shape) if len(shape) == 2 else Grid(*shape)
        graph.front = FrontBuilder(grid, len(shape) + 1)
        return Spatial(grid, uses)
    check_not_quantized(layer)
    graph.front = FrontBuilder(Grid(1, value.width, 1), 3)
    return graph.front.add(Embed(array(layer.embeddings)), Spatial(graph.front.grid, 1), uses,
                           layer)


def _feature_layer(graph: _Graph, layer: Any, operands: list[_Value], uses: int) -> _Value:
    """A layer on rows of features: a Dense node, a step, a merge or a concatenation."""
    kind = type(layer).__name__
    if kind == "Concatenate":
        check_last_axis(layer, layer.axis)
        return graph.concatenate(operands, uses)
    if kind in MERGE_LAYERS:
        if kind == "Subtract" and len(operands) != 2:
            raise refuse(layer, "Subtract takes two inputs")
        return graph.merge(layer, operands, uses)
    if len(operands) != 1:
        raise refuse(layer)
    if kind in ("Dense", "EinsumDense"):
        kernel, bias = _dense_weights(layer)
        act = keras_activation(layer, layer.activation)
        return graph.dense(operands[0], kernel, bias, act, layer, uses)
    step, params = step_of(layer, operands[0].width)
    return graph.step(operands[0], step, params, uses)


def _dense_weights(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Kernel [in, out] and bias of a Dense, or of an EinsumDense that is one."""
    check_not_quantized(layer)
    if type(layer).__name__ == "EinsumDense":
        return _einsum_as_dense(layer)
    kernel = array(layer.kernel)
    return kernel, array(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1])


def _einsum_as_dense(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """An EinsumDense that is a Dense: 'ab,bc->ac' (or '...b,bc->...c'), a bias on the output
    axis or none; the kernel may be stored [out, in]."""
    match = re.fullmatch(r"(\.\.\.|[a-z])([a-z]),([a-z])([a-z])->(\.\.\.|[a-z])([a-z])",
                         str(layer.equation).replace(" ", ""))
    kernel = array(layer.kernel)
    if match is None or kernel.ndim != 2:
        raise refuse(layer, f"equation {layer.equation!r} is not a Dense")
    batch, k, first, second, out_batch, n = match.groups()
    if batch != out_batch or batch in (k, n) or k == n or {first, second} != {k, n}:
        raise refuse(layer, f"equation {layer.equation!r} is not a Dense")
    if first == n:
        kernel = kernel.T
    bias = np.zeros(kernel.shape[1])
    if layer.bias is not None:
        if layer.bias_axes != n:
            raise refuse(layer, f"bias_axes {layer.bias_axes!r} is not the output axis")
        bias = array(layer.bias).reshape(-1)
    return kernel, bias
