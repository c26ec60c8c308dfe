"""Shared fixtures: small Keras models of DeepVariant's family, trained to be confident."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kerasport.testing import train_small_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
# Models are trained afresh on each machine; the suite must pass for any seed, so it can be
# rerun with another (KERASPORT_TEST_SEED=7 make test).
TRAINING_SEED = int(os.environ.get("KERASPORT_TEST_SEED", "0"))
SHARED = REPO.parent / "shared"

# (features, hidden sizes): DeepVariant's WGS model and two older / other shapes.
MODEL_SHAPES = {
    "wgs": (70, (750, 750)),
    "long_read": (106, (200, 300)),
    "somatic": (94, (100, 100)),
}


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        name: train_small_model(root / f"{name}.keras", features, hidden, seed=TRAINING_SEED)
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
