"""Delimited text: `.csv` and `.tsv`, one example per line.

Whether the first row names the columns is the `header` option (`--header`), never a guess
that could be wrong, since a wrong guess silently loses a row of examples (or reads a row
of names as one):

  yes   the first row is a header, whatever it holds.
  no    the first row is data; a cell that is not a number is an error naming it.
  auto  (the default) the first row is a header when one of its cells is a name: a cell
        with a letter that is no number even to Python (`nan`, a fullwidth or Arabic-Indic
        digit, `1_0` or `1 0` is no name). Any other first row is data, and one with a bad
        cell is refused, naming the cell and `--header yes`; except that a row of exactly
        the column indices `0,1,..,k-1` (after one empty cell, as pandas names its index
        column) is refused as ambiguous, naming `--header`: it is the header that
        `pandas.DataFrame(table).to_csv()` writes, a table of examples could start with it
        too, and the file cannot tell. A row `1,2,..,k` is data: no common writer numbers
        its columns from 1, and a table typed by hand often starts so.

A column named `label` in a header holds class ids and is kept out of the features. A UTF-8
byte-order mark is skipped; UTF-16 and UTF-32 text are refused. A cell is an ASCII decimal
number, optionally signed and surrounded by ASCII spaces: an integer, or a whole number
written as a decimal fraction or with an exponent (`np.savetxt` writes `1.0e+00`), read
exactly; digits of other scripts, fullwidth digits, `_` separators, NaN and infinity are
refused, naming the file, line and column. Rows are parsed a chunk at a time by numpy's
parser (fast) when the chunk is ASCII integers, and cell by cell otherwise.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

import numpy as np

from kerasport.examples.model import CLASS_NAMES, NUM_CLASSES, Examples, ExamplesError

LABEL_COLUMN = "label"
DELIMITERS = {"csv": ",", "tsv": "\t"}
HEADER_CHOICES = ("auto", "yes", "no")
HEADER_HELP = (
    "whether the first row of a .csv/.tsv examples file names the columns: yes, no (it is "
    "data), or auto: a header when a cell is a name (a letter, and no number), else data, "
    "except that a first row of the column indices 0,1,..,F-1 (the header pandas writes "
    "for unnamed columns) is refused as ambiguous (default: %(default)s)"
)

# ASCII whitespace, which numpy's parser also skips around a number; any other (a
# no-break space, an ideographic space) makes a cell non-numeric.
_SPACE = " \t\n\r\v\f"
# `[0-9]`, not `\d`, which matches the digits of every script.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_FINITE = {"nan", "inf", "infinity"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_PROBE_BYTES = 4096  # read for a byte-order mark and NUL bytes before the text is decoded

RowKind = Literal["names", "data", "indices"]


def check_header(header: str) -> str:
    """`header`, if it is one of HEADER_CHOICES; a readable error for any other value."""
    if header not in HEADER_CHOICES:
        raise ExamplesError(f"header must be one of {', '.join(HEADER_CHOICES)}; got {header!r}")
    return header


@dataclass
class _Header:
    names: list[str] | None  # feature names, without the label column
    label_column: int | None
    width: int | None  # cells per row, once known


def _number(cell: str) -> int | Decimal | None:
    """The value of a cell written as an ASCII decimal number, exactly; None otherwise."""
    text = cell.strip(_SPACE)
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return Decimal(text)  # exact, where a float would round 0.99999999999999999 to 1
    return None


def _reads_as_number(cell: str) -> bool:
    """Whether Python would read the cell as a number, in any script or spelling."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_name(cell: str) -> bool:
    """A cell that can only be a column's name: it holds a letter, and is no number even to
    Python (`nan`, `1e5`). A cell without letters (`1 0`, `#`, `1/2`) is a bad number."""
    return any(char.isalpha() for char in cell) and not _reads_as_number(cell)


def _why_not_a_number(cell: str) -> str:
    """The error for a cell that `_number` refuses, saying what makes it one."""
    text = cell.strip(_SPACE)
    if not text:
        return "empty value; examples are numbers"
    foreign = next((char for char in text if not char.isascii()), None)
    if foreign is not None:
        name = unicodedata.name(foreign, "unnamed character")
        return (
            f"non-numeric value {cell!r}: {foreign!r} (U+{ord(foreign):04X} {name}) is not "
            "ASCII; examples are ASCII decimal numbers"
        )
    if "_" in text and _reads_as_number(text):
        return f"non-numeric value {cell!r}: '_' separators are not allowed in examples"
    if text.lstrip("+-").lower() in _NOT_FINITE:
        return f"non-numeric value {cell!r}; examples are finite whole numbers"
    return f"non-numeric value {cell!r}"


def _parse_cell(cell: str, where: str) -> int:
    value = _number(cell)
    if value is None:
        raise ExamplesError(f"{where}: {_why_not_a_number(cell)}")
    if isinstance(value, Decimal):
        if value.adjusted() > 18:  # 10**19 and beyond: past int64, and costly to expand
            raise ExamplesError(f"{where}: value {cell!r} does not fit in int64")
        if value != value.to_integral_value():
            raise ExamplesError(f"{where}: non-integer value {cell!r}; examples are integers")
        value = int(value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ExamplesError(f"{where}: value {cell!r} does not fit in int64")
    return value


def _preview(cells: list[str]) -> str:
    """The first cells of a row, for a message."""
    shown = ",".join(cell.strip(_SPACE) for cell in cells[:4])
    return shown + (",..." if len(cells) > 4 else "")


def _row_kind(cells: list[str]) -> RowKind:
    """What `header="auto"` makes of a first row (see the module's docstring)."""
    texts = [cell.strip(_SPACE) for cell in cells]
    if any(_is_name(text) for text in texts):
        return "names"
    numbers = texts[1:] if texts[:1] == [""] else texts
    if numbers and numbers == [str(i) for i in range(len(numbers))]:
        return "indices"
    return "data"


class _TextChunks:
    """Walk a delimited file once, yielding (features, labels) chunks of at most `rows`."""

    def __init__(self, path: Path, fmt: str, rows: int, header: str = "auto") -> None:
        self.path = path
        self.delimiter = DELIMITERS[fmt]
        self.rows = rows
        self.header_option = check_header(header)
        self.header = _Header(None, None, None)

    def _cells(self, line: str) -> list[str]:
        return next(csv.reader([line], delimiter=self.delimiter), [])

    def _table(self, lines: list[str], numbers: list[int]) -> np.ndarray:
        width = self.header.width or 0
        if not lines:
            return np.zeros((0, width), dtype=np.int64)
        # numpy's C parser is ~20x faster than the csv module plus a cast, and takes ASCII
        # digits only; but it also skips Unicode spaces around them, so it is given ASCII.
        if all(line.isascii() for line in lines):
            try:
                table = np.loadtxt(lines, dtype=np.int64, delimiter=self.delimiter,
                                   quotechar='"', comments=None, ndmin=2)
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
                table[r, c] = _parse_cell(cell, f"{self.path}: line {number}, column {c + 1}")
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

    def _is_header(self, row: list[str], number: int) -> bool:
        """Whether the first row names the columns, as the header option says."""
        if self.header_option != "auto":
            return self.header_option == "yes"
        kind = _row_kind(row)
        if kind == "indices":
            raise ExamplesError(
                f"{self.path}: line {number}: the first row ({_preview(row)}) is the column "
                "indices, as pandas writes a header, but could be a row of examples: give "
                "--header yes if it names the columns, --header no if it is data"
            )
        if kind == "data":  # a bad cell here may be a name this rule does not know
            for column, cell in enumerate(row, start=1):
                where = f"{self.path}: line {number}, column {column}"
                try:
                    _parse_cell(cell, where)
                except ExamplesError as exc:
                    raise ExamplesError(
                        f"{exc} (the first row, read as data: give --header yes if it names "
                        "the columns)"
                    ) from None
        return kind == "names"

    def _take_header(self, row: list[str], number: int) -> bool:
        """Decide whether the first row names the columns; True if it did."""
        self.header.width = len(row)
        if not self._is_header(row, number):
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

    def _check_encoding(self) -> None:
        """Refuse UTF-16 and UTF-32 text, which would otherwise fail to decode as UTF-8 (with
        a mark) or decode into cells interleaved with NUL characters (without)."""
        with open(self.path, "rb") as handle:
            start = handle.read(_PROBE_BYTES)
        if start.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
            found = "UTF-32 text (it starts with a UTF-32 byte-order mark)"
        elif start.startswith((b"\xff\xfe", b"\xfe\xff")):
            found = "UTF-16 text (it starts with a UTF-16 byte-order mark)"
        elif b"\x00" in start:
            found = "NUL bytes, as UTF-16 or UTF-32 text does"
        else:
            return
        raise ExamplesError(f"{self.path}: {found}; save it as UTF-8")

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        self._check_encoding()
        lines: list[str] = []
        numbers: list[int] = []
        try:  # utf-8-sig: a byte-order mark would otherwise make the first cell a name
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    if self.header.width is None and self._take_header(self._cells(line),
                                                                       number):
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


def iter_text(path: Path, fmt: str, rows: int, header: str = "auto") -> Iterator[np.ndarray]:
    """Feature chunks of a `.csv`/`.tsv`, reading line by line (the label column dropped)."""
    for features, _ in _TextChunks(path, fmt, rows, header):
        if features.shape[0]:
            yield features


def read_text(path: Path, fmt: str, header: str = "auto") -> Examples:
    """The whole file, with names from its header and labels from its `label` column."""
    chunks = _TextChunks(path, fmt, rows=65536, header=header)
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
    """Write a header (names, then `label` if labelled) and one line per example.

    Names that are all numbers are refused: read back with the default `header="auto"`,
    their header would be a row of data (or refused as ambiguous).
    """
    names = examples.feature_names or [f"feature_{i}" for i in range(examples.num_features)]
    table = examples.features
    if examples.labels is not None:
        names = [*names, LABEL_COLUMN]
        table = np.column_stack([table, examples.labels])
    if names and _row_kind(names) != "names":
        raise ExamplesError(
            f"{path}: the feature names ({_preview(names)}) are all numbers, so their "
            "header would read back as data; rename them, or write an .npz"
        )
    delimiter = DELIMITERS[fmt]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write(delimiter.join(names) + "\n")
        if table.shape[0]:
            np.savetxt(handle, table, fmt="%d", delimiter=delimiter)
