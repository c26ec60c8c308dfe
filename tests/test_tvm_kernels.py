"""TVM dense-chain kernels: agreement with a float64 forward pass, batch invariance, and a
runtime path that never imports the TVM compiler."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tvm")
pytest.importorskip("tvm_ffi")

from kerasport.cpu import host_cpu_features, missing_features
from kerasport.errors import BundleError, ExportError
from kerasport.export.tvm.activations import Activation
from kerasport.export.tvm.dense_graph import compile_dense_chain
from kerasport.export.tvm.targets import TvmTarget, known_targets, resolve_targets
from kerasport.runtime.backends.tvm import TvmRunner, open_tvm_library

Layer = tuple[np.ndarray, np.ndarray, str]


def _runnable_targets() -> list[Any]:
    params = []
    for target in known_targets().values():
        missing = missing_features(target.cpu_features, host_cpu_features())
        mark = pytest.mark.skipif(bool(missing), reason=f"host lacks {missing}")
        params.append(pytest.param(target, id=target.name, marks=mark))
    return params


TARGETS = _runnable_targets()

# (features, hidden widths, hidden activations, classes, head)
SHAPES = {
    "tiny": (7, (5,), ("relu",), 3, "softmax"),
    "mixed": (70, (64, 33), ("tanh", "sigmoid"), 3, "softmax"),
    "wide": (106, (200, 300), ("relu", "linear"), 3, "softmax"),
    "sigmoid1": (13, (20,), ("relu",), 1, "sigmoid"),
    "sigmoid3": (9, (17,), ("tanh",), 3, "sigmoid"),
}


def make_layers(shape: str, seed: int = 0) -> list[Layer]:
    """Random weights scaled so activations stay in a useful range."""
    features, hidden, acts, classes, head = SHAPES[shape]
    rng = np.random.default_rng(seed)
    dims = [features, *hidden, classes]
    layers = []
    for a, b, act in zip(dims[:-1], dims[1:], [*acts, head], strict=True):
        w = rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)
        layers.append((w, rng.normal(0, 0.1, b).astype(np.float32), act))
    return layers


def reference(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    """Float64 forward pass on the float32-cast input."""
    h = x.astype(np.float32).astype(np.float64)
    for w, b, act in layers:
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        if act == "relu":
            h = np.maximum(h, 0)
        elif act == "tanh":
            h = np.tanh(h)
        elif act == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        elif act == "softmax":
            e = np.exp(h - h.max(axis=1, keepdims=True))
            h = e / e.sum(axis=1, keepdims=True)
    return h


_CACHE: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tvm")


def compiled(target: TvmTarget, shape: str, build_dir: Path) -> tuple[Path, dict[str, Any]]:
    key = (target.name, shape)
    if key not in _CACHE:
        stem = f"{shape}_{target.name.replace('-', '_')}"
        _CACHE[key] = (build_dir, compile_dense_chain(make_layers(shape), target, build_dir, stem))
    return _CACHE[key]


def open_runner(directory: Path, details: dict[str, Any]) -> TvmRunner:
    return open_tvm_library(
        (directory / details["library"]).read_bytes(),
        (directory / details["weights"]).read_bytes(),
        details,
        details["num_features"],
        details["num_classes"],
    )


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("target", TARGETS)
def test_matches_reference_and_is_batch_invariant(
    target: TvmTarget, shape: str, build_dir: Path
) -> None:
    directory, details = compiled(target, shape, build_dir)
    json.dumps(details)  # the description goes into a manifest
    runner = open_runner(directory, details)
    layers = make_layers(shape)
    features = details["num_features"]
    x = np.random.default_rng(5).integers(0, 100, (1030, features)).astype(np.int64) / 50.0
    full = runner.run(x)
    assert full.shape == (1030, details["num_classes"])
    assert full.dtype == np.float32 and full.flags.c_contiguous
    np.testing.assert_allclose(full, reference(layers, x), atol=2e-5, rtol=0)
    # Bit-identical whatever the chunking: row by row, and every size that mixes kernels.
    by_row = np.concatenate([runner.run(x[i : i + 1]) for i in range(20)])
    assert np.array_equal(by_row, full[:20])
    for n in [*range(1, 21), 37, 129, 1030]:
        assert np.array_equal(runner.run(x[:n]), full[:n]), n
    pieces, start = [], 0
    for size in (3, 8, 17, 1, 64, 7, 130):
        pieces.append(runner.run(x[start : start + size]))
        start += size
    assert np.array_equal(np.concatenate(pieces), full[:start])
    # Any real dtype is cast as astype does, and results are new arrays.
    x32 = x[:5].astype(np.float32)
    first = runner.run(x32)
    assert np.array_equal(first, runner.run(x32.astype(np.float64)))
    assert not np.shares_memory(first, runner.run(x32))
    assert runner.run(x[:0]).shape == (0, details["num_classes"])


@pytest.mark.parametrize("target", TARGETS)
def test_threads_share_a_runner(target: TvmTarget, build_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    directory, details = compiled(target, "mixed", build_dir)
    runner = open_runner(directory, details)
    x = np.random.default_rng(9).normal(size=(300, details["num_features"]))
    expected = runner.run(x)
    sizes = [1, 3, 8, 11, 64, 300] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: runner.run(x[:n]), sizes))
    for n, result in zip(sizes, results, strict=True):
        assert np.array_equal(result, expected[:n])


def test_runtime_does_not_import_the_compiler(build_dir: Path) -> None:
    target = TARGETS[0].values[0]
    if missing_features(target.cpu_features, host_cpu_features()):
        target = TARGETS[-1].values[0]
    directory, details = compiled(target, "tiny", build_dir)
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        import numpy as np
        from kerasport.runtime.backends.tvm import open_tvm_library
        d = json.loads(sys.argv[1]); base = Path(sys.argv[2])
        r = open_tvm_library((base / d["library"]).read_bytes(),
                             (base / d["weights"]).read_bytes(), d, 7, 3)
        out = r.run(np.ones((13, 7)))
        assert out.shape == (13, 3)
        print(json.dumps({"tvm": "tvm" in sys.modules, "sum": float(out.sum())}))
        """
    )
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(details), str(directory)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["tvm"] is False
    assert result["sum"] == pytest.approx(13.0, abs=1e-4)


def test_tampered_description_and_foreign_cpu(build_dir: Path) -> None:
    target = TARGETS[-1].values[0]
    directory, details = compiled(target, "tiny", build_dir)
    lib = (directory / details["library"]).read_bytes()
    weights = (directory / details["weights"]).read_bytes()
    with pytest.raises(BundleError, match="shape"):
        open_tvm_library(lib, weights, details, 8, 3)
    with pytest.raises(BundleError, match="lacks"):
        open_tvm_library(lib, weights, {**details, "cpu_features": ["no_such_flag"]}, 7, 3)
    with pytest.raises(BundleError, match="does not match"):
        open_tvm_library(lib, weights[:-64], details, 7, 3)
    with pytest.raises(BundleError):
        open_tvm_library(b"not a library", weights, details, 7, 3)


def test_export_errors(build_dir: Path) -> None:
    layers = make_layers("tiny")
    bad = [*layers[:-1], (layers[-1][0], layers[-1][1], "sparsemax")]
    with pytest.raises(ExportError, match="sparsemax"):
        compile_dense_chain(bad, known_targets()["x86-64-v3"], build_dir, "bad")
    forward_merge = [
        (layers[0][0], layers[0][1], Activation.of("add_skip", source=1)), *layers[1:]
    ]
    with pytest.raises(ExportError, match="merge reads node 1"):
        compile_dense_chain(forward_merge, known_targets()["x86-64-v3"], build_dir, "bad")
    with pytest.raises(ExportError, match="x86-64-v9"):
        resolve_targets(["x86-64-v9"])
    assert [t.name for t in resolve_targets(["x86-64-v3", "x86-64-v3"])] == ["x86-64-v3"]


@pytest.mark.parametrize("target", TARGETS)
def test_a_dense_chain_description_from_before_graphs_still_loads(
    target: TvmTarget, build_dir: Path
) -> None:
    """Bundles exported before the graph route describe a chain (route dense-chain, no
    buffer list, a kernel and bias per layer): the same calling convention, still served."""
    directory, details = compiled(target, "mixed", build_dir)
    legacy = json.loads(json.dumps(details)) | {"route": "dense-chain"}
    del legacy["buffers"]
    for layer in legacy["layers"]:
        del layer["kind"], layer["sources"]
    x = np.random.default_rng(2).normal(size=(13, details["num_features"]))
    same = open_runner(directory, legacy).run(x) == open_runner(directory, details).run(x)
    assert same.all()
    with pytest.raises(BundleError, match="weight and a bias per layer"):
        open_runner(directory, {**legacy, "arrays": legacy["arrays"][:-1]})
    with pytest.raises(BundleError, match="buffers"):
        open_runner(directory, {**details, "buffers": details["buffers"][:-1]})
