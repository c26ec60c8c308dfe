"""A TVM Dense-graph library's description (its manifest `details`), parsed and checked.

Bundles are copied between machines, and loading a library runs its code, so nothing in the
description is used unchecked: a kernel name that is not a string, a width that does not fit
the model, an array that overruns the weights file. Every field the runner uses is parsed
here into a `KernelPlan`, with a BundleError naming the field, before any code is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kerasport.errors import BundleError
from kerasport.manifest import MAX_DIMENSION, MAX_VALUES

BLOCK_ROWS = 8
# dense-graph lists its workspace buffers and any number of arrays; conv-graph adds a
# convolution front: per-call scratch buffers and a flat buffer before the graph's own;
# dense-chain (bundles written before graphs) has one buffer per hidden layer and a kernel
# and bias per layer.
ROUTES = ("dense-graph", "conv-graph", "dense-chain")


@dataclass(frozen=True)
class ArraySpec:
    """One weight or bias array: its offset (in float32 values) and shape in the weights file."""

    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class KernelPlan:
    """What the runner needs: kernel names, buffer widths and where each array lies."""

    target: str
    cpu_features: tuple[str, ...]
    static: dict[int, str]  # rows 1..BLOCK_ROWS -> kernel name
    blocked: str  # the kernel for any multiple of BLOCK_ROWS rows
    hidden: tuple[int, ...]  # padded widths of the (rows, width) workspace buffers
    padded_out: int  # padded width of the output layer
    arrays: tuple[ArraySpec, ...]  # every array the kernels take, in calling order
    scratch: tuple[int, ...] = ()  # sizes of the per-call buffers, whatever the rows
    front: str | None = None  # the convolution front's kernel, run first (any rows)
    front_arrays: int = 0  # how many of `arrays` (the first) are the front's


def _fail(field: str, problem: str) -> BundleError:
    return BundleError(f"malformed TVM library description: {field} {problem}")


def _get(data: Any, key: str, kind: type, where: str) -> Any:
    field = f"{where}.{key}" if where else key
    if not isinstance(data, dict) or key not in data:
        raise _fail(field, "is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(field, f"must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _width(data: Any, key: str, where: str) -> int:
    value: int = _get(data, key, int, where)
    if not 1 <= value <= MAX_DIMENSION:
        raise _fail(f"{where}.{key}", f"must be 1-{MAX_DIMENSION}, got {value}")
    return value


def _size(value: Any, field: str) -> int:
    """A buffer's size in float32 values (a convolution's buffers hold whole examples)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_VALUES:
        raise _fail(field, f"must be an integer of 1-{MAX_VALUES}, got {value!r}")
    return value


def required_cpu_features(details: dict[str, Any]) -> tuple[str, ...]:
    """The CPU flags a library needs: the first thing read about it (to pick a library, or to
    refuse one before its code loads), so checked like the rest."""
    flags = _get(details, "cpu_features", list, "")
    if not all(isinstance(flag, str) for flag in flags):
        raise _fail("cpu_features", "must be a list of strings")
    return tuple(flags)


def _kernels(details: dict[str, Any]) -> tuple[dict[int, str], str]:
    functions = _get(details, "functions", dict, "")
    static = _get(functions, "static", dict, "functions")
    if sorted(static) != [str(rows) for rows in range(1, BLOCK_ROWS + 1)]:
        raise _fail("functions.static", f"must name kernels for 1..{BLOCK_ROWS} rows")
    names = {int(rows): _get(static, rows, str, "functions.static") for rows in static}
    return names, _get(functions, "blocked", str, "functions")


def _array(entry: Any, where: str) -> ArraySpec:
    offset: int = _get(entry, "offset", int, where)
    shape = _get(entry, "shape", list, where)
    if offset < 0 or offset % 16:
        raise _fail(f"{where}.offset", f"must be a non-negative multiple of 16, got {offset}")
    if not 1 <= len(shape) <= 3 or not all(
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_DIMENSION for n in shape
    ):
        raise _fail(f"{where}.shape", f"must be 1-3 extents of 1-{MAX_DIMENSION}, got {shape}")
    return ArraySpec(offset, tuple(shape))


def parse_plan(details: dict[str, Any], num_features: int, num_classes: int) -> KernelPlan:
    """The checked plan of a library serving a model of `num_features` -> `num_classes`."""
    route = details.get("route")
    if route not in ROUTES:
        raise BundleError(f"unsupported TVM route {route!r}")
    cpu_features = required_cpu_features(details)
    static, blocked = _kernels(details)
    layers = _get(details, "layers", list, "")
    if not layers:
        raise _fail("layers", "is empty")
    outs = [_width(layer, "out", f"layers[{i}]") for i, layer in enumerate(layers)]
    padded = [_width(layer, "padded_out", f"layers[{i}]") for i, layer in enumerate(layers)]
    if (_get(details, "num_features", int, ""), _get(details, "num_classes", int, "")) != (
        num_features, num_classes
    ) or outs[-1] != num_classes:
        raise BundleError("the TVM library's description does not match the model's shape")
    if any(p < o for p, o in zip(padded, outs, strict=True)):
        raise _fail("layers", "pad a layer's output narrower than the layer")
    entries = _get(details, "arrays", list, "")
    arrays = tuple(_array(entry, f"arrays[{i}]") for i, entry in enumerate(entries))
    scratch: tuple[int, ...] = ()
    front, front_arrays = None, 0
    if route == "dense-graph":
        hidden = tuple(_get(details, "buffers", list, ""))
        if hidden != tuple(padded[:-1]):
            raise _fail("buffers", "must be the padded widths of every node but the last")
    elif route == "conv-graph":
        buffers = _get(details, "buffers", list, "")
        if not buffers or tuple(buffers[1:]) != tuple(padded[:-1]):
            raise _fail("buffers", "must be the flat width, then the padded widths of every "
                        "node but the last")
        hidden = (_size(buffers[0], "buffers[0]"), *buffers[1:])
        entries = _get(details, "scratch", list, "")
        scratch = tuple(_size(size, f"scratch[{i}]") for i, size in enumerate(entries))
        front = _get(_get(details, "functions", dict, ""), "front", str, "functions")
        front_arrays = _get(details, "front_arrays", int, "")
        if not 0 <= front_arrays <= len(arrays):
            raise _fail("front_arrays", f"must be 0-{len(arrays)}, got {front_arrays}")
    else:
        _check_chain(layers, arrays, padded, num_features)
        hidden = tuple(padded[:-1])
    return KernelPlan(
        target=str(details.get("target", "")),
        cpu_features=cpu_features,
        static=static,
        blocked=blocked,
        hidden=hidden,
        padded_out=padded[-1],
        arrays=arrays,
        scratch=scratch,
        front=front,
        front_arrays=front_arrays,
    )


def _check_chain(
    layers: list[Any], arrays: tuple[ArraySpec, ...], padded: list[int], num_features: int
) -> None:
    """A dense-chain description: the first layer reads the features, each layer has a
    kernel and a bias of its padded width."""
    if _width(layers[0], "in", "layers[0]") != num_features:
        raise BundleError("the TVM library's description does not match the model's shape")
    if len(arrays) != 2 * len(layers):
        raise _fail("arrays", f"must list a weight and a bias per layer ({2 * len(layers)})")
    if any(arrays[2 * i + 1].shape != (width,) for i, width in enumerate(padded)):
        raise _fail("arrays", "give a bias a length other than its layer's padded width")
