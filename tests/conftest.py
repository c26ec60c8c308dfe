"""Shared fixtures: small Keras models of DeepVariant's family, trained to be confident."""

from __future__ import annotations

import importlib.util
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


# Tiny models (F=20, hidden 16-16) for the TVM and hardening tests: each TVM library compiles
# in a second or two.
TINY_FEATURES = 20
TINY_TVM_TARGETS = ["x86-64-v4", "x86-64-v3"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny models of one shape trained from different seeds, so either one's files fit
    the other's manifest except for their checksums."""
    root = tmp_path_factory.mktemp("tiny_models")
    return tuple(  # type: ignore[return-value]
        train_small_model(
            root / f"model{i}.keras", TINY_FEATURES, (16, 16), seed=TRAINING_SEED + i,
            rows=4096, epochs=2,
        )
        for i in range(2)
    )


@pytest.fixture(scope="session")
def tiny_bundles(
    tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The tiny models' bundles, with both TVM libraries when the tvm extra is installed."""
    from kerasport.export import export_bundle

    targets = TINY_TVM_TARGETS if importlib.util.find_spec("tvm") else []
    root = tmp_path_factory.mktemp("tiny_bundles")
    return tuple(  # type: ignore[return-value]
        export_bundle(model, root / f"bundle{i}", tvm_targets=targets)
        for i, model in enumerate(tiny_models)
    )
