"""Examples files: the int64 feature tables DeepVariant's small model takes.

    examples = read_examples("train.tfrecord.gz")      # features, labels, names, positions
    for chunk in iter_example_chunks("big.npy", rows=65536):
        ...                                             # int64 (<=rows, F), flat memory

Formats, chosen by file name: `.npy`, `.npz`, `.csv`, `.tsv` (optional header of feature
names, never guessed where a guess could be wrong: `header=` and `text` say how; a `label`
column holds class ids), `.tfrecord` and `.tfrecord.gz` (DeepVariant's
`features/encoded` and one-hot `label/encoded`, read without TensorFlow). Every problem is
an `ExamplesError` (a ValueError) naming the file and, where it can, the row.

Importing this package costs numpy only; TFRecords also need `google-crc32c`.
"""

from __future__ import annotations

from kerasport.examples.formats import SUPPORTED as SUPPORTED_FORMATS
from kerasport.examples.formats import detect_format
from kerasport.examples.model import CLASS_NAMES, Examples, ExamplesError
from kerasport.examples.readers import iter_example_chunks, read_examples
from kerasport.examples.writers import write_examples

__all__ = [
    "CLASS_NAMES",
    "SUPPORTED_FORMATS",
    "Examples",
    "ExamplesError",
    "detect_format",
    "iter_example_chunks",
    "read_examples",
    "write_examples",
]
