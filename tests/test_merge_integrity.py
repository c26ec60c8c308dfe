"""`verify --merge` trusts nothing in a report: hostile reports are exit 2, naming them.

Real reports of the tiny models (one verify per examples file) are written, then altered as
a tester or an attacker would: the same report twice or under another name, two reports of
one examples file (or of a copy of it), counts edited with and without a recomputed
digest, rows of 10**400, `backends` as a list, strings where integers go, NaN, missing
fields, an old report without a digest, a report of another model and bundle. Each is
exit 2 at the command line with a message naming the file and the problem, never a
traceback. Then every field of a real report, and every object and list holding fields,
is replaced by values of the wrong type or range (digest recomputed, so that only the
value checks stand between it and a merge): each is either a report that merges and
renders, or an InputError naming the file and the field, never another exception.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasport.cli import main
from kerasport.errors import InputError, KerasportError
from kerasport.testing import synthetic_examples
from kerasport.verify.merge import load_report, merge_reports
from kerasport.verify.report import render_table
from kerasport.verify.result import Report
from kerasport.verify.schema import REPORT_SCHEMA, SCHEMA_KEYWORDS, report_digest

UNUSABLE = "not a usable kerasport verify report"


@pytest.fixture(scope="module")
def made(
    tiny_models: tuple[Path, Path], tiny_bundles: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """Examples a and b, a byte copy of a, and verify's reports: of a, b, a again, the
    copy (all of model 0's bundle) and of a by model 1's bundle."""
    root = tmp_path_factory.mktemp("merge_integrity")
    paths = {"a": root / "a.npy", "b": root / "b.npy", "a_copy": root / "a_copy.npy"}
    np.save(paths["a"], synthetic_examples(64, 20, seed=11)[0])
    np.save(paths["b"], synthetic_examples(48, 20, seed=12)[0])
    shutil.copyfile(paths["a"], paths["a_copy"])
    runs = {
        "ra": (0, "a"), "rb": (0, "b"), "ra_again": (0, "a"), "ra_copy": (0, "a_copy"),
        "other": (1, "a"),
    }
    for name, (which, examples) in runs.items():
        paths[name] = root / f"{name}.json"
        code = main(["verify", str(tiny_models[which]), str(tiny_bundles[which]), "--examples",
                     str(paths[examples]), "--json", str(paths[name]), "--quiet"])
        assert code in (0, 1) and paths[name].is_file()
    return paths


def cli(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *fragments: object) -> None:
    """Exit 2, no traceback, and every fragment (file names, the problem) in the message."""
    assert code == 2, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert str(fragment) in err, f"{fragment!r} not in {err!r}"


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write(data: dict[str, Any], path: Path, *, redigest: bool = True) -> Path:
    """Write `data` as a report file; with `redigest`, as an attacker who recomputes the
    digest over the edit would."""
    if redigest:
        data["digest"] = report_digest(data)
    path.write_text(json.dumps(data, indent=1))
    return path


def test_distinct_reports_merge_into_their_sum(
    made: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: two reports of different examples merge, and the result merges again."""
    total = tmp_path / "total.json"
    code, err = cli(["verify", "--merge", made["ra"], made["rb"], "--json", total], capsys)
    assert code in (0, 1), err
    merged = read(total)
    assert merged["rows"] == 64 + 48 and merged["digest"] == report_digest(merged)
    assert load_report(total).rows == 112
    code, err = cli(["verify", "--merge", total, "--quiet"], capsys)
    assert code in (0, 1), err


def test_the_same_report_twice_is_refused(
    made: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(["verify", "--merge", made["ra"], made["ra"]], capsys)
    assert_refused(code, err, made["ra"], "given twice", "count twice")
    copy_path = tmp_path / "renamed.json"
    shutil.copyfile(made["ra"], copy_path)
    code, err = cli(["verify", "--merge", made["ra"], made["rb"], copy_path], capsys)
    assert_refused(code, err, made["ra"], copy_path, "are the same report")


@pytest.mark.parametrize("second", ["ra_again", "ra_copy"])
def test_two_reports_of_one_examples_file_are_refused(
    second: str, made: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Verified twice, or verified as a byte copy under another name: the sha256 tells."""
    code, err = cli(["verify", "--merge", made["ra"], made[second]], capsys)
    assert_refused(code, err, made["ra"], made[second], "verified the same examples")


def test_a_report_of_another_model_and_bundle_is_refused(
    made: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(["verify", "--merge", made["rb"], made["other"]], capsys)
    assert_refused(code, err, made["rb"], made["other"], "different models")


def _entry(data: dict[str, Any]) -> dict[str, Any]:
    return data["backends"]["onnxruntime"]


def _argmax(data: dict[str, Any], value: int) -> None:
    _entry(data)["argmax_changes"] = value


def _rows(data: dict[str, Any], value: int) -> None:
    data["rows"] = data["inputs"][0]["rows"] = _entry(data)["rows"] = value


def _string_rows(data: dict[str, Any], value: int) -> None:
    _entry(data)["argmax_changes"] = str(value)


def _backends_list(data: dict[str, Any], value: int) -> None:
    data["backends"] = list(data["backends"].values())


def _missing(data: dict[str, Any], value: int) -> None:
    del _entry(data)["max_ulp"]


def _old(data: dict[str, Any], value: int) -> None:
    data["schema_version"] = 2
    del data["digest"]


# name: (edit, its value, recompute the digest, what the message names)
HOSTILE = {
    "argmax_minus_2_redigested": (_argmax, -2, True, "argmax_changes: -2 is below the minimum 0"),
    "argmax_minus_2_as_edited": (_argmax, -2, False, "does not match its digest"),
    "argmax_beyond_decisions": (_argmax, 10**6, True, "more than the decision units"),
    "rows_10_400": (_rows, 10**400, True, "above the maximum"),
    "rows_10_400_as_edited": (_rows, 10**400, False, "does not match its digest"),
    "a_string_count": (_string_rows, 3, True, 'argmax_changes: "3" is not an integer'),
    "backends_a_list": (_backends_list, 0, True, "backends: [{"),
    "a_missing_field": (_missing, 0, True, "backends.onnxruntime.max_ulp: is missing"),
    "version_2_no_digest": (_old, 0, False, "schema version 2 is not supported"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_an_edited_report_is_exit_2_naming_the_file_and_field(
    name: str, made: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, value, redigest, problem = HOSTILE[name]
    data = read(made["ra"])
    edit(data, value)
    bad = write(data, tmp_path / f"{name}.json", redigest=redigest)
    out = tmp_path / "merged.json"
    code, err = cli(["verify", "--merge", made["rb"], bad, "--json", out], capsys)
    assert_refused(code, err, bad, UNUSABLE, problem)
    assert not out.exists()


def test_nan_in_a_report_file_or_dict_is_refused(
    made: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = read(made["ra"])
    _entry(data)["max_abs_diff"] = float("nan")
    data["digest"] = report_digest(data)
    bad = tmp_path / "nan.json"
    bad.write_text(json.dumps(data))  # Python writes the NaN strict JSON has no word for
    code, err = cli(["verify", "--merge", made["rb"], bad], capsys)
    assert_refused(code, err, bad, "NaN")
    with pytest.raises(InputError, match=r"max_abs_diff: nan is not a finite number"):
        Report.from_json(data, "handed")


def test_a_fail_does_not_become_a_pass(
    made: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report of 2 arg-max changes (written consistently: counted and listed) fails, and
    fails merged; the report edited to -2 that would have cancelled them is refused."""
    failing = read(made["rb"])
    entry = _entry(failing)
    entry["argmax_changes"] = 2
    entry["argmax_change_rows"] = [{"input": failing["inputs"][0]["input"], "row": r,
                                    "position": []} for r in (0, 1)]
    fail = write(failing, tmp_path / "fail.json")
    assert cli(["verify", "--merge", fail, made["ra"], "--quiet"], capsys)[0] == 1
    cancelling = read(made["ra"])
    _argmax(cancelling, -2)
    bad = write(cancelling, tmp_path / "cancel.json")
    code, err = cli(["verify", "--merge", fail, bad], capsys)
    assert_refused(code, err, bad, "argmax_changes")


# --- every field, replaced ------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Values of every JSON type, and integers and numbers out of any field's range.
WRONG: list[Any] = [None, True, "x", -1, 10**400, 1.5, -1e300, [], {}, [1], {"a": 1}]


def _key(path: str, key: str) -> str:
    if _PLAIN.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def nodes(value: Any, path: str = "") -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(message path, key path) of every value in a report, the first three items of each
    list standing for the rest (a report lists up to a million row ids)."""
    if isinstance(value, dict):
        items: Any = value.items()
        for key, item in items:
            yield from _descend(item, _key(path, key), key)
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from _descend(item, f"{path}[{index}]", index)


def _descend(item: Any, path: str, key: Any) -> Iterator[tuple[str, tuple[Any, ...]]]:
    yield path, (key,)
    for inner, keys in nodes(item, path):
        yield inner, (key, *keys)


def replaced(data: dict[str, Any], keys: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of `data` with the value at `keys` replaced, digest recomputed."""
    out = copy.deepcopy(data)
    holder = out
    for key in keys[:-1]:
        holder = holder[key]
    holder[keys[-1]] = value
    out["digest"] = report_digest(out)
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


def outcome(data: dict[str, Any], base: Report) -> str | None:
    """None when `data` reads back, merges with `base` and renders; else InputError's
    message. Any other exception fails the test."""
    try:
        report = Report.from_json(data, "hostile.json")
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"hostile.json: {UNUSABLE}: "), message
        return message
    try:
        render_table(merge_reports([base, report], ["base.json", "hostile.json"]))
    except KerasportError as exc:  # a valid report that does not merge with base
        return str(exc)
    return None


@pytest.fixture(scope="module")
def real(made: dict[str, Path]) -> tuple[dict[str, Any], Report, list[tuple[str, tuple]]]:
    """A real report's JSON, the report it merges with, and every field's paths."""
    data = read(made["ra"])
    paths = [(path, keys) for path, keys in nodes(data) if path != "digest"]
    return data, load_report(made["rb"]), paths


def test_every_field_replaced_by_a_wrong_value_is_an_input_error_naming_it(
    real: tuple[dict[str, Any], Report, list[tuple[str, tuple]]],
) -> None:
    data, base, paths = real
    assert len(paths) > 150 and "backends.onnxruntime.ulp_histogram.bins[0][2]" in {
        p for p, _ in paths}
    unnamed = []
    for path, keys in paths:
        holder: Any = data
        for key in keys:
            holder = holder[key]
        for value in WRONG:
            message = outcome(replaced(data, keys, value), base)
            # A value of another JSON type than the field's is refused at the field itself
            # (schema and schema_version are named by what they are).
            if (message is not None and _json_type(value) != _json_type(holder)
                    and path not in message and keys[0] not in ("schema", "schema_version")):
                unnamed.append((path, value, message))
    assert not unnamed, unnamed[:5]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(min_value=0), value=JSON_VALUES)
def test_any_value_anywhere_is_a_report_or_an_input_error(
    real: tuple[dict[str, Any], Report, list[tuple[str, tuple]]], pick: int, value: Any
) -> None:
    data, base, paths = real
    outcome(replaced(data, paths[pick % len(paths)][1], value), base)


def test_the_schema_uses_only_the_keywords_the_reader_applies() -> None:
    """So no rule in REPORT_SCHEMA goes unenforced at --merge, and every integer is bounded
    (an unbounded one would let 10**400 through to the first float it meets)."""

    def walk(schema: Any) -> Iterator[dict[str, Any]]:
        if isinstance(schema, dict):
            if "type" in schema or "const" in schema or "enum" in schema:
                yield schema
            for key, value in schema.items():
                if key in ("properties",):
                    for inner in value.values():
                        yield from walk(inner)
                elif key in ("items", "additionalProperties"):
                    yield from walk(value)
                elif key == "prefixItems":
                    for inner in value:
                        yield from walk(inner)

    schemas = list(walk(REPORT_SCHEMA))
    assert len(schemas) > 100
    for schema in schemas:
        assert set(schema) <= SCHEMA_KEYWORDS, set(schema) - SCHEMA_KEYWORDS
        types = schema.get("type", [])
        if "integer" in ([types] if isinstance(types, str) else types):
            assert "minimum" in schema and "maximum" in schema, schema
