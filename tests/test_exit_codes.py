"""Hostile inputs to `kerasport verify` and `kerasport export`: each is exit 2 with a message
that names the file and the problem, never a traceback (verify's exit 1 means only "a
decision moved"), and a reference child process that dies or hangs is reported, not
waited on.

The table runs the real CLI (`kerasport.cli.main`) in this process; where the exit status
of a real process or a hang matters, `python -m kerasport` runs in a subprocess under a
timeout. One tiny model (20 features, 8 hidden units) and its bundle serve the module.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.cli import main
from kerasport.examples import Examples, write_examples
from kerasport.testing import clear_of_decision_edges, synthetic_examples, train_small_model

F = 20
ROWS = 256
EXPECTED_CASES = 74  # the audit's size: every table below, plus the child-process cases


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A briefly trained model, its bundle, and rows clear of every decision edge."""
    from kerasport.export import export_bundle
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model

    root = tmp_path_factory.mktemp("exit_codes")
    model = train_small_model(
        root / "model.keras", F, (8,), seed=TRAINING_SEED, rows=2048, epochs=3,
        learning_rate=3e-3,
    )
    candidates = synthetic_examples(8 * ROWS, F, seed=1)[0]
    p = keras_predict(load_keras_model(model), candidates)
    good = candidates[clear_of_decision_edges(p, candidates[:, 12] == 1)][:ROWS]
    assert len(good) == ROWS, "too few rows clear of the decision edges"
    np.save(root / "good.npy", good)
    return {
        "root": root,
        "model": model,
        "bundle": export_bundle(model, root / "bundle"),
        "good": root / "good.npy",
    }


def good_rows(tiny: dict[str, Path]) -> np.ndarray:
    return np.load(tiny["good"])


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, path: Path | str, *problem: str) -> None:
    """Exit 2, one error line naming `path` and every fragment of `problem`, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err, err
    assert str(path) in err, err
    for fragment in problem:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# --- examples files -------------------------------------------------------------------------


def _npy(array: np.ndarray) -> Callable[[Path, np.ndarray], None]:
    return lambda path, good: np.save(path, array)


def _truncated_npy(path: Path, good: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, good)
    path.write_bytes(buffer.getvalue()[:300])


def _float_with(value: float) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, good: np.ndarray) -> None:
        table = good.astype(np.float64)
        table[3, 2] = value
        np.save(path, table)

    return write


def _savez_into(path: Path, good: np.ndarray) -> None:
    """An .npz archive under whatever name (np.savez adds .npz to a path, not to a handle)."""
    with path.open("wb") as handle:
        np.savez(handle, features=good)


def _truncated_npz(path: Path, good: np.ndarray) -> None:
    np.savez(path, features=good)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _text(lines: Callable[[np.ndarray], list[str]]) -> Callable[[Path, np.ndarray], None]:
    return lambda path, good: path.write_text("\n".join(lines(good)) + "\n")


def _csv_rows(good: np.ndarray) -> list[str]:
    return [",".join(map(str, row)) for row in good]


def _ragged(good: np.ndarray) -> list[str]:
    rows = _csv_rows(good)
    rows[4] = ",".join(map(str, good[4][:7]))
    return rows


def _cell(value: str) -> Callable[[np.ndarray], list[str]]:
    def lines(good: np.ndarray) -> list[str]:
        rows = _csv_rows(good)
        rows[2] = ",".join([value, *map(str, good[2][1:])])
        return rows

    return lines


def _truncated_tfrecord(suffix: str) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, good: np.ndarray) -> None:
        whole = path.with_name("whole" + suffix)
        write_examples(Examples(good), whole)
        # Mid-record: a file cut at a record boundary is a valid, shorter file.
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2 + 3])

    return write


def _random_bytes(path: Path, good: np.ndarray) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(500))


@dataclass(frozen=True)
class ExamplesCase:
    file_name: str
    write: Callable[[Path, np.ndarray], None]
    problem: tuple[str, ...]


_OBJECTS = np.array([[1, "a"]] * 3, dtype=object)
EXAMPLES_CASES = [
    ExamplesCase("empty.npy", lambda p, g: p.write_bytes(b""), ("empty file (0 bytes)",)),
    ExamplesCase("truncated.npy", _truncated_npy, ("truncated", "(256, 20) int64")),
    ExamplesCase("random.npy", _random_bytes, ("not a .npy file",)),
    ExamplesCase("zip.npy", lambda p, g: _savez_into(p, g), ("it is a zip archive: name it .npz",)),
    ExamplesCase("object.npy", lambda p, g: np.save(p, _OBJECTS, allow_pickle=True),
                 ("Python objects", "dtype object")),
    ExamplesCase("complex.npy", lambda p, g: np.save(p, g.astype(complex)),
                 ("complex values", "complex128")),
    ExamplesCase("bool.npy", lambda p, g: np.save(p, g > 50), ("boolean values",)),
    ExamplesCase("text.npy", lambda p, g: np.save(p, g.astype(str)), ("non-numeric values",)),
    ExamplesCase("one_row_1d.npy", lambda p, g: np.save(p, g[0]),
                 ("expected a 2-D table", "(20,)")),
    ExamplesCase("stacked_3d.npy", lambda p, g: np.save(p, g[None]),
                 ("expected a 2-D table", "(1, 256, 20)")),
    ExamplesCase("scalar.npy", lambda p, g: np.save(p, np.int64(3)), ("expected a 2-D table",)),
    ExamplesCase("nan.npy", _float_with(np.nan), ("non-integer value nan", "[3, 2]")),
    ExamplesCase("inf.npy", _float_with(np.inf), ("non-integer value inf", "[3, 2]")),
    ExamplesCase("fraction.npy", _float_with(1.5), ("non-integer value 1.5",)),
    ExamplesCase("huge.npy", lambda p, g: np.save(p, np.full((4, F), 2**63, dtype=np.uint64)),
                 ("does not fit in int64",)),
    ExamplesCase("narrow.npy", lambda p, g: np.save(p, g[:, :10]),
                 ("10 features per row", "take 20")),
    ExamplesCase("no_rows.npy", lambda p, g: np.save(p, g[:0]), ("no rows to verify",)),
    ExamplesCase("random.npz", _random_bytes, ("not a .npz archive", "not a complete zip")),
    ExamplesCase("truncated.npz", _truncated_npz, ("not a .npz archive", "not a complete zip")),
    ExamplesCase("other_name.npz", lambda p, g: np.savez(p, x=g),
                 ("no 'features' array", "it holds ['x']", "'arr_0'")),
    ExamplesCase("two_unnamed.npz", lambda p, g: np.savez(p, g, g),
                 ("no 'features' array", "['arr_0', 'arr_1']")),
    ExamplesCase("pickled.npz", lambda p, g: np.savez(p, features=_OBJECTS),
                 ("not a numeric .npz archive", "Object arrays")),
    ExamplesCase("empty.npz", lambda p, g: np.savez(p), ("holds no arrays",)),
    ExamplesCase("nan_features.npz", lambda p, g: np.savez(p, features=g * np.nan),
                 ("features", "non-integer value nan")),
    ExamplesCase("ragged.csv", _text(_ragged), ("line 5 has 7 values", "ragged")),
    ExamplesCase("nan.csv", _text(_cell("nan")), ("line 3, column 1", "'nan'")),
    ExamplesCase("inf.csv", _text(_cell("inf")), ("line 3, column 1", "'inf'")),
    ExamplesCase("word.tsv", _text(lambda g: [r.replace(",", "\t") for r in _cell("abc")(g)]),
                 ("non-numeric value 'abc'",)),
    ExamplesCase("empty.csv", lambda p, g: p.write_text(""), ("no rows to verify",)),
    ExamplesCase("truncated.tfrecord", _truncated_tfrecord(".tfrecord"), ("truncated record",)),
    ExamplesCase("truncated.tfrecord.gz", _truncated_tfrecord(".tfrecord.gz"),
                 ("unreadable", "Compressed file ended")),
    ExamplesCase("random.tfrecord", _random_bytes, ("bad TFRecord CRC",)),
    ExamplesCase("table.txt", _npy(np.zeros((2, F))), ("unknown examples format '.txt'",)),
    ExamplesCase("folder.npy", lambda p, g: p.mkdir(), ("not a file",)),
    ExamplesCase("missing.npy", lambda p, g: None, ("no such file",)),
]


@pytest.mark.parametrize("case", EXAMPLES_CASES, ids=[c.file_name for c in EXAMPLES_CASES])
def test_bad_examples_are_exit_2_naming_the_file(
    case: ExamplesCase, tiny: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / case.file_name
    case.write(path, good_rows(tiny))
    code, _, err = cli(["verify", tiny["model"], tiny["bundle"], "--examples", path], capsys)
    assert_refused(code, err, path, *case.problem)


@pytest.mark.parametrize("name", ["empty.npy", "truncated.npy", "scalar.npy"])
def test_the_progress_bar_leaves_a_bad_file_to_its_reader(
    name: str, tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--progress sizes its bar from each .npy's header before the readers run; a file
    whose header it cannot read must reach the reader's message, not a traceback."""
    case = next(c for c in EXAMPLES_CASES if c.file_name == name)
    path = tmp_path / name
    case.write(path, good_rows(tiny))
    argv = ["verify", tiny["model"], tiny["bundle"], "--examples", path, "--progress"]
    code, _, err = cli(argv, capsys)
    assert_refused(code, err, path, *case.problem)


def test_the_good_examples_pass(tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The control: the same model, bundle and rows, unbroken, exit 0; and `arr_0`, the one
    alternative name of an .npz's features, is read as the features."""
    lone = tiny["root"] / "lone.npz"
    np.savez(lone, good_rows(tiny))
    code, out, err = cli(
        ["verify", tiny["model"], tiny["bundle"], "--examples", tiny["good"], lone], capsys
    )
    assert code == 0, err
    assert f"PASS ({2 * ROWS} rows)" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_an_unreadable_examples_file_is_exit_2(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "locked.npy"
    np.save(path, good_rows(tiny))
    path.chmod(0)
    code, _, err = cli(["verify", tiny["model"], tiny["bundle"], "--examples", path], capsys)
    assert_refused(code, err, path, "cannot be read", "Permission denied")


# --- models and bundles given to verify -----------------------------------------------------


def _truncated_copy(tiny: dict[str, Path], path: Path) -> None:
    path.write_bytes(tiny["model"].read_bytes()[: tiny["model"].stat().st_size // 2])


def _zip_without_model(tiny: dict[str, Path], path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")


def _save(build: Callable[[], object]) -> Callable[[dict[str, Path], Path], None]:
    return lambda tiny, path: build().save(path)  # type: ignore[attr-defined]


def _sequential(*layers: object, shape: tuple[int, ...] = (F,)) -> Callable[[], object]:
    def build() -> object:
        import keras

        return keras.Sequential([keras.Input(shape), *layers])

    return build


def _dense(units: int, activation: str | None = None, dtype: str | None = None) -> object:
    import keras

    return keras.layers.Dense(units, activation=activation, dtype=dtype)


def _float64_head() -> object:
    return _sequential(_dense(4, "relu"), _dense(3, "softmax", dtype="float64"))()


def _two_outputs() -> object:
    import keras

    inputs = keras.Input((F,))
    hidden = keras.layers.Dense(4)(inputs)
    return keras.Model(inputs, [keras.layers.Dense(3)(hidden), keras.layers.Dense(1)(hidden)])


@dataclass(frozen=True)
class ModelCase:
    name: str
    make: Callable[[dict[str, Path], Path], None]
    problem: tuple[str, ...]


MODEL_CASES = [
    ModelCase("truncated.keras", _truncated_copy, ("not a Keras model", "not a complete one")),
    ModelCase("random.keras", lambda t, p: _random_bytes(p, np.zeros(0)),
              ("not a Keras model", "truncated, or another kind of file")),
    ModelCase("not_a_model.keras", _zip_without_model, ("no config.json",)),
    ModelCase("folder.keras", lambda t, p: p.mkdir(), ("is not a file",)),
    ModelCase("missing.keras", lambda t, p: None, ("not found",)),
    ModelCase("float64.keras", _save(_float64_head), ("output is float64", "float32")),
    ModelCase("unfixed.keras", _save(_sequential(_dense(3, "softmax"), shape=(None, F))),
              ("(None, None, 20) has no fixed size on axis 1",)),
    ModelCase("two_outputs.keras", _save(_two_outputs), ("one input and one output",)),
]


@pytest.fixture(scope="module")
def hostile_models(
    tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile_models")
    for case in MODEL_CASES:
        case.make(tiny, root / case.name)
    return {case.name: root / case.name for case in MODEL_CASES}


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.name for c in MODEL_CASES])
def test_a_bad_model_is_exit_2_for_verify(
    case: ModelCase, tiny: dict[str, Path], hostile_models: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = hostile_models[case.name]
    argv = ["verify", model, tiny["bundle"], "--examples", tiny["good"]]
    code, _, err = cli([*argv, "--allow-source-mismatch"], capsys)
    assert_refused(code, err, model, *case.problem)


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.name for c in MODEL_CASES])
def test_a_bad_model_is_exit_2_for_export_and_writes_nothing(
    case: ModelCase, hostile_models: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, out = hostile_models[case.name], tmp_path / "bundle"
    code, _, err = cli(["export", model, "-o", out], capsys)
    assert_refused(code, err, model, *case.problem)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # not even a partial directory


def _copy_bundle(tiny: dict[str, Path], path: Path, edit: Callable[[Path], None]) -> None:
    import shutil

    shutil.copytree(tiny["bundle"], path)
    edit(path)


def _truncate(name: str) -> Callable[[Path], None]:
    def edit(bundle: Path) -> None:
        target = bundle / name
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])

    return edit


BUNDLE_CASES = [
    ModelCase("missing", lambda t, p: None, ("not found",)),
    ModelCase("a_file", lambda t, p: p.write_text("x"), ("bundle",)),
    ModelCase("no_manifest", lambda t, p: p.mkdir(), ("no manifest.json",)),
    ModelCase("torn_manifest", lambda t, p: _copy_bundle(t, p, _truncate("manifest.json")),
              ("manifest",)),
    ModelCase("torn_onnx", lambda t, p: _copy_bundle(t, p, _truncate("model.onnx")),
              ("model.onnx", "sha256")),
]


@pytest.mark.parametrize("case", BUNDLE_CASES, ids=[c.name for c in BUNDLE_CASES])
def test_a_bad_bundle_is_exit_2(
    case: ModelCase, tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / case.name
    case.make(tiny, bundle)
    code, _, err = cli(["verify", tiny["model"], bundle, "--examples", tiny["good"]], capsys)
    assert_refused(code, err, bundle, *case.problem)


# --- export: outputs, and heads that are not a softmax over classes -------------------------


def test_an_output_path_that_is_a_file_or_foreign_directory_is_kept(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    code, _, err = cli(["export", tiny["model"], "-o", a_file], capsys)
    assert_refused(code, err, a_file, "is not a directory")
    assert a_file.read_text() == "mine"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    code, _, err = cli(["export", tiny["model"], "-o", foreign], capsys)
    assert_refused(code, err, foreign, "not a kerasport bundle")
    assert [p.name for p in foreign.iterdir()] == ["cat.jpg"]


def test_an_unsupported_opset_is_exit_2(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["export", tiny["model"], "-o", tmp_path / "b", "--opset", "99"], capsys)
    assert code == 2 and "opset 99 is outside the supported range" in err, err


HEADS = {  # last layers -> what the warning must say, in the output and the manifest
    "sigmoid": ((lambda: _dense(3, "sigmoid")), "'sigmoid' over 3 output(s)"),
    "logits": ((lambda: _dense(3)), "'linear' over 3 output(s) (logits or a regression)"),
    "regression": ((lambda: _dense(1)), "'linear' over 1 output(s)"),
    "softmax_of_one": ((lambda: _dense(1, "softmax")), "'softmax' over 1 output(s) (always 1)"),
}


@pytest.mark.parametrize("head", HEADS)
def test_a_head_that_is_not_a_softmax_exports_with_a_warning(
    head: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last, expected = HEADS[head]
    model = tmp_path / f"{head}.keras"
    _sequential(_dense(4, "relu"), last())().save(model)  # type: ignore[attr-defined]
    code, out, err = cli(["export", model, "-o", tmp_path / "bundle"], capsys)
    assert code == 0, err
    assert f"warning: the model's head is {expected}" in out
    assert "not a softmax over classes" in out
    warnings = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["warnings"]
    assert any(expected in warning for warning in warnings), warnings


def test_softmax_heads_in_other_spellings_get_no_warning() -> None:
    """A Softmax layer, an Activation('softmax') layer and a Dropout after the softmax (the
    identity at inference) are softmax heads; only a softmax over the batch axis is not."""
    import keras

    from kerasport.export.keras_model import head_warning

    def head(*last: object) -> str | None:
        return head_warning(_sequential(_dense(3), *last)())

    assert head(keras.layers.Softmax()) is None
    assert head(keras.layers.Activation("softmax")) is None
    assert head(keras.layers.Activation("softmax"), keras.layers.Dropout(0.2)) is None
    assert "'Softmax' over 3 output(s)" in str(head(keras.layers.Softmax(axis=0)))


# --- real processes: exit status, and the reference child that dies or hangs ---------------


def _kerasport(*argv: object) -> list[str]:
    return [sys.executable, "-m", "kerasport", *map(str, argv)]


@pytest.mark.parametrize("name", ["empty.npy", "random.npz"])
def test_a_real_process_exits_2_without_a_traceback(
    name: str, tiny: dict[str, Path], tmp_path: Path
) -> None:
    """Before this audit, a 0-byte .npy ended in a traceback and exit 1 ("a decision moved")."""
    case = next(c for c in EXAMPLES_CASES if c.file_name == name)
    path = tmp_path / name
    case.write(path, good_rows(tiny))
    done = subprocess.run(
        _kerasport("verify", tiny["model"], tiny["bundle"], "--examples", path),
        capture_output=True, text=True, timeout=300,
    )
    assert_refused(done.returncode, done.stderr, path, *case.problem)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid`, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _first_child(pid: int, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while not (children := _children(pid)):
        assert time.monotonic() < deadline, "the reference child never started"
        time.sleep(0.02)
    return children[0]


# A progress bar that has counted rows: the reference answered at least one chunk.
ROWS_DONE = re.compile(r"\| *(?!0\.00/)[0-9.]+k?/")


def _read_until(stream: int, pattern: re.Pattern[str], seconds: float = 120) -> str:
    """Read a pipe until `pattern` matches (progress bars end lines with \\r, not \\n)."""
    text, deadline = "", time.monotonic() + seconds
    while not pattern.search(text):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {pattern.pattern!r} in {text[-500:]!r}"
        if select.select([stream], [], [], remaining)[0]:
            block = os.read(stream, 65536)
            assert block, f"the process ended before {pattern.pattern!r}: {text[-2000:]!r}"
            text += block.decode(errors="replace")
    return text


@pytest.fixture(scope="module")
def many_rows(tiny: dict[str, Path]) -> Path:
    """Enough rows, in 64-row chunks, that a verify is still running when a test acts."""
    path = tiny["root"] / "many.npy"
    np.save(path, np.tile(good_rows(tiny), (400, 1)))
    return path


def _start_jax_verify(tiny: dict[str, Path], rows: Path, *options: str) -> subprocess.Popen[str]:
    pytest.importorskip("jax")
    return subprocess.Popen(
        _kerasport("verify", tiny["model"], tiny["bundle"], "--examples", rows,
                   "--reference-backend", "jax", "--chunk-rows", "64", "--progress", "--quiet",
                   *options),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize(
    ("sig", "options", "problem"),
    [
        (signal.SIGKILL, (), "it exited unexpectedly (killed by SIGKILL)"),
        (signal.SIGSTOP, ("--reference-timeout", "3"),
         "it gave no answer within 3 s and was killed"),
    ],
    ids=["killed", "hung"],
)
def test_a_reference_child_that_dies_or_hangs_mid_run_is_exit_2(
    sig: signal.Signals, options: tuple[str, ...], problem: str,
    tiny: dict[str, Path], many_rows: Path,
) -> None:
    """The real JAX child is killed (or frozen) once it has answered a chunk: verify reports
    it while predicting, exits 2 promptly, and leaves no child behind."""
    verify = _start_jax_verify(tiny, many_rows, *options)
    try:
        assert verify.stderr is not None
        seen = _read_until(verify.stderr.fileno(), ROWS_DONE)
        child = _children(verify.pid)[0]
        os.kill(child, sig)
        start = time.monotonic()
        err = seen + verify.communicate(timeout=120)[1]
    finally:
        verify.kill()
        verify.wait()
    assert verify.returncode == 2, err
    assert time.monotonic() - start < 60
    assert f"the jax reference failed while predicting: {problem}" in err, err
    assert "Traceback" not in err
    assert not Path(f"/proc/{child}").exists(), "the child outlived verify"


def test_a_reference_child_frozen_at_start_is_killed_at_its_deadline(
    tiny: dict[str, Path]
) -> None:
    verify = _start_jax_verify(tiny, tiny["good"], "--reference-timeout", "2")
    try:
        child = _first_child(verify.pid)
        os.kill(child, signal.SIGSTOP)
        err = verify.communicate(timeout=120)[1]
    finally:
        verify.kill()
        verify.wait()
    assert verify.returncode == 2, err
    assert "the jax reference failed while starting: it gave no answer within 2 s" in err, err
    assert not Path(f"/proc/{child}").exists(), "the frozen child outlived verify"


def test_a_reference_child_that_refuses_the_model_is_reported(
    tiny: dict[str, Path], hostile_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The child's own error (here: a float64 head, which it checks on load) comes back."""
    pytest.importorskip("jax")
    model = hostile_models["float64.keras"]
    code, _, err = cli(
        ["verify", model, tiny["bundle"], "--examples", tiny["good"],
         "--reference-backend", "jax", "--allow-source-mismatch"],
        capsys,
    )
    assert_refused(code, err, model, "the jax reference failed while starting", "float64")


def test_the_audit_size(capsys: pytest.CaptureFixture[str]) -> None:
    """The number of hostile inputs above, recorded so that a shrinking table is noticed."""
    cases = (
        len(EXAMPLES_CASES) + 1 + 3  # + the unreadable file (skipped as root), --progress
        + 2 * len(MODEL_CASES) + len(BUNDLE_CASES)
        + 2 + 1 + len(HEADS) + 1  # output paths, opset, heads, softmax spellings
        + 2 + 2 + 1 + 1  # real processes: exit status, child killed/hung, frozen, refusing
    )
    with capsys.disabled():
        print(f"\nexit-code audit: {cases} hostile inputs")
    assert cases == EXPECTED_CASES
