"""A classifier with the Keras calling convention, served by a compiled backend.

Code written for a Keras model runs unchanged at each of DeepVariant's call sites:
`model.predict(x, batch_size=128, verbose=0)` (r1.10), `model(x)` (PR 1089) and
`model.predict_on_batch(x[i : i + batch_size])` (current upstream). Rows go through in chunks
of at most MAX_CHUNK_ROWS rows and MAX_CHUNK_BYTES of the engine's working memory into one
preallocated output, so memory stays bounded however many rows a region has, however large
one example is (a 256 x 256 tile), and whatever batch size the caller asks for; results do
not depend on the chunking, so they are the bits one big call would give.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasport.errors import InputError
from kerasport.manifest import InputSpec, OutputSpec
from kerasport.runtime.backends import MAX_CHUNK_BYTES, MAX_CHUNK_ROWS, Runner
from kerasport.runtime.inputs import as_examples_array, chunk_check, positive_int


class Classifier:
    """Keras-compatible `predict`, `predict_on_batch` and `__call__` over a backend runner.

    `backend` and `artifact` say what serves the calls (a TVM bundle may hold one library
    per target CPU); `input_shape` and `output_shape` are one example's (classes last) and
    `head` how to read the scores; `feature_names` are the model's, in order, when the bundle
    recorded DeepVariant's small_model_info.json, so a caller can check its features before
    a genome-long run (`check_feature_names`).
    """

    def __init__(
        self,
        runner: Runner,
        inputs: InputSpec,
        outputs: OutputSpec,
        row_bytes: int,
        backend: str,
        artifact: str,
        feature_names: list[str] | None = None,
    ) -> None:
        self._runner = runner
        self._inputs = inputs
        self._check_chunk = chunk_check(inputs)
        self.input_shape = inputs.shape
        self.input_dtype = inputs.dtype
        self.output_shape = outputs.shape
        self.head = outputs.head
        self.num_features = math.prod(inputs.shape)
        self.num_classes = outputs.shape[-1]
        self._max_rows = max(1, min(MAX_CHUNK_ROWS, MAX_CHUNK_BYTES // row_bytes))
        self.backend = backend
        self.artifact = artifact
        self.feature_names = None if feature_names is None else tuple(feature_names)

    def __repr__(self) -> str:
        if len(self.input_shape) == 1 and len(self.output_shape) == 1:
            shapes = f"{self.num_features} features -> {self.num_classes} classes"
        else:
            shapes = f"{self.input_shape} -> {self.output_shape}"
        return f"Classifier({shapes}, backend={self.backend!r}, artifact={self.artifact!r})"

    def check_feature_names(self, names: Any) -> None:
        """Refuse a caller whose features are not the model's, naming the first difference."""
        if self.feature_names is None:
            raise InputError("this bundle records no feature names (no small_model_info.json)")
        names = tuple(names)
        if names == self.feature_names:
            return
        if len(names) != len(self.feature_names):
            raise InputError(
                f"caller has {len(names)} features; the model takes {len(self.feature_names)}"
            )
        pairs = zip(names, self.feature_names, strict=True)
        index = next(i for i, (a, b) in enumerate(pairs) if a != b)
        raise InputError(
            f"feature {index} is {names[index]!r} for the caller but "
            f"{self.feature_names[index]!r} for the model"
        )

    def predict(self, examples: Any, batch_size: int | None = 128, verbose: Any = 0) -> np.ndarray:
        """Class scores, float32 (N, *output_shape); `verbose` is accepted, ignored."""
        del verbose  # accepted for Keras compatibility; nothing is printed
        # batch_size=None means Keras' own default of 32
        chunk_rows = 32 if batch_size is None else positive_int(batch_size, "batch_size")
        return self._run_chunked(as_examples_array(examples, self._inputs), chunk_rows)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        """Keras' one-batch predict; a huge batch still runs in bounded chunks."""
        return self._run_chunked(as_examples_array(x, self._inputs), MAX_CHUNK_ROWS)

    def __call__(self, examples: Any, training: bool = False) -> np.ndarray:
        """Keras' direct call; `training=True` is refused since there is nothing to train."""
        if training:
            raise InputError("a kerasport classifier runs inference only; training=True is refused")
        return self._run_chunked(as_examples_array(examples, self._inputs), MAX_CHUNK_ROWS)

    def _run_chunked(self, array: np.ndarray, chunk_rows: int) -> np.ndarray:
        rows = array.shape[0]
        if 0 < rows <= chunk_rows and rows <= self._max_rows:
            # the common per-region call: one chunk, no extra copy, no extra Python frame
            self._check_chunk(array, 0)
            return self._runner.run(array)
        if rows == 0:
            return np.empty((0, *self.output_shape), dtype=np.float32)
        chunk_rows = min(chunk_rows, self._max_rows)
        output = np.empty((rows, *self.output_shape), dtype=np.float32)
        for start in range(0, rows, chunk_rows):
            stop = min(start + chunk_rows, rows)
            output[start:stop] = self._run_chunk(array[start:stop], start)
        return output

    def _run_chunk(self, chunk: np.ndarray, first_row: int) -> np.ndarray:
        self._check_chunk(chunk, first_row)
        return self._runner.run(chunk)
