"""Make a converted graph one ONNX Runtime can run, or refuse it naming the layer and the op.

tf2onnx does not fail on a TensorFlow op it cannot convert: it logs it, leaves the op in the
graph under its TensorFlow name and still writes the file, so the break would show only when
ONNX Runtime loads the bundle. Exact gelu is the common case: TensorFlow computes it with
`Erfc`, which ONNX does not have (tensorflow-onnx #2347); celu's `Expm1` is another. Here
each such op is rewritten with an exact ONNX equivalent when one exists, and any op left
that the ONNX standard does not define at the bundle's opset is refused before anything is
written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from kerasport.errors import ExportError


def repair_graph(proto: Any, layer_names: Iterable[str]) -> None:
    """Rewrite ops ONNX lacks in place, then refuse what is still not standard ONNX."""
    graph = proto.graph
    for index in reversed(range(len(graph.node))):
        node = graph.node[index]
        rewrite = _REWRITES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if rewrite is not None:
            replacement = rewrite(node, graph)
            del graph.node[index]
            for offset, new in enumerate(replacement):
                graph.node.insert(index + offset, new)
    refuse_unknown_ops(proto, list(layer_names))


def refuse_unknown_ops(proto: Any, layer_names: list[str]) -> None:
    """Refuse the first node whose op the ONNX standard (at the model's opset) lacks."""
    import onnx

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if opset is None or not onnx.defs.has(node.op_type, opset, ""):
            layer = layer_of(node.name, layer_names)
            where = f"layer {layer!r}" if layer else f"node {node.name!r}"
            raise ExportError(
                f"{where}: tf2onnx left the TensorFlow op {node.op_type!r} unconverted "
                f"({_WHY.get(node.op_type, f'ONNX opset {opset} has no such operator')}, so "
                "ONNX Runtime cannot run it); replace the layer or its activation"
            )


# Why an op has no ONNX form, where the op's name alone would not say.
_WHY = {
    "StatefulPartitionedCall": "a nested TensorFlow function, which Keras' TensorFlow backend "
    "makes for some layers (a grouped convolution: Conv2D with groups > 1) and tf2onnx "
    "does not inline",
}


def layer_of(node_name: str, layer_names: list[str]) -> str | None:
    """The Keras layer a converted node came from: tf2onnx names nodes by TensorFlow scope
    (`model/dense_1/Erfc`), whose components are layer names, or a layer name with the
    call's counter after it (`dense_3_1` for layer `dense_3`)."""
    parts = node_name.replace(":", "/").split("/")
    for candidates in (parts, [re.sub(r"_\d+$", "", part) for part in parts]):
        named = [name for name in layer_names if name in candidates]
        if named:
            return max(named, key=len)
    return None


def _erfc(node: Any, graph: Any) -> list[Any]:
    """Erfc(x) = 1 - Erf(x): exact in real arithmetic; in float32 it differs from a direct
    erfc by at most one ULP of 1 where erfc is small, and gelu multiplies that by x/2, which
    is far below the export check's tolerance."""
    return _unary_and_one(node, graph, "Erf", one_first=True)


def _expm1(node: Any, graph: Any) -> list[Any]:
    """Expm1(x) = Exp(x) - 1 (celu): where expm1 is small the difference is at most an ULP
    of 1, about 1e-7 absolute, below the export check's tolerance."""
    return _unary_and_one(node, graph, "Exp", one_first=False)


def _unary_and_one(node: Any, graph: Any, op: str, one_first: bool) -> list[Any]:
    """`node` as Sub(1, op(x)) (`one_first`) or Sub(op(x), 1), keeping its output name."""
    import numpy as np
    import onnx

    one, value = f"{node.name}/one", f"{node.name}/{op.lower()}"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), one))
    operands = [one, value] if one_first else [value, one]
    return [
        onnx.helper.make_node(op, [node.input[0]], [value], name=f"{node.name}/{op}"),
        onnx.helper.make_node("Sub", operands, list(node.output), name=node.name),
    ]


_REWRITES: dict[str, Callable[[Any, Any], list[Any]]] = {"Erfc": _erfc, "Expm1": _expm1}
