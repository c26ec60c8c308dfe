"""The runtime in DeepVariant's images: Python 3.10, numpy 1.x, onnxruntime 1.23.

`make test` builds that environment (`.venv-py310`) when a Python 3.10 is on the machine and
points KERASPORT_PY310 at its interpreter; without it this test is skipped, saying why.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

import kerasport.runtime
from kerasport.testing import synthetic_examples

PY310 = os.environ.get("KERASPORT_PY310", "")


@pytest.mark.skipif(
    not PY310, reason="KERASPORT_PY310 unset: no Python 3.10 runtime env (make test builds one)"
)
def test_bundle_loads_and_answers_identically_on_python310_numpy1_ort123(bundles, tmp_path: Path):
    x, _ = synthetic_examples(300, 70, seed=11)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", kerasport.runtime.load(bundles["wgs"]).predict(x))
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, onnxruntime
        assert sys.version_info[:2] == (3, 10), sys.version
        assert np.__version__.startswith("1."), np.__version__
        assert onnxruntime.__version__.startswith("1.23."), onnxruntime.__version__
        import kerasport.runtime
        c = kerasport.runtime.load({str(bundles["wgs"])!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        got = kerasport.runtime.classify(c, x, batch_size=128)
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert got.dtype == np.float32 and got.shape == (300, 3)
        assert (got.argmax(1) == expected.argmax(1)).all()
        assert np.abs(got - expected).max() <= 1e-6, np.abs(got - expected).max()
        assert not {{"tensorflow", "keras", "tvm"}} & {{m.split(".")[0] for m in sys.modules}}
        print("py310 ok", sys.version.split()[0], np.__version__, onnxruntime.__version__)
        """
    )
    done = subprocess.run(
        [PY310, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert "py310 ok 3.10" in done.stdout


def _tvm_on_python310(model: Path, x: np.ndarray, tmp_path: Path) -> None:
    """Export `model` with this CPU's TVM library; Python 3.10 loads it without the compiler
    and answers `x` with the same bits as here."""
    pytest.importorskip("tvm")
    from kerasport.export import export_bundle
    from kerasport.export.tvm import runnable_targets

    if not runnable_targets():
        pytest.skip("this CPU runs no TVM target (AVX2)")

    bundle = export_bundle(model, tmp_path / "bundle", tvm_targets=["auto"])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", kerasport.runtime.load(bundle, backend="tvm").predict(x))
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        assert sys.version_info[:2] == (3, 10), sys.version
        import kerasport.runtime
        c = kerasport.runtime.load({str(bundle)!r}, backend="tvm")
        got = c.predict(np.load({str(tmp_path / "x.npy")!r}), batch_size=128)
        assert (got == np.load({str(tmp_path / "expected.npy")!r})).all()  # the same bits
        assert "tvm" not in sys.modules
        print("py310 tvm ok", c.artifact)
        """
    )
    done = subprocess.run(
        [PY310, "-c", script], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert "py310 tvm ok tvm-" in done.stdout


@pytest.mark.skipif(
    not PY310, reason="KERASPORT_PY310 unset: no Python 3.10 runtime env (make test builds one)"
)
def test_a_tvm_library_loads_on_python310_without_the_compiler(
    trained_models, tmp_path: Path
) -> None:
    _tvm_on_python310(trained_models["wgs"], synthetic_examples(300, 70, seed=12)[0], tmp_path)


@pytest.mark.skipif(
    not PY310, reason="KERASPORT_PY310 unset: no Python 3.10 runtime env (make test builds one)"
)
def test_a_convolutional_library_loads_on_python310(tmp_path: Path) -> None:
    """The convolution route's front kernel and scratch buffers, on images."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((10, 10, 2)), L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(), L.DepthwiseConv2D(3), L.GlobalAveragePooling2D(),
        L.Dense(3, activation="softmax"),
    ])
    model.save(tmp_path / "cnn.keras")
    x = np.random.default_rng(4).standard_normal((300, 10, 10, 2)).astype(np.float32)
    _tvm_on_python310(tmp_path / "cnn.keras", x, tmp_path)
