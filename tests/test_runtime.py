"""Runtime contract: clear errors for bad input and bad bundles, bounded memory, no TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import kerasport.runtime
from kerasport.errors import BundleError, InputError
from kerasport.manifest import MANIFEST_NAME


@pytest.fixture(scope="module")
def classifier(bundles):
    return kerasport.runtime.load(bundles["somatic"])


@pytest.fixture
def bundle_copy(bundles, tmp_path) -> Path:
    return Path(shutil.copytree(bundles["somatic"], tmp_path / "bundle"))


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        (np.zeros((3, 93), np.int64), "have 93 features per row; this model takes 94"),
        (np.zeros((3, 2, 94), np.int64), "must be 2-D"),
        (np.zeros(94, np.int64), "must be 2-D"),
        (np.array([["a"] * 94]), "must be numeric"),
        (np.zeros((2, 94), np.complex64), "must be numeric"),
        ([[1, 2], [3]], "not a rectangular table"),
    ],
)
def test_bad_shapes_and_types_are_named(classifier, examples, message):
    with pytest.raises(InputError, match=message):
        classifier.predict(examples)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_values_name_their_row(classifier, bad):
    x = np.zeros((300, 94), np.float64)
    x[200, 5] = bad
    with pytest.raises(InputError, match=r"row 200 contains .*must be finite"):
        classifier.predict(x, batch_size=128)


def test_numpy_integers_are_batch_sizes_as_in_keras(classifier):
    x = np.zeros((3, 94), np.int64)
    expected = classifier.predict(x)
    np.testing.assert_array_equal(classifier.predict(x, batch_size=np.int64(2)), expected)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(classifier, batch_size):
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        classifier.predict(np.zeros((2, 94)), batch_size=batch_size)


def test_training_call_is_refused(classifier):
    with pytest.raises(InputError, match="inference only"):
        classifier(np.zeros((2, 94)), training=True)


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="bundle directory not found"):
        kerasport.runtime.load(tmp_path / "nope")


def test_missing_manifest(bundle_copy):
    (bundle_copy / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match=r"has no manifest\.json"):
        kerasport.runtime.load(bundle_copy)


def test_unreadable_manifest(bundle_copy):
    (bundle_copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="unreadable bundle manifest"):
        kerasport.runtime.load(bundle_copy)


def test_future_format_version(bundle_copy):
    path = bundle_copy / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        kerasport.runtime.load(bundle_copy)


def test_tampered_artifact_is_refused(bundle_copy):
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0x01  # one bit of one weight
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="modified after export"):
        kerasport.runtime.load(bundle_copy)


def test_missing_artifact(bundle_copy):
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"bundle file .*: no such file"):
        kerasport.runtime.load(bundle_copy)


def test_unknown_backend(bundles):
    with pytest.raises(BundleError, match="unknown backend 'nope'"):
        kerasport.runtime.load(bundles["somatic"], backend="nope")


def test_available_backends(bundles):
    assert kerasport.runtime.available_backends(bundles["somatic"]) == ["onnxruntime"]


def test_memory_stays_bounded_for_a_million_rows(classifier):
    """Chunking: numpy allocations beyond the (N, 3) output stay far below the 40 MB budget.

    tracemalloc sees numpy's buffers (inputs, casts, outputs), not ONNX Runtime's arena; the
    benchmark measures whole-process resident memory.
    """
    rows = 1_000_000
    examples = np.broadcast_to(np.arange(94, dtype=np.int64), (rows, 94))  # no input memory
    tracemalloc.start()
    try:
        result = classifier.predict(examples, batch_size=128)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.shape == (rows, 3)
    assert peak - result.nbytes < 1_000_000


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import kerasport.runtime

    def status(field):
        with open("/proc/self/status") as handle:
            line = next(line for line in handle if line.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    bundle, backend, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    classifier = kerasport.runtime.load(bundle, backend=backend)
    features = classifier.num_features
    x = np.empty((rows, features), np.int64)  # filled in slices: no transient copy
    rng = np.random.default_rng(0)
    for start in range(0, rows, 65536):
        x[start : start + 65536] = rng.integers(0, 101, size=(len(x[start : start + 65536]),
                                                               features))
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # restart the peak (VmHWM) from here
    out = classifier.predict(x, batch_size=1_000_000)
    print(json.dumps({"peak": status("VmHWM") - base, "kept": status("VmRSS") - base,
                      "output": out.nbytes, "rows": len(out)}))
    """
)
# Whole-process growth of a freshly loaded classifier allowed beyond the (N, C) output, whatever
# batch_size asks for: the engine's working set for one 1,024-row chunk (README, Guarantees).
MEMORY_BOUND_BYTES = 16 << 20


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_two_million_rows_at_batch_size_a_million_stay_within_the_memory_bound(
    bundles, tiny_bundles
):
    """The audit's case: predict(x, batch_size=1_000_000) on 2,000,000 rows peaked at 13.7 GB
    and kept 13.5 GB. Now engine calls never see more than 1,024 rows, so the process grows
    by the output plus a bounded working set, and gives nearly all of it back."""
    cases = [(bundles["somatic"], "onnxruntime")]
    if "tvm" in kerasport.runtime.available_backends(tiny_bundles[0]):
        cases += [(tiny_bundles[0], key) for key in
                  kerasport.runtime.servable_artifacts(tiny_bundles[0]) if key != "onnxruntime"]
    for bundle, backend in cases:
        done = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(bundle), backend, "2000000"],
            capture_output=True, text=True, check=True,
        )
        grown = json.loads(done.stdout)
        print(f"\n{backend}: {grown}")
        assert grown["rows"] == 2_000_000
        assert grown["peak"] - grown["output"] < MEMORY_BOUND_BYTES, (backend, grown)
        assert grown["kept"] - grown["output"] < MEMORY_BOUND_BYTES, (backend, grown)


def test_runtime_imports_no_tensorflow_keras_or_tvm(bundles):
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import kerasport.runtime
        c = kerasport.runtime.load({str(bundles["somatic"])!r})
        kerasport.runtime.classify(c, np.zeros((5, 94), np.int64), batch_size=128)
        loaded = {{m.split(".")[0] for m in sys.modules}}
        heavy = loaded & {{"tensorflow", "keras", "tvm", "jax", "tf2onnx", "onnx"}}
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_results_do_not_alias_reused_buffers(classifier):
    """Small calls reuse bound buffers; a returned array must never change afterwards."""
    first_input = np.full((3, 94), 7, np.int64)
    first = classifier.predict(first_input)
    kept = first.copy()
    classifier.predict(np.full((3, 94), 90, np.int64))
    np.testing.assert_array_equal(first, kept)


def test_threads_sharing_a_classifier_get_their_own_answers(classifier):
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    inputs = [rng.integers(0, 101, size=(n, 94)) for n in (1, 2, 5, 1, 2, 5, 130, 3) * 4]
    expected = [classifier.predict(x) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda x: classifier.predict(x), inputs))
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_array_equal(want, have)


@pytest.mark.parametrize(
    "given, name",
    [(None, "NoneType"), ({"x": [1]}, "dict"), ((r for r in [[1] * 94]), "generator"),
     ("1,2,3", "str")],
)
def test_what_is_not_a_table_is_named(classifier, given, name):
    with pytest.raises(InputError, match=rf"array or a list of rows of numbers; got {name}$"):
        classifier.predict(given)
