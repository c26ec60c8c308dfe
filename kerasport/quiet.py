"""Keep TensorFlow's C++ start-up notices out of kerasport's output.

TensorFlow writes absl and oneDNN notices ("oneDNN custom operations are on ...") straight to
file descriptor 2 while it is imported, whatever TF_CPP_MIN_LOG_LEVEL says. They are not
kerasport's to show, so the import runs with descriptor 2 pointed at a temporary file; the
captured text is shown only if the import fails. Nothing about TensorFlow's numerics changes
(oneDNN stays as TensorFlow chose, so the reference is what DeepVariant computes). Set
KERASPORT_VERBOSE=1 (the CLI's --verbose) to see everything; subprocesses inherit it.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from types import ModuleType

VERBOSE_ENV = "KERASPORT_VERBOSE"


def quiet_import(name: str) -> ModuleType:
    """`import name`, with native stderr held back unless verbose."""
    if name in sys.modules or os.environ.get(VERBOSE_ENV):
        return importlib.import_module(name)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return importlib.import_module(name)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
