"""Every JSON file the tools read is parsed within bounds, and a bad one is named.

A bundle manifest, DeepVariant's small_model_info.json, a verify report given to `--merge`
and a bench trace summary all go through kerasport.jsonfile: nesting 100,000 levels deep
(which made `json` raise a raw RecursionError), a file over its size limit, invalid UTF-8,
NaN, a repeated key or an unpaired surrogate is the caller's KerasportError naming the file,
and at the command line exit 2 without a traceback. The sample sheet (TSV) is read with the
same bounds. One briefly trained tiny model (20 features, 8 hidden units) and its bundle
(with a TVM library when this host can build and run one) serve the module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINING_SEED

import kerasport.runtime
from kerasport.bench import BenchError
from kerasport.bench.trace import load_summary
from kerasport.cli import main
from kerasport.errors import BundleError, ExportError, KerasportError
from kerasport.jsonfile import MAX_DEPTH, read_json_file
from kerasport.testing import synthetic_examples, train_small_model
from kerasport.workflow.config import WorkflowConfig, WorkflowConfigError, shards_from_sheet

F = 20
DEEP = 100_000
DEEP_ARRAY = "[" * DEEP + "]" * DEEP


def _tvm_targets() -> list[str]:
    """['auto'] when TVM is installed and this CPU runs one of its targets, else []."""
    if importlib.util.find_spec("tvm") is None:
        return []
    from kerasport.export.tvm import runnable_targets

    return ["auto"] if runnable_targets() else []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny model, its bundle (TVM too where possible) and a real verify report of it."""
    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("json_files")
    model = train_small_model(root / "model.keras", F, (8,), seed=TRAINING_SEED, rows=1024,
                              epochs=1)
    bundle = export_bundle(model, root / "bundle", tvm_targets=_tvm_targets())
    np.save(root / "rows.npy", synthetic_examples(64, F, seed=2)[0])
    report = root / "report.json"
    code = main(["verify", str(model), str(bundle), "--examples", str(root / "rows.npy"),
                 "--json", str(report), "--quiet"])
    assert code in (0, 1) and report.is_file()
    return {"root": root, "model": model, "bundle": bundle, "report": report}


def cli(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, path: Path, *problem: str) -> None:
    """Exit 2 with a message naming `path` and every fragment of `problem`, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err and str(path) in err, err
    for fragment in problem:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# --- the reader itself ------------------------------------------------------------------


def _write(text: str | bytes) -> Callable[[Path], None]:
    data = text.encode() if isinstance(text, str) else text
    return lambda path: path.write_bytes(data)


def _sparse(size: int) -> Callable[[Path], None]:
    """A file of `size` bytes that takes no space: refused by its size before any read."""
    def make(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)
    return make


LIMIT = 1 << 20
NEST = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
READER_CASES = {
    "deep_whole": (_write(DEEP_ARRAY), f"nested more than {MAX_DEPTH} levels deep"),
    "deep_field": (_write('{"a": {"b": ' + DEEP_ARRAY + "}}"), "nested more than"),
    "just_too_deep": (_write(NEST), f"nested more than {MAX_DEPTH} levels deep"),
    "deep_objects": (_write('{"a": ' * 5000 + "1" + "}" * 5000), "nested more than"),
    "over_the_limit": (_sparse(LIMIT + 1), "1,048,577 bytes, over the 1,048,576-byte limit"),
    "not_utf8": (_write(b'{"a": "\xff"}'), "not UTF-8 text (byte 0xff at offset 7)"),
    "nan": (_write('{"a": NaN}'), "holds NaN"),
    "infinity": (_write('{"a": [-Infinity]}'), "holds -Infinity"),
    "huge_float": (_write('{"a": 1e999}'), "holds the number '1e999', too large for a float"),
    "huge_integer": (_write('{"a": ' + "9" * 5000 + "}"), "not valid JSON"),
    "repeated_key": (_write('{"a": 1, "b": {"c": 1, "c": 2}}'), "repeats the key 'c'"),
    "surrogate": (_write('{"a": ["\\ud800"]}'), "unpaired surrogate"),
    "surrogate_key": (_write('{"\\udfff": 1}'), "unpaired surrogate"),
    "torn": (_write('{"a": [1, 2'), "not valid JSON"),
    "empty": (_write(""), "not valid JSON"),
    "a_directory": (lambda path: path.mkdir(), "not a regular file"),
    "a_fifo": (lambda path: os.mkfifo(path), "not a regular file"),
    "missing": (lambda path: None, "no such file"),
}


@pytest.mark.parametrize("name", list(READER_CASES))
def test_the_reader_refuses_each_hostile_file_naming_it(name: str, tmp_path: Path) -> None:
    make, problem = READER_CASES[name]
    path = tmp_path / f"{name}.json"
    make(path)
    with pytest.raises(ExportError) as caught:  # the caller's class, whatever it is
        read_json_file(path, ExportError, "test file", max_bytes=LIMIT)
    assert str(path) in str(caught.value) and problem in str(caught.value), caught.value
    assert caught.value.__cause__ is None or isinstance(caught.value.__cause__, OSError)


def test_the_reader_keeps_what_the_tools_write(tmp_path: Path) -> None:
    """The control: nesting to the limit, any Unicode, NaN where the caller allows it."""
    path = tmp_path / "fine.json"
    nested: object = 1
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    path.write_text(json.dumps({"deep": nested, "name": "\u00e9\U0001f9ec", "x": 1.5}))
    data = read_json_file(path, ExportError, "test file", max_bytes=LIMIT)
    assert data["name"] == "\u00e9\U0001f9ec" and data["x"] == 1.5
    path.write_text('{"a": NaN, "b": Infinity}')
    data = read_json_file(path, ExportError, "test file", max_bytes=LIMIT, allow_non_finite=True)
    assert np.isnan(data["a"]) and data["b"] == float("inf")


# --- the bundle manifest, at load ---------------------------------------------------------


def _backends(bundle: Path) -> list[str]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    has_tvm = any(a["backend"] == "tvm" for a in manifest["artifacts"].values())
    return ["onnxruntime", "auto", *(["tvm"] if has_tvm else [])]


MANIFEST_EDITS: dict[str, Callable[[str], str]] = {
    "whole_file": lambda text: DEEP_ARRAY,
    "in_model_info": lambda text: text.replace('"model_info": null', '"model_info": ' + DEEP_ARRAY),
    "in_artifact_details": lambda text: text.replace('"details": {', '"details": {"x": '
                                                     + DEEP_ARRAY + ", ", 1),
    "repeated_key": lambda text: text.replace('"num_classes": 3', '"num_classes": 3, '
                                              '"num_classes": 2'),
    "nan": lambda text: text.replace('"num_classes": 3', '"num_classes": NaN'),
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_a_hostile_manifest_is_a_bundle_error_for_every_backend(
    edit: str, tiny: dict[str, Path], tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(tiny["bundle"], tmp_path / "bundle"))
    manifest = bundle / "manifest.json"
    text = manifest.read_text()
    changed = MANIFEST_EDITS[edit](text)
    assert changed != text, "the edit must change the manifest"
    manifest.write_text(changed)
    for backend in _backends(tiny["bundle"]):
        with pytest.raises(BundleError, match="unreadable bundle manifest") as caught:
            kerasport.runtime.load(bundle, backend=backend)
        assert str(manifest) in str(caught.value)
    with pytest.raises(BundleError, match="unreadable bundle manifest"):
        kerasport.runtime.servable_artifacts(bundle)


def test_the_unedited_bundle_loads_with_every_backend(tiny: dict[str, Path]) -> None:
    """The control for the test above: each backend it asks for serves this bundle."""
    backends = _backends(tiny["bundle"])
    if importlib.util.find_spec("tvm") is not None and _tvm_targets():
        assert "tvm" in backends, "this host builds TVM libraries: the bundle must have one"
    x = synthetic_examples(4, F, seed=3)[0]
    for backend in backends:
        assert kerasport.runtime.load(tiny["bundle"], backend=backend).predict(x).shape == (4, 3)


def test_a_deep_manifest_is_exit_2_for_verify(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = Path(shutil.copytree(tiny["bundle"], tmp_path / "bundle"))
    (bundle / "manifest.json").write_text(DEEP_ARRAY)
    code, err = cli(["verify", tiny["model"], bundle, "--examples", tiny["root"] / "rows.npy"],
                    capsys)
    assert_refused(code, err, bundle / "manifest.json", "nested more than")


# --- small_model_info.json, at export -----------------------------------------------------


MODEL_INFO_CASES = {
    "deep": (_write('{"model_features": ' + DEEP_ARRAY + "}"), ("nested more than",)),
    "deep_config": (_write('{"model_features": [], "config": ' + DEEP_ARRAY + "}"),
                    ("nested more than",)),
    "oversized": (_sparse((1 << 20) + 1), ("1,048,577 bytes, over the 1,048,576-byte limit",)),
    "not_utf8": (_write(b'{"version": "\xc3("}'), ("not UTF-8",)),
    "repeated_key": (_write('{"model_features": [], "model_features": []}'),
                     ("repeats the key 'model_features'",)),
}


@pytest.mark.parametrize("name", list(MODEL_INFO_CASES))
def test_a_hostile_model_info_is_exit_2_at_export_and_writes_nothing(
    name: str, tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, problem = MODEL_INFO_CASES[name]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = Path(shutil.copy(tiny["model"], model_dir / "model.keras"))
    info = model_dir / "small_model_info.json"
    make(info)
    out = tmp_path / "bundle"
    code, err = cli(["export", model, "-o", out], capsys)
    assert_refused(code, err, info, *problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # not even a partial


def test_model_info_with_nan_in_its_config_still_exports(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DeepVariant writes its config with Python's json, which spells NaN; only the names
    are used, so the file is accepted (and its names reach the manifest)."""
    model = Path(shutil.copy(tiny["model"], tmp_path / "model.keras"))
    names = [f"f{i}" for i in range(F)]
    (tmp_path / "small_model_info.json").write_text(
        json.dumps({"version": "1.9", "shape": F, "model_features": names,
                    "config": {"threshold": float("nan")}})
    )
    code, err = cli(["export", model, "-o", tmp_path / "bundle"], capsys)
    assert code == 0, err
    assert list(kerasport.runtime.load(tmp_path / "bundle").feature_names or []) == names


# --- verify reports, at --merge -----------------------------------------------------------


REPORT_CASES = {
    "deep": (_write(DEEP_ARRAY), ("nested more than",)),
    "deep_field": (_write('{"settings": ' + DEEP_ARRAY + "}"), ("nested more than",)),
    "oversized": (_sparse((64 << 20) + 1), ("over the 67,108,864-byte limit",)),
    "nan": (_write('{"rows": NaN}'), ("holds NaN",)),
    "not_utf8": (_write(b"\xfe\xff{}"), ("not UTF-8",)),
    "not_an_object": (_write("[]"), ("not a JSON object",)),
}


@pytest.mark.parametrize("name", list(REPORT_CASES))
def test_a_hostile_report_is_exit_2_at_merge_naming_it(
    name: str, tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, problem = REPORT_CASES[name]
    bad = tmp_path / f"{name}.json"
    make(bad)
    out = tmp_path / "merged.json"
    code, err = cli(["verify", "--merge", tiny["report"], bad, "--json", out], capsys)
    assert_refused(code, err, bad, *problem)
    assert not out.exists()


def test_the_real_report_merges(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control for the test above: the good report alone merges."""
    out = tmp_path / "merged.json"
    code, err = cli(["verify", "--merge", tiny["report"], "--json", out], capsys)
    assert code in (0, 1) and out.is_file(), err


# --- the bench's trace summary ------------------------------------------------------------


def test_a_deep_trace_summary_is_a_bench_error(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text('{"format": "kerasport trace summary 1", "calls_by_rows": ' + DEEP_ARRAY
                    + "}")
    with pytest.raises(BenchError, match="nested more than") as caught:
        load_summary(path)
    assert str(path) in str(caught.value)


# --- the workflow: a hand-written config and the sample sheet ----------------------------


def test_a_deep_value_in_a_hand_written_config_is_named_briefly() -> None:
    """config.json is parsed by Snakemake; what it hands the Snakefile is checked here, and a
    nested value is shown shortened, never printed whole (or recursively)."""
    deep: object = "x"
    for _ in range(600):
        deep = [deep]
    config = {"model": deep, "bundle": "b", "shards": [{"id": "a", "examples": "a.npz"}]}
    with pytest.raises(WorkflowConfigError, match="'model' must be a non-empty string") as caught:
        WorkflowConfig.from_json(config)
    assert len(str(caught.value)) < 200


SHEET = b"sample\treads\tregion\n"
SHEET_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "nul": (_write(SHEET + b"A\tr\x00.bam\tchr1:1-10\n"), "line 2: control character 0x00"),
    "vertical_tab": (_write(SHEET + b"# note\n\nA\tr.bam\x0b\tchr1:1-10\n"),
                     "line 4: control character 0x0b"),
    "not_utf8": (_write(SHEET + b"A\t\xff.bam\tchr1:1-10\n"), "not UTF-8 text (byte 0xff"),
    "binary": (_write(bytes(range(256)) * 4), "not UTF-8 text"),
    "oversized": (_sparse((16 << 20) + 1), "over the 16,777,216-byte limit"),
    "ragged_after_comments": (_write(SHEET + b"# one\n\n# two\nA\tr.bam\n"),
                              "line 5: 2 fields for 3 columns"),
    "stray_quote": (_write(SHEET + b'"A\tr.bam\tchr1:1-10\nB\tr.bam\tchr1:1-10\n'),
                    "line 2: cannot be split into cells: unexpected end of data"),
    "overlong_cell": (_write(SHEET + b"A\t" + b"x" * 200_000 + b"\tchr1:1-10\n"),
                      "line 2: cannot be split into cells: field larger than field limit"),
    "long_path": (_write(SHEET + b"A\t" + b"x" * 100_000 + b".bam\tchr1:1-10\n"),
                  "File name too long"),
    "a_directory": (lambda path: path.mkdir(), "not a regular file"),
    "a_fifo": (lambda path: os.mkfifo(path), "not a regular file"),
    "empty": (_write(b""), "is empty"),
}


@pytest.mark.parametrize("name", list(SHEET_CASES))
def test_a_junk_sample_sheet_is_named_with_its_line(name: str, tmp_path: Path) -> None:
    make, problem = SHEET_CASES[name]
    sheet = tmp_path / "samples.tsv"
    make(sheet)
    with pytest.raises(WorkflowConfigError) as caught:
        shards_from_sheet(sheet)
    message = str(caught.value)
    assert str(sheet) in message and problem in message, message
    assert len(message) < 600


def test_a_sample_sheet_from_a_spreadsheet_reads(tmp_path: Path) -> None:
    """The control: a byte-order mark, CRLF line ends, comments and quoted cells are what
    spreadsheets save; each sample's line is read, a quoted cell without its quotes."""
    (tmp_path / "r,1.bam").write_bytes(b"")
    sheet = tmp_path / "samples.tsv"
    sheet.write_bytes(b"\xef\xbb\xbfsample\treads\tregion\r\n# c\r\n\r\n"
                      b'"NA12878"\t"r,1.bam"\tchr1:1-10\r\nB\t"r,1.bam"\tchr2:5-9\r\n')
    shards = shards_from_sheet(sheet)
    assert [s.id for s in shards] == ["NA12878.chr1_1-10", "B.chr2_5-9"]
    assert all(s.reads == str(tmp_path / "r,1.bam") for s in shards)


def test_every_reader_raises_a_kerasport_error() -> None:
    """The classes callers catch: each is the project's family, so the CLI prints it."""
    for error in (BundleError, ExportError, BenchError, WorkflowConfigError):
        assert issubclass(error, KerasportError)
