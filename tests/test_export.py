"""Export: what it writes, what it refuses, and that it never leaves a partial bundle."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.atomic import current_umask
from kerasport.errors import ExportError
from kerasport.export import export_bundle
from kerasport.export.check import check_agreement
from kerasport.manifest import read_manifest, sha256_file

pytestmark = pytest.mark.slow


def test_manifest_records_shape_versions_and_checksums(trained_models, bundles):
    manifest = read_manifest(bundles["long_read"])
    assert (manifest.num_features, manifest.num_classes) == (106, 3)
    assert manifest.source_sha256 == sha256_file(trained_models["long_read"])
    artifact = manifest.artifacts["onnxruntime"]
    assert artifact.sha256 == sha256_file(bundles["long_read"] / artifact.file)
    assert artifact.details == {"opset": 17, "ir_version": 8}
    assert {"keras", "tf2onnx", "onnx", "onnxruntime"} <= set(manifest.versions)


def test_bundle_is_readable_by_others_as_umask_allows(bundles):
    mode = bundles["wgs"].stat().st_mode & 0o777
    assert mode == 0o777 & ~current_umask()


def test_onnx_graph_has_dynamic_batch_and_loads_on_old_runtimes(bundles):
    import onnx

    model = onnx.load(bundles["wgs"] / "model.onnx")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == 70
    assert model.ir_version <= 11  # onnxruntime 1.23 (DeepVariant's images) reads IR <= 11


def test_cli_export_and_errors(trained_models, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "cli-bundle"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kerasport",
            "export",
            str(trained_models["somatic"]),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "94 features -> 3 classes" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "kerasport", "export", str(tmp_path / "none.keras"), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 2
    assert "Keras model file not found" in missing.stderr


def test_model_with_unregistered_custom_metric_loads(tmp_path):
    """DeepVariant's saved compile config names metrics this process has never registered."""
    script = f"""
import keras
@keras.saving.register_keras_serializable(package="dv")
def f1_like(y_true, y_pred):
    return keras.ops.mean(y_pred)
m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=[f1_like])
m.save({str(tmp_path / "custom.keras")!r})
"""
    subprocess.run(
        [sys.executable, "-c", script], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    bundle = export_bundle(tmp_path / "custom.keras", tmp_path / "custom")
    assert read_manifest(bundle).num_features == 5


def test_disagreeing_export_writes_nothing_and_keeps_old_bundle(trained_models, tmp_path):
    out = export_bundle(trained_models["somatic"], tmp_path / "b")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    nan_probe = np.full((4, 94), np.nan, np.float32)  # fails after the files are written
    with pytest.raises(ExportError, match="probe batch is unusable"):
        export_bundle(trained_models["somatic"], out, probe=nan_probe)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary left behind


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(trained_models, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a kerasport bundle"):
        export_bundle(trained_models["somatic"], tmp_path / "precious")
    assert (tmp_path / "precious" / "data.txt").read_text() == "keep me"


def test_refuses_a_directory_with_a_foreign_manifest_or_a_file(trained_models, tmp_path):
    app = tmp_path / "web-app"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my extension"}')
    with pytest.raises(ExportError, match="not a kerasport bundle"):
        export_bundle(trained_models["somatic"], app)
    assert (app / "manifest.json").read_text() == '{"name": "my extension"}'
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is not a directory"):
        export_bundle(trained_models["somatic"], tmp_path / "file")


@pytest.mark.parametrize("opset", [5, 30])
def test_opset_out_of_range(trained_models, tmp_path, opset):
    with pytest.raises(ExportError, match=f"opset {opset} is outside"):
        export_bundle(trained_models["somatic"], tmp_path / "b", opset=opset)


def _export_process(model, out):
    return subprocess.Popen(
        [sys.executable, "-m", "kerasport", "export", str(model), "-o", str(out)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_partial(proc, out, deadline=120.0):
    """Seconds until the export's partial directory appears (None: it finished first)."""
    started = time.monotonic()
    while not list(out.parent.glob(f".{out.name}.partial-*")):
        if proc.poll() is not None:
            return None
        assert time.monotonic() - started < deadline
        time.sleep(0.002)
    return time.monotonic() - started


def test_ten_sigkills_at_random_moments_leave_nothing_loadable_or_stale(
    trained_models, tmp_path
):
    """SIGKILL exports at seeded random moments while they write: the destination is always
    absent or a whole bundle, a partial directory never loads, and the next export clears
    everything the killed ones left."""
    from kerasport import runtime
    from kerasport.errors import BundleError

    out = tmp_path / "bundle"
    timing = _export_process(trained_models["somatic"], out)
    assert _wait_for_partial(timing, out) is not None
    window_start = time.monotonic()
    while list(tmp_path.glob(".bundle.partial-*")):  # until the rename, not the exit: the
        time.sleep(0.002)  # interpreter's teardown after it is no part of the window
    window = time.monotonic() - window_start  # from partial directory to renamed bundle
    assert timing.wait() == 0
    rng = np.random.default_rng(TRAINING_SEED)
    landed = 0
    for kill in range(10):
        proc = _export_process(trained_models["wgs" if kill % 2 else "somatic"], out)
        assert _wait_for_partial(proc, out) is not None, "export finished before the kill"
        time.sleep(float(rng.uniform(0.0, window)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = sorted(tmp_path.glob(".bundle.partial-*"))
        landed += bool(left)
        for partial in left:
            with pytest.raises(BundleError, match="unfinished export"):
                runtime.load(partial)
        if out.exists():  # absent only while a killed swap has the old one moved aside
            assert runtime.load(out).num_features in (70, 94)
    assert landed >= 5, f"only {landed} of 10 kills landed while the bundle was being written"
    export_bundle(trained_models["somatic"], out)
    assert read_manifest(out).num_features == 94
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_stale_directories_of_dead_writers_are_cleared_and_live_ones_kept(
    bundles, tmp_path
):
    import shutil

    from kerasport.export.bundle import clear_stale

    out = tmp_path / "bundle"
    dead = 2**31 - 1  # beyond any pid_max: no such process
    shutil.copytree(bundles["somatic"], tmp_path / f".bundle.partial-{dead}-x")
    shutil.copytree(bundles["somatic"], tmp_path / f".bundle.old-{dead}-y")  # the old bundle
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".bundle.partial-{live.pid}-z").mkdir()
        clear_stale(out)
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".bundle.partial-{live.pid}-z", "bundle"
    ]
    assert read_manifest(out).num_features == 94  # the killed swap's old bundle, put back


def test_check_agreement_refuses_differences_and_moved_argmax():
    reference = np.array([[0.9, 0.05, 0.05], [0.5, 0.5, 0.0]], np.float32)
    check_agreement(reference, reference[:, ::-1][:, ::-1].copy())
    with pytest.raises(ExportError, match=re.escape("max |difference| 0.001")):
        check_agreement(reference, reference + np.float32(1e-3))
    swapped = reference.copy()
    swapped[1] = [0.5 - 1e-6, 0.5 + 1e-6, 0.0]  # a tie at this tolerance: forgiven
    check_agreement(reference, swapped)
    with pytest.raises(ExportError, match="shape"):
        check_agreement(reference, reference[:1])
    with pytest.raises(ExportError, match="disagrees"):
        check_agreement(reference, np.full_like(reference, np.nan))


def test_a_softmax_classifier_exports_without_warnings(bundles):
    assert read_manifest(bundles["wgs"]).warnings == []
