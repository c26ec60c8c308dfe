"""The model zoo (kerasport.testing_zoo): every supported model exports, serves and verifies
like Keras; every refused model is refused naming its layer (or its problem).

Fidelity bar, per element, against Keras' `model.predict(x, batch_size=128, verbose=0)`:
- softmax and sigmoid heads: |difference| <= 1e-5, export's own bar (DEFAULT_ATOL).
- linear heads (logits, log-probabilities, anything unbounded): |difference| <=
  1e-5 * max(1, |Keras' value|). float32's resolution scales with magnitude (one ULP of
  300 is 3e-5), so an absolute 1e-5 would ask a logit of 300 for less than one ULP; relative
  to the value, it is the same bar as for probabilities below 1.
The arg-max along the last (class) axis must be the same at every row and position, except
where Keras' top two values are within that tolerance of each other (a tie); a sigmoid
head's decisions (p >= 0.5) likewise, except within the tolerance of 0.5. Every call site
(`predict`, `predict_on_batch`, `__call__`, `runtime.classify` at another batch size) gives
the bits `predict` gives.

The zoo is trained, saved and exported once per session (about 80 s on two cores; the
whole file about 2 minutes). KERASPORT_ZOO=name,name runs only those models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasport.errors import ExportError, InputError, KerasportError
from kerasport.export.check import DEFAULT_ATOL
from kerasport.testing_zoo import REFUSED, SUPPORTED, ZooModel, build_zoo, zoo_examples

pytestmark = pytest.mark.slow

ROWS = (0, 1, 7, 300)
# Models are trained afresh on each machine, as conftest's are; KERASPORT_TEST_SEED=7 reruns
# the zoo with another seed.
TRAINING_SEED = int(os.environ.get("KERASPORT_TEST_SEED", "0"))
EXAMPLE_SEED = 11 + TRAINING_SEED  # not the training rows' seed
VERIFY_ROWS = 64
# KERASPORT_ZOO=unet,embedding runs only those models (to debug one without the whole zoo).
_ONLY = {name for name in os.environ.get("KERASPORT_ZOO", "").split(",") if name}
SUPPORTED_NAMES = [entry.name for entry in SUPPORTED if not _ONLY or entry.name in _ONLY]
REFUSED_NAMES = [entry.name for entry in REFUSED if not _ONLY or entry.name in _ONLY]
ENTRIES = {entry.name: entry for entry in (*SUPPORTED, *REFUSED)}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every zoo model (supported and refused), trained and saved once."""
    names = [*SUPPORTED_NAMES, *REFUSED_NAMES]
    return build_zoo(tmp_path_factory.mktemp("zoo"), names, seed=TRAINING_SEED)


@pytest.fixture(scope="session")
def zoo_bundles(
    zoo: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path | KerasportError]:
    """Each supported model's bundle, or the error its export raised (so one model's
    failure fails its own tests, not the whole zoo's)."""
    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("zoo_bundles")
    bundles: dict[str, Path | KerasportError] = {}
    for name in SUPPORTED_NAMES:
        try:
            bundles[name] = export_bundle(zoo[name], root / name)
        except KerasportError as exc:
            bundles[name] = exc
    return bundles


@pytest.fixture(scope="session")
def keras_zoo(zoo: dict[str, Path]) -> dict[str, Any]:
    """The saved supported models, reloaded as export loads them (a cache, filled lazily)."""
    return {}


def _keras_model(keras_zoo: dict[str, Any], zoo: dict[str, Path], name: str) -> Any:
    if name not in keras_zoo:
        import keras

        keras_zoo[name] = keras.saving.load_model(zoo[name], compile=False)
    return keras_zoo[name]


def _bundle(zoo_bundles: dict[str, Path | KerasportError], name: str) -> Path:
    bundle = zoo_bundles[name]
    if isinstance(bundle, KerasportError):
        pytest.fail(f"export of supported model {name} raised {type(bundle).__name__}: {bundle}")
    return bundle


def _tolerance(entry: ZooModel, reference: np.ndarray) -> np.ndarray:
    if entry.head == "linear":
        return DEFAULT_ATOL * np.maximum(1.0, np.abs(reference))
    return np.full(reference.shape, DEFAULT_ATOL, dtype=np.float32)


def _check_against_keras(entry: ZooModel, reference: np.ndarray, candidate: np.ndarray) -> None:
    assert candidate.dtype == np.float32
    assert candidate.shape == reference.shape
    tolerance = _tolerance(entry, reference)
    excess = np.abs(candidate.astype(np.float64) - reference) - tolerance
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    assert not (excess > 0).any() and np.isfinite(candidate).all(), (
        f"{entry.name}: |difference| {abs(candidate[worst] - reference[worst]):.3g} > "
        f"{tolerance[worst]:.3g} at {worst} (Keras {reference[worst]!r})"
    )
    if reference.shape[-1] > 1:
        top2 = np.sort(reference, axis=-1)[..., -2:]
        top = np.take_along_axis(tolerance, reference.argmax(-1)[..., None], -1)[..., 0]
        moved = (reference.argmax(-1) != candidate.argmax(-1)) & (top2[..., 1] - top2[..., 0] > top)
        assert not moved.any(), f"{entry.name}: arg-max moved at {np.argwhere(moved)[:5]}"
    if entry.head == "sigmoid":
        flipped = ((reference >= 0.5) != (candidate >= 0.5)) & (np.abs(reference - 0.5) > tolerance)
        assert not flipped.any(), f"{entry.name}: p >= 0.5 flipped at {np.argwhere(flipped)[:5]}"


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", SUPPORTED_NAMES)
def test_a_supported_model_serves_as_keras_predicts(
    name: str,
    zoo: dict[str, Path],
    zoo_bundles: dict[str, Path | KerasportError],
    keras_zoo: dict[str, Any],
) -> None:
    from kerasport import runtime

    entry = ENTRIES[name]
    classifier = runtime.load(_bundle(zoo_bundles, name))
    model = _keras_model(keras_zoo, zoo, name)
    examples = zoo_examples(entry, max(ROWS), EXAMPLE_SEED)
    output_shape = model.predict(examples[:1], verbose=0).shape[1:]
    assert tuple(classifier.output_shape) == output_shape
    for rows in ROWS:
        x = examples[:rows]
        predicted = classifier.predict(x, batch_size=128)
        assert predicted.shape == (rows, *output_shape), (rows, predicted.shape)
        assert predicted.dtype == np.float32
        if rows:
            reference = np.asarray(model.predict(x, batch_size=128, verbose=0), np.float64)
            _check_against_keras(entry, reference, predicted)
        calls = {
            "predict_on_batch": classifier.predict_on_batch(x),
            "__call__": classifier(x),
            "classify(batch_size=7)": runtime.classify(classifier, x, batch_size=7),
            "predict(batch_size=None)": classifier.predict(x, batch_size=None),
        }
        for site, result in calls.items():
            assert _same_bits(result, predicted), f"{name}: {site} at {rows} rows"


@pytest.mark.parametrize("name", SUPPORTED_NAMES)
def test_a_supported_models_classifier_describes_its_spec(
    name: str, zoo_bundles: dict[str, Path | KerasportError]
) -> None:
    from kerasport import runtime

    entry = ENTRIES[name]
    classifier = runtime.load(_bundle(zoo_bundles, name))
    assert tuple(classifier.input_shape) == entry.input_shape
    assert classifier.head == entry.head, (classifier.head, entry.head)
    assert len(classifier.output_shape) >= 1 and classifier.output_shape[-1] >= 1


@pytest.mark.parametrize(
    "name", [n for n in SUPPORTED_NAMES if ENTRIES[n].integer_input and ENTRIES[n].high <= 100]
)
def test_an_index_outside_an_embeddings_vocabulary_is_refused_naming_its_row(
    name: str,
    zoo: dict[str, Path],
    zoo_bundles: dict[str, Path | KerasportError],
    keras_zoo: dict[str, Any],
) -> None:
    from kerasport import runtime

    entry = ENTRIES[name]
    model = _keras_model(keras_zoo, zoo, name)
    if not any(type(layer).__name__ == "Embedding" for layer in model.layers):
        pytest.skip(f"{name}'s integer input indexes no Embedding")
    classifier = runtime.load(_bundle(zoo_bundles, name))
    x = zoo_examples(entry, 8, EXAMPLE_SEED)
    x[5, 2] = entry.high  # one past the vocabulary
    with pytest.raises(InputError, match=r"row 5"):
        classifier.predict(x)
    x[5, 2] = -1
    with pytest.raises(InputError, match=r"row 5"):
        classifier.predict(x)


def test_a_nan_in_an_image_is_refused_naming_its_row(
    zoo_bundles: dict[str, Path | KerasportError],
) -> None:
    from kerasport import runtime

    if "unet" not in SUPPORTED_NAMES:
        pytest.skip("unet is not in KERASPORT_ZOO")
    entry = ENTRIES["unet"]
    classifier = runtime.load(_bundle(zoo_bundles, "unet"))
    x = zoo_examples(entry, 4, EXAMPLE_SEED)
    x[2, 3, 4, 1] = np.nan
    with pytest.raises(InputError, match=r"row 2"):
        classifier(x)
    with pytest.raises(InputError):
        classifier(x[:, :8])  # a tile of the wrong size


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_an_unsupported_model_is_refused_by_name(
    name: str, zoo: dict[str, Path], tmp_path: Path
) -> None:
    from kerasport.export import export_bundle

    entry = ENTRIES[name]
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match=entry.refusal) as refusal:
        export_bundle(zoo[name], out)
    assert not out.exists(), f"{name} was refused ({refusal.value}) after writing {out}"
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())  # no partial directory


@pytest.mark.parametrize("name", SUPPORTED_NAMES)
def test_verify_passes_a_supported_model(
    name: str,
    zoo: dict[str, Path],
    zoo_bundles: dict[str, Path | KerasportError],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`kerasport verify MODEL BUNDLE --examples X.npy`, with no DeepVariant option."""
    from kerasport.cli import main

    bundle = _bundle(zoo_bundles, name)
    examples = tmp_path / "examples.npy"
    np.save(examples, zoo_examples(ENTRIES[name], VERIFY_ROWS, EXAMPLE_SEED))
    status = main(["verify", str(zoo[name]), str(bundle), "--examples", str(examples)])
    captured = capsys.readouterr()
    assert status == 0, f"{name}: exit {status}\n{captured.out[-2000:]}\n{captured.err[-2000:]}"
