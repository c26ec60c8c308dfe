"""Outputs that cannot clobber: every path a command writes is checked before any work.

A report or examples file written over one of the command's inputs, a device, a FIFO, a
socket or a directory is refused with exit 2, naming both paths, and what was there is
left exactly as it was (bytes, or the kind of node). Devices are real ones made with
`mknod` in a temporary directory where the tests run as root, and skipped loudly
otherwise. Stop signals end a real run with 128 + the signal, one line and nothing partial.
"""

# ruff: noqa: F811  (pytest injects the `tiny` fixture imported from test_exit_codes)
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from test_exit_codes import assert_refused, cli, tiny  # noqa: F401

from kerasport.atomic import atomic_path
from kerasport.cli import available_memory, memory_needed
from kerasport.outputs import OutputError

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mknod of a device needs root: SKIPPED")
DEVICES = {"null": (1, 3), "full": (1, 7)}  # copies of /dev/null and /dev/full


def verify_argv(tiny: dict[str, Path], *extra: object) -> list[object]:
    return ["verify", tiny["model"], tiny["bundle"], "--examples", tiny["good"], *extra]


def snapshot(path: Path) -> tuple[int, bytes | None]:
    """What is at `path`: its file type and, for a regular file, its bytes."""
    mode = os.lstat(path).st_mode
    return stat.S_IFMT(mode), path.read_bytes() if stat.S_ISREG(mode) else None


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A FIFO, a listening socket, a directory and (as root) character devices."""
    made = {"fifo": tmp_path / "fifo.json", "dir": tmp_path / "dir.json"}
    os.mkfifo(made["fifo"])
    made["dir"].mkdir()
    sock = socket.socket(socket.AF_UNIX)
    made["socket"] = tmp_path / "sock.json"
    sock.bind(str(made["socket"]))
    if ROOT:
        for name, (major, minor) in DEVICES.items():
            made[name] = tmp_path / f"{name}.json"
            os.mknod(made[name], stat.S_IFCHR | 0o666, os.makedev(major, minor))
    yield made
    sock.close()


# --- verify's --json and --html over its inputs --------------------------------------------


def _inputs(tiny: dict[str, Path]) -> dict[str, Path]:
    return {
        "the manifest": tiny["bundle"] / "manifest.json",
        "the ONNX model": tiny["bundle"] / "model.onnx",
        "the model": tiny["model"],
        "the examples": tiny["good"],
        "the bundle": tiny["bundle"],
    }


@pytest.mark.parametrize("option", ["--json", "--html"])
@pytest.mark.parametrize(
    "target", ["the manifest", "the ONNX model", "the model", "the examples", "the bundle"]
)
def test_a_report_over_an_input_is_refused_and_the_input_kept(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str], option: str, target: str
) -> None:
    path = _inputs(tiny)[target]
    before = snapshot(path)
    code, _, err = cli(verify_argv(tiny, option, path), capsys)
    assert_refused(code, err, path, option)
    assert snapshot(path) == before


def test_an_input_reached_by_a_link_or_dotdot_is_refused(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tiny["bundle"] / "manifest.json"
    before = snapshot(manifest)
    symlink, hardlink = tmp_path / "report.json", tmp_path / "hard.json"
    symlink.symlink_to(manifest)
    os.link(tiny["good"], hardlink)
    dotdot = tiny["bundle"] / ".." / tiny["bundle"].name / "manifest.json"
    for path, names in ((symlink, "inside the bundle"), (hardlink, str(tiny["good"])),
                        (dotdot, "inside the bundle")):
        code, _, err = cli(verify_argv(tiny, "--json", path), capsys)
        assert_refused(code, err, path, names)
    assert snapshot(manifest) == before


def test_a_report_inside_the_bundle_is_refused(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny["bundle"] / "report.json"
    code, _, err = cli(verify_argv(tiny, "--json", path), capsys)
    assert_refused(code, err, path, "inside the bundle", str(tiny["bundle"]))
    assert not path.exists()


def test_merged_reports_are_inputs_too(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "one.json"
    assert cli(verify_argv(tiny, "--json", report), capsys)[0] == 0
    before = snapshot(report)
    code, _, err = cli(["verify", "--merge", report, "--json", report], capsys)
    assert_refused(code, err, report, "is the report")
    assert snapshot(report) == before


def test_the_json_and_html_may_not_share_a_file(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "both"
    code, _, err = cli(verify_argv(tiny, "--json", path, "--html", path), capsys)
    assert_refused(code, err, path, "same file as --json")
    assert not path.exists()


@pytest.mark.parametrize("kind", ["fifo", "socket", "dir", *DEVICES])
@pytest.mark.parametrize("option", ["--json", "--html"])
def test_a_report_over_a_node_that_is_not_a_file_is_refused(
    tiny: dict[str, Path], nodes: dict[str, Path], capsys: pytest.CaptureFixture[str],
    kind: str, option: str,
) -> None:
    if kind not in nodes:
        pytest.skip(f"mknod of /dev/{kind}'s copy needs root: SKIPPED")
    path = nodes[kind]
    before = snapshot(path)
    code, _, err = cli(verify_argv(tiny, option, path), capsys)
    shown = {"fifo": "a FIFO", "socket": "a socket", "dir": "a directory"}.get(
        kind, "a character device")
    assert_refused(code, err, path, shown, option)
    assert snapshot(path) == before


def test_json_to_standard_output_is_the_report(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(verify_argv(tiny, "--json", "-"), capsys)
    assert code == 0, err
    assert json.loads(out)["verdict"]["passed"] is True
    assert "verdict: PASS" in err  # the table moves to stderr, out of the JSON's way


def test_a_report_over_a_regular_file_replaces_it_and_a_link_is_written_through(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, link = tmp_path / "old.json", tmp_path / "link.json"
    old.write_text("stale")
    link.symlink_to(old)
    assert cli(verify_argv(tiny, "--json", link), capsys)[0] == 0
    assert link.is_symlink() and json.loads(old.read_text())["verdict"]["passed"] is True


# --- the other commands' outputs -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "socket", "dir", *DEVICES])
def test_featurize_never_writes_over_a_node_or_its_reads(
    tmp_path: Path, nodes: dict[str, Path], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    pytest.importorskip("pysam")
    if kind not in nodes:
        pytest.skip(f"mknod of /dev/{kind}'s copy needs root: SKIPPED")
    reads, ref = tmp_path / "reads.npz", tmp_path / "ref.fa"  # -o is checked before either
    reads.write_bytes(b"reads")
    ref.write_text(">chr1\nACGT\n")
    base = ["featurize", reads, "--ref", ref, "--region", "chr1:1-4", "-o"]
    node = nodes[kind].rename(nodes[kind].with_suffix(".npz"))
    for path, problem in ((node, "not a regular file"), (reads, "is the reads")):
        before = snapshot(path)
        code, _, err = cli([*base, path], capsys)
        assert_refused(code, err, path, problem)
        assert snapshot(path) == before


def test_export_never_replaces_a_directory_that_holds_its_model(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny["bundle"], bundle)
    model = bundle / "model.keras"
    shutil.copy(tiny["model"], model)
    code, _, err = cli(["export", model, "-o", bundle], capsys)
    assert_refused(code, err, bundle, "holds the model", str(model))
    assert model.read_bytes() == tiny["model"].read_bytes()


@pytest.mark.parametrize("kind", ["fifo", "socket", *DEVICES])
def test_export_never_writes_over_a_node(
    tiny: dict[str, Path], nodes: dict[str, Path], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind not in nodes:
        pytest.skip(f"mknod of /dev/{kind}'s copy needs root: SKIPPED")
    before = snapshot(nodes[kind])
    code, _, err = cli(["export", tiny["model"], "-o", nodes[kind]], capsys)
    assert_refused(code, err, nodes[kind], "not a directory (it is a")
    assert snapshot(nodes[kind]) == before


def test_bench_never_writes_into_its_bundle_or_over_a_node(
    tiny: dict[str, Path], tmp_path: Path, nodes: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["bench", tiny["bundle"], "--model", tiny["model"], "--quick", "--out"]
    before = sorted(p.name for p in tiny["bundle"].iterdir())
    code, _, err = cli([*base, tiny["bundle"]], capsys)
    assert_refused(code, err, tiny["bundle"], "inside the bundle")
    assert sorted(p.name for p in tiny["bundle"].iterdir()) == before
    out = tmp_path / "bench"
    out.mkdir()
    os.mkfifo(out / "results.json")
    code, _, err = cli([*base, out], capsys)
    assert_refused(code, err, out / "results.json", "a FIFO")
    code, _, err = cli([*base, nodes["fifo"]], capsys)
    assert_refused(code, err, nodes["fifo"], "not a directory (it is a FIFO)")


@needs_root
def test_atomic_writes_refuse_a_device_whoever_calls_them(tmp_path: Path) -> None:
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(*DEVICES["null"]))
    with pytest.raises(OutputError, match="a character device"), atomic_path(device) as tmp:
        tmp.write_text("x")
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]  # no temporary file left


def test_a_node_that_appears_during_the_write_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    with pytest.raises(OutputError, match="a FIFO"), atomic_path(target) as tmp:
        tmp.write_text("x")
        os.mkfifo(target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


# --- stops and error classes -----------------------------------------------------------------


def _opened(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open or mapped (it is reading the examples)."""
    try:
        if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
               for fd in os.listdir(f"/proc/{pid}/fd")):
            return True
        return str(path) in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def many_rows(tiny: dict[str, Path]) -> Path:
    """Enough rows that verify is still reading them when the signal comes."""
    rows = np.load(tiny["good"])
    path = tiny["root"] / "many.npy"
    np.save(path, np.tile(rows, (400, 1)))  # about 100,000 rows
    return path


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_mid_run_exits_128_plus_it_with_nothing_partial(
    tiny: dict[str, Path], many_rows: Path, tmp_path: Path, signum: int,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "kerasport", "verify", tiny["model"], tiny["bundle"],
            "--examples", many_rows, "--json", out / "r.json", "--html", out / "r.html",
            "--reference-process", "subprocess"]
    process = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _wait_for(lambda: _opened(process.pid, many_rows.resolve()), 120), \
            "verify never opened its examples"
        os.killpg(process.pid, signum)  # as a terminal's Ctrl-C reaches the whole group
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert list(out.iterdir()) == []


def test_a_closed_standard_output_is_not_a_traceback(tiny: dict[str, Path]) -> None:
    argv = [sys.executable, "-m", "kerasport", *map(str, verify_argv(tiny, "--json", "-"))]
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    done = subprocess.run(argv, stdout=reader.stdin, stderr=subprocess.PIPE, text=True,
                          timeout=300)
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait()
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.returncode in (0, 128 + signal.SIGPIPE)


def test_an_allocation_too_big_says_how_many_bytes_it_needed() -> None:
    with pytest.raises(MemoryError) as raised:
        np.empty((2**40, 70), dtype=np.int64)
    assert memory_needed(raised.value) == (
        "an array of shape (1099511627776, 70) and dtype int64 needs "
        f"{2**40 * 70 * 8:,} bytes"
    )
    assert "bytes of memory available" in available_memory()


def test_a_cohort_run_directory_never_lies_in_its_bundle(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("snakemake")
    out = tiny["bundle"] / "run"
    code, _, err = cli(["workflow", "verify", tiny["model"], tiny["bundle"], "--examples",
                        tiny["good"], "--out", out], capsys)
    assert_refused(code, err, out, "inside the bundle")
    assert not out.exists()
