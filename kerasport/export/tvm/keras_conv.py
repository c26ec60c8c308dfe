"""Read the convolutional part of a Keras model as the TVM route's convolution front.

A model whose input is a sequence (batch, length, channels) or an image (batch, h, w,
channels) starts with a chain of spatial layers, read here into `conv_front` stages:
Conv1D/Conv2D (any strides and dilation, "valid", "same" or "causal" padding, groups=1),
MaxPooling and AveragePooling 1D/2D, ZeroPadding 1D/2D, and per-channel steps (activations,
activation layers, BatchNormalization, Rescaling, Normalization, PReLU shared over
positions), until Flatten or a global pooling makes the example one row of features, which
the Dense graph (keras_layers.py) then reads. Layers that are the identity at inference
(Dropout, SpatialDropout, ...) are skipped. Anything else on a spatial value, a branch or a
merge of spatial values, or channels_first data, is refused by name: the route never
guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kerasport.export.tvm.activations import ROW_WISE, Activation, as_activation
from kerasport.export.tvm.conv_front import (
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
    array,
    check_not_quantized,
    is_step_layer,
    keras_activation,
    refuse,
    step_of,
    with_step,
)

_CONVS = {"Conv1D": 1, "Conv2D": 2}
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
    "on sequences and images it compiles Conv1D/Conv2D, MaxPooling, AveragePooling, "
    "ZeroPadding, per-channel steps, then Flatten or a global pooling before the Dense layers"
)


@dataclass
class Spatial:
    """A spatial value of the model (the input, or the front's latest stage's output);
    `uses` counts the layers still to read it."""

    grid: Grid
    uses: int


class FrontBuilder:
    """The front's stages so far; a step joins the latest Conv or Steps stage."""

    def __init__(self, grid: Grid, rank: int) -> None:
        self.grid = grid
        self.rank = rank  # of a spatial value, the batch included: 3 (sequence) or 4 (image)
        self.stages: list[Stage] = []

    def front(self) -> Front | None:
        """The finished front; None when it only flattens the input (the Dense graph then
        reads the input row as it is)."""
        if [type(s) for s in self.stages] == [Flatten]:
            return None
        return Front(self.grid, tuple(self.stages))

    def apply(self, layer: Any, operands: list[Any], uses: int) -> Spatial | int:
        """One layer call on a spatial value: the next value, or the flat width when the
        layer ends the front."""
        kind = type(layer).__name__
        if len(operands) != 1 or not isinstance(operands[0], Spatial):
            raise refuse(layer, "the convolution route compiles a chain of spatial layers, "
                         "not a merge of spatial values")
        value = operands[0]
        if value.uses != 1:
            raise refuse(layer, "the convolution route compiles a chain of spatial layers: "
                         "this value is read by more than one layer")
        _check_channels_last(layer)
        stages: list[Stage]
        if kind in _CONVS:
            stages = _conv(layer, value.grid, _CONVS[kind])
        elif kind in _POOLS:
            stages = [_pool(layer, value.grid, *_POOLS[kind])]
        elif kind in _PADDINGS:
            stages = [_zero_padding(layer, _PADDINGS[kind])]
        elif kind in _GLOBAL_POOLS:
            if getattr(layer, "keepdims", False):
                raise refuse(layer, "keepdims=True is not compiled")
            stages = [GlobalPool(_GLOBAL_POOLS[kind])]
        elif kind == "Flatten":
            stages = [Flatten()]
        elif is_step_layer(layer):
            self._step(layer, value.grid)
            return Spatial(value.grid, uses)
        else:
            raise refuse(layer, _WHAT_COMPILES)
        grid = value.grid
        for stage in stages:
            grid = _grid_after(layer, stage, grid)
        self.stages += stages
        if isinstance(stages[-1], (Flatten, GlobalPool)):
            return grid.c
        return Spatial(grid, uses)

    def _step(self, layer: Any, grid: Grid) -> None:
        """A per-channel step: on the latest Conv or Steps stage, else a new Steps stage."""
        step, params = step_of(layer, grid.c, self.rank)
        if any(s.name in ROW_WISE for s in step.steps()):
            raise refuse(layer, f"{step.name} over a spatial value's channels is not compiled; "
                         f"{_WHAT_COMPILES}")
        last = self.stages[-1] if self.stages else None
        if not isinstance(last, (Conv, Steps)):
            last = Steps(Activation("linear"))
            self.stages.append(last)
        activation, merged = with_step(as_activation(last.activation), list(last.params),
                                       step, params)
        self.stages[-1] = replace(last, activation=activation, params=tuple(merged))


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
    """A Conv1D/Conv2D as a valid convolution, after a Pad stage for its padding."""
    check_not_quantized(layer)
    if int(getattr(layer, "groups", 1)) != 1:
        raise refuse(layer, f"groups={layer.groups} is not compiled")
    kernel = array(layer.kernel)
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
    bias = array(layer.bias) if layer.use_bias else np.zeros(kernel.shape[3])
    activation = keras_activation(layer, layer.activation)
    if activation.name in ROW_WISE:
        raise refuse(layer, f"activation {activation.name!r} over channels is not compiled")
    conv = Conv(kernel, bias, strides, dilation, activation)
    return [conv] if pad == Pad(0, 0, 0, 0) else [pad, conv]


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
