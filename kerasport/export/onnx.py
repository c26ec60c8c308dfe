"""Convert a Keras model to ONNX with tf2onnx, keeping the batch dimension dynamic."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

from kerasport.errors import ExportError
from kerasport.export.keras_model import all_layers
from kerasport.export.onnx_ops import repair_graph
from kerasport.manifest import InputSpec
from kerasport.quiet import VERBOSE_ENV, quiet_import

INPUT_NAME = "examples"
DEFAULT_OPSET = 17
# DeepVariant's images carry onnxruntime 1.23, which reads opsets up to 23 (IR version 11);
# a bundle must load there.
MAX_OPSET = 23


def keras_to_onnx(model: Any, inputs: InputSpec, opset: int = DEFAULT_OPSET) -> Any:
    """Return an `onnx.ModelProto` computing `model(x, training=False)` for a batch x of
    examples shaped `inputs.shape`.

    tf2onnx's `from_function` with an explicit `TensorSpec((None, ...))` works on a model
    that was never called (Keras 3's own ONNX export refuses those) and leaves the batch
    dynamic. Ops tf2onnx leaves unconverted are rewritten or refused (`repair_graph`). The IR
    version is lowered to the least the opset needs, so older runtimes accept the file.
    """
    check_opset(opset)
    import onnx
    tf = quiet_import("tensorflow")
    import tf2onnx

    signature = (tf.TensorSpec((None, *inputs.shape), inputs.dtype, name=INPUT_NAME),)
    function = tf.function(lambda x: model(x, training=False))
    try:
        with _tf2onnx_log_held_back():
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=signature, opset=opset
            )
    except Exception as exc:  # tf2onnx raises many types for unsupported graphs
        raise ExportError(f"tf2onnx could not convert the model at opset {opset}: {exc}") from exc
    _embed_captured_constants(proto, function.get_concrete_function(*signature), tf)
    repair_graph(proto, layer_names(model))
    try:
        proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises its own types for a graph it finds invalid
        raise ExportError(f"tf2onnx wrote an invalid ONNX graph at opset {opset}: {exc}") from exc
    return proto


def _embed_captured_constants(proto: Any, concrete: Any, tf: Any) -> None:
    """Turn the graph inputs tf2onnx made of captured constants back into initializers.

    A layer may hold eager tensors that are not variables (an adapted Normalization's mean
    and variance): the traced function captures them, and tf2onnx makes each one an extra
    graph input that every caller would have to feed. Their values are known, so they go
    into the file as weights; an extra input that is not such a constant is refused.
    """
    import onnx

    values = {
        inner.name: outer
        for inner, outer in zip(
            concrete.graph.internal_captures, concrete.captured_inputs, strict=False
        )
        if outer.dtype != tf.resource
    }
    graph = proto.graph
    for value in [v for v in graph.input if v.name.split(":")[0] != INPUT_NAME]:
        if value.name not in values:
            raise ExportError(
                f"the converted graph takes an input {value.name!r} besides the examples: the "
                "model reads state that tf2onnx cannot embed"
            )
        array = values[value.name].numpy()
        graph.initializer.append(onnx.numpy_helper.from_array(array, value.name))
        graph.input.remove(value)


@contextlib.contextmanager
def _tf2onnx_log_held_back() -> Iterator[None]:
    """tf2onnx logs each op it leaves unconverted ("Tensorflow op ... is not supported") at
    ERROR; `repair_graph` rewrites or refuses those ops itself, naming the layer, so the log
    would only mislead. KERASPORT_VERBOSE shows it."""
    logger = logging.getLogger("tf2onnx")
    saved = logger.level
    if not os.environ.get(VERBOSE_ENV):
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(saved)


def layer_names(model: Any) -> list[str]:
    """Every layer's name, nested models' layers included: what a graph node may name."""
    return [layer.name for layer in all_layers(model)]


def row_bytes(proto: Any) -> int:
    """Working memory one example needs in the engine, from the graph's inferred shapes:
    the two largest tensors a node reads and writes, in float32 (an estimate that bounds the
    chunk size; the batch axis is the symbolic one)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    sizes = {
        value.name: _per_example(value)
        for value in [*graph.input, *graph.value_info, *graph.output]
    }
    largest = max(
        (
            max((sizes.get(n, 0) for n in node.input), default=0)
            + max((sizes.get(n, 0) for n in node.output), default=0)
            for node in graph.node
        ),
        default=0,
    )
    return 4 * max(largest, 1)


def _per_example(value: Any) -> int:
    """Elements per example of a tensor whose first axis is the batch (symbolic), else 0."""
    dims = value.type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        return 0  # a weight or a shape tensor: not per example
    sizes = [d.dim_value if d.HasField("dim_value") else 0 for d in dims[1:]]
    return math.prod(sizes) if all(sizes) else 0


def check_opset(opset: int) -> None:
    if not 9 <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is outside the supported range 9-{MAX_OPSET}")
