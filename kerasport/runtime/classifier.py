"""A classifier with the Keras calling convention, served by a compiled backend.

Code written for a Keras model (`model.predict(x, batch_size=128, verbose=0)` or
`model(x, training=False)`) runs unchanged. Rows go through in chunks into one preallocated
output, so memory stays bounded however many rows a region has.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasport.errors import InputError
from kerasport.runtime.backends import Runner
from kerasport.runtime.inputs import as_examples_array, check_finite, positive_int

# __call__ has no batch_size argument in Keras; this chunk keeps its memory bounded too.
CALL_CHUNK_ROWS = 1024


class Classifier:
    """Keras-compatible `predict` and `__call__` over a backend runner."""

    def __init__(self, runner: Runner, num_features: int, num_classes: int, backend: str) -> None:
        self._runner = runner
        self.num_features = num_features
        self.num_classes = num_classes
        self.backend = backend

    def predict(self, examples: Any, batch_size: int | None = 128, verbose: Any = 0) -> np.ndarray:
        """Class probabilities, float32 (N, num_classes); `verbose` is accepted, ignored."""
        del verbose  # accepted for Keras compatibility; nothing is printed
        # batch_size=None means Keras' own default of 32
        chunk_rows = 32 if batch_size is None else positive_int(batch_size, "batch_size")
        return self._run_chunked(as_examples_array(examples, self.num_features), chunk_rows)

    def __call__(self, examples: Any, training: bool = False) -> np.ndarray:
        """Keras' direct call; `training=True` is refused since there is nothing to train."""
        if training:
            raise InputError("a kerasport classifier runs inference only; training=True is refused")
        return self._run_chunked(as_examples_array(examples, self.num_features), CALL_CHUNK_ROWS)

    def _run_chunked(self, array: np.ndarray, chunk_rows: int) -> np.ndarray:
        rows = array.shape[0]
        if rows <= chunk_rows:  # the common per-region call: one chunk, no extra copy
            if rows == 0:
                return np.empty((0, self.num_classes), dtype=np.float32)
            return self._run_chunk(array, 0)
        output = np.empty((rows, self.num_classes), dtype=np.float32)
        for start in range(0, rows, chunk_rows):
            stop = min(start + chunk_rows, rows)
            output[start:stop] = self._run_chunk(array[start:stop], start)
        return output

    def _run_chunk(self, chunk: np.ndarray, first_row: int) -> np.ndarray:
        if chunk.dtype.kind == "f":
            check_finite(chunk, first_row)
        return self._runner.run(chunk)
