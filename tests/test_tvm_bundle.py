"""TVM libraries in a bundle: export with --tvm, load by CPU features, refuse what is unsafe.

The models are tiny (F=20, hidden 16-16) so each library compiles in a second or two; the
kernels themselves are tested over many shapes in test_tvm_kernels.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_FEATURES, TRAINING_SEED

import kerasport.runtime
from kerasport.cpu import host_cpu_features, missing_features
from kerasport.errors import BackendUnavailableError, BundleError, ExportError
from kerasport.export.tvm import runnable_targets
from kerasport.testing import synthetic_examples

pytest.importorskip("tvm")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not runnable_targets(), reason="this CPU runs no TVM target (AVX2)"),
]

F = TINY_FEATURES
V3, V4 = "tvm-x86-64-v3", "tvm-x86-64-v4"


def host_has(key: str, manifest: dict) -> bool:
    return not missing_features(manifest["artifacts"][key]["details"]["cpu_features"],
                                host_cpu_features())


@pytest.fixture(scope="module")
def model(tiny_models: tuple[Path, Path]) -> Path:
    return tiny_models[0]


@pytest.fixture(scope="module")
def bundle(tiny_bundles: tuple[Path, Path]) -> Path:
    return tiny_bundles[0]


@pytest.fixture
def bundle_copy(bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def test_the_manifest_describes_each_library(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"onnxruntime", V3, V4}
    for key, target in ((V3, "x86-64-v3"), (V4, "x86-64-v4")):
        artifact = manifest["artifacts"][key]
        details = artifact["details"]
        assert artifact["backend"] == "tvm" and artifact["file"] == f"model-{target}.so"
        assert details["target"] == target and details["route"] == "dense-graph"
        assert "avx2" in details["cpu_features"]
        assert details["tvm_version"].startswith("0.27") and details["tvm_ffi_version"]
        assert set(artifact["extra_files"]) == {"weights"}
    assert "avx512f" in manifest["artifacts"][V4]["details"]["cpu_features"]
    for key in (V3, V4):  # timed against ONNX Runtime on this CPU, or not at all
        details = manifest["artifacts"][key]["details"]
        measured = details["measured"]
        if not host_has(key, manifest):
            assert measured is None and details["preferred"] is False
            assert any(w.startswith(f"{key} was not timed") for w in manifest["warnings"])
            continue
        assert measured["rows"] == [1, 8, 128] and measured["cpu"]
        assert all(t > 0 for t in measured["tvm_us"] + measured["onnxruntime_us"])
        pairs = zip(measured["tvm_us"], measured["onnxruntime_us"], strict=True)
        faster = all(t <= o for t, o in pairs)
        assert details["preferred"] is faster
        slower_warning = any(w.startswith(f"{key} was slower") for w in manifest["warnings"])
        assert slower_warning is not faster
    assert "avx512f" not in manifest["artifacts"][V3]["details"]["cpu_features"]
    assert manifest["versions"]["apache-tvm"] == "0.27.0.post1"


def test_each_library_this_cpu_runs_matches_keras(bundle: Path, model: Path) -> None:
    from kerasport.export.check import check_agreement, keras_predict
    from kerasport.export.keras_model import load_keras_model

    x, _ = synthetic_examples(300, F, seed=4)
    reference = keras_predict(load_keras_model(model), x)
    served = kerasport.runtime.servable_artifacts(bundle)
    assert served[0] == "onnxruntime" and len(served) >= 2  # the module needs an AVX2 CPU
    for key in served:
        classifier = kerasport.runtime.load(bundle, backend=key)
        assert classifier.artifact == key
        got = classifier.predict(x, batch_size=128)
        check_agreement(reference, got)  # export's own bar: 1e-5, no arg-max change
        for batch in (1, 7, 300):  # results independent of chunking, bit for bit
            np.testing.assert_array_equal(classifier.predict(x, batch_size=batch), got)
        assert classifier.predict(np.zeros((0, F))).shape == (0, 3)


def test_tvm_picks_the_widest_library_this_cpu_runs_and_auto_the_preferred_one(
    bundle: Path,
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    best = V4 if host_has(V4, manifest) else V3
    assert kerasport.runtime.load(bundle, backend="tvm").artifact == best
    auto = kerasport.runtime.load(bundle)  # the manifest's rule: what export timed faster
    preferred = manifest["artifacts"][best]["details"]["preferred"]
    assert auto.artifact == (best if preferred else "onnxruntime")


@pytest.mark.parametrize("preferred", [True, False])
def test_auto_follows_the_figures_export_recorded(
    bundle_copy: Path, preferred: bool
) -> None:
    """A library timed slower than ONNX Runtime stays in the bundle for explicit use, and
    `auto` serves ONNX Runtime; one timed faster is what `auto` serves."""
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    best = V4 if host_has(V4, manifest) else V3
    for key in (V3, V4):
        manifest["artifacts"][key]["details"]["preferred"] = preferred
    path.write_text(json.dumps(manifest))
    assert kerasport.runtime.load(bundle_copy).artifact == (best if preferred else "onnxruntime")
    assert kerasport.runtime.load(bundle_copy, backend=best).artifact == best


def test_a_cpu_without_the_features_gets_the_avx2_library_or_a_clear_refusal(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kerasport.runtime.backends import tvm as tvm_backend

    avx2_only = frozenset({"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "sse4_2"})
    monkeypatch.setattr(tvm_backend, "host_cpu_features", lambda: avx2_only)
    assert kerasport.runtime.load(bundle, backend="tvm").artifact == V3
    v3_preferred = json.loads((bundle / "manifest.json").read_text())["artifacts"][V3][
        "details"]["preferred"]
    assert kerasport.runtime.load(bundle).artifact == (V3 if v3_preferred else "onnxruntime")
    with pytest.raises(BackendUnavailableError, match=r"needs CPU features .*avx512f"):
        kerasport.runtime.load(bundle, backend=V4)

    monkeypatch.setattr(tvm_backend, "host_cpu_features", lambda: frozenset({"sse2"}))
    with pytest.raises(BackendUnavailableError, match=r"no TVM library .* needs avx.*avx2"):
        kerasport.runtime.load(bundle, backend="tvm")
    assert kerasport.runtime.load(bundle).backend == "onnxruntime"  # auto falls back
    assert kerasport.runtime.servable_artifacts(bundle) == ["onnxruntime"]


def test_without_the_tvm_extra_auto_serves_onnxruntime_and_tvm_says_what_to_install(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from kerasport.runtime.backends import tvm as tvm_backend

    real = importlib.util.find_spec
    hidden = {"tvm", "tvm_ffi"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )
    monkeypatch.setattr(tvm_backend, "_RUNTIME", None)
    assert kerasport.runtime.load(bundle).backend == "onnxruntime"
    with pytest.raises(BackendUnavailableError, match=r"pip install 'kerasport\[tvm\]'"):
        kerasport.runtime.load(bundle, backend="tvm")


@pytest.mark.parametrize("part", ["library", "weights"])
def test_a_tampered_library_or_weights_file_is_refused_before_loading(
    bundle_copy: Path, part: str
) -> None:
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    key = V3
    artifact = manifest["artifacts"][key]
    name = artifact["file"] if part == "library" else artifact["extra_files"]["weights"]["file"]
    data = bytearray((bundle_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle_copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="modified after export"):
        kerasport.runtime.load(bundle_copy, backend=key)


def test_a_fresh_process_loads_a_library_without_the_compiler(bundle: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        import kerasport.runtime
        c = kerasport.runtime.load({str(bundle)!r}, backend="tvm")
        p = kerasport.runtime.classify(c, np.ones((5, {F}), np.int64), batch_size=128)
        assert p.shape == (5, 3) and c.backend == "tvm"
        heavy = {{m.split(".")[0] for m in sys.modules}} & {{"tvm", "tensorflow", "keras", "onnx"}}
        assert not heavy, heavy
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_activations_of_the_family_compile_and_match_keras(tmp_path: Path) -> None:
    import keras

    from kerasport.export import export_bundle
    from kerasport.export.check import check_agreement, keras_predict

    keras.utils.set_random_seed(TRAINING_SEED)
    model = keras.Sequential([
        keras.Input((9,)),
        keras.layers.Dense(12, activation="tanh"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(7),
        keras.layers.Activation("sigmoid"),
        keras.layers.Dense(5, activation="linear"),
        keras.layers.Dense(3, activation="sigmoid"),
    ])
    model.save(tmp_path / "m.keras")
    bundle = export_bundle(tmp_path / "m.keras", tmp_path / "b", tvm_targets=["auto"])
    warnings = json.loads((bundle / "manifest.json").read_text())["warnings"]
    assert any("head is 'sigmoid'" in w and "not a softmax" in w for w in warnings)
    x, _ = synthetic_examples(64, 9, seed=1)
    check_agreement(keras_predict(model, x), kerasport.runtime.load(bundle, "tvm").predict(x))


def test_a_layer_the_route_cannot_compile_is_named(tmp_path: Path) -> None:
    import keras

    from kerasport.export import export_bundle

    model = keras.Sequential([  # the route's values are rows of features
        keras.Input((F,)), keras.layers.Dense(8, activation="relu"),
        keras.layers.RepeatVector(2, name="rv"), keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.save(tmp_path / "m.keras")
    with pytest.raises(ExportError, match=r"cannot compile layer 'rv' \(RepeatVector\)"):
        export_bundle(tmp_path / "m.keras", tmp_path / "b", tvm_targets=["auto"])
    assert not (tmp_path / "b").exists()


def test_an_unknown_target_is_refused_before_any_work(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kerasport.cli import main

    assert main(["export", str(model), "-o", str(tmp_path / "b"), "--target", "arm64"]) == 2
    err = capsys.readouterr().err
    assert "unknown TVM target 'arm64'" in err and "x86-64-v4" in err
    assert not (tmp_path / "b").exists()


def test_a_long_lived_process_keeps_loading_libraries(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each load spells its memfd path differently (the loader reuses a library by path);
    the spelling must stay short however many loads came before (it once grew by two
    characters a load and failed after about 2,000)."""
    from kerasport.runtime.backends import tvm as tvm_backend

    x = np.ones((3, F), np.int64)
    expected = kerasport.runtime.load(bundle, backend="tvm").predict(x)
    monkeypatch.setattr(tvm_backend, "_LOADS", 2**40)  # as if after a trillion loads
    first, second = (kerasport.runtime.load(bundle, backend="tvm") for _ in range(2))
    np.testing.assert_array_equal(first.predict(x), expected)
    np.testing.assert_array_equal(second.predict(x), expected)


def test_a_library_this_cpu_cannot_run_is_not_timed_and_not_preferred(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export on a CPU without AVX-512: the AVX-512 library is built but neither checked nor
    timed, so `auto` never serves it on the strength of a guess; the AVX2 one is timed."""
    import kerasport.export as export_module
    from kerasport.export import export_bundle
    from kerasport.runtime.backends import tvm as tvm_backend

    avx2_only = frozenset({"avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "sse4_2"})
    monkeypatch.setattr(tvm_backend, "host_cpu_features", lambda: avx2_only)
    monkeypatch.setattr(export_module, "host_cpu_features", lambda: avx2_only)
    bundle = export_bundle(model, tmp_path / "b", tvm_targets=["x86-64-v3", "x86-64-v4"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    v4 = manifest["artifacts"][V4]["details"]
    assert v4["measured"] is None and v4["preferred"] is False
    assert any(w.startswith(f"{V4} was not timed") for w in manifest["warnings"])
    assert manifest["artifacts"][V3]["details"]["measured"]["rows"] == [1, 8, 128]


def test_the_bench_floor_runs_the_kernels_a_call_runs(
    bundle: Path, model: Path, tmp_path: Path
) -> None:
    """`bound_kernels` (the bench's TVM floor) leaves in the output buffers what `run`
    returns, at static, blocked and mixed row counts; the bench measures it per library."""
    from kerasport.bench.engines import floor_key, open_group
    from kerasport.manifest import read_manifest
    from kerasport.runtime.backends.tvm import open_artifact

    served = [k for k in kerasport.runtime.servable_artifacts(bundle) if k.startswith("tvm-")]
    runner = open_artifact(bundle, read_manifest(bundle), served[0], 1)
    x, _ = synthetic_examples(1030, F, seed=9)
    for rows in (1, 8, 9, 1030):
        expected = runner.run(x[:rows])
        call = runner.bound_kernels(x[:rows])
        call()
        slots = runner._slots_for(rows)
        got = np.concatenate([slot.scores for _, _, slot in slots])
        assert np.array_equal(got, expected), rows
    engines = {e.key for e in open_group("kerasport", bundle, model, tmp_path).engines}
    assert {f"kerasport-{k}" for k in served} | {floor_key(f"kerasport-{k}") for k in served} \
        <= engines
