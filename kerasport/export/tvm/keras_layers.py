"""Read a Keras model as a Dense chain: the layers the fast TVM route compiles.

DeepVariant's small model, and every model of its family, is Dense -> ... -> Dense with
relu/tanh/sigmoid/linear activations and a softmax or sigmoid head. Layers that are the
identity at inference (Dropout, InputLayer) are skipped, and an Activation layer is folded
into the linear Dense before it. Anything else is refused by name: the route never guesses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.export.tvm.dense_chain import HEAD_ACTIVATIONS, Layer

_IDENTITY_AT_INFERENCE = ("InputLayer", "Dropout", "GaussianNoise", "GaussianDropout")


def dense_chain_layers(model: Any) -> list[Layer]:
    """(kernel [in, out], bias [out], activation) for each Dense layer, in order."""
    chain: list[Layer] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in _IDENTITY_AT_INFERENCE:
            continue
        if kind == "Activation" and chain and chain[-1][2] == "linear":
            weights, bias, _ = chain[-1]
            chain[-1] = (weights, bias, _activation_name(layer, layer.activation))
            continue
        if kind != "Dense":
            raise ExportError(
                f"the TVM Dense-chain route cannot compile layer {layer.name!r} ({kind}); "
                "it compiles Dense layers with relu/tanh/sigmoid/linear activations and a "
                "softmax or sigmoid head (export without --tvm to serve it on ONNX Runtime)"
            )
        weights = np.asarray(layer.kernel, dtype=np.float32)
        bias = (
            np.asarray(layer.bias, dtype=np.float32)
            if layer.use_bias
            else np.zeros(weights.shape[1], np.float32)
        )
        chain.append((weights, bias, _activation_name(layer, layer.activation)))
    if not chain:
        raise ExportError("the model has no Dense layer for the TVM route to compile")
    return chain


def _activation_name(layer: Any, activation: Any) -> str:
    name = getattr(activation, "__name__", repr(activation))
    if name not in HEAD_ACTIVATIONS:
        raise ExportError(
            f"the TVM Dense-chain route cannot compile activation {name!r} of layer "
            f"{layer.name!r}; it compiles {', '.join(HEAD_ACTIVATIONS)}"
        )
    return str(name)
