"""The walkthrough notebook runs top to bottom in a fresh kernel and draws its figures.

The notebook is stored with its outputs (`make notebook` regenerates them) so it reads like a
page; this executes it again with nbclient in the kernel of the interpreter running the tests
(jupyter_client starts kernel `python3` with sys.executable), from notebooks/ as a reader
would, with scratch files kept under the test's tmp_path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from run_notebook import NOTEBOOK, execute  # noqa: E402  (one way to run it: the script's)

FIGURE_TAG = "figure"  # cells tagged so draw exactly one figure each
EXPECTED_FIGURES = 5  # features, class balance, GQ gate, latency, deviations


def _code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _pngs(cell: Any) -> int:
    outputs = cell.get("outputs", [])
    return sum(1 for output in outputs if "image/png" in output.get("data", {}))


def test_notebook_is_stored_with_its_tables_and_figures() -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    cells = _code_cells(notebook)
    assert all(cell.outputs for cell in cells[1:]), "run `make notebook` to store its outputs"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    figure_cells = [c for c in cells if FIGURE_TAG in c.metadata.get("tags", [])]
    assert [_pngs(cell) for cell in figure_cells] == [1] * EXPECTED_FIGURES


@pytest.mark.slow
def test_walkthrough_notebook_runs(tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")

    notebook = execute(NOTEBOOK, tmp_path)  # raises CellExecutionError naming the cell

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
    assert "gate: none (default" in text  # your own model: verified with no DeepVariant option
    assert cells[-1].outputs[-1].text.strip() == "verdict: PASS"
