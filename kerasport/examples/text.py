"""Delimited text: `.csv` and `.tsv`, one example per line.

An optional first row of feature names is recognised because it is not numeric; a column
named `label` in it holds class ids and is kept out of the features. Rows are parsed a
chunk at a time with numpy's string cast (fast), and only a chunk that fails is walked cell
by cell, to name the line and column of the first bad value.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasport.examples.model import CLASS_NAMES, NUM_CLASSES, Examples, ExamplesError

LABEL_COLUMN = "label"
DELIMITERS = {"csv": ",", "tsv": "\t"}


@dataclass
class _Header:
    names: list[str] | None  # feature names, without the label column
    label_column: int | None
    width: int | None  # cells per row, once known


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_cell(cell: str, where: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        try:
            number = float(cell)
        except ValueError:
            raise ExamplesError(f"{where}: non-numeric value {cell!r}") from None
        if not number.is_integer():
            raise ExamplesError(
                f"{where}: non-integer value {cell!r}; examples are integers"
            ) from None
        value = int(number)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ExamplesError(f"{where}: value {cell!r} does not fit in int64")
    return value


class _TextChunks:
    """Walk a delimited file once, yielding (features, labels) chunks of at most `rows`."""

    def __init__(self, path: Path, fmt: str, rows: int) -> None:
        self.path = path
        self.delimiter = DELIMITERS[fmt]
        self.rows = rows
        self.header = _Header(None, None, None)

    def _cells(self, line: str) -> list[str]:
        return next(csv.reader([line], delimiter=self.delimiter), [])

    def _table(self, lines: list[str], numbers: list[int]) -> np.ndarray:
        width = self.header.width or 0
        if not lines:
            return np.zeros((0, width), dtype=np.int64)
        try:  # numpy's C parser: ~20x faster than the csv module plus a cast
            table = np.loadtxt(lines, dtype=np.int64, delimiter=self.delimiter, quotechar='"',
                               comments=None, ndmin=2)
            if table.shape[1] == width:
                return table
        except ValueError:
            pass
        return self._slow_table(lines, numbers, width)

    def _slow_table(self, lines: list[str], numbers: list[int], width: int) -> np.ndarray:
        """Parse cell by cell, to name the line and column of the first bad value."""
        table = np.empty((len(lines), width), dtype=np.int64)
        for r, (line, number) in enumerate(zip(lines, numbers, strict=True)):
            cells = self._cells(line)
            if len(cells) != width:
                raise ExamplesError(
                    f"{self.path}: line {number} has {len(cells)} values; "
                    f"earlier rows have {width} (ragged rows)"
                )
            for c, cell in enumerate(cells):
                where = f"{self.path}: line {number}, column {c + 1}"
                table[r, c] = _parse_cell(cell.strip(), where)
        return table

    def _split(self, table: np.ndarray, numbers: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
        column = self.header.label_column
        if column is None:
            return table, None
        labels = table[:, column]
        bad = (labels < 0) | (labels >= NUM_CLASSES)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            classes = ", ".join(f"{i}={name}" for i, name in enumerate(CLASS_NAMES))
            raise ExamplesError(
                f"{self.path}: line {numbers[row]}: label {labels[row]} is not a class id "
                f"({classes})"
            )
        return np.delete(table, column, axis=1), labels

    def _take_header(self, row: list[str]) -> bool:
        """Decide from the first row whether it names the columns; True if it did."""
        self.header.width = len(row)
        if all(_is_number(cell) for cell in row):
            return False
        names = [cell.strip() for cell in row]
        lowered = [name.lower() for name in names]
        if lowered.count(LABEL_COLUMN) > 1:
            raise ExamplesError(f"{self.path}: more than one {LABEL_COLUMN!r} column")
        if LABEL_COLUMN in lowered:
            self.header.label_column = lowered.index(LABEL_COLUMN)
            del names[self.header.label_column]
        self.header.names = names
        return True

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        lines: list[str] = []
        numbers: list[int] = []
        try:
            with open(self.path, encoding="utf-8", newline="") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    if self.header.width is None and self._take_header(self._cells(line)):
                        continue
                    lines.append(line)
                    numbers.append(number)
                    if len(lines) == self.rows:
                        yield self._split(self._table(lines, numbers), numbers)
                        lines, numbers = [], []
        except UnicodeDecodeError as exc:
            raise ExamplesError(f"{self.path}: not UTF-8 text ({exc})") from exc
        except csv.Error as exc:
            raise ExamplesError(f"{self.path}: malformed text: {exc}") from exc
        if lines or self.header.width is None:
            yield self._split(self._table(lines, numbers), numbers)


def iter_text(path: Path, fmt: str, rows: int) -> Iterator[np.ndarray]:
    """Feature chunks of a `.csv`/`.tsv`, reading line by line (the label column dropped)."""
    for features, _ in _TextChunks(path, fmt, rows):
        if features.shape[0]:
            yield features


def read_text(path: Path, fmt: str) -> Examples:
    """The whole file, with names from its header and labels from its `label` column."""
    chunks = _TextChunks(path, fmt, rows=65536)
    features: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for chunk, chunk_labels in chunks:
        features.append(chunk)
        if chunk_labels is not None:
            labels.append(chunk_labels)
    width = len(chunks.header.names) if chunks.header.names is not None else 0
    table = np.concatenate(features) if features else np.zeros((0, width), dtype=np.int64)
    has_labels = chunks.header.label_column is not None
    return Examples(
        table,
        labels=(np.concatenate(labels) if labels else np.zeros(0, np.int64)) if has_labels
        else None,
        feature_names=chunks.header.names,
    )


def write_text(examples: Examples, path: Path, fmt: str) -> None:
    """Write a header (names, then `label` if labelled) and one line per example."""
    names = examples.feature_names or [f"feature_{i}" for i in range(examples.num_features)]
    table = examples.features
    if examples.labels is not None:
        names = [*names, LABEL_COLUMN]
        table = np.column_stack([table, examples.labels])
    delimiter = DELIMITERS[fmt]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write(delimiter.join(names) + "\n")
        if table.shape[0]:
            np.savetxt(handle, table, fmt="%d", delimiter=delimiter)
