"""DeepVariant's three small-model call sites, run as written, on Keras and on kerasport.

Each function below restates one call site of DeepVariant's small model (rewritten here in a
few lines, not copied) and is run per 1,000 bp region of the embedded real NA12878 examples,
as make_examples calls it, once with the Keras model and once with a kerasport classifier in
its place. A drop-in must give the same genotypes, the same GQ gate decisions, and
probabilities within export's fidelity bar.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kerasport.runtime
from kerasport.assets import DEFAULT_EXAMPLES, DEFAULT_MODEL
from kerasport.examples import read_examples
from kerasport.export.check import DEFAULT_ATOL
from kerasport.verify.gq import gate_passes, genotype_quality

pytestmark = pytest.mark.slow

REGION_BP = 1000  # make_examples' Illumina region size: one classify() per region
BATCH_SIZE = 128  # --small_model_inference_batch_size
SNP_THRESHOLD, INDEL_THRESHOLD = 20, 28  # DeepVariant WGS
IS_SNP = 12


def call_r1_10(classifier: Any, examples: list[list[int]]) -> np.ndarray:
    """r1.10 small_model/inference.py: classify() is one predict()."""
    return np.asarray(
        classifier.predict(np.array(examples), batch_size=BATCH_SIZE, verbose=0)
    )


def call_pr_1089(classifier: Any, examples: list[list[int]]) -> np.ndarray:
    """PR 1089: the model called directly on the region's array."""
    return np.asarray(classifier(np.array(examples)))


def call_upstream(classifier: Any, examples: list[list[int]]) -> np.ndarray:
    """Current upstream SmallModelVariantCaller: call_variants hands classify() the np.array
    of the region's int lists, and classify() extends a list with predict_on_batch slices."""
    array = np.array(examples)
    predictions: list[Any] = []
    for i in range(0, len(array), BATCH_SIZE):
        predictions.extend(classifier.predict_on_batch(array[i : i + BATCH_SIZE]))
    return np.array(predictions)


def decisions(probabilities: np.ndarray, examples: list[list[int]]) -> tuple[list, list]:
    """Per row, as upstream does: genotype = argmax(p); gate on GQ of max(p)."""
    genotypes = [int(np.argmax(p)) for p in probabilities]
    gq = genotype_quality(np.array([[max(p)] for p in probabilities], dtype=np.float32))
    is_snp = np.array([row[IS_SNP] for row in examples], dtype=bool)
    gates = gate_passes(gq, is_snp, SNP_THRESHOLD, INDEL_THRESHOLD).tolist()
    return genotypes, gates


def regions() -> list[list[list[int]]]:
    """The embedded examples as make_examples hands them: per region, a list of int lists."""
    examples = read_examples(DEFAULT_EXAMPLES)
    assert examples.positions is not None
    region_of = examples.positions // REGION_BP
    return [
        examples.features[region_of == region].tolist() for region in np.unique(region_of)
    ]


@pytest.fixture(scope="module")
def keras_model() -> Any:
    from kerasport.export.keras_model import load_keras_model

    return load_keras_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> kerasport.runtime.Classifier:
    from kerasport.export import export_bundle

    bundle = export_bundle(DEFAULT_MODEL, tmp_path_factory.mktemp("call_sites") / "bundle")
    return kerasport.runtime.load(bundle)


@pytest.mark.parametrize("call_site", [call_r1_10, call_pr_1089, call_upstream])
def test_a_call_site_decides_as_keras_does(
    call_site: Callable[[Any, list[list[int]]], np.ndarray],
    keras_model: Any,
    classifier: kerasport.runtime.Classifier,
) -> None:
    per_region = regions()
    assert len(per_region) > 50 and max(map(len, per_region)) > 1  # real, varied regions
    rows = gated = 0
    for examples in per_region:
        expected = call_site(keras_model, examples)
        actual = call_site(classifier, examples)
        assert actual.shape == expected.shape == (len(examples), 3)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=DEFAULT_ATOL)
        assert decisions(actual, examples) == decisions(expected, examples)
        rows += len(examples)
        gated += sum(decisions(actual, examples)[1])
    assert rows == 312 and gated > 100  # every real row, and the gate accepts many


def test_predict_on_batch_of_a_huge_array_is_chunked_and_identical(
    classifier: kerasport.runtime.Classifier,
) -> None:
    """1,000,000 rows in one predict_on_batch: bounded memory, the bits of smaller calls."""
    import tracemalloc

    rows = 1_000_000
    real = np.array(regions()[0] + regions()[1], dtype=np.int64)
    examples = np.resize(real, (rows, real.shape[1]))
    tracemalloc.start()
    try:
        result = classifier.predict_on_batch(examples)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.shape == (rows, 3)
    assert peak - result.nbytes < 2_000_000  # chunks, never a second full-size array
    np.testing.assert_array_equal(result[: len(real)], classifier.predict_on_batch(real))
    np.testing.assert_array_equal(result[-5:], classifier.predict(examples[-5:]))


@pytest.mark.parametrize("kind", ["list", "np.array of lists", "int32", "float64"])
def test_every_input_type_deepvariant_feeds_gives_the_same_bits(
    classifier: kerasport.runtime.Classifier, kind: str
) -> None:
    examples = regions()[3]
    want = classifier.predict_on_batch(np.array(examples, dtype=np.int64))
    given = {
        "list": examples,
        "np.array of lists": np.array(examples),
        "int32": np.array(examples, dtype=np.int32),
        "float64": np.array(examples, dtype=np.float64),
    }[kind]
    for got in (classifier.predict_on_batch(given), classifier(given),
                classifier.predict(given, batch_size=BATCH_SIZE, verbose=0)):
        np.testing.assert_array_equal(got, want)


def test_the_embedded_bundle_names_its_features(
    classifier: kerasport.runtime.Classifier,
) -> None:
    """small_model_info.json beside the model reaches the runtime, so callers can check."""
    names = read_examples(DEFAULT_EXAMPLES).feature_names
    assert names is not None and classifier.feature_names == tuple(names)
    classifier.check_feature_names(names)
    swapped = [names[1], names[0], *names[2:]]
    with pytest.raises(kerasport.errors.InputError, match=r"feature 0 is .* for the caller"):
        classifier.check_feature_names(swapped)
    assert Path(DEFAULT_MODEL).with_name("small_model_info.json").is_file()
