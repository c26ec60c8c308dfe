"""Convert a Keras classifier to ONNX with tf2onnx, keeping the batch dimension dynamic."""

from __future__ import annotations

from typing import Any

from kerasport.errors import ExportError
from kerasport.quiet import quiet_import

INPUT_NAME = "examples"
DEFAULT_OPSET = 17
# DeepVariant's images carry onnxruntime 1.23, which reads opsets up to 23 (IR version 11);
# a bundle must load there.
MAX_OPSET = 23


def keras_to_onnx(model: Any, num_features: int, opset: int = DEFAULT_OPSET) -> Any:
    """Return an `onnx.ModelProto` computing `model(x, training=False)` for x of shape (N, F).

    tf2onnx's `from_function` with an explicit `TensorSpec((None, F))` works on a model that
    was never called (Keras 3's own ONNX export refuses those) and leaves N dynamic. The IR
    version is lowered to the least the opset needs, so older runtimes accept the file.
    """
    check_opset(opset)
    import onnx
    tf = quiet_import("tensorflow")
    import tf2onnx

    signature = (tf.TensorSpec((None, num_features), tf.float32, name=INPUT_NAME),)
    function = tf.function(lambda x: model(x, training=False))
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
        proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # tf2onnx and onnx raise many types for unsupported graphs
        raise ExportError(f"tf2onnx could not convert the model at opset {opset}: {exc}") from exc
    return proto


def check_opset(opset: int) -> None:
    if not 9 <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is outside the supported range 9-{MAX_OPSET}")
