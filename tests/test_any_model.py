"""Bundles of models beyond DeepVariant's family: the manifest's specs and what the runtime
does with them (the zoo in test_model_zoo.py covers the layers; this covers the contract).

- version 2 bundles (written before the specs) keep loading, read as (batch, F) float32 in;
- a graph whose ONNX Runtime bits depend on how many examples share a call is found at
  export and served one example per call, so results never depend on batching;
- chunks are bounded by the manifest's per-example working memory, not only by rows;
- integer inputs keep integer semantics; every new field is checked.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_FEATURES

import kerasport.runtime
from kerasport.errors import BundleError, InputError

pytestmark = pytest.mark.slow


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def tiny_bundle(tiny_bundles: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundles[0], tmp_path / "bundle"))


def _save(model: Any, path: Path) -> Path:
    model.save(path)
    return path


@pytest.fixture(scope="module")
def einsum_and_embedding(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An EinsumDense model (ONNX Runtime's MatMul bits depend on the rows per call) and an
    Embedding over int32 token ids, both exported."""
    import keras

    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("any_model")
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((5, 6))
    hidden = layers.EinsumDense("abd,bd->ad", output_shape=(6,), activation="relu")(inputs)
    einsum = keras.Model(inputs, layers.Dense(3, activation="softmax")(hidden))
    tokens = keras.Input((9,), dtype="int32")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(30, 4)(tokens))
    embedding = keras.Model(tokens, layers.Dense(2, activation="softmax")(pooled))
    return {
        name: export_bundle(_save(model, root / f"{name}.keras"), root / f"{name}-bundle")
        for name, model in (("einsum", einsum), ("embedding", embedding))
    }


def test_a_version_2_bundle_loads_with_its_specs_derived(tiny_bundle: Path) -> None:
    x = np.random.default_rng(0).integers(0, 101, (9, TINY_FEATURES))
    expected = kerasport.runtime.load(tiny_bundle, "onnxruntime").predict(x)

    def downgrade(manifest: dict[str, Any]) -> None:
        for name in ("input_spec", "output_spec", "row_bytes"):
            del manifest[name]
        manifest["format_version"] = 2
        manifest["warnings"] = ["the model's head is 'sigmoid' over 3 output(s), not a softmax"]

    edit_manifest(tiny_bundle, downgrade)
    classifier = kerasport.runtime.load(tiny_bundle, "onnxruntime")
    assert (classifier.input_shape, classifier.output_shape) == ((TINY_FEATURES,), (3,))
    assert classifier.head == "sigmoid" and classifier.input_dtype == "float32"
    assert np.array_equal(classifier.predict(x), expected)


def test_a_chunk_dependent_graph_is_served_one_example_per_call(
    einsum_and_embedding: dict[str, Path], tiny_bundles: tuple[Path, Path]
) -> None:
    bundle = einsum_and_embedding["einsum"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    # Whether a graph depends on chunking is this CPU's ONNX Runtime's business; what must
    # hold everywhere is the consequence: the same bits for every batch size.
    served_singly = manifest["artifacts"]["onnxruntime"]["details"].get("rows_per_call") == 1
    assert served_singly == any("one example per" in w for w in manifest["warnings"])
    classifier = kerasport.runtime.load(bundle, "onnxruntime")
    x = np.random.default_rng(1).standard_normal((61, 5, 6)).astype(np.float32)
    whole = classifier.predict(x, batch_size=61)
    for batch_size in (1, 2, 3, 5, 7, 32):
        assert np.array_equal(classifier.predict(x, batch_size=batch_size), whole), batch_size
    dense = json.loads((tiny_bundles[0] / "manifest.json").read_text())
    assert "rows_per_call" not in dense["artifacts"]["onnxruntime"]["details"]


def test_chunks_are_bounded_by_working_memory_with_the_same_bits(tiny_bundle: Path) -> None:
    x = np.random.default_rng(2).integers(0, 101, (11, TINY_FEATURES))
    expected = kerasport.runtime.load(tiny_bundle, "onnxruntime").predict(x, batch_size=128)
    edit_manifest(tiny_bundle, lambda m: m.update(row_bytes=30 << 20))  # two rows per 64 MiB
    classifier = kerasport.runtime.load(tiny_bundle, "onnxruntime")
    assert classifier._max_rows == 2
    assert np.array_equal(classifier.predict(x, batch_size=128), expected)
    assert np.array_equal(classifier(x), expected)


def test_an_embedding_keeps_integer_semantics(einsum_and_embedding: dict[str, Path]) -> None:
    classifier = kerasport.runtime.load(einsum_and_embedding["embedding"])
    assert classifier.input_dtype == "int32" and classifier.input_shape == (9,)
    tokens = np.random.default_rng(3).integers(0, 30, (4, 9))
    expected = classifier.predict(tokens)
    assert np.array_equal(classifier.predict(tokens.astype(np.float64)), expected)
    bad = tokens.copy()
    bad[2, 5] = 30
    with pytest.raises(InputError, match=r"row 2, position 5 holds 30, outside the Embedding's"):
        classifier.predict(bad)
    bad[2, 5] = -1
    with pytest.raises(InputError, match=r"row 2, position 5 holds -1"):
        classifier.predict(bad)
    floats = tokens.astype(np.float32)
    floats[1, 0] = 2.5
    with pytest.raises(InputError, match=r"row 1, position 0 holds 2.5, but this model takes"):
        classifier.predict(floats)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["artifacts"]["onnxruntime"]["details"].update(rows_per_call=2),
         "rows_per_call must be 1, got 2"),
        (lambda m: m["input_spec"].update(dtype="complex64"), "input_spec.dtype must be one of"),
        (lambda m: m["input_spec"].update(index_range=[5, 2]), "index_range must be"),
        (lambda m: m["output_spec"].update(head="relu"), "output_spec.head must be one of"),
        (lambda m: m["input_spec"].update(shape=[]), "input_spec.shape must be"),
        (lambda m: m["output_spec"].update(extra=1), "output_spec has unknown fields"),
        (lambda m: m.update(row_bytes=0), "row_bytes must be a positive integer"),
        (lambda m: m.pop("output_spec"), "field 'output_spec' is missing"),
    ],
)
def test_a_malformed_spec_is_named(
    tiny_bundle: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_manifest(tiny_bundle, change)
    with pytest.raises(BundleError, match=message):
        kerasport.runtime.load(tiny_bundle, "onnxruntime")


def test_a_keras_applications_network_exports_and_matches(tmp_path: Path) -> None:
    """MobileNetV2 as users build it from keras.applications (no hub weights here): depthwise
    convolutions, relu6, BatchNormalization, residual adds, global pooling."""
    import keras

    from kerasport.export import export_bundle

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=3
    )
    bundle = export_bundle(_save(model, tmp_path / "mobilenet.keras"), tmp_path / "bundle")
    classifier = kerasport.runtime.load(bundle)
    x = np.random.default_rng(4).uniform(-1, 1, (9, 32, 32, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = classifier.predict(x, batch_size=4)
    assert float(np.max(np.abs(got - expected))) <= 1e-5
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
