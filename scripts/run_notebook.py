"""Execute notebooks/walkthrough.ipynb top to bottom and save it with its outputs.

    python scripts/run_notebook.py        (make notebook)

The notebook is stored with its tables and figures so it reads like a page on GitHub; this
regenerates them in a fresh kernel, and the tests execute it again to keep it honest.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def execute(path: Path, scratch: Path) -> nbformat.NotebookNode:
    """The notebook at `path`, executed from its own folder, scratch files under `scratch`."""
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(scratch)})
    return notebook


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        notebook = execute(NOTEBOOK, Path(scratch))
    nbformat.validate(notebook)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK} with its outputs")


if __name__ == "__main__":
    main()
