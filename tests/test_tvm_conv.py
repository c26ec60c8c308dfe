"""The TVM convolution route: Conv1D/Conv2D with their padding, strides and dilation,
pooling, zero padding and per-channel steps, then Flatten or a global pooling and the Dense
graph, compiled as one library and compared with Keras.

Each model is compiled for this CPU's target and run at 1, 3, 8, 9 and 70 rows (static and
blocked kernels) on standard normal inputs; the result must agree with Keras by export's
own rule, and be the same bits whichever rows a call holds. Filter counts mix 1, 3, 8, 20 and
33 channels, so the tiles run on padded and full panels and on grids whose width is not a
multiple of the tile.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasport.errors import BundleError, ExportError
from kerasport.export.tvm import runnable_targets

pytest.importorskip("tvm")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not runnable_targets(), reason="this CPU runs no TVM target (AVX2)"),
]

ROWS = (1, 3, 8, 9, 70)


def _randomize(model: Any, seed: int) -> None:
    """Weights of the scale training leaves, and BatchNormalization statistics away from
    their initial 0 and 1, so every parameter matters."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name = weight.path
        if "moving_variance" in name or "gamma" in name:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
        elif "moving_mean" in name or "beta" in name or "bias" in name:
            weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
        elif "alpha" in name:
            weight.assign(rng.uniform(0.05, 0.4, weight.shape).astype("float32"))


def _compile(model: Any, tmp_path: Path, target: Any = None) -> Any:
    """The model through the route: its network compiled for `target` (default this CPU's
    best) and loaded."""
    from kerasport.export.tvm import host_target
    from kerasport.export.tvm.dense_graph import compile_dense_graph
    from kerasport.export.tvm.keras_layers import tvm_network
    from kerasport.runtime.backends.tvm import open_tvm_library

    network = tvm_network(model)
    details = compile_dense_graph(network.nodes, network.num_features, target or host_target(),
                                  tmp_path, "c", network.front)
    assert details["route"] == ("conv-graph" if network.front else "dense-graph")
    return open_tvm_library((tmp_path / "c.so").read_bytes(),
                            (tmp_path / "c.weights.bin").read_bytes(), details,
                            network.num_features, details["num_classes"],
                            tuple(model.input_shape[1:]))


def _compare(model: Any, tmp_path: Path, seed: int = 0, target: Any = None) -> None:
    from kerasport.export.check import check_agreement
    from kerasport.export.keras_model import head_kind

    runner = _compile(model, tmp_path, target)
    rng = np.random.default_rng(seed)
    shape = tuple(model.input_shape[1:])
    for rows in ROWS:
        x = rng.standard_normal((rows, *shape)).astype(np.float32)
        got = runner.run(x)
        reference = np.asarray(model(x, training=False), np.float32)
        check_agreement(reference, got, 1e-5, head_kind(model))
        if rows > 1:
            pieces = [runner.run(x[i : i + 1]) for i in range(rows)]
            assert np.array_equal(np.concatenate(pieces), got), "bits depend on the chunk"


def _seq(keras: Any, shape: tuple[int, ...], *layers: Any) -> Any:
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input(shape), *layers])
    _randomize(model, 7)
    return model


Case = Callable[[Any], Any]

CASES: dict[str, Case] = {
    "conv2d, max pooling, flatten": lambda k: _seq(
        k, (12, 11, 3), k.layers.Conv2D(8, 3, activation="relu"), k.layers.MaxPooling2D(),
        k.layers.Flatten(), k.layers.Dense(10, activation="softmax")),
    "same padding, strides 2, batch norm, global average": lambda k: _seq(
        k, (13, 13, 2), k.layers.Conv2D(20, 3, strides=2, padding="same"),
        k.layers.BatchNormalization(), k.layers.ReLU(), k.layers.Conv2D(33, 3, padding="same"),
        k.layers.LeakyReLU(0.1), k.layers.GlobalAveragePooling2D(),
        k.layers.Dense(3, activation="softmax")),
    "dilation, uneven strides, average pooling same": lambda k: _seq(
        k, (16, 16, 1), k.layers.Conv2D(8, 3, padding="same", activation="relu"),
        k.layers.MaxPooling2D(), k.layers.Conv2D(8, 3, strides=(1, 2), padding="same",
                                                  activation="relu"),
        k.layers.AveragePooling2D(pool_size=(2, 2), strides=1, padding="same"),
        k.layers.Conv2D(8, (3, 1), dilation_rate=(2, 1), activation="relu"),
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(4, activation="softmax")),
    "conv1d causal, pooling, 1x1 without bias, global max": lambda k: _seq(
        k, (32, 4), k.layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
        k.layers.MaxPooling1D(2), k.layers.Conv1D(8, 3, strides=2, padding="same",
                                                  activation="elu"),
        k.layers.AveragePooling1D(2, padding="same"), k.layers.Conv1D(8, 1, use_bias=False),
        k.layers.GlobalMaxPooling1D(), k.layers.Dense(3, activation="softmax")),
    "long activations on the tile (gelu, silu, tanh)": lambda k: _seq(
        k, (20, 3), k.layers.Conv1D(20, 5, activation="gelu"),
        k.layers.Conv1D(16, 3, activation="silu"), k.layers.Conv1D(3, 3, activation="tanh"),
        k.layers.Flatten(), k.layers.Dense(2, activation="sigmoid")),
    "rescaling and normalization at the input, pooling on the input": lambda k: _seq(
        k, (10, 10, 3), k.layers.Rescaling(1 / 255.0, offset=-0.5),
        k.layers.MaxPooling2D(2, strides=1), k.layers.Conv2D(3, 2), k.layers.Flatten(),
        k.layers.Dense(5, activation="softmax")),
    "zero padding, prelu over positions, steps after pooling": lambda k: _seq(
        k, (9, 14, 2), k.layers.ZeroPadding2D(((1, 2), (0, 3))), k.layers.Conv2D(5, 3),
        k.layers.PReLU(shared_axes=[1, 2]), k.layers.AveragePooling2D(2),
        k.layers.BatchNormalization(), k.layers.Activation("swish"),
        k.layers.SpatialDropout2D(0.2), k.layers.GlobalMaxPooling2D(),
        k.layers.Dense(3, activation="softmax")),
    "wide filters (several panels)": lambda k: _seq(
        k, (8, 8, 4), k.layers.Conv2D(100, 3, activation="relu"), k.layers.Conv2D(50, 1),
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(3, activation="softmax")),
    "one filter, then a Dense graph with a residual block": lambda k: _functional(
        k, 3, (15, 2), _residual_after_conv),
    "a nested convolution block in a functional model": lambda k: _functional(
        k, 5, (8, 8, 3), _nested_block),
    "batch normalization on the channel axis by number": lambda k: _seq(
        k, (6, 6, 3), k.layers.Conv2D(4, 3), k.layers.BatchNormalization(axis=3),
        k.layers.Flatten(), k.layers.Dense(3, activation="softmax")),
    "the input reshaped into a sequence": lambda k: _seq(
        k, (24,), k.layers.Reshape((24, 1)), k.layers.Conv1D(8, 3, activation="relu"),
        k.layers.GlobalAveragePooling1D(), k.layers.Reshape((8,)), k.layers.Dense(3)),
    "the input reshaped into an image": lambda k: _seq(
        k, (24,), k.layers.Reshape((4, -1, 2)), k.layers.Conv2D(3, 2, activation="relu"),
        k.layers.Flatten(), k.layers.Dense(2, activation="sigmoid")),
    "a ResNet (identity and projection shortcuts, a merge of three)": lambda k: _functional(
        k, 13, (12, 12, 3), _resnet),
    "a residual block on the input and a subtract of two branches": lambda k: _functional(
        k, 17, (20, 5), _branches),
    "depthwise and separable 2-D (multipliers 1 and 2, same and dilated)": lambda k: _seq(
        k, (12, 12, 3), k.layers.Conv2D(8, 3, activation="relu"),
        k.layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
        k.layers.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu"),
        k.layers.DepthwiseConv2D(3, padding="same", dilation_rate=2),
        k.layers.SeparableConv2D(20, 3, depth_multiplier=2), k.layers.BatchNormalization(),
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(3, activation="softmax")),
    "separable and depthwise 1-D on the input": lambda k: _seq(
        k, (24, 3), k.layers.SeparableConv1D(8, 3, activation="relu"),
        k.layers.DepthwiseConv1D(3, depth_multiplier=2, activation="relu"),
        k.layers.SeparableConv1D(8, 3, strides=2, padding="same"),
        k.layers.GlobalAveragePooling1D(), k.layers.Dense(3, activation="softmax")),
    "a MobileNet v2 block": lambda k: _functional(k, 19, (10, 10, 3), _mobilenet),
    "Inception branches and DenseNet blocks (Concatenate on channels)": lambda k: _functional(
        k, 23, (12, 12, 3), _concatenations),
    "MobileNet's head: keepdims pooling, a 1x1 convolution, a reshape, no Dense": lambda k: _seq(
        k, (9, 9, 3), k.layers.Conv2D(8, 3, strides=2, activation="relu"),
        k.layers.GlobalAveragePooling2D(keepdims=True), k.layers.Dropout(0.1),
        k.layers.Conv2D(5, 1), k.layers.Reshape((5,)), k.layers.Activation("softmax")),
    "global max pooling keeping its axes, then Flatten": lambda k: _seq(
        k, (12, 4), k.layers.Conv1D(6, 3), k.layers.GlobalMaxPooling1D(keepdims=True),
        k.layers.BatchNormalization(), k.layers.Flatten(), k.layers.Dense(2, "sigmoid")),
    "augmentation layers (the identity at inference) before the convolutions": lambda k: _seq(
        k, (10, 10, 3), k.Sequential([k.layers.RandomFlip(), k.layers.RandomRotation(0.1),
                                      k.layers.RandomZoom(0.1), k.layers.RandomContrast(0.2)]),
        k.layers.Rescaling(1 / 255.0), k.layers.Conv2D(4, 3, activation="relu"),
        k.layers.GlobalAveragePooling2D(), k.layers.Dense(3, activation="softmax")),
    "flatten only (an MLP on images)": lambda k: _seq(
        k, (6, 5, 2), k.layers.Flatten(), k.layers.Dense(16, activation="relu"),
        k.layers.Dense(3, activation="softmax")),
}


def _functional(keras: Any, seed: int, shape: tuple[int, ...], body: Callable[[Any, Any], Any]
                ) -> Any:
    """keras.Model(inputs, body(keras, inputs)) from a fixed seed, weights randomized."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    model = keras.Model(inputs, body(keras, inputs))
    _randomize(model, seed)
    return model


def _residual_after_conv(keras: Any, inputs: Any) -> Any:
    L = keras.layers
    x = L.Flatten()(L.Conv1D(1, 4, strides=3, padding="same")(inputs))
    h = L.Dense(5, activation="relu")(x)
    return L.Dense(3, activation="softmax")(L.Add()([h, L.Dense(5)(h)]))


def _resnet(keras: Any, inputs: Any) -> Any:
    """Keras' ResNet v1 basic blocks: conv-BN-relu-conv-BN + shortcut, relu; the second
    block halves the grid with a strided 1x1 projection; then three branches averaged."""
    L = keras.layers
    x = L.Activation("relu")(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inputs)))

    def block(x: Any, filters: int, strides: int) -> Any:
        y = L.Conv2D(filters, 3, strides=strides, padding="same")(x)
        y = L.Activation("relu")(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if strides != 1 or filters != x.shape[-1]:
            x = L.BatchNormalization()(L.Conv2D(filters, 1, strides=strides)(x))
        return L.Activation("relu")(L.Add()([x, y]))

    x = block(block(x, 16, 1), 20, 2)
    x = L.Average()([x, L.Conv2D(20, 1)(x), L.Conv2D(20, 3, padding="same")(x)])
    return L.Dense(5, activation="softmax")(L.GlobalAveragePooling2D()(x))


def _branches(keras: Any, inputs: Any) -> Any:
    L = keras.layers
    x = L.Add()([inputs, L.Conv1D(5, 3, padding="same")(inputs)])  # a skip from the input
    a = L.MaxPooling1D(2)(L.Conv1D(33, 3, padding="same", activation="elu")(x))
    b = L.AveragePooling1D(2)(L.Conv1D(33, 5, padding="same")(x))
    x = L.Multiply()([L.Subtract()([b, a]), L.Activation("sigmoid")(a)])
    return L.Dense(3, activation="softmax")(L.Flatten()(x))


def _mobilenet(keras: Any, inputs: Any) -> Any:
    """Inverted residual: 1x1 expand, BN, relu6, 3x3 depthwise, BN, relu6, 1x1 project,
    BN, Add with the block's input."""
    L = keras.layers
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same")(inputs)))
    y = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(48, 1)(x)))
    y = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(y)))
    y = L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(y))
    return L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(L.Add()([x, y])))


def _concatenations(keras: Any, inputs: Any) -> Any:
    """An Inception module (1x1, 3x3 and pooled branches joined) reading the input among
    its branches, then two DenseNet layers (x = [x, conv(relu(bn(x)))])."""
    L = keras.layers
    x = L.Concatenate()([
        L.Conv2D(5, 1, activation="relu")(inputs),
        L.Conv2D(8, 3, padding="same", activation="relu")(inputs),
        L.MaxPooling2D(3, strides=1, padding="same")(inputs), inputs,
    ])
    for _ in range(2):
        y = L.Conv2D(7, 3, padding="same")(L.Activation("relu")(L.BatchNormalization()(x)))
        x = L.Concatenate(axis=-1)([x, y])
    return L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x))


def _nested_block(keras: Any, inputs: Any) -> Any:
    L = keras.layers
    block = keras.Sequential([L.Conv2D(8, 3, padding="same"), L.BatchNormalization(),
                              L.Activation("relu"), L.MaxPooling2D()], name="block")
    x = L.GlobalAveragePooling2D()(block(L.Dropout(0.1)(inputs)))
    return L.Dense(3, activation="softmax")(L.Dense(8, "relu")(x))


@pytest.mark.parametrize("name", list(CASES))
def test_convolutional_classifiers_compile_and_match_keras(name: str, tmp_path: Path) -> None:
    import keras

    _compare(CASES[name](keras), tmp_path)


@pytest.mark.parametrize("target", [t.name for t in runnable_targets()])
@pytest.mark.parametrize("name", [name for name in CASES if name.startswith((
    "a ResNet", "depthwise and separable 2-D", "conv1d causal", "wide filters"))])
def test_every_target_this_cpu_runs_compiles_the_convolutions(
    name: str, target: str, tmp_path: Path
) -> None:
    """AVX2's 8 lanes and 4-row tiles pad and tile otherwise than AVX-512's 16 and 8."""
    import keras

    from kerasport.export.tvm import resolve_targets

    _compare(CASES[name](keras), tmp_path, target=resolve_targets([target])[0])


def test_keras_applications_compile(tmp_path: Path) -> None:
    """Models as users take them from keras.applications: MobileNet (ZeroPadding, ReLU6,
    depthwise convolutions, a keepdims pooling and a 1x1-convolution head) compiled and
    compared; ResNet50's, MobileNetV2's and DenseNet121's fronts (residual blocks, inverted
    residuals, concatenations) read without a refusal (MobileNetV2 is compiled and checked by
    benchmarks/bench_tvm_family.py)."""
    import keras

    applications = keras.applications
    _compare(applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None,
                                    classes=10), tmp_path)
    from kerasport.export.tvm.keras_layers import tvm_network

    for build in (applications.ResNet50, applications.MobileNetV2, applications.DenseNet121):
        network = tvm_network(build(input_shape=(32, 32, 3), weights=None, classes=10))
        assert network.front is not None and len(network.front.stages) > 50


def _random_cnn(keras: Any, seed: int) -> Any:
    """A Sequential CNN from seeded choices: 1-D or 2-D, convolutions of assorted filters,
    kernels, strides, dilations and paddings, pooling, zero padding and per-channel steps,
    then Flatten or a global pooling and one or two Dense layers."""
    L = keras.layers
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    two_d = bool(rng.integers(2))
    shape: list[int] = [int(rng.integers(9, 17)), int(rng.integers(9, 17))] if two_d else [
        int(rng.integers(20, 40))]
    channels = int(rng.choice([1, 2, 3, 5]))
    layers: list[Any] = [keras.Input((*shape, channels))]
    suffix = "2D" if two_d else "1D"
    for _ in range(int(rng.integers(2, 5))):
        choice = rng.choice(["conv", "conv", "pool", "pad", "step"])
        if choice == "conv":
            kind = str(rng.choice(["Conv", "Conv", "DepthwiseConv", "SeparableConv"]))
            size = int(rng.choice([1, 2, 3]))
            padding = str(rng.choice(["valid", "same"] + ([] if two_d else ["causal"])))
            stride, dilation = int(rng.choice([1, 1, 2])), 1
            if stride == 1:
                dilation = int(rng.choice([1, 2]))
            if padding == "valid" and min(shape) < (size - 1) * dilation + 1:
                continue
            activation = str(rng.choice(["relu", "linear", "gelu", "elu", "sigmoid"]))
            if padding == "causal" and kind != "Conv":
                padding = "same"
            options = dict(strides=stride, dilation_rate=dilation, padding=padding,
                           activation=activation)
            if kind == "DepthwiseConv":
                layers.append(getattr(L, f"DepthwiseConv{suffix}")(
                    size, depth_multiplier=int(rng.choice([1, 2])), **options))
            else:
                layers.append(getattr(L, f"{kind}{suffix}")(
                    int(rng.choice([1, 3, 8, 20, 33])), size, **options))
            shape = [(n + stride - 1) // stride if padding != "valid"
                     else (n - (size - 1) * dilation - 1) // stride + 1 for n in shape]
        elif choice == "pool" and min(shape) >= 2:
            kind = str(rng.choice(["Max", "Average"]))
            padding = str(rng.choice(["valid", "same"]))
            layers.append(getattr(L, f"{kind}Pooling{suffix}")(2, padding=padding))
            shape = [(n + 1) // 2 if padding == "same" else n // 2 for n in shape]
        elif choice == "pad":
            layers.append(getattr(L, f"ZeroPadding{suffix}")(1))
            shape = [n + 2 for n in shape]
        else:
            layers.append(rng.choice([L.BatchNormalization(), L.ReLU(max_value=2.0),
                                      L.Activation("tanh")]))
    layers.append(rng.choice([L.Flatten(), getattr(L, f"GlobalAveragePooling{suffix}")(),
                              getattr(L, f"GlobalMaxPooling{suffix}")()]))
    if rng.integers(2):
        layers.append(L.Dense(int(rng.choice([4, 16])), activation="relu"))
    layers.append(L.Dense(int(rng.choice([2, 3])), activation="softmax"))
    model = keras.Sequential(layers)
    _randomize(model, seed)
    return model


@pytest.mark.parametrize("seed", range(8))
def test_random_cnns_compile_and_match_keras(seed: int, tmp_path: Path) -> None:
    import keras

    _compare(_random_cnn(keras, seed), tmp_path, seed)


def _embedding_model(keras: Any, length: int, vocabulary: int, body: Callable[[Any], list[Any]]
                     ) -> Any:
    keras.utils.set_random_seed(11)
    model = keras.Sequential([keras.Input((length,), dtype="int32"),
                              keras.layers.Embedding(vocabulary, 12), *body(keras.layers)])
    _randomize(model, 11)
    return model


EMBEDDINGS: dict[str, Callable[[Any], Any]] = {
    "text CNN": lambda k: _embedding_model(k, 30, 50, lambda L: [
        L.Dropout(0.2), L.Conv1D(16, 7, strides=3, padding="valid", activation="relu"),
        L.Conv1D(16, 3, activation="relu"), L.GlobalMaxPooling1D(), L.Dense(8, "relu"),
        L.Dense(1, activation="sigmoid")]),
    "averaged embeddings (fastText)": lambda k: _embedding_model(k, 17, 1000, lambda L: [
        L.GlobalAveragePooling1D(), L.Dense(4, activation="softmax")]),
    "one categorical feature": lambda k: _embedding_model(k, 1, 7, lambda L: [
        L.Flatten(), L.Dense(6, activation="relu"), L.Dense(3, activation="softmax")]),
}


@pytest.mark.parametrize("name", list(EMBEDDINGS))
def test_embedding_models_compile_and_match_keras(name: str, tmp_path: Path) -> None:
    """Indices through the table, every index of the vocabulary used (the first and the
    last included), at every row count."""
    import keras

    from kerasport.export.check import check_agreement
    from kerasport.export.keras_model import head_kind

    model = EMBEDDINGS[name](keras)
    runner = _compile(model, tmp_path)
    vocabulary = int(model.layers[0].input_dim)
    rng = np.random.default_rng(4)
    for rows in ROWS:
        x = rng.integers(0, vocabulary, size=(rows, *model.input_shape[1:])).astype(np.int32)
        x.reshape(-1)[[0, -1]] = (0, vocabulary - 1)
        got = runner.run(x)
        reference = np.asarray(model(x, training=False), np.float32)
        check_agreement(reference, got, 1e-5, head_kind(model))


# --- refusals ---------------------------------------------------------------------------------


def _refusal(model: Any) -> str:
    from kerasport.export.tvm.keras_layers import tvm_network

    with pytest.raises(ExportError) as caught:
        tvm_network(model)
    return str(caught.value)


def _two_flat_outputs(keras: Any) -> Any:
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.Concatenate()([L.GlobalMaxPooling2D()(x), L.GlobalAveragePooling2D(name="gap")(x)])
    return keras.Model(inputs, L.Dense(3)(x))


def _positions_concatenation(keras: Any) -> Any:
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Concatenate(axis=1, name="cat")([L.Conv2D(4, 3)(inputs), L.Conv2D(4, 3)(inputs)])
    return keras.Model(inputs, L.Dense(3)(L.Flatten()(x)))


REFUSED: dict[str, tuple[Case, str]] = {
    "a transposed convolution": (lambda k: _seq(
        k, (8, 8, 3), k.layers.Conv2DTranspose(3, 2, name="up"), k.layers.Flatten(),
        k.layers.Dense(3)), r"layer 'up' \(Conv2DTranspose\): on sequences and images"),
    "grouped convolution": (lambda k: _seq(
        k, (8, 8, 4), k.layers.Conv2D(4, 3, groups=2, name="g"), k.layers.Flatten(),
        k.layers.Dense(3)), r"layer 'g' \(Conv2D\): groups=2"),
    "two flat outputs": (_two_flat_outputs, r"layer 'gap' \(GlobalAveragePooling2D\): the "
                         r"convolution route has one flat output"),
    "a concatenation along positions": (_positions_concatenation,
                                        r"layer 'cat' \(Concatenate\): axis 1 is not"),
    "layer normalization over channels": (lambda k: _seq(
        k, (10, 3), k.layers.Conv1D(4, 3), k.layers.LayerNormalization(name="ln"),
        k.layers.Flatten(), k.layers.Dense(3)), r"layer 'ln' \(LayerNormalization\)"),
    "a reshape of a spatial value into another": (lambda k: _seq(
        k, (10, 3), k.layers.Conv1D(4, 3), k.layers.Reshape((4, 8), name="r"),
        k.layers.Flatten(), k.layers.Dense(3)), r"layer 'r' \(Reshape\): a Reshape of a "
        r"spatial value to \(4, 8\)"),
    "a per-position head": (lambda k: _seq(
        k, (10, 3), k.layers.Conv1D(4, 3, activation="softmax", name="seg")),
        r"layer 'seg' \(Conv1D\): activation 'softmax'"),
    "a per-position output": (lambda k: _seq(k, (10, 3), k.layers.Conv1D(4, 3)),
                              r"output is per position"),
    "a reshape of a hidden value": (lambda k: _seq(
        k, (12,), k.layers.Dense(12), k.layers.Reshape((6, 2), name="r"), k.layers.Conv1D(2, 3),
        k.layers.Flatten(), k.layers.Dense(3)),
        r"layer 'r' \(Reshape\): a Reshape compiles only on the model's input"),
    "an embedding with a mask": (lambda k: _seq(
        k, (6,), k.layers.Embedding(9, 4, mask_zero=True, name="e"),
        k.layers.GlobalAveragePooling1D(), k.layers.Dense(3)),
        r"layer 'e' \(Embedding\): mask_zero=True"),
    "batch normalization over positions": (lambda k: _seq(
        k, (10, 3), k.layers.Conv1D(10, 3), k.layers.BatchNormalization(axis=1, name="bn"),
        k.layers.Flatten(), k.layers.Dense(3)), r"layer 'bn' \(BatchNormalization\): axis 1"),
    "prelu per position": (lambda k: _seq(
        k, (10, 3), k.layers.Conv1D(4, 3), k.layers.PReLU(name="p"), k.layers.Flatten(),
        k.layers.Dense(3)), r"layer 'p' \(PReLU\): a parameter of shape \(8, 4\)"),
    "a 3-D convolution": (lambda k: _seq(
        k, (4, 4, 4, 1), k.layers.Conv3D(2, 2), k.layers.Flatten(), k.layers.Dense(3)),
        r"input is \(batch, features\), \(batch, length, channels\) or"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_convolution_route_cannot_compile_is_refused_by_name(case: str) -> None:
    import keras

    build, pattern = REFUSED[case]
    message = _refusal(build(keras))
    assert re.search(pattern, message), message
    assert "export without --tvm" in message


# --- through export and the runtime -------------------------------------------------------


def test_a_cnn_exports_with_its_library_timed_and_serves(tmp_path: Path) -> None:
    """Export checks the library against Keras, times it against ONNX Runtime and records
    the figures; the bundle serves any batch of images through it, in chunks too."""
    import keras

    import kerasport.runtime
    from kerasport.export import export_bundle
    from kerasport.export.check import check_agreement
    from kerasport.manifest import read_manifest

    model = CASES["conv2d, max pooling, flatten"](keras)
    model.save(tmp_path / "m.keras")
    bundle = export_bundle(tmp_path / "m.keras", tmp_path / "b", tvm_targets=["auto"])
    manifest = read_manifest(bundle)
    (key,) = [k for k in manifest.artifacts if k.startswith("tvm-")]
    details = manifest.artifacts[key].details
    assert details["route"] == "conv-graph" and details["scratch"]
    assert [stage["kind"] for stage in details["front"]] == ["conv", "pool", "flatten"]
    assert details["measured"]["rows"] == [1, 8, 128]
    served = kerasport.runtime.load(bundle, backend="tvm")
    x = np.random.default_rng(1).uniform(0, 1, (1100, 12, 11, 3)).astype(np.float32)
    got = served.predict(x, batch_size=300)
    check_agreement(keras_predict(model, x), got, 1e-5, "softmax")
    assert np.array_equal(kerasport.runtime.classify(served, x[:5], 2), got[:5])


def keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, verbose=0), np.float32)


def test_wide_flat_features_bound_the_blocked_buffers(tmp_path: Path) -> None:
    """A Flatten of a large feature map makes wide rows: the blocked kernel's buffers hold
    as many rows as fit MAX_CHUNK_BYTES, and a larger chunk runs in pieces."""
    import keras

    from kerasport.export.check import check_agreement
    from kerasport.runtime.backends import MAX_CHUNK_BYTES, MAX_CHUNK_ROWS

    model = _seq(keras, (64, 64, 1), keras.layers.Conv2D(20, 3, padding="same"),
                 keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax"))
    runner = _compile(model, tmp_path)
    assert runner._block_capacity < MAX_CHUNK_ROWS
    assert runner._block_capacity * 4 * 64 * 64 * 21 <= MAX_CHUNK_BYTES
    x = np.random.default_rng(2).standard_normal((runner._block_capacity + 13, 64, 64, 1))
    x = x.astype(np.float32)
    check_agreement(keras_predict(model, x), runner.run(x), 1e-5, "softmax")


def test_stages_share_scratch_buffers_once_their_values_are_read(tmp_path: Path) -> None:
    """A ResNet's front holds a few values at once whatever its depth: its scratch is a
    few buffers (each at least the largest value it held), not one per stage, and the
    results stay Keras'."""
    import keras

    from kerasport.export.tvm import host_target
    from kerasport.export.tvm.conv_front import plan_front
    from kerasport.export.tvm.keras_layers import tvm_network

    model = CASES["a ResNet (identity and projection shortcuts, a merge of three)"](keras)
    front = tvm_network(model).front
    assert front is not None
    plan = plan_front(front, host_target())
    assert len(plan.scratch) <= 4 < len(front.stages)
    sizes = {buffer.name: buffer.size for buffer in plan.scratch}
    for stage in plan.stages:
        if not stage.dst.rows:
            assert stage.dst.size <= sizes[stage.dst.name]
    _compare(model, tmp_path)


def test_a_conv_description_is_checked_before_loading(tmp_path: Path) -> None:
    """The scratch sizes, the flat buffer, the front kernel and its share of the arrays are
    the kernels' calling convention: missing or wrong, the library is refused (a wrong size
    fails the kernels' own shape checks when the runner tries each one at load)."""
    import keras

    from kerasport.export.tvm import host_target
    from kerasport.export.tvm.dense_graph import compile_dense_graph
    from kerasport.export.tvm.keras_layers import tvm_network
    from kerasport.runtime.backends.tvm import open_tvm_library

    model = CASES["conv2d, max pooling, flatten"](keras)
    network = tvm_network(model)
    details = compile_dense_graph(network.nodes, network.num_features, host_target(),
                                  tmp_path, "c", network.front)
    library = (tmp_path / "c.so").read_bytes()
    weights = (tmp_path / "c.weights.bin").read_bytes()
    features, classes = network.num_features, details["num_classes"]
    broken = [
        {k: v for k, v in details.items() if k != "scratch"},
        {**details, "scratch": [0]},
        {**details, "scratch": [s + 16 for s in details["scratch"]]},
        {**details, "buffers": []},
        {**details, "buffers": [details["buffers"][0] + 16, *details["buffers"][1:]]},
        {**details, "front_arrays": len(details["arrays"]) + 1},
        {**details, "front_arrays": details["front_arrays"] - 1},
        {**details, "functions": {k: v for k, v in details["functions"].items() if k != "front"}},
        {**details, "functions": {**details["functions"], "front": "no_such_kernel"}},
    ]
    for description in broken:
        with pytest.raises(BundleError):
            open_tvm_library(library, weights, description, features, classes, (12, 11, 3))
    with pytest.raises(BundleError, match="input shape"):
        open_tvm_library(library, weights, details, features, classes, (12, 11, 2))
