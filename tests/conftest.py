"""Shared fixtures: small Keras models of DeepVariant's family, trained to be confident.

Real small models give confident calls (most max probabilities near 1); an untrained model
gives near-uniform ones, which would make tolerance tests meaningless, so the fixtures train.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# (features, hidden sizes): DeepVariant's WGS model and two older / other shapes.
MODEL_SHAPES = {
    "wgs": (70, (750, 750)),
    "long_read": (106, (200, 300)),
    "somatic": (94, (100, 100)),
}


def synthetic_examples(num_features: int, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 rows in 0-100 with labels from the allele-fraction column, like real calls."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 101, size=(rows, num_features), dtype=np.int64)
    vaf = x[:, 4]
    labels = np.where(vaf < 25, 0, np.where(vaf < 75, 1, 2))
    return x, labels


def train_model(path: Path, num_features: int, hidden: tuple[int, ...], seed: int = 0) -> Path:
    """Train and save a Dense-relu MLP ending in a 3-way softmax, as DeepVariant's small model."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((num_features,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    layers.append(keras.layers.Dense(3, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x, y = synthetic_examples(num_features, 16384, seed)
    model.fit(x.astype(np.float32), y, epochs=4, batch_size=128, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        name: train_model(root / f"{name}.keras", features, hidden)
        for name, (features, hidden) in MODEL_SHAPES.items()
    }


@pytest.fixture(scope="session")
def bundles(
    trained_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("bundles")
    return {name: export_bundle(path, root / name) for name, path in trained_models.items()}


@pytest.fixture(scope="session")
def keras_models(trained_models: dict[str, Path]) -> dict[str, object]:
    from kerasport.export.keras_model import load_keras_model

    return {name: load_keras_model(path) for name, path in trained_models.items()}
