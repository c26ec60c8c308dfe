"""The TVM Dense-graph route on the whole MLP family: every elementwise Keras activation, the
activation layers, BatchNormalization / Rescaling / Normalization as per-column steps,
LayerNormalization and UnitNormalization as row passes, EinsumDense acting as Dense, merges
and Concatenate in residual and branching graphs.

Each model is exported with `tvm_targets=["auto"]` (one library, this CPU's), so export's own
check against Keras must pass first; then the bundle is served with backend="tvm" and compared
with Keras at 1, 7, 8, 9 and 300 rows, on the probe's kind of input (integers 0-100) and on
standard normal rows scaled by 3. Every model mixes hidden widths 5, 16 and 33 (a panel padded
from 5 lanes, a panel and a half, several panels), so each activation runs on padded and full
vectors and on static and blocked kernels.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.errors import ExportError
from kerasport.export.tvm import runnable_targets

pytest.importorskip("tvm")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not runnable_targets(), reason="this CPU runs no TVM target (AVX2)"),
]

F, CLASSES = 12, 3
ROWS = (1, 7, 8, 9, 300)


def _inputs(rows: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 101, size=(rows, F)).astype(np.float32),
        (3 * rng.standard_normal((rows, F))).astype(np.float32),
    ]


def _export_and_compare(model: Any, tmp_path: Path) -> float:
    """Export with the host's TVM library, serve it, and return the largest |difference| from
    Keras over every row count and input kind (asserting Keras' own agreement rule)."""
    import kerasport.runtime
    from kerasport.export import export_bundle
    from kerasport.export.check import check_agreement
    from kerasport.export.keras_model import head_kind

    model.save(tmp_path / "m.keras")
    bundle = export_bundle(tmp_path / "m.keras", tmp_path / "b", tvm_targets=["auto"])
    served = kerasport.runtime.load(bundle, backend="tvm")
    head = head_kind(model)
    worst = 0.0
    for rows in ROWS:
        for x in _inputs(rows, seed=rows):
            reference = np.asarray(model.predict(x, batch_size=128, verbose=0), np.float32)
            got = served.predict(x)
            check_agreement(reference, got, 1e-5, head)
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - reference))))
    # The same bits whatever the chunking: static kernels, the blocked one, and leftovers.
    chunks = np.split(x, [1, 8, 16, 25, 41])
    assert np.array_equal(np.concatenate([served.predict(c) for c in chunks]), got)
    return worst


def _stack(keras: Any, *layers: Any) -> Any:
    keras.utils.set_random_seed(TRAINING_SEED)
    return keras.Sequential([keras.Input((F,)), *layers])


def _dense(keras: Any, spec: list[tuple[int, str]]) -> list[Any]:
    return [keras.layers.Dense(units, activation=act) for units, act in spec]


# (hidden width, activation) per model; every elementwise keras.activations name appears
# once, swish and hard_swish by their aliases.
ACTIVATION_MODELS = {
    "smooth": [(16, "elu"), (5, "selu"), (33, "gelu"), (16, "silu"), (CLASSES, "softmax")],
    "softplus_family": [
        (33, "mish"), (16, "softplus"), (5, "softsign"), (16, "log_sigmoid"),
        (CLASSES, "sigmoid"),
    ],
    "piecewise": [
        (5, "leaky_relu"), (33, "relu6"), (16, "hard_sigmoid"), (16, "hard_swish"),
        (5, "hard_tanh"), (16, "relu"), (CLASSES, "log_softmax"),
    ],
    "shrinks": [
        (16, "tanh"), (16, "exponential"), (16, "tanh_shrink"), (33, "soft_shrink"),
        (5, "hard_shrink"), (16, "sparse_plus"), (16, "sparse_sigmoid"), (33, "squareplus"),
        (16, "celu"), (5, "swish"), (16, "softmax"), (CLASSES, "linear"),
    ],
}


@pytest.mark.parametrize("name", list(ACTIVATION_MODELS))
def test_every_keras_activation_compiles_and_matches_keras(name: str, tmp_path: Path) -> None:
    import keras

    model = _stack(keras, *_dense(keras, ACTIVATION_MODELS[name]))
    worst = _export_and_compare(model, tmp_path)
    print(f"{name}: max |diff| {worst:.3g}")


def _set_random_weights(layer: Any, seed: int, scale: float = 0.5) -> None:
    """Non-trivial values for a layer's weights (BatchNormalization's moving statistics,
    PReLU's slopes, LayerNormalization's gamma and beta), variances kept positive."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            values.append(rng.uniform(0.3, 4.0, shape))
        elif "gamma" in weight.path:
            values.append(rng.uniform(0.5, 2.0, shape))
        else:
            values.append(rng.normal(0, scale, shape))
    layer.set_weights([v.astype(np.float32) for v in values])


def test_activation_layers_join_their_dense(tmp_path: Path) -> None:
    import keras

    L = keras.layers
    prelu = L.PReLU()
    model = _stack(
        keras,
        L.Dense(16), L.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
        L.Dense(33), L.LeakyReLU(negative_slope=0.3),
        L.Dense(5), prelu,
        L.Dense(16), L.ELU(alpha=0.5),
        L.Dense(16), L.Activation("gelu"),
        L.Dense(16, activation="relu"), L.Activation("tanh"),  # a pipeline: tanh(relu(z))
        L.Dense(5), L.ReLU(max_value=1.0),
        L.Dense(CLASSES), L.Softmax(),
    )
    _set_random_weights(prelu, seed=3)
    print(f"activation layers: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_batch_normalization_before_and_after_activations(tmp_path: Path) -> None:
    """BatchNormalization at the input (a map node), after a linear Dense and after an
    activation (a per-column step of the Dense), with moving statistics from one epoch of
    training (momentum 0.5, so they are far from 0 and 1) and center/scale off on one."""
    import keras

    L = keras.layers
    model = _stack(
        keras,
        L.BatchNormalization(momentum=0.5),
        L.Dense(16, use_bias=False), L.BatchNormalization(momentum=0.5), L.Activation("relu"),
        L.Dense(33), L.BatchNormalization(momentum=0.5, center=False, scale=False),
        L.Activation("gelu"),
        L.Dense(5, activation="tanh"), L.BatchNormalization(momentum=0.5), L.Dropout(0.3),
        L.Dense(16, activation="relu"), L.BatchNormalization(momentum=0.5),
        L.Dense(CLASSES, activation="softmax"),
    )
    x = _inputs(512, seed=11)[0]
    y = np.random.default_rng(11).integers(0, CLASSES, 512)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    first = model.layers[0]
    assert float(np.min(np.asarray(first.moving_mean))) > 10  # the inputs' mean, about 50
    print(f"batch normalization: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_batch_normalization_with_set_statistics(tmp_path: Path) -> None:
    import keras

    L = keras.layers
    norms = [L.BatchNormalization(epsilon=1e-2) for _ in range(3)]
    model = _stack(
        keras,
        L.Rescaling(1 / 50, offset=-1.0), norms[0],
        L.Dense(33, activation="selu"), norms[1],
        L.Dense(5), norms[2], L.Activation("sigmoid"),
        L.Dense(CLASSES, activation="softmax"),
    )
    for i, norm in enumerate(norms):
        _set_random_weights(norm, seed=20 + i)
    print(f"set statistics: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_preprocessing_layers_at_the_input(tmp_path: Path) -> None:
    """An adapted Normalization, Rescaling at the input and after an activation, the noise
    and dropout layers skipped, and a nested Sequential opened."""
    import keras

    L = keras.layers
    norm = L.Normalization()
    norm.adapt(_inputs(256, seed=5)[0] * np.linspace(0.1, 3, F, dtype=np.float32))
    inner = keras.Sequential([L.Dense(33, activation="relu"), L.GaussianNoise(0.5)])
    model = _stack(
        keras,
        norm, L.Rescaling(0.5, offset=0.25),
        L.Dense(16, activation="relu"), L.GaussianDropout(0.2), L.Dropout(0.5),
        inner, L.Rescaling(2.0), L.AlphaDropout(0.1), L.ActivityRegularization(l1=1e-3),
        L.Dense(5, activation="swish"),
        L.Dense(CLASSES, activation="softmax"),
    )
    print(f"preprocessing: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_layer_and_unit_normalization_after_a_dense(tmp_path: Path) -> None:
    import keras

    L = keras.layers
    norms = [L.LayerNormalization(), L.LayerNormalization(center=False, epsilon=1e-5)]
    model = _stack(
        keras,
        L.Dense(16, activation="relu"), norms[0],
        L.Dense(33), norms[1],
        L.Dense(5, activation="tanh"), L.UnitNormalization(),
        L.Dense(16), L.LayerNormalization(center=False, scale=False),
        L.Dense(CLASSES, activation="softmax"),
    )
    for i, norm in enumerate(norms):
        _set_random_weights(norm, seed=30 + i)
    print(f"layer/unit normalization: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_einsum_dense_and_a_functional_model_with_a_shared_layer(tmp_path: Path) -> None:
    """EinsumDense acting as Dense (its kernel stored [in, out] or [out, in]), in a functional
    model whose first Dense is called twice: the graph is walked, so it is compiled twice."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(TRAINING_SEED)
    shared = L.Dense(F, activation="tanh")
    inputs = keras.Input((F,))
    x = shared(shared(inputs))
    x = L.EinsumDense("ab,bc->ac", output_shape=16, bias_axes="c", activation="relu")(x)
    x = L.EinsumDense("...b,bc->...c", output_shape=33, activation="elu")(x)
    x = L.EinsumDense("ab,cb->ac", output_shape=5, bias_axes="c")(x)
    model = keras.Model(inputs, L.Dense(CLASSES, activation="softmax")(x))
    print(f"einsum, shared layer: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_residual_merges_read_an_earlier_dense_output(tmp_path: Path) -> None:
    """Add before and after the activation, Subtract with the skip first and second, and
    Multiply, Average, Maximum and Minimum of a Dense and an earlier output on the path; a
    BatchNormalization after a merge is one more step of the merging node."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(TRAINING_SEED)
    inputs = keras.Input((F,))
    a = L.Dense(16, activation="relu")(inputs)
    b = L.Dense(16)(L.Dense(16, activation="relu")(a))
    x = L.Activation("relu")(L.Add()([a, b]))  # residual, then the activation
    x = L.Add()([x, L.Dense(16, activation="gelu")(x)])  # after the branch's activation
    x = L.Subtract()([x, L.Dense(16, activation="tanh")(x)])
    x = L.Subtract()([L.Dense(16, activation="sigmoid")(x), x])
    x = L.Multiply()([L.Dense(16)(x), x])
    x = L.Average()([x, L.Dropout(0.2)(L.Dense(16, activation="elu")(x))])
    x = L.Maximum()([L.Dense(16)(x), x])
    x = L.Minimum()([x, L.Dense(16)(x)])
    y = L.Dense(33, activation="relu")(L.BatchNormalization(epsilon=0.5)(x))
    y = L.Add()([y, L.Dense(33)(y)])
    z = L.Dense(5, activation="swish")(y)
    z = L.Add()([L.Dense(5)(z), z])
    model = keras.Model(inputs, L.Dense(CLASSES, activation="softmax")(z))
    print(f"residual merges: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def test_any_step_after_any_other(tmp_path: Path) -> None:
    """BatchNormalization between two activations and after a softmax, PReLU after tanh, an
    activation after a row-wise step: each is a step of the node before it (the steps after
    a row-wise one run in its row pass), in Keras' own order."""
    import keras

    L = keras.layers
    norms = [L.BatchNormalization() for _ in range(3)]
    prelu = L.PReLU()
    model = _stack(
        keras,
        L.Dense(16, activation="relu"), norms[0], L.Activation("tanh"),
        L.Dense(33, activation="tanh"), prelu,
        L.Dense(5, activation="softmax"), L.Activation("relu"), L.Rescaling(3.0),
        L.Dense(16), L.LayerNormalization(), L.Activation("gelu"),
        # ELU's alpha after BatchNormalization's arrays on one node: a number, not an index
        L.Dense(33), norms[2], L.ELU(alpha=0.7),
        L.Dense(CLASSES, activation="softmax"), norms[1],
    )
    for i, layer in enumerate([*norms, prelu]):
        _set_random_weights(layer, seed=40 + i)
    print(f"steps after steps: max |diff| {_export_and_compare(model, tmp_path):.3g}")


def _tabular_resnet(L: Any, x: Any) -> Any:
    """The tabular ResNet of Gorishniy et al. (2021): pre-norm blocks
    h + Dropout(Dense(Dropout(relu(Dense(BatchNorm(h)))))), then BatchNorm, relu, head."""
    h = L.Dense(16)(x)
    for _ in range(2):
        z = L.BatchNormalization()(h)
        z = L.Dropout(0.1)(L.Dense(33, activation="relu")(z))
        h = L.Add()([h, L.Dropout(0.1)(L.Dense(16)(z))])
    return L.Dense(CLASSES, activation="softmax")(L.ReLU()(L.BatchNormalization()(h)))


def _pre_norm_mlp(L: Any, x: Any) -> Any:
    """Transformer-style MLP blocks on features: h + Dense(gelu(Dense(LayerNorm(h))))."""
    h = L.Dense(16)(x)
    for _ in range(2):
        z = L.Dense(33, activation="gelu")(L.LayerNormalization()(h))
        h = L.Add()([h, L.Dense(16)(z)])
    return L.Dense(CLASSES, activation="softmax")(L.LayerNormalization()(h))


def _wide_and_deep(L: Any, x: Any) -> Any:
    deep = L.Dense(5, activation="relu")(L.Dense(16, activation="relu")(x))
    return L.Dense(1, activation="sigmoid")(L.Concatenate()([x, deep]))


def _two_towers(L: Any, x: Any) -> Any:
    a = L.Dense(16, activation="elu")(L.Rescaling(0.1)(x))
    b = L.Dense(5, activation="silu")(L.Dense(33, activation="tanh")(x))
    both = L.Concatenate()([a, L.Concatenate()([b, a])])  # nested, and a part read twice
    return L.Dense(CLASSES, activation="softmax")(L.BatchNormalization()(both))


def _many_merges(L: Any, x: Any) -> Any:
    """Skips from the input, merges of independent branches and of three inputs, and an
    output that is itself a merge."""
    h = L.Add()([x, L.Dense(F)(x)])
    a, b = L.Dense(16, activation="relu")(h), L.Dense(16, activation="tanh")(x)
    m = L.Average()([a, b, L.Dense(16)(h)])
    m = L.Maximum()([m, L.Multiply()([a, b]), L.Dense(16)(m)])
    m = L.Subtract()([L.Dense(16)(m), L.Add()([a, b, m])])
    out = L.Add()([L.Dense(CLASSES)(m), L.Dense(CLASSES)(x)])
    return L.Activation("softmax")(out)


def _nested(L: Any, x: Any) -> Any:
    """A functional block called twice inside the model (its input read twice inside)."""
    import keras

    inner_in = keras.Input((16,))
    inner = keras.Model(inner_in, L.Add()([inner_in, L.Dense(16, activation="relu")(inner_in)]))
    h = inner(inner(L.Dense(16)(x)))
    return L.Dense(CLASSES, activation="softmax")(h)


GRAPHS: dict[str, Callable[[Any, Any], Any]] = {
    "tabular resnet": _tabular_resnet,
    "pre-norm mlp": _pre_norm_mlp,
    "wide and deep": _wide_and_deep,
    "two towers": _two_towers,
    "many merges": _many_merges,
    "nested block": _nested,
}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_residual_and_branching_graphs(name: str, tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(TRAINING_SEED)
    model = _functional(keras, GRAPHS[name])
    for i, layer in enumerate(model.layers):
        if type(layer).__name__ in ("BatchNormalization", "LayerNormalization"):
            _set_random_weights(layer, seed=50 + i)
    print(f"{name}: max |diff| {_export_and_compare(model, tmp_path):.3g}")


# --- the transcendental functions alone, over a wide range -----------------------------------

GRID_ACTIVATIONS = ("gelu", "tanh", "sigmoid", "softplus", "exponential", "elu", "mish")


@pytest.mark.parametrize("name", GRID_ACTIVATIONS)
def test_a_transcendental_activation_matches_keras_over_its_range(
    name: str, tmp_path: Path
) -> None:
    """Identity weights, so the kernel's output is the activation itself: within 8 float32
    ulps of Keras' value at 1 and above, 5e-7 absolute below. The kernel's functions are
    within 3 ulps of the exact ones; TensorFlow's are 3-6 ulps off (its tanh near 1, which
    mish multiplies by x, is the worst)."""
    import keras

    from kerasport.export.tvm import host_target
    from kerasport.export.tvm.dense_graph import compile_dense_chain
    from kerasport.runtime.backends.tvm import open_tvm_library

    width = 32
    grid = np.concatenate([
        np.linspace(-30, 30, 60_000), np.geomspace(1e-6, 30, 2_000),
        -np.geomspace(1e-6, 30, 2_000),
    ]).astype(np.float32)
    grid = grid[: grid.size // width * width]
    eye = (np.eye(width, dtype=np.float32), np.zeros(width, np.float32), name)
    details = compile_dense_chain([eye], host_target(), tmp_path, "grid")
    runner = open_tvm_library(
        (tmp_path / details["library"]).read_bytes(),
        (tmp_path / details["weights"]).read_bytes(), details, width, width,
    )
    got = runner.run(grid.reshape(-1, width)).ravel().astype(np.float64)
    reference = np.asarray(getattr(keras.activations, name)(grid), np.float32).astype(np.float64)
    bound = np.maximum(8 * np.spacing(np.abs(reference).astype(np.float32)), 5e-7)
    excess = np.abs(got - reference) - bound
    worst = int(np.argmax(excess))
    assert excess[worst] <= 0, (grid[worst], got[worst], reference[worst])


# --- refusals ---------------------------------------------------------------------------------


def _refusal(model: Any) -> str:
    from kerasport.export.tvm.keras_layers import tvm_network

    with pytest.raises(ExportError) as caught:
        tvm_network(model)
    return str(caught.value)


RefusalCase = Callable[[Any], list[Any]]

REFUSED: dict[str, tuple[RefusalCase, str]] = {
    "sparsemax": (
        lambda L: [L.Dense(16, activation="sparsemax", name="d"), L.Dense(CLASSES)],
        r"activation 'sparsemax' of layer 'd'",
    ),
    "custom function": (
        lambda L: [L.Dense(16, activation=lambda x: x * 2, name="d"), L.Dense(CLASSES)],
        r"activation '<lambda>' of layer 'd'",
    ),
    "rms layer norm": (
        lambda L: [L.Dense(16), L.LayerNormalization(rms_scaling=True, name="ln"),
                   L.Dense(CLASSES)],
        r"cannot compile layer 'ln' \(LayerNormalization\): rms_scaling",
    ),
    "einsum over two axes": (
        lambda L: [L.EinsumDense("ab,bcd->acd", output_shape=(4, 2), name="e"), L.Flatten(),
                   L.Dense(CLASSES)],
        r"cannot compile layer 'e' \(EinsumDense\)",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_route_cannot_compile_is_refused_by_name(case: str) -> None:
    import keras

    build, pattern = REFUSED[case]
    message = _refusal(_stack(keras, *build(keras.layers)))
    assert re.search(pattern, message), message


def _functional(keras: Any, build: Callable[[Any, Any], Any]) -> Any:
    inputs = keras.Input((F,))
    return keras.Model(inputs, build(keras.layers, inputs))


FUNCTIONAL_REFUSED: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "a dot product of two branches": (
        lambda L, x: L.Dense(CLASSES)(L.Dot(axes=1, name="m")([L.Dense(8)(x), L.Dense(8)(x)])),
        r"cannot compile layer 'm' \(Dot\)",
    ),
    "a concatenation on another axis": (
        lambda L, x: L.Dense(CLASSES)(L.Flatten()(L.Concatenate(axis=1, name="m")([
            L.Reshape((1, 8))(L.Dense(8)(x)), L.Reshape((1, 8))(L.Dense(8)(x))
        ]))),
        r"cannot compile layer '\w+' \(Reshape\)",
    ),
}


@pytest.mark.parametrize("case", list(FUNCTIONAL_REFUSED))
def test_a_merge_the_route_cannot_compile_is_refused_by_name(case: str) -> None:
    import keras

    build, pattern = FUNCTIONAL_REFUSED[case]
    message = _refusal(_functional(keras, build))
    assert re.search(pattern, message), message


def test_a_subclassed_model_is_refused() -> None:
    """Its call order is Python code: its layers listed in order could be anything."""
    import keras

    class Residual(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="residual")
            self.inner, self.head = keras.layers.Dense(F), keras.layers.Dense(CLASSES)

        def call(self, x: Any) -> Any:
            return self.head(x + self.inner(x))

    model = Residual()
    model(np.zeros((1, F), np.float32))
    assert "'residual', a subclassed keras.Model" in _refusal(model)


def test_a_dense_on_a_sequence_is_refused(tmp_path: Path) -> None:
    """A Dense on (length, channels) acts per position: the route's Dense layers read the
    flat features the convolution front ends in."""
    import keras

    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(CLASSES, name="d")])
    message = _refusal(model)
    assert "layer 'd' (Dense)" in message and "then Flatten or a global pooling" in message


# --- random graphs of the family, as users wire them --------------------------------------

_RANDOM_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu", "selu", "sigmoid", "linear",
                       "softplus", "leaky_relu", "mish", "hard_silu")
_RANDOM_WIDTHS = (1, 5, 16, 33, 64, 100)


def _random_graph(keras: Any, seed: int) -> Any:
    """A functional MLP from seeded choices: Dense layers of assorted widths and activations,
    normalization and activation layers anywhere, merges of two or three earlier values of
    one width and concatenations, read once or several times; a softmax, sigmoid or linear
    head."""
    L = keras.layers
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((int(rng.choice([3, 17, 70])),))
    values = [inputs]

    def pick() -> Any:  # mostly the newest value, so most layers end up on the output's path
        return values[-1] if rng.random() < 0.7 else values[int(rng.integers(len(values)))]

    def dense(x: Any, width: int | None = None) -> Any:
        units = int(width or rng.choice(_RANDOM_WIDTHS))
        return L.Dense(units, activation=str(rng.choice(_RANDOM_ACTIVATIONS)))(x)

    values.append(dense(inputs))
    for _ in range(int(rng.integers(5, 11))):
        kind = rng.choice(["dense", "dense", "norm", "act", "merge", "concat"])
        x = pick()
        if kind == "dense":
            values.append(dense(x))
        elif kind == "norm":
            # (not UnitNormalization: a row of norm 1e-3 amplifies float32 rounding before
            # it a thousandfold, past 1e-5 in ONNX Runtime too; its own test covers it)
            norm = rng.choice(["batch", "layer", "rescale"])
            layer = {"batch": L.BatchNormalization, "layer": L.LayerNormalization,
                     "rescale": lambda: L.Rescaling(0.5, offset=0.1)}[str(norm)]()
            values.append(layer(x))
        elif kind == "act":
            layer = rng.choice([L.ReLU(max_value=3.0), L.LeakyReLU(0.1), L.PReLU(), L.ELU(),
                                L.Activation("tanh"), L.Dropout(0.3)])
            values.append(layer(x))
        elif kind == "merge":
            width = int(x.shape[-1])
            others = [dense(pick(), width) for _ in range(int(rng.integers(1, 3)))]
            merge = rng.choice([L.Add, L.Multiply, L.Average, L.Maximum, L.Minimum])
            values.append(merge()([x, *others]) if len(others) > 1 or merge is not L.Add
                          else L.Subtract()([others[0], x]))
        else:
            values.append(L.Concatenate()([x, pick()]))
    head = str(rng.choice(["softmax", "sigmoid", "linear"]))
    classes = int(rng.choice([1, 3])) if head == "sigmoid" else 3
    features = L.Concatenate()(values[-2:]) if rng.random() < 0.3 else values[-1]
    model = keras.Model(inputs, L.Dense(classes, activation=head)(features))
    for i, layer in enumerate(model.layers):
        if type(layer).__name__ in ("BatchNormalization", "LayerNormalization", "PReLU"):
            _set_random_weights(layer, seed=seed * 100 + i)
    return model


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_compile_and_match_keras(seed: int, tmp_path: Path) -> None:
    """Compiled straight from the graph reader (no ONNX export, so a dozen graphs stay
    cheap), served at 1, 8, 9 and 130 rows, bit for bit independent of the chunking."""
    import keras

    from kerasport.export.check import check_agreement
    from kerasport.export.keras_model import head_kind
    from kerasport.export.tvm import host_target
    from kerasport.export.tvm.dense_graph import compile_dense_graph
    from kerasport.export.tvm.keras_layers import tvm_network
    from kerasport.runtime.backends.tvm import open_tvm_library

    model = _random_graph(keras, seed)
    network = tvm_network(model)
    features = network.num_features
    details = compile_dense_graph(network.nodes, features, host_target(), tmp_path, "g")
    runner = open_tvm_library((tmp_path / "g.so").read_bytes(),
                              (tmp_path / "g.weights.bin").read_bytes(), details, features,
                              details["num_classes"])
    x = (2 * np.random.default_rng(seed).standard_normal((130, features))).astype(np.float32)
    got = runner.run(x)
    check_agreement(np.asarray(model(x), np.float32), got, 1e-5, head_kind(model))
    pieces = [runner.run(x[a:b]) for a, b in ((0, 1), (1, 9), (9, 17), (17, 130))]
    assert np.array_equal(np.concatenate(pieces), got)
