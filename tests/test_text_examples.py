"""Text examples (.csv, .tsv): byte-order marks, the header rule, strict ASCII numbers.

Every file is written to disk as the tool that makes it would write it (a byte-order mark
first, pandas' header, digits of another script), so the reader sees real bytes. The rule
under test: a first row is a header only when `header="yes"` or it holds a name; a row of
numbers is data, except pandas' `0,1,..,F-1`, which is refused as ambiguous, naming
`--header`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kerasport.examples import (
    Examples,
    ExamplesError,
    iter_example_chunks,
    read_examples,
    write_examples,
)
from kerasport.examples.text import HEADER_CHOICES
from kerasport.workflow.config import WorkflowConfigError
from kerasport.workflow.options import verify_options

TABLE = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.int64)


def _lines(table: np.ndarray, delimiter: str = ",") -> str:
    return "".join(delimiter.join(map(str, row)) + "\n" for row in table)


def _both(path: Path, header: str = "auto") -> np.ndarray:
    """The features as `read_examples` and `iter_example_chunks` read them, checked equal
    (chunks of 2 rows, so that a header is decided once, not per chunk)."""
    whole = read_examples(path, header=header).features
    streamed = list(iter_example_chunks(path, rows=2, header=header))
    np.testing.assert_array_equal(np.concatenate(streamed) if streamed else whole, whole)
    return whole


def _refusal(path: Path, header: str = "auto", stream: bool = False) -> str:
    with pytest.raises(ExamplesError) as info:
        if stream:
            list(iter_example_chunks(path, rows=2, header=header))
        else:
            read_examples(path, header=header)
    return str(info.value)


# --- byte-order marks and encodings -------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_a_utf8_bom_without_header_keeps_every_row(tmp_path: Path, suffix: str) -> None:
    """The tester's file: with the mark read as part of the first cell, that cell was a
    name and its row was dropped as a header, and verify passed one row short."""
    path = tmp_path / f"x.{suffix}"
    path.write_bytes(b"\xef\xbb\xbf" + _lines(TABLE, "," if suffix == "csv" else "\t").encode())
    np.testing.assert_array_equal(_both(path), TABLE)
    assert read_examples(path).feature_names is None


def test_a_utf8_bom_before_a_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbfa,label,b\n1,2,3\n4,0,5\n")
    back = read_examples(path)
    assert back.feature_names == ["a", "b"]  # not "\ufeffa"
    np.testing.assert_array_equal(back.features, [[1, 3], [4, 5]])
    np.testing.assert_array_equal(back.labels, [2, 0])


@pytest.mark.parametrize(("encoding", "name"), [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"),
                                                ("utf-32", "UTF-32")])
def test_utf16_and_utf32_are_refused_as_such(tmp_path: Path, encoding: str, name: str) -> None:
    """With a mark ("utf-16" writes one) or without ("utf-16-le": NUL bytes between the
    digits), the message says what the file is and what to do, not "line 1: '1\\x00'"."""
    path = tmp_path / "x.csv"
    path.write_bytes(_lines(TABLE).encode(encoding))
    for stream in (False, True):
        message = _refusal(path, stream=stream)
        assert str(path) in message
        assert name in message
        assert "save it as UTF-8" in message


def test_a_bom_inside_the_file_is_named(tmp_path: Path) -> None:
    """Two files joined with `cat`: the second one's mark is a bad cell, named as such."""
    path = tmp_path / "x.csv"
    path.write_bytes(b"1,2,3\n\xef\xbb\xbf4,5,6\n")
    message = _refusal(path)
    assert "line 2, column 1" in message
    assert "U+FEFF" in message


# --- the header rule ----------------------------------------------------------------------


def test_a_numeric_first_row_is_data_by_default(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(_lines(TABLE))
    np.testing.assert_array_equal(_both(path), TABLE)
    np.testing.assert_array_equal(_both(path, "no"), TABLE)
    assert read_examples(path).feature_names is None


def test_header_yes_takes_a_numeric_first_row_as_names(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(_lines(TABLE))
    back = read_examples(path, header="yes")
    assert back.feature_names == ["1", "2", "3"]
    np.testing.assert_array_equal(back.features, TABLE[1:])
    np.testing.assert_array_equal(_both(path, "yes"), TABLE[1:])


def test_a_first_row_with_a_name_is_a_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("depth,2,3\n" + _lines(TABLE))
    assert read_examples(path).feature_names == ["depth", "2", "3"]
    np.testing.assert_array_equal(_both(path), TABLE)


def test_header_no_names_the_first_non_numeric_cell(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n" + _lines(TABLE))
    for stream in (False, True):
        assert "line 1, column 1: non-numeric value 'a'" in _refusal(path, "no", stream)


def _pandas_csv(path: Path, table: np.ndarray, index: bool) -> None:
    """What `pandas.DataFrame(table).to_csv(path, index=index)` writes (pandas is not a
    dependency): the column numbers as the header, and with the index, an empty first name
    and each row's number first."""
    header = ",".join(map(str, range(table.shape[1])))
    rows = [",".join(map(str, ([i] if index else []) + list(row))) for i, row in enumerate(table)]
    path.write_text("\n".join([("," if index else "") + header, *rows]) + "\n")


@pytest.mark.parametrize("index", [False, True])
def test_pandas_header_is_refused_naming_the_option(tmp_path: Path, index: bool) -> None:
    table = np.arange(70 * 3).reshape(3, 70)
    path = tmp_path / "x.csv"
    _pandas_csv(path, table, index)
    for stream in (False, True):
        message = _refusal(path, stream=stream)
        assert f"{path}: line 1" in message
        assert "column indices" in message
        assert "--header yes" in message and "--header no" in message
    back = read_examples(path, header="yes")
    names = [str(i) for i in range(70)]
    assert back.feature_names == ([""] if index else []) + names
    expected = np.column_stack([np.arange(3), table]) if index else table
    np.testing.assert_array_equal(back.features, expected)
    np.testing.assert_array_equal(_both(path, "yes"), expected)
    # `--header no` is taken at its word: the header is then a row of data (or, with an
    # index column, a row whose first cell is empty)
    if index:
        assert "line 1, column 1: empty value" in _refusal(path, "no")
    else:
        np.testing.assert_array_equal(read_examples(path, header="no").features[0], range(70))


def test_a_row_counting_from_one_is_data(tmp_path: Path) -> None:
    """No common writer numbers its columns from 1; a table typed by hand starts so."""
    path = tmp_path / "x.csv"
    path.write_text("1,2,3\n0,1,2\n")
    np.testing.assert_array_equal(_both(path), [[1, 2, 3], [0, 1, 2]])


def test_indices_written_otherwise_are_data(tmp_path: Path) -> None:
    """Only pandas' exact text is ambiguous: "0.0,1.0" or "00,01" is no header it writes."""
    for first in ("0.0,1.0,2.0", "00,01,02", "0,1,3"):
        path = tmp_path / "x.csv"
        path.write_text(first + "\n4,5,6\n")
        assert len(_both(path)) == 2, first


def test_header_must_be_a_known_choice(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(_lines(TABLE))
    assert HEADER_CHOICES == ("auto", "yes", "no")
    with pytest.raises(ExamplesError, match="header must be one of auto, yes, no"):
        read_examples(path, header="true")
    with pytest.raises(ExamplesError, match="header must be one of"):
        iter_example_chunks(path, rows=2, header="maybe")  # at the call, not at next()


def test_numeric_feature_names_are_not_written_as_a_header(tmp_path: Path) -> None:
    """Written, `5,7` would read back as a row of data, and `0,1` would be refused."""
    for names in (["5", "7"], ["0", "1"]):
        examples = Examples(np.zeros((1, 2)), feature_names=names)
        with pytest.raises(ExamplesError, match="are all numbers"):
            write_examples(examples, tmp_path / "x.csv")
    labelled = Examples(np.zeros((1, 2)), labels=[1], feature_names=["0", "1"])
    back = read_examples(write_examples(labelled, tmp_path / "y.csv"))  # `label` is a name
    assert back.feature_names == ["0", "1"]


# --- strict cells -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("\uff11", "U+FF11 FULLWIDTH DIGIT ONE"),
        ("\u0663", "U+0663 ARABIC-INDIC DIGIT THREE"),
        ("1_0", "'_' separators are not allowed"),
        ("1\u00a0", "U+00A0 NO-BREAK SPACE"),
        ("1 0", "non-numeric value '1 0'"),
        ("nan", "finite whole numbers"),
        ("-inf", "finite whole numbers"),
        ("", "empty value"),
        ("1/2", "non-numeric value '1/2'"),
        ("1.5", "non-integer value '1.5'"),
        ("0.99999999999999999999", "non-integer value"),  # a float would round it to 1
        ("9223372036854775808", "does not fit in int64"),
        ("1e400", "does not fit in int64"),
    ],
)
@pytest.mark.parametrize("row", [1, 3])
def test_cells_are_ascii_decimal_numbers(tmp_path: Path, cell: str, message: str,
                                         row: int) -> None:
    """Python's int() reads fullwidth and Arabic-Indic digits and `1_0`; the reader refuses
    them, naming the line and column, on the first row (no letter: never taken for a name,
    and the refusal says how to say it is one) as on any."""
    lines = _lines(TABLE).splitlines()
    lines[row - 1] = f"1,{cell},3"
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for stream in (False, True):
        text = _refusal(path, stream=stream)
        assert f"{path}: line {row}, column 2:" in text
        assert message in text
        assert ("--header yes" in text) == (row == 1)


def test_signs_spaces_quotes_and_whole_floats_are_read(tmp_path: Path) -> None:
    """What the reader took before and still takes: a sign, ASCII spaces around a number,
    quotes, and whole numbers written as floats (np.savetxt's default `%.18e`)."""
    path = tmp_path / "x.csv"
    path.write_text('+1, -2 ,"3"\n4.0,5e0,6.000000000000000000e+00\n-0,07,9223372036854775807\n')
    np.testing.assert_array_equal(_both(path), [[1, -2, 3], [4, 5, 6], [0, 7, 2**63 - 1]])
    np.savetxt(tmp_path / "s.tsv", TABLE.astype(np.float64), delimiter="\t")
    np.testing.assert_array_equal(_both(tmp_path / "s.tsv"), TABLE)


def test_a_fast_chunk_gets_no_unicode_space(tmp_path: Path) -> None:
    """numpy's parser skips Unicode spaces around digits; a chunk that is not ASCII is read
    cell by cell instead, so every row is judged by one rule."""
    path = tmp_path / "x.csv"
    path.write_text("1,2,3\n4,\u30005,6\n")
    assert "line 2, column 2" in _refusal(path)
    assert "U+3000 IDEOGRAPHIC SPACE" in _refusal(path)


# --- the option reaches every command that reads examples ---------------------------------


def test_workflow_forwards_header_to_verify() -> None:
    assert verify_options("--header yes") == ("--header", "yes")
    with pytest.raises(WorkflowConfigError, match="--header"):
        verify_options("--header maybe")


def test_bench_reads_with_the_header_option(tmp_path: Path) -> None:
    from kerasport.bench.workload import load_pool

    path = tmp_path / "x.csv"
    _pandas_csv(path, TABLE, index=False)
    with pytest.raises(ExamplesError, match="--header yes"):
        load_pool(path, 3)
    pool, _ = load_pool(path, 3, header="yes")
    np.testing.assert_array_equal(pool, TABLE)


def _verify(model: Path, bundle: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kerasport", "verify", str(model), str(bundle),
         *map(str, args)],
        capture_output=True, text=True, timeout=600, check=False,
    )


def test_verify_refuses_a_pandas_header_and_reads_it_with_header_yes(
    tiny_models: tuple[Path, Path], tiny_bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    """Through `python -m kerasport`: exit 2 naming --header (before, the header row was
    verified as an example, or refused for its is_snp of 12); with --header yes every data
    row, and no more, is verified."""
    from conftest import TINY_FEATURES

    from kerasport.testing import synthetic_examples

    table = synthetic_examples(50, TINY_FEATURES, seed=3)[0]
    path = tmp_path / "pandas.csv"
    _pandas_csv(path, table, index=False)
    refused = _verify(tiny_models[0], tiny_bundles[0], "--examples", path)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert str(path) in refused.stderr and "--header yes" in refused.stderr
    report = tmp_path / "r.json"
    read = _verify(tiny_models[0], tiny_bundles[0], "--examples", path, "--header", "yes",
                   "--gate", "none", "--quiet", "--json", report)
    assert read.returncode in (0, 1), read.stderr  # a verdict, not a usage error
    assert json.loads(report.read_text())["inputs"][0]["rows"] == 50
