"""Stream examples files as chunks that carry where each row came from.

The verifier never holds a whole file: it walks each file in chunks (through
`kerasport.examples.iter_example_chunks`), and every chunk knows its file and first row so
that a row the report lists can be found again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasport.errors import InputError


@dataclass(frozen=True)
class Chunk:
    """Rows `first_row ..` of `source`, int64 (n, F)."""

    source: str
    first_row: int
    features: np.ndarray

    @property
    def row_ids(self) -> np.ndarray:
        return np.arange(self.first_row, self.first_row + len(self.features), dtype=np.int64)


def iter_chunks(files: Sequence[str | Path], rows: int, num_features: int) -> Iterator[Chunk]:
    """Chunks of every file in order, checked to have `num_features` columns."""
    from kerasport.examples import iter_example_chunks

    for path in files:
        first = 0
        for features in iter_example_chunks(path, rows):
            if features.ndim != 2 or features.shape[1] != num_features:
                raise InputError(
                    f"{path}: examples have {features.shape[-1]} features per row; the model "
                    f"and bundle take {num_features}"
                )
            yield Chunk(str(path), first, features)
            first += len(features)


def count_rows(files: Sequence[str | Path]) -> int | None:
    """Total rows when it is cheap to know (every file a .npy: read from its header)."""
    total = 0
    for path in files:
        if Path(path).suffix.lower() != ".npy":
            return None
        try:
            total += int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        except (OSError, ValueError, IndexError, EOFError):  # EOFError: a 0-byte file
            return None  # the reader will report the problem with its own message
    return total


def is_snp_flags(chunk: Chunk, column: int) -> np.ndarray:
    """The `is_snp` feature of each row as bool, refusing values other than 0 and 1.

    A wrong column would silently judge SNPs against the indel threshold, so anything that
    is not a 0/1 flag is an error naming the column and the option.
    """
    features = chunk.features
    if not 0 <= column < features.shape[1]:
        raise InputError(
            f"--is-snp-column {column} is outside the {features.shape[1]} features of "
            f"{chunk.source}"
        )
    values = features[:, column]
    bad = (values != 0) & (values != 1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{chunk.source} row {chunk.first_row + index}: feature column {column} holds "
            f"{int(values[index])}, but is_snp is 0 or 1; set --is-snp-column to the column "
            "of is_snp (DeepVariant's is the 13th feature, column 12)"
        )
    return values.astype(bool)
