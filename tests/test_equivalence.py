"""The exported bundle answers as Keras `predict()` does, for every shape of the family."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODEL_SHAPES

import kerasport.runtime
from kerasport.testing import synthetic_examples

pytestmark = pytest.mark.slow

ATOL = 1e-5  # Keras' own TF and JAX backends differ by up to 8e-6 on such models


def keras_predict(model, x: np.ndarray) -> np.ndarray:
    """Keras' answer; Keras itself fails on zero rows, where the answer is shape (0, 3)."""
    if len(x) == 0:
        return np.empty((0, 3), dtype=np.float32)
    return np.asarray(model.predict(x, batch_size=128, verbose=0))


def assert_matches_keras(expected: np.ndarray, actual: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    assert actual.flags.c_contiguous
    np.testing.assert_array_equal(actual.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_models_are_confident(keras_models):
    """Guard the premise of the tolerance tests: the fixtures behave like real calls."""
    for name, model in keras_models.items():
        x, labels = synthetic_examples(512, MODEL_SHAPES[name][0], seed=7)
        p = model.predict(x, verbose=0)
        assert np.median(p.max(axis=1)) > 0.95, name
        # Trained, not guessing (a constant guess gets 0.5): how well depends on the seed and
        # the CPU, and the tolerance tests need only confident outputs.
        assert (p.argmax(axis=1) == labels).mean() > 0.6, name


def test_every_row_count_from_0_to_300_matches_keras_predict(keras_models, bundles):
    """WGS shape, N = 0..300: crosses predict()'s 128-row chunk boundary twice."""
    model = keras_models["wgs"]
    classifier = kerasport.runtime.load(bundles["wgs"])
    x, _ = synthetic_examples(300, 70, seed=1)
    for n in range(301):
        expected = keras_predict(model, x[:n])
        actual = kerasport.runtime.classify(classifier, x[:n], batch_size=128)
        assert_matches_keras(expected, actual)


@pytest.mark.parametrize("name", sorted(MODEL_SHAPES))
@pytest.mark.parametrize("rows", [0, 1, 2, 5, 127, 128, 129, 256, 300, 1000])
def test_each_shape_matches_keras(keras_models, bundles, name, rows):
    model = keras_models[name]
    classifier = kerasport.runtime.load(bundles[name])
    assert classifier.num_features == MODEL_SHAPES[name][0]
    assert classifier.num_classes == 3
    x, _ = synthetic_examples(rows, classifier.num_features, seed=2)
    expected = keras_predict(model, x)
    assert_matches_keras(expected, classifier.predict(x, batch_size=128))
    assert_matches_keras(expected, classifier(x, training=False))
    assert_matches_keras(expected, classifier.predict(x, batch_size=7))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32, np.float64, "list"])
def test_input_types_convert_as_keras_does(keras_models, bundles, dtype):
    x, _ = synthetic_examples(20, 70, seed=3)
    expected = keras_predict(keras_models["wgs"], x.astype(np.float32))
    examples = x.tolist() if dtype == "list" else x.astype(dtype)
    actual = kerasport.runtime.load(bundles["wgs"]).predict(examples)
    assert_matches_keras(expected, actual)
