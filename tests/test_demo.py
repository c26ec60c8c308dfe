"""`kerasport demo` runs export -> runtime -> verify on the embedded model and says so.

Run as a user would (`python -m kerasport demo --out DIR` in a fresh process) and check what
it printed and every file it wrote.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasport.assets import DEFAULT_EXAMPLES
from kerasport.examples import CLASS_NAMES, read_examples
from kerasport.export.tvm import runnable_targets

CALLS_HEADER = ["row", "position", "truth", "call", "gq", "p_ref", "p_het", "p_hom_alt"]
EMBEDDED_ROWS = 312


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("demo-run") / "demo"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "kerasport", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=out.parent,
        timeout=600,
    )
    return proc, out


def _table_row(stdout: str, backend: str) -> dict[str, str]:
    """The verify table's row for `backend`, as {column: cell}."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == backend:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no {backend} row in the table:\n{stdout}")


@pytest.mark.slow
def test_demo_exits_zero_and_reports(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    from kerasport import runtime

    proc, out = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stdout = proc.stdout
    served = runtime.load(out / "bundle")  # auto, as the demo loads it
    assert (
        f"classify {EMBEDDED_ROWS} real examples with the {served.backend} runtime "
        f"({served.artifact};" in stdout
    )
    backends = runtime.servable_artifacts(out / "bundle")
    assert backends[0] == "onnxruntime"
    if importlib.util.find_spec("tvm") is not None and runnable_targets():
        assert any(b.startswith("tvm-") for b in backends)  # every one is verified below
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    best = next((b for b in backends if b.startswith("tvm-")), None)  # the widest library
    preferred = best is not None and manifest["artifacts"][best]["details"]["preferred"]
    assert served.artifact == (best if preferred else "onnxruntime")  # as export timed them
    for backend in backends:  # every backend of the bundle is verified and passes
        row = _table_row(stdout, backend)
        assert row["examples compared"] == str(EMBEDDED_ROWS)
        assert row["genotype-call (arg-max) changes"] == "0"
        assert row["gate flips (SNP / indel)"] == "0 (0 / 0)"
        assert row["verdict"] == "PASS"
    assert "verdict: PASS (exit code 0)" in stdout
    assert str(out / "calls.tsv") in stdout


@pytest.mark.slow
def test_demo_bundle_loads_and_matches_calls(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    from kerasport import runtime

    proc, out = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = out / "bundle"
    assert (bundle / "model.onnx").is_file()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["num_features"], manifest["num_classes"]) == (70, 3)
    assert manifest["source_file"] == "model.keras"
    assert "onnxruntime" in manifest["artifacts"]
    assert manifest["feature_names"] == read_examples(DEFAULT_EXAMPLES).feature_names
    assert not list(out.glob(".bundle.*")), "an export left a partial or old bundle behind"

    examples = read_examples(DEFAULT_EXAMPLES)
    classifier = runtime.load(bundle)  # checks every artifact's sha256
    probabilities = runtime.classify(classifier, examples.features, batch_size=128)

    lines = (out / "calls.tsv").read_text().splitlines()
    assert lines[0].split("\t") == CALLS_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == EMBEDDED_ROWS
    assert all(len(fields) == len(CALLS_HEADER) for fields in rows)
    assert [int(r[0]) for r in rows] == list(range(EMBEDDED_ROWS))
    assert examples.positions is not None and examples.labels is not None
    assert [int(r[1]) for r in rows] == examples.positions.tolist()
    assert [r[2] for r in rows] == [CLASS_NAMES[t] for t in examples.labels]
    assert [r[3] for r in rows] == [CLASS_NAMES[c] for c in probabilities.argmax(axis=1)]
    gq = np.array([float(r[4]) for r in rows])
    assert ((gq >= 0) & (gq <= 70.01)).all()
    p = np.array([[float(v) for v in r[5:]] for r in rows])
    np.testing.assert_allclose(p, probabilities, rtol=1e-5, atol=1e-9)  # written with %.6g
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_demo_verify_reports(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "verify.json").read_text())
    assert report["schema"] == "kerasport-verify-report"
    assert report["rows"] == EMBEDDED_ROWS
    assert report["verdict"] == {"passed": True, "exit_code": 0, "reasons": []}
    ort = report["backends"]["onnxruntime"]
    assert ort["rows"] == EMBEDDED_ROWS
    assert ort["argmax_changes"] == 0
    assert ort["gate_flips"] == 0
    assert ort["invalid"]["candidate"]["invalid_rows"] == 0
    assert 0 <= ort["max_abs_diff"] < 1e-5

    html = (out / "verify.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "onnxruntime" in html
    assert re.search(r"data:image/png;base64,[A-Za-z0-9+/]{100}", html), "no embedded plot"


def test_a_failed_calls_write_leaves_no_file(tmp_path: Path) -> None:
    from kerasport.demo import _write_calls

    probabilities = np.full((3, len(CLASS_NAMES)), 1 / 3, dtype=np.float32)
    gq = np.zeros(3)
    path = tmp_path / "calls.tsv"
    with pytest.raises(IndexError):  # row 2's truth is no class: the write stops there
        _write_calls(path, None, np.array([0, 1, 9]), np.zeros(3, int), gq, probabilities)
    assert list(tmp_path.iterdir()) == []
    _write_calls(path, np.arange(3), np.array([0, 1, 2]), np.zeros(3, int), gq, probabilities)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == CALLS_HEADER and len(lines) == 4
