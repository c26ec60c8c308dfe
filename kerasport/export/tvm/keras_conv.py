"""Read the convolutional part of a Keras model as the TVM route's convolution front.

A model whose input is a sequence (batch, length, channels) or an image (batch, h, w,
channels) starts with a chain of spatial layers, read here into `conv_front` stages:
Conv1D/Conv2D (any strides and dilation, "valid", "same" or "causal" padding, groups=1),
DepthwiseConv1D/2D and SeparableConv1D/2D (any depth multiplier),
MaxPooling and AveragePooling 1D/2D, ZeroPadding 1D/2D, and per-channel steps (activations,
activation layers, BatchNormalization, Rescaling, Normalization, PReLU shared over
positions), merges of values of one shape (Add, Subtract, Multiply, Average, Maximum,
Minimum: residual blocks, projection shortcuts, branches) and Concatenate on the channel
axis (DenseNet's blocks, Inception's branches), until Flatten or a global pooling
makes the example one row of features, which the Dense graph (keras_layers.py) then reads.
Layers that are the identity at inference (Dropout, SpatialDropout, ...) are skipped.
Anything else on a spatial value (a broadcast merge, a second flat output, channels_first data)
is refused by name: the route never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.export.tvm.activations import ROW_WISE, Activation, as_activation
from kerasport.export.tvm.conv_front import (
    INPUT,
    WITH_STEPS,
    Concat,
    Conv,
    Flatten,
    Front,
    GlobalPool,
    Grid,
    Pad,
    Pool,
    Stage,
    Steps,
    out_grid,
)
from kerasport.export.tvm.keras_steps import (
    MERGE_LAYERS,
    array,
    check_last_axis,
    check_not_quantized,
    is_step_layer,
    keras_activation,
    merge_steps,
    refuse,
    step_of,
    with_step,
)

_CONVS = {
    "Conv1D": 1, "Conv2D": 2, "DepthwiseConv1D": 1, "DepthwiseConv2D": 2,
    "SeparableConv1D": 1, "SeparableConv2D": 2,
}
_POOLS = {
    "MaxPooling1D": ("max", 1), "MaxPooling2D": ("max", 2),
    "AveragePooling1D": ("avg", 1), "AveragePooling2D": ("avg", 2),
}
_GLOBAL_POOLS = {
    "GlobalMaxPooling1D": "max", "GlobalMaxPooling2D": "max",
    "GlobalAveragePooling1D": "avg", "GlobalAveragePooling2D": "avg",
}
_PADDINGS = {"ZeroPadding1D": 1, "ZeroPadding2D": 2}
_WHAT_COMPILES = (
    "on sequences and images it compiles Conv1D/Conv2D, DepthwiseConv, SeparableConv, "
    "MaxPooling, AveragePooling, ZeroPadding, per-channel steps, merges and Concatenate, "
    "then Flatten or a global pooling before the Dense layers"
)


@dataclass
class Spatial:
    """A spatial value of the model: the input (stage INPUT) or stage `stage`'s output after
    its first `steps` steps; `uses` counts the layers still to read it."""

    grid: Grid
    uses: int
    stage: int = INPUT
    steps: int = 0


class FrontBuilder:
    """The front's stages so far, each reading an earlier one. As in the Dense graph, a step
    joins the Conv or Steps stage that computed its input only when nothing else reads that
    value (else a Steps stage copies it), and a stage that was read takes no more steps, so
    a residual block (x + f(x)) or a branch read twice stays exact."""

    def __init__(self, grid: Grid, rank: int) -> None:
        self.grid = grid
        self.rank = rank  # of a spatial value, the batch included: 3 (sequence) or 4 (image)
        self.stages: list[Stage] = []
        self.sources: list[int] = []
        self.counts: list[int] = []  # steps taken by each stage
        self.closed: set[int] = set()  # stages whose output was read
        self.flat = False  # the flat output is made: nothing may follow it

    def front(self) -> Front | None:
        """The finished front; None when it only flattens the input (the Dense graph then
        reads the input row as it is)."""
        if [type(s) for s in self.stages] == [Flatten]:
            return None
        return Front(self.grid, tuple(self.stages), tuple(self.sources))

    def add(self, stage: Stage, value: Spatial, uses: int, layer: Any) -> Spatial:
        """A new stage reading `value`."""
        if self.flat:
            raise refuse(layer, "the convolution route has one flat output (one Flatten or "
                         "global pooling), and nothing spatial after it")
        grid = _grid_after(layer, stage, value.grid)
        self.sources.append(self._read(value))
        self.stages.append(stage)
        self.counts.append(0)
        return Spatial(grid, uses, len(self.stages) - 1)

    def _read(self, value: Spatial) -> int:
        """The stage holding `value`, which takes no more steps."""
        if value.stage != INPUT:
            if self.counts[value.stage] != value.steps:  # pragma: no cover - uses forbid it
                raise ExportError("internal error: a value was read after its stage moved on")
            self.closed.add(value.stage)
        return value.stage

    def _open(self, value: Spatial) -> bool:
        """Whether a step on `value` may join the stage that computed it."""
        return (value.stage != INPUT and value.uses == 1 and value.stage not in self.closed
                and isinstance(self.stages[value.stage], WITH_STEPS)
                and self.counts[value.stage] == value.steps)

    def _vectors(self, value: Spatial, layer: Any) -> Spatial:
        """`value` where whole vectors of channels can be read: the input (a row of its own
        stride) is first copied to a padded stride."""
        if value.stage != INPUT:
            return value
        return self.add(Pad(0, 0, 0, 0), value, 1, layer)

    def apply(self, layer: Any, operands: list[Any], uses: int) -> Spatial | int:
        """One layer call on spatial values: the next value, or the flat width when the
        layer ends the front."""
        kind = type(layer).__name__
        if not all(isinstance(o, Spatial) for o in operands):
            raise refuse(layer, "it mixes spatial values and rows of features")
        _check_channels_last(layer)
        if kind in MERGE_LAYERS:
            return self._merge(layer, operands, uses)
        if kind == "Concatenate":
            return self._concatenate(layer, operands, uses)
        if len(operands) != 1:
            raise refuse(layer, _WHAT_COMPILES)
        value = operands[0]
        if is_step_layer(layer):
            return self._step(layer, value, uses)
        if kind in _CONVS:
            if kind.startswith(("Depthwise", "Separable")):
                value = self._vectors(value, layer)  # the depthwise half reads vectors
            stages = _conv(layer, value.grid, _CONVS[kind])
        elif kind in _POOLS:
            value, stages = self._vectors(value, layer), [_pool(layer, value.grid, *_POOLS[kind])]
        elif kind in _PADDINGS:
            stages = [_zero_padding(layer, _PADDINGS[kind])]
        elif kind in _GLOBAL_POOLS:
            keepdims = bool(getattr(layer, "keepdims", False))
            value = self._vectors(value, layer)
            stages = [GlobalPool(_GLOBAL_POOLS[kind], keepdims)]
        elif kind == "Flatten" or (kind == "Reshape" and _flattens(layer, value.grid)):
            stages = [Flatten()]
        else:
            raise refuse(layer, _WHAT_COMPILES)
        for stage in stages:
            value = self.add(stage, value, uses if stage is stages[-1] else 1, layer)
        last = stages[-1]
        if isinstance(last, Flatten) or (isinstance(last, GlobalPool) and not last.keepdims):
            self.flat = True
            return value.grid.c
        return value

    def _step(self, layer: Any, value: Spatial, uses: int) -> Spatial:
        """A per-channel step of `layer`."""
        step, params = step_of(layer, value.grid.c, self.rank)
        if any(s.name in ROW_WISE for s in step.steps()):
            raise refuse(layer, f"{step.name} over a spatial value's channels is not compiled; "
                         f"{_WHAT_COMPILES}")
        return self._append(value, step, params, uses, layer)

    def _append(self, value: Spatial, step: Activation, params: list[np.ndarray], uses: int,
                layer: Any) -> Spatial:
        """`step` on `value`: on its stage when open, else on a new Steps stage."""
        if not self._open(value):
            value = self.add(Steps(Activation("linear")), self._vectors(value, layer), 1, layer)
        last = self.stages[value.stage]
        assert isinstance(last, WITH_STEPS)
        activation, merged = with_step(as_activation(last.activation), list(last.params),
                                       step, params)
        self.stages[value.stage] = replace(last, activation=activation, params=tuple(merged))
        self.counts[value.stage] += 1
        return Spatial(value.grid, uses, value.stage, self.counts[value.stage])

    def _concatenate(self, layer: Any, values: list[Spatial], uses: int) -> Spatial:
        """Concatenate on the channel axis (DenseNet's blocks, Inception's branches)."""
        check_last_axis(layer, layer.axis, self.rank)
        if len({(v.grid.h, v.grid.w) for v in values}) != 1:
            raise refuse(layer, f"its inputs differ in positions ({[v.grid for v in values]})")
        others = tuple(self._read(v) for v in values[1:])
        channels = sum(v.grid.c for v in values)
        return self.add(Concat(others, channels), values[0], uses, layer)

    def _merge(self, layer: Any, values: list[Spatial], uses: int) -> Spatial:
        """Keras' merge of values of one grid, as steps of one operand's stage reading the
        others' buffers (see keras_layers._Graph.merge, whose rules these are)."""
        kind = type(layer).__name__
        if len({v.grid for v in values}) != 1:
            raise refuse(layer, f"its inputs differ in shape ({[v.grid for v in values]})")
        if kind == "Subtract" and len(values) != 2:
            raise refuse(layer, "Subtract takes two inputs")
        for first in (0, 1) if len(values) == 2 else (0,):
            target, others = values[first], [v for i, v in enumerate(values) if i != first]
            if self._open(target) and all(INPUT < o.stage < target.stage for o in others):
                break
        else:  # the others' buffers first, then a Steps stage after all of them
            first, others = 0, [self._vectors(v, layer) for v in values[1:]]
            target = self.add(Steps(Activation("linear")), self._vectors(values[0], layer), 1,
                              layer)
        name, after = merge_steps(kind, len(values), first)
        value = target
        for other in others:
            value.uses = 1
            value = self._append(value, Activation.of(name, source=self._read(other)), [], 1,
                                 layer)
        if after is not None:
            value = self._append(value, after, [], 1, layer)
        value.uses = uses
        return value


def _flattens(layer: Any, grid: Grid) -> bool:
    """Whether a Reshape of a spatial value makes it one row of features (a Flatten); any
    other Reshape of one is refused."""
    shape = (grid.w, grid.c) if grid.h == 1 else (grid.h, grid.w, grid.c)
    try:
        out = tuple(layer.compute_output_shape((None, *shape))[1:])
    except (TypeError, ValueError) as exc:
        raise refuse(layer, f"its target shape {layer.target_shape} does not fit") from exc
    if out != (grid.positions * grid.c,):
        raise refuse(layer, f"a Reshape of a spatial value to {out} is not compiled (only to "
                     "one row of features, as Flatten)")
    return True


def _grid_after(layer: Any, stage: Stage, grid: Grid) -> Grid:
    try:
        return out_grid(stage, grid)
    except Exception as exc:
        raise refuse(layer, str(exc)) from None


def _check_channels_last(layer: Any) -> None:
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format not in (None, "channels_last"):
        raise refuse(layer, f"data_format={data_format!r}: the route compiles channels_last")


def _pairs(value: Any, dims: int) -> tuple[int, int]:
    """A Keras size argument as (along h, along w); a 1-D layer's is along w."""
    values = tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else (value,)))
    if len(values) == 1:
        values = values * dims
    return (1, values[0]) if dims == 1 else (values[0], values[1])


def _same(size: int, stride: int, extent: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) along one axis."""
    span = (size - 1) * dilation + 1
    total = max((-(-extent // stride) - 1) * stride + span - extent, 0)
    return total // 2, total - total // 2


def _conv(layer: Any, grid: Grid, dims: int) -> list[Stage]:
    """A Conv1D/Conv2D as a valid convolution, a DepthwiseConv as a valid depthwise one, a
    SeparableConv as both (depthwise, then a 1x1 convolution with the bias and activation),
    each after a Pad stage for its padding."""
    check_not_quantized(layer)
    if int(getattr(layer, "groups", 1)) != 1:
        raise refuse(layer, f"groups={layer.groups} is not compiled")
    kind = type(layer).__name__
    kernel = array(layer.depthwise_kernel if kind.startswith("Separable") else layer.kernel)
    if dims == 1:
        kernel = kernel[np.newaxis]
    kh, kw = kernel.shape[:2]
    strides, dilation = _pairs(layer.strides, dims), _pairs(layer.dilation_rate, dims)
    padding = str(layer.padding).lower()
    if padding == "same":
        top, bottom = _same(kh, strides[0], grid.h, dilation[0])
        left, right = _same(kw, strides[1], grid.w, dilation[1])
        pad = Pad(top, bottom, left, right)
    elif padding == "causal":
        pad = Pad(0, 0, (kw - 1) * dilation[1], 0)
    elif padding == "valid":
        pad = Pad(0, 0, 0, 0)
    else:
        raise refuse(layer, f"padding={padding!r} is not compiled")
    activation = keras_activation(layer, layer.activation)
    if activation.name in ROW_WISE:
        raise refuse(layer, f"activation {activation.name!r} over channels is not compiled")
    out = kernel.shape[3] * (kernel.shape[2] if kind.startswith("Depthwise") else 1)
    if kind.startswith("Separable"):
        out = int(np.shape(layer.pointwise_kernel)[-1])
    bias = array(layer.bias) if layer.use_bias else np.zeros(out)
    stages: list[Stage] = [] if pad == Pad(0, 0, 0, 0) else [pad]
    if kind.startswith("Conv"):
        return [*stages, Conv(kernel, bias, strides, dilation, activation)]
    if kind.startswith("Depthwise"):
        return [*stages, Conv(kernel, bias, strides, dilation, activation, depthwise=True)]
    depthwise = Conv(kernel, np.zeros(kernel.shape[2] * kernel.shape[3]), strides, dilation,
                     Activation("linear"), depthwise=True)
    pointwise = array(layer.pointwise_kernel).reshape(1, 1, -1, out)
    return [*stages, depthwise, Conv(pointwise, bias, (1, 1), (1, 1), activation)]


def _pool(layer: Any, grid: Grid, kind: str, dims: int) -> Pool:
    size = _pairs(layer.pool_size, dims)
    strides = _pairs(layer.strides if layer.strides is not None else layer.pool_size, dims)
    padding = str(layer.padding).lower()
    if padding == "same":
        (top, bottom), (left, right) = (_same(size[0], strides[0], grid.h),
                                        _same(size[1], strides[1], grid.w))
        return Pool(kind, size, strides, (top, bottom, left, right))
    if padding != "valid":
        raise refuse(layer, f"padding={padding!r} is not compiled")
    return Pool(kind, size, strides)


def _zero_padding(layer: Any, dims: int) -> Pad:
    padding = layer.padding
    if dims == 1:
        left, right = (padding, padding) if isinstance(padding, int) else padding
        return Pad(0, 0, int(left), int(right))
    (top, bottom), (left, right) = padding
    return Pad(int(top), int(bottom), int(left), int(right))
