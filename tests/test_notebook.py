"""The walkthrough notebook runs top to bottom in a fresh kernel and draws its figures.

The notebook is stored without outputs; this executes it with nbclient in the kernel of the
interpreter running the tests (jupyter_client starts kernel `python3` with sys.executable),
from notebooks/ as a reader would, with scratch files kept under the test's tmp_path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"
FIGURE_TAG = "figure"  # cells tagged so draw exactly one figure each
EXPECTED_FIGURES = 5  # features, class balance, GQ gate, latency, deviations


def _code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _pngs(cell: Any) -> int:
    outputs = cell.get("outputs", [])
    return sum(1 for output in outputs if "image/png" in output.get("data", {}))


def test_notebook_is_stored_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(_code_cells(notebook)):
        assert not cell.outputs, f"code cell {index} has saved outputs: clear them"
        assert cell.execution_count is None, f"code cell {index} has an execution count"


@pytest.mark.slow
def test_walkthrough_notebook_runs(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(tmp_path)}
    client.execute(env=env)  # raises CellExecutionError naming the cell on any error

    cells = _code_cells(notebook)
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    figure_cells = [c for c in cells if FIGURE_TAG in c.metadata.get("tags", [])]
    assert len(figure_cells) == EXPECTED_FIGURES
    for cell in figure_cells:
        assert _pngs(cell) == 1, f"no figure from:\n{cell.source[:200]}"
    assert sum(_pngs(cell) for cell in cells) == EXPECTED_FIGURES

    text = "".join(
        output.get("text", "")
        for cell in cells
        for output in cell.outputs
        if output.output_type == "stream" and output.get("name") == "stdout"
    )
    assert "frameworks imported: none" in text  # the runtime ran without TensorFlow
    # The verify table's row: every example compared, 0 arg-max changes.
    assert re.search(r"^\| onnxruntime \| [\d,]+ \| 0 \|", text, re.MULTILINE), text
    assert cells[-1].outputs[-1].text.strip() == "verdict: PASS"
