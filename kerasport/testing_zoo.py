"""A zoo of tiny trained Keras 3 classifiers beyond DeepVariant's family, for tests.

Each `ZooModel` names a builder (an uncompiled Keras model), the per-row input shape and
dtype, and how to draw examples for it (`zoo_examples`): float32 normal rows, or integers
in range for an Embedding's vocabulary or a uint8 image. `build_zoo(root)` trains each one
briefly (1 epoch on a few hundred seeded random rows, so no weight is left at its
initializer and BatchNormalization's moving statistics move) and saves it with
`model.save(path)`.

`SUPPORTED` are models kerasport must export, serve and verify; `REFUSED` are models export
must refuse with an `ExportError` whose message matches the entry's `refusal` pattern (the
layer's name, or the problem). Every model is a few thousand parameters, so the whole zoo
trains and saves in well under a minute on two cores. Needs Keras (the `export` extra).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_ROWS = 256
TRAIN_BATCH = 64
ZOO_PACKAGE = "kerasport_zoo"


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry.

    `build(keras)` returns an uncompiled model; `head` is the output's kind ("softmax",
    "sigmoid" or "linear": what the training loss and the tolerance assume); `low`/`high`
    bound integer inputs (high exclusive); `refusal` is a regex the ExportError of a
    model that must be refused matches (None for a supported model).
    """

    name: str
    build: Callable[[Any], Any]
    input_shape: tuple[int | None, ...]
    head: str = "softmax"
    dtype: str = "float32"
    low: int = 0
    high: int = 0
    refusal: str | None = None
    note: str = ""

    @property
    def integer_input(self) -> bool:
        return np.dtype(self.dtype).kind in "iu"


def zoo_examples(entry: ZooModel, rows: int, seed: int = 0) -> np.ndarray:
    """`rows` examples of the entry's input: float normal, or integers in [low, high)."""
    rng = np.random.default_rng(seed)
    shape = (rows, *(8 if d is None else d for d in entry.input_shape))
    if entry.integer_input:
        return rng.integers(entry.low, entry.high, size=shape).astype(entry.dtype)
    return rng.standard_normal(shape).astype(entry.dtype)


# --- custom objects: a registered activation and a subclassed model --------------------------

_CUSTOM: dict[str, Any] = {}


def custom_objects() -> dict[str, Any]:
    """Register (once) and return the zoo's custom objects: `tanh_gelu` (gelu's tanh
    approximation, which a string activation cannot name) and the subclassed model.

    Keras reloads a model that uses them only where they are registered, so anything that
    loads a zoo model (export, verify's reference) must run after this in the same process.
    """
    if _CUSTOM:
        return _CUSTOM
    from kerasport.quiet import quiet_import

    keras = quiet_import("keras")

    @keras.saving.register_keras_serializable(package=ZOO_PACKAGE)
    def tanh_gelu(x: Any) -> Any:
        return keras.activations.gelu(x, approximate=True)

    @keras.saving.register_keras_serializable(package=ZOO_PACKAGE)
    class ResidualMLP(keras.Model):  # type: ignore[name-defined]
        """A subclassed classifier: Dense -> (Dense + skip) -> LayerNorm -> softmax."""

        def __init__(self, hidden: int = 16, classes: int = 3, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.hidden, self.classes = hidden, classes
            self.inner = keras.layers.Dense(hidden, activation="relu")
            self.skip = keras.layers.Dense(hidden, activation="tanh")
            self.norm = keras.layers.LayerNormalization()
            self.head = keras.layers.Dense(classes, activation="softmax")

        def call(self, x: Any, training: bool = False) -> Any:
            h = self.inner(x)
            return self.head(self.norm(h + self.skip(h)))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "hidden": self.hidden, "classes": self.classes}

    _CUSTOM.update(
        {f"{ZOO_PACKAGE}>tanh_gelu": tanh_gelu, f"{ZOO_PACKAGE}>ResidualMLP": ResidualMLP}
    )
    return _CUSTOM


# --- builders ---------------------------------------------------------------------------------


def _dense_stack(activations: Iterable[Any], features: int = 40, classes: int = 3) -> Callable:
    """A Sequential of Dense(12) layers, one per activation, and a softmax head."""

    def build(keras: Any) -> Any:
        layers = [keras.Input((features,))]
        layers += [keras.layers.Dense(12, activation=act) for act in activations]
        layers.append(keras.layers.Dense(classes, activation="softmax"))
        return keras.Sequential(layers)

    return build


def _activation_layers(keras: Any) -> Any:
    L = keras.layers
    x = inputs = keras.Input((40,))
    x = L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5)(L.Dense(16)(x))
    x = L.LeakyReLU(negative_slope=0.2)(L.Dense(16)(x))
    x = L.PReLU()(L.Dense(16)(x))
    x = L.ELU(alpha=0.5)(L.Dense(16)(x))
    x = L.Activation("swish")(L.Dense(16)(x))
    x = L.ReLU()(L.Dense(16)(x))
    x = L.ReLU(max_value=1.0)(L.Dense(16)(x))
    outputs = L.Softmax()(L.Dense(3)(x))
    return keras.Model(inputs, outputs, name="activation_layers")


def _softmax_family(keras: Any) -> Any:
    """Activations that normalize over an axis, inside the network. (glu is left out: it
    halves the last axis, which Dense's shape inference does not know, so a Keras model
    with a Dense glu layer cannot be built.)"""
    L = keras.layers
    x = inputs = keras.Input((40,))
    x = L.Dense(12, activation="log_softmax")(x)
    x = L.Dense(12, activation="sparsemax")(x)
    x = L.Dense(12, activation="softmax")(x)
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="softmax_family")


def _batchnorm_mlp(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((40,)),
            L.Dense(32, use_bias=False),
            L.BatchNormalization(momentum=0.8),
            L.Activation("relu"),
            L.Dense(32),
            L.BatchNormalization(momentum=0.8, center=False, scale=False),
            L.Activation("gelu"),
            L.Dense(10, activation="softmax"),
        ],
        name="batchnorm_mlp",
    )


def _normalizations_seq(keras: Any) -> Any:
    """LayerNormalization, GroupNormalization, UnitNormalization, RMSNormalization on (8, 6)."""
    L = keras.layers
    x = inputs = keras.Input((8, 6))
    x = L.Conv1D(8, 3, padding="same")(x)
    x = L.GroupNormalization(groups=4)(x)
    x = L.LayerNormalization(axis=-1)(x)
    x = L.Dense(8, activation="relu")(x)
    x = L.LayerNormalization(axis=[1, 2], center=False)(x)
    x = L.UnitNormalization()(x)
    x = L.RMSNormalization()(x)
    x = L.BatchNormalization(axis=1, momentum=0.8)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="normalizations")


def _group_norm_image(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            L.Conv2D(8, 3, strides=2),
            L.GroupNormalization(groups=2),
            L.Activation("silu"),
            L.Conv2D(8, 3),
            L.GroupNormalization(groups=-1),  # instance norm
            L.GlobalAveragePooling2D(),
            L.UnitNormalization(),
            L.Dense(3, activation="softmax"),
        ],
        name="group_norm_image",
    )


def _preprocessing(keras: Any) -> Any:
    """Normalization (adapted in build_zoo) and Rescaling, as users put them in the model."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((40,)),
            L.Normalization(name="adapted_normalization"),
            L.Rescaling(0.5, offset=0.25),
            L.Dense(16, activation="relu"),
            L.Dense(3, activation="softmax"),
        ],
        name="preprocessing",
    )


def _uint8_image(keras: Any) -> Any:
    """A uint8 image in, Rescaling(1/255) first: how image classifiers are often built."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 1), dtype="uint8"),
            L.Rescaling(1.0 / 255),
            L.Conv2D(8, 3, activation="relu"),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(10, activation="softmax"),
        ],
        name="uint8_image",
    )


def _dropout_family(keras: Any) -> Any:
    L = keras.layers
    x = inputs = keras.Input((8, 6))
    x = L.SpatialDropout1D(0.3)(L.Conv1D(8, 3, padding="same", activation="relu")(x))
    x = L.GaussianNoise(0.5)(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.5)(L.Dense(16, activation="selu")(x))
    x = L.AlphaDropout(0.2)(x)
    x = L.GaussianDropout(0.3)(L.Dense(16, activation="relu")(x))
    x = L.ActivityRegularization(l1=1e-3)(x)
    x = L.Dense(3, activation="softmax")(x)
    outputs = L.Dropout(0.1)(x)  # a Dropout after the head: the head is still the softmax
    return keras.Model(inputs, outputs, name="dropout_family")


def _spatial_dropout_image(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            L.Conv2D(4, 3, activation="relu"),
            L.SpatialDropout2D(0.3),
            L.MaxPooling2D(),
            L.Conv2D(4, 3, activation="relu"),
            L.GaussianNoise(0.2),
            L.GlobalMaxPooling2D(),
            L.Dense(2, activation="softmax"),
        ],
        name="spatial_dropout_image",
    )


def _residual_mlp(keras: Any) -> Any:
    L = keras.layers
    x = inputs = keras.Input((40,))
    x = L.Dense(16, activation="relu")(x)
    for _ in range(2):
        branch = L.Dense(16, activation="relu")(x)
        branch = L.Dense(16)(branch)
        x = L.Activation("relu")(L.Add()([x, branch]))
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="residual_mlp")


def _branching_merges(keras: Any) -> Any:
    """Every merge layer, on branches of one input."""
    L = keras.layers
    inputs = keras.Input((40,))
    a = L.Dense(12, activation="tanh")(inputs)
    b = L.Dense(12, activation="sigmoid")(inputs)
    c = L.Dense(12, activation="relu")(inputs)
    merged = [
        L.Add()([a, b, c]),
        L.Subtract()([a, b]),
        L.Multiply()([b, c]),
        L.Average()([a, c]),
        L.Maximum()([a, b, c]),
        L.Minimum()([a, c]),
        L.Dot(axes=1, normalize=True)([a, c]),
    ]
    x = L.Concatenate()(merged)
    outputs = L.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="branching_merges")


def _reshapes(keras: Any) -> Any:
    L = keras.layers
    x = inputs = keras.Input((40,))
    x = L.Reshape((8, 5))(x)
    x = L.Permute((2, 1))(x)  # (5, 8)
    x = L.Dense(4, activation="relu")(x)  # on the last axis: (5, 4)
    x = L.Flatten()(x)  # 20
    x = L.RepeatVector(3)(x)  # (3, 20)
    x = L.Reshape((-1,))(x)  # 60
    x = L.Dense(8, activation="relu")(x)
    x = L.Reshape((2, 4))(x)
    x = L.Flatten()(x)
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="reshapes")


def _einsum_dense(keras: Any) -> Any:
    L = keras.layers
    x = inputs = keras.Input((8, 6))
    x = L.EinsumDense("abc,cd->abd", output_shape=(8, 5), bias_axes="d", activation="relu")(x)
    x = L.EinsumDense("abd,bd->ad", output_shape=(5,), bias_axes="d")(x)  # contracts positions
    x = L.EinsumDense("ab,bc->ac", output_shape=(4,), activation="tanh")(x)
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="einsum_dense")


def _embedding(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            L.Embedding(50, 8),
            L.Conv1D(8, 3, activation="relu"),
            L.GlobalAveragePooling1D(),
            L.Dense(3, activation="softmax"),
        ],
        name="embedding",
    )


def _embedding_flatten_int64(keras: Any) -> Any:
    L = keras.layers
    x = inputs = keras.Input((6,), dtype="int64")
    x = L.Embedding(20, 4)(x)
    x = L.Flatten()(x)
    outputs = L.Dense(2, activation="softmax")(L.Dense(8, activation="relu")(x))
    return keras.Model(inputs, outputs, name="embedding_int64")


def _conv1d(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((32, 3)),
            L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu"),
            L.MaxPooling1D(2),
            L.Conv1D(8, 3, strides=2, padding="same", activation="elu"),
            L.AveragePooling1D(2, padding="same"),
            L.Conv1D(8, 1, use_bias=False),
            L.GlobalMaxPooling1D(),
            L.Dense(3, activation="softmax"),
        ],
        name="conv1d",
    )


def _cnn2d(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            L.Conv2D(8, 3, padding="same", activation="relu"),
            L.BatchNormalization(momentum=0.8),
            L.MaxPooling2D(),
            L.Conv2D(8, 3, strides=(1, 2), padding="same", activation="relu"),  # (8, 4)
            L.AveragePooling2D(pool_size=(2, 2), strides=1, padding="same"),
            L.Conv2D(8, (3, 1), dilation_rate=(2, 1), activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(10, activation="softmax"),
        ],
        name="cnn2d",
    )


def _conv3d(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((6, 6, 6, 1)),
            L.ZeroPadding3D(1),  # 8
            L.Conv3D(4, 3, activation="relu"),  # 6
            L.MaxPooling3D(2),  # 3
            L.UpSampling3D(2),  # 6
            L.Cropping3D(((1, 0), (0, 1), (1, 1))),  # (5, 5, 4)
            L.Conv3D(4, 2, padding="same", activation="relu"),
            L.AveragePooling3D(2, padding="same"),  # (3, 3, 2)
            L.Conv3DTranspose(4, 2, strides=2),  # (6, 6, 4)
            L.GlobalMaxPooling3D(),
            L.Dense(3, activation="softmax"),
        ],
        name="conv3d",
    )


def _conv3d_global_avg(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((6, 6, 6, 1)),
            L.Conv3D(4, 3, activation="relu"),
            L.SpatialDropout3D(0.2),
            L.GlobalAveragePooling3D(),
            L.Dense(2, activation="sigmoid"),
        ],
        name="conv3d_sigmoid",
    )


def _depthwise_separable_2d(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 2)),
            L.Conv2D(8, 3, activation="relu"),
            L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
            L.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu"),
            L.DepthwiseConv2D(3, padding="same", dilation_rate=2),
            L.SeparableConv2D(8, 3, depth_multiplier=2),
            L.GlobalAveragePooling2D(),
            L.Dense(3, activation="softmax"),
        ],
        name="depthwise_separable_2d",
    )


def _separable_1d(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((32, 3)),
            L.SeparableConv1D(8, 3, activation="relu"),
            L.DepthwiseConv1D(3, depth_multiplier=2, activation="relu"),
            L.SeparableConv1D(8, 3, strides=2, padding="same"),
            L.GlobalAveragePooling1D(),
            L.Dense(3, activation="softmax"),
        ],
        name="separable_1d",
    )


def _unet(keras: Any) -> Any:
    """A tiny U-Net on (16, 16, 2) tiles with a per-pixel 3-class softmax (DeepCell-like)."""
    L = keras.layers
    inputs = keras.Input((16, 16, 2))
    e1 = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)  # 16
    e1 = L.BatchNormalization(momentum=0.8)(e1)
    e2 = L.Conv2D(8, 3, padding="same", activation="relu")(L.MaxPooling2D()(e1))  # 8
    b = L.Conv2D(8, 3, padding="same", activation="relu")(L.MaxPooling2D()(e2))  # 4
    d2 = L.Conv2DTranspose(8, 2, strides=2, padding="same")(b)  # 8
    d2 = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([d2, e2]))
    d1 = L.UpSampling2D(2)(d2)  # 16
    d1 = L.Cropping2D(1)(L.ZeroPadding2D(1)(d1))
    d1 = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([d1, e1]))
    outputs = L.Conv2D(3, 1, activation="softmax")(d1)
    return keras.Model(inputs, outputs, name="unet")


def _upsample_pad_crop_2d(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.ZeroPadding2D(((1, 2), (0, 1))),  # (11, 9)
            L.Conv2D(4, 3, activation="relu"),  # (9, 7)
            L.UpSampling2D((2, 1), interpolation="nearest"),  # (18, 7)
            L.Cropping2D(((2, 0), (1, 2))),  # (16, 4)
            L.UpSampling2D(2, interpolation="bilinear"),  # (32, 8)
            L.Conv2D(4, 3, strides=2, activation="relu"),
            L.MaxPooling2D(pool_size=(3, 2), strides=(2, 1), padding="same"),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        name="upsample_pad_crop_2d",
    )


def _per_position_1d(keras: Any) -> Any:
    """(20, 4) sequences -> per-position sigmoid over 4 labels, with 1-D up/down sampling."""
    L = keras.layers
    x = inputs = keras.Input((20, 4))
    x = L.ZeroPadding1D((1, 1))(x)  # 22
    x = L.Conv1D(8, 3, activation="relu")(x)  # 20
    x = L.MaxPooling1D(2)(x)  # 10
    x = L.Conv1DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)  # 20
    x = L.UpSampling1D(2)(x)  # 40
    x = L.Cropping1D((10, 10))(x)  # 20
    x = L.Dense(8, activation="relu")(x)
    outputs = L.Dense(4, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="per_position_1d")


def _sigmoid_head(keras: Any) -> Any:
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(5, activation="sigmoid"),
        ],
        name="sigmoid_head",
    )


def _binary_sigmoid(keras: Any) -> Any:
    """The usual binary classifier: one sigmoid unit."""
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="binary_sigmoid",
    )


def _linear_head(keras: Any) -> Any:
    """Logits (from_logits=True training), 10 classes, on a (8, 6) input via Flatten."""
    return keras.Sequential(
        [
            keras.Input((8, 6)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="linear_head",
    )


def _linear_head_large(keras: Any) -> Any:
    """Logits far from 1 in magnitude (Rescaling after the last Dense), where float32's
    resolution is coarser than 1e-5."""
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(2),
            keras.layers.Rescaling(300.0),
        ],
        name="linear_head_large",
    )


def _subclassed(keras: Any) -> Any:
    model = custom_objects()[f"{ZOO_PACKAGE}>ResidualMLP"](hidden=16, classes=3)
    model(np.zeros((1, 40), np.float32))  # build it by calling it on data
    return model


def _tanh_gelu(keras: Any) -> Any:
    tanh_gelu = custom_objects()[f"{ZOO_PACKAGE}>tanh_gelu"]
    return _dense_stack(["gelu", tanh_gelu, keras.layers.Activation("gelu")])(keras)


def _recurrent(kind: str, wrap_bidirectional: bool = False) -> Callable:
    def build(keras: Any) -> Any:
        L = keras.layers
        layer = getattr(L, kind)(8, name=f"{kind.lower()}_layer")
        if wrap_bidirectional:
            layer = L.Bidirectional(layer, name="bidirectional_layer")
        return keras.Sequential(
            [keras.Input((10, 4)), layer, L.Dense(3, activation="softmax")], name=kind.lower()
        )

    return build


def _stacked_recurrent(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((10, 4)),
            L.GRU(8, return_sequences=True, name="gru_seq"),
            L.LSTM(8, return_sequences=True, name="lstm_seq"),
            L.SimpleRNN(4, return_sequences=True, name="rnn_seq"),
            L.TimeDistributed(L.Dense(3, activation="softmax")),
        ],
        name="stacked_recurrent",
    )


def _attention(keras: Any) -> Any:
    """MultiHeadAttention (self-attention with a residual), Attention and AdditiveAttention."""
    L = keras.layers
    x = inputs = keras.Input((10, 8))
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)
    x = L.LayerNormalization()(L.Add()([x, attended]))
    x = L.Add()([L.Attention()([x, x]), L.AdditiveAttention()([x, x])])
    x = L.GlobalAveragePooling1D()(x)
    outputs = L.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="attention")


def _recurrent_variants(keras: Any) -> Any:
    """Masking, GRU(reset_after=False), a backwards LSTM, an unrolled LSTM, an RNN of cells."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((10, 4)),
            L.Masking(0.0),
            L.GRU(6, reset_after=False, return_sequences=True),
            L.LSTM(6, go_backwards=True, return_sequences=True),
            L.LSTM(6, unroll=True, return_sequences=True, recurrent_activation="hard_sigmoid"),
            L.RNN([L.LSTMCell(4), L.GRUCell(4)]),
            L.Dense(3, activation="softmax"),
        ],
        name="recurrent_variants",
    )


def _masked_lstm(keras: Any) -> Any:
    """A text classifier: Embedding(mask_zero=True) -> LSTM."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            L.Embedding(50, 8, mask_zero=True),
            L.LSTM(8),
            L.Dense(2, activation="softmax"),
        ],
        name="masked_lstm",
    )


def _conv_recurrent(keras: Any) -> Any:
    """Frames (4, 8, 8, 1): TimeDistributed(Conv2D) -> ConvLSTM2D."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((4, 8, 8, 1)),
            L.TimeDistributed(L.Conv2D(4, 3, padding="same", activation="relu")),
            L.ConvLSTM2D(4, 3),
            L.GlobalAveragePooling2D(),
            L.Dense(3, activation="softmax"),
        ],
        name="conv_recurrent",
    )


def _channels_first(keras: Any) -> Any:
    L = keras.layers
    cf = "channels_first"
    return keras.Sequential(
        [
            keras.Input((2, 16, 16)),
            L.Conv2D(4, 3, data_format=cf, activation="relu"),
            L.BatchNormalization(axis=1, momentum=0.8),
            L.MaxPooling2D(data_format=cf),
            L.AdaptiveAveragePooling2D((3, 3), data_format=cf),
            L.AdaptiveMaxPooling2D((2, 2), data_format=cf),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        name="channels_first",
    )


def _keras_ops_functional(keras: Any) -> Any:
    """keras.ops called in a Functional graph, and a SpectralNormalization wrapper."""
    L = keras.layers
    ops = keras.ops
    x = inputs = keras.Input((8, 6))
    x = ops.mean(x, axis=1) + ops.max(x, axis=1)
    x = ops.relu(L.SpectralNormalization(L.Dense(8))(x))
    outputs = ops.softmax(L.Dense(3)(x))
    return keras.Model(inputs, outputs, name="keras_ops_functional")


def _category_encoding(keras: Any) -> Any:
    """Integer input without an Embedding: multi-hot CategoryEncoding."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            L.CategoryEncoding(num_tokens=20, output_mode="multi_hot"),
            L.Dense(8, activation="relu"),
            L.Dense(3, activation="softmax"),
        ],
        name="category_encoding",
    )


def _log_softmax_head(keras: Any) -> Any:
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(8, activation="hard_tanh"),
            keras.layers.Dense(3, activation="log_softmax"),
        ],
        name="log_softmax_head",
    )


def _augmentation(keras: Any) -> Any:
    """Keras' image-classification tutorial: augmentation layers inside the model (the
    identity at inference)."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            L.RandomFlip("horizontal"),
            L.RandomRotation(0.1),
            L.RandomZoom(0.1),
            L.RandomTranslation(0.1, 0.1),
            L.RandomContrast(0.1),
            L.Conv2D(8, 3, activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(3, activation="softmax"),
        ],
        name="augmentation",
    )


def _resizing(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            L.Resizing(12, 12, name="resizing_layer"),
            L.CenterCrop(8, 8),
            L.Conv2D(4, 3, activation="relu"),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        name="resizing",
    )


def _float_input(dtype: str) -> Callable:
    def build(keras: Any) -> Any:
        L = keras.layers
        x = inputs = keras.Input((40,), dtype=dtype)
        outputs = L.Dense(3, activation="softmax")(L.Dense(16, activation="relu")(x))
        return keras.Model(inputs, outputs, name=f"{dtype}_input")

    return build


def _two_inputs(keras: Any) -> Any:
    L = keras.layers
    left, right = keras.Input((20,), name="left"), keras.Input((20,), name="right")
    x = L.Concatenate()([L.Dense(8)(left), L.Dense(8)(right)])
    return keras.Model([left, right], L.Dense(3, activation="softmax")(x), name="two_inputs")


def _two_outputs(keras: Any) -> Any:
    L = keras.layers
    inputs = keras.Input((40,))
    h = L.Dense(8, activation="relu")(inputs)
    a = L.Dense(3, activation="softmax", name="head_a")(h)
    b = L.Dense(2, activation="softmax", name="head_b")(h)
    return keras.Model(inputs, [a, b], name="two_outputs")


def _float64_output(keras: Any) -> Any:
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax", dtype="float64", name="head64"),
        ],
        name="float64_output",
    )


def _dynamic_spatial(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            L.Conv2D(4, 3, activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(3, activation="softmax"),
        ],
        name="dynamic_spatial",
    )


def _variable_length_sequence(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((None, 4)),
            L.Conv1D(8, 3, activation="relu"),
            L.GlobalMaxPooling1D(),
            L.Dense(3, activation="softmax"),
        ],
        name="variable_length",
    )


def _lambda(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((40,)),
            L.Dense(8),
            L.Lambda(lambda t: t * 2.0, name="doubling_lambda"),
            L.Dense(3, activation="softmax"),
        ],
        name="lambda",
    )


def _no_class_axis(keras: Any) -> Any:
    """Output (batch,): a regression squeezed to a scalar per row, no class axis."""
    L = keras.layers
    return keras.Sequential([keras.Input((40,)), L.Dense(1), L.Reshape(())], name="no_class_axis")


def _mixed_precision(keras: Any) -> Any:
    """mixed_float16 layers, a float32 softmax: ~7e-4 from Keras (float16 rounding)."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((40,)),
            L.Dense(16, activation="relu", dtype="mixed_float16", name="half_dense"),
            L.Dense(3, dtype="mixed_float16"),
            L.Activation("softmax", dtype="float32"),
        ],
        name="mixed_precision",
    )


def _grouped_conv(keras: Any) -> Any:
    """Conv2D(groups=2): Keras' TensorFlow backend runs it as an XLA function, which tf2onnx
    leaves as a StatefulPartitionedCall."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 4)),
            L.Conv2D(8, 3, groups=2, activation="relu", name="grouped_conv"),
            L.GlobalAveragePooling2D(),
            L.Dense(3, activation="softmax"),
        ],
        name="grouped_conv_model",
    )


def _integer_lookup(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int64"),
            L.IntegerLookup(vocabulary=list(range(0, 40, 2)), name="id_lookup"),
            L.Embedding(22, 4),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        name="integer_lookup",
    )


def _discretization(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((6,)),
            L.Discretization(bin_boundaries=[-1.0, 0.0, 1.0], name="binning"),
            L.Dense(8, activation="relu"),
            L.Dense(3, activation="softmax"),
        ],
        name="discretization",
    )


def _hashing(keras: Any) -> Any:
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int64"),
            L.Hashing(num_bins=16, name="hash_bins"),
            L.Embedding(16, 4),
            L.Flatten(),
            L.Dense(3, activation="softmax"),
        ],
        name="hashing",
    )


# Every built-in activation a Dense layer can name by string, in stacks of a few (bounded
# ones before the ones that grow fast, so no stack overflows float32). sparsemax,
# log_softmax and softmax are in their own model; `threshold` needs arguments and glu
# cannot be built in a Dense layer (see _softmax_family).
_ACTIVATION_STACKS = {
    "activations_gelu_elu": ["gelu", "elu", "selu", "celu", "relu"],
    "activations_swish": ["silu", "swish", "mish", "hard_silu", "hard_swish"],
    "activations_soft": ["softplus", "softsign", "sparse_plus", "squareplus", "tanh"],
    "activations_hard": ["hard_sigmoid", "hard_tanh", "relu6", "leaky_relu", "sparse_sigmoid"],
    "activations_shrink": ["hard_shrink", "soft_shrink", "tanh_shrink", "log_sigmoid", "linear"],
    "activations_exp": ["sigmoid", "exponential", "tanh", "exponential"],
}

SUPPORTED: tuple[ZooModel, ...] = (
    *(ZooModel(name, _dense_stack(acts), (40,)) for name, acts in _ACTIVATION_STACKS.items()),
    ZooModel("activations_tanh_gelu", _tanh_gelu, (40,), note="registered custom activation"),
    ZooModel("activation_layers", _activation_layers, (40,)),
    ZooModel("softmax_family", _softmax_family, (40,)),
    ZooModel("batchnorm_mlp", _batchnorm_mlp, (40,)),
    ZooModel("normalizations", _normalizations_seq, (8, 6)),
    ZooModel("group_norm_image", _group_norm_image, (16, 16, 1)),
    ZooModel("preprocessing", _preprocessing, (40,)),
    ZooModel("uint8_image", _uint8_image, (16, 16, 1), dtype="uint8", high=256),
    ZooModel("dropout_family", _dropout_family, (8, 6)),
    ZooModel("spatial_dropout_image", _spatial_dropout_image, (16, 16, 1)),
    ZooModel("residual_mlp", _residual_mlp, (40,)),
    ZooModel("branching_merges", _branching_merges, (40,)),
    ZooModel("reshapes", _reshapes, (40,)),
    ZooModel("einsum_dense", _einsum_dense, (8, 6)),
    ZooModel("embedding", _embedding, (12,), dtype="int32", high=50),
    ZooModel("embedding_int64", _embedding_flatten_int64, (6,), dtype="int64", high=20),
    ZooModel("conv1d", _conv1d, (32, 3)),
    ZooModel("cnn2d", _cnn2d, (16, 16, 1)),
    ZooModel("conv3d", _conv3d, (6, 6, 6, 1)),
    ZooModel("conv3d_sigmoid", _conv3d_global_avg, (6, 6, 6, 1), head="sigmoid"),
    ZooModel("depthwise_separable_2d", _depthwise_separable_2d, (16, 16, 2)),
    ZooModel("separable_1d", _separable_1d, (32, 3)),
    ZooModel("unet", _unet, (16, 16, 2), note="per-pixel 3-class softmax"),
    ZooModel("upsample_pad_crop_2d", _upsample_pad_crop_2d, (8, 8, 3)),
    ZooModel("per_position_1d", _per_position_1d, (20, 4), head="sigmoid"),
    ZooModel("sigmoid_head", _sigmoid_head, (40,), head="sigmoid"),
    ZooModel("binary_sigmoid", _binary_sigmoid, (40,), head="sigmoid"),
    ZooModel("linear_head", _linear_head, (8, 6), head="linear"),
    ZooModel("linear_head_large", _linear_head_large, (40,), head="linear"),
    ZooModel("subclassed", _subclassed, (40,), note="keras.Model subclass"),
    ZooModel("lstm", _recurrent("LSTM"), (10, 4)),
    ZooModel("gru", _recurrent("GRU"), (10, 4)),
    ZooModel("simple_rnn", _recurrent("SimpleRNN"), (10, 4)),
    ZooModel("bidirectional_lstm", _recurrent("LSTM", wrap_bidirectional=True), (10, 4)),
    ZooModel("stacked_recurrent", _stacked_recurrent, (10, 4), note="per-position head"),
    ZooModel("attention", _attention, (10, 8)),
    ZooModel("augmentation", _augmentation, (16, 16, 1)),
    ZooModel("resizing", _resizing, (16, 16, 1)),
    ZooModel("recurrent_variants", _recurrent_variants, (10, 4)),
    ZooModel("masked_lstm", _masked_lstm, (12,), dtype="int32", high=50),
    ZooModel("conv_recurrent", _conv_recurrent, (4, 8, 8, 1)),
    ZooModel("channels_first", _channels_first, (2, 16, 16)),
    ZooModel("keras_ops_functional", _keras_ops_functional, (8, 6)),
    ZooModel("category_encoding", _category_encoding, (6,), dtype="int32", high=20),
    ZooModel("log_softmax_head", _log_softmax_head, (40,), head="linear", note="log-probabilities"),
    ZooModel("float64_input", _float_input("float64"), (40,), dtype="float64"),
    ZooModel("float16_input", _float_input("float16"), (40,), dtype="float16"),
)

REFUSED: tuple[ZooModel, ...] = (
    ZooModel("two_inputs", _two_inputs, (20,), refusal=r"two inputs|2 inputs|one input"),
    ZooModel("two_outputs", _two_outputs, (40,), refusal=r"two outputs|2 outputs|one output"),
    ZooModel("float64_output", _float64_output, (40,), refusal=r"float64"),
    ZooModel(
        "dynamic_spatial", _dynamic_spatial, (None, None, 3), refusal=r"dimension|None|dynamic"
    ),
    ZooModel(
        "variable_length", _variable_length_sequence, (None, 4), refusal=r"dimension|None|dynamic"
    ),
    ZooModel("lambda", _lambda, (40,), refusal=r"Lambda|lambda"),
    ZooModel("no_class_axis", _no_class_axis, (40,), head="linear", refusal=r"class|\(None,\)"),
    ZooModel("mixed_precision", _mixed_precision, (40,), refusal=r"half_dense|float16"),
    ZooModel("grouped_conv", _grouped_conv, (16, 16, 4), refusal=r"grouped_conv"),
    ZooModel("integer_lookup", _integer_lookup, (6,), dtype="int64", high=40, refusal=r"id_lookup"),
    ZooModel("discretization", _discretization, (6,), refusal=r"binning"),
    ZooModel("hashing", _hashing, (6,), dtype="int64", high=1000, refusal=r"hash_bins"),
)

ZOO: dict[str, ZooModel] = {entry.name: entry for entry in (*SUPPORTED, *REFUSED)}


# --- training and saving ----------------------------------------------------------------------


def _targets(entry: ZooModel, output_shape: tuple[int, ...], rng: np.random.Generator) -> Any:
    """Random labels for the entry's head: class ids, 0/1 per class, or normal targets."""
    rows = TRAIN_ROWS
    if not output_shape:  # (batch,): one value per row
        return rng.standard_normal(rows).astype(np.float32)
    if entry.head == "softmax":
        return rng.integers(0, output_shape[-1], size=(rows, *output_shape[:-1]))
    if entry.head == "sigmoid":
        return rng.integers(0, 2, size=(rows, *output_shape)).astype(np.float32)
    return rng.standard_normal((rows, *output_shape)).astype(np.float32)


def _loss(entry: ZooModel) -> str:
    return {
        "softmax": "sparse_categorical_crossentropy",
        "sigmoid": "binary_crossentropy",
        "linear": "mse",
    }[entry.head]


def build_model(entry: ZooModel, seed: int = 0) -> Any:
    """Build, briefly train and return `entry`'s model (not saved)."""
    from kerasport.quiet import quiet_import

    keras = quiet_import("keras")
    custom_objects()
    keras.utils.set_random_seed(seed)
    model = entry.build(keras)
    rng = np.random.default_rng(seed + 1)
    x: Any = zoo_examples(entry, TRAIN_ROWS, seed + 2)
    for layer in model.layers:
        if type(layer).__name__ == "Normalization":
            layer.adapt(x * 3.0 + 1.0)  # statistics far from the identity
    inputs = getattr(model, "inputs", None) or [None]  # a subclassed model has none
    if len(inputs) > 1:
        x = [x] * len(inputs)
    outputs = model(x[:2] if len(inputs) == 1 else [part[:2] for part in x])
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    y = [_targets(entry, tuple(output.shape[1:]), rng) for output in outputs]
    loss = [_loss(entry)] * len(outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=loss if len(outputs) > 1 else loss[0],
        run_eagerly=True,  # a few steps: faster than tracing a train function
    )
    model.fit(x, y if len(outputs) > 1 else y[0], epochs=1, batch_size=TRAIN_BATCH, verbose=0)
    return model


def save_model(entry: ZooModel, path: str | Path, seed: int = 0) -> Path:
    """Build, train and `model.save(path)` one zoo model (path ends in .keras)."""
    model = build_model(entry, seed)
    model.save(path)
    return Path(path)


def build_zoo(
    root: str | Path, names: Iterable[str] | None = None, seed: int = 0
) -> dict[str, Path]:
    """Train and save the named zoo models (default: all) as root/<name>.keras."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    chosen = list(ZOO) if names is None else list(names)
    unknown = [name for name in chosen if name not in ZOO]
    if unknown:
        raise KeyError(f"no zoo model named {', '.join(unknown)}; known: {', '.join(ZOO)}")
    return {name: save_model(ZOO[name], root / f"{name}.keras", seed) for name in chosen}


def refusal_matches(entry: ZooModel, message: str) -> bool:
    """Whether an ExportError message names what `entry` must be refused for."""
    return entry.refusal is not None and re.search(entry.refusal, message) is not None
