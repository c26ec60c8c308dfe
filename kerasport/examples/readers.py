"""One entry point per access pattern, dispatching on the file name.

`read_examples` loads everything a file carries (labels, names, positions) for training and
reports; `iter_example_chunks` yields only features, a chunk at a time with flat memory,
for the verifier, which walks millions of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kerasport.examples import arrays, formats, text, tfrecord
from kerasport.examples.model import Examples, ExamplesError


def read_examples(path: str | Path, *, header: str = "auto") -> Examples:
    """Read a whole examples file (.npy, .npz, .csv, .tsv, .tfrecord, .tfrecord.gz).

    `header` says whether a text file's first row names its columns: "yes", "no" or
    "auto" (`kerasport.examples.text` says how auto decides, and when it refuses to).
    """
    text.check_header(header)
    fmt = formats.detect_format(path)
    path = formats.check_readable(path)
    if fmt == formats.NPY:
        return arrays.read_npy(path)
    if fmt == formats.NPZ:
        return arrays.read_npz(path)
    if fmt in (formats.CSV, formats.TSV):
        return text.read_text(path, fmt, header)
    return tfrecord.read_tfrecord(path, compressed=fmt == formats.TFRECORD_GZ)


def iter_example_chunks(
    path: str | Path, rows: int, *, header: str = "auto"
) -> Iterator[np.ndarray]:
    """Yield int64 feature chunks of at most `rows` rows, never holding the whole file.

    The file (and `header`, as `read_examples` takes it) is checked before the first chunk
    is asked for, so a bad path fails at the call rather than at the first `next()`.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ExamplesError(f"rows must be a positive integer; got {rows!r}")
    text.check_header(header)
    fmt = formats.detect_format(path)
    path = formats.check_readable(path)
    return _chunks(path, fmt, rows, header)


def _chunks(path: Path, fmt: str, rows: int, header: str) -> Iterator[np.ndarray]:
    if fmt == formats.NPY:
        yield from arrays.iter_npy(path, rows)
    elif fmt == formats.NPZ:
        yield from arrays.iter_npz(path, rows)
    elif fmt in (formats.CSV, formats.TSV):
        yield from text.iter_text(path, fmt, rows, header)
    else:
        compressed = fmt == formats.TFRECORD_GZ
        for features, _ in tfrecord.iter_tfrecord(path, compressed, rows):
            yield features
