"""An export onto a full disk says so, names what it was writing, and leaves nothing behind.

Real full disks: a small tmpfs is mounted (root only; skipped otherwise), filled to leave a
chosen number of bytes, and an export writes its bundle there, or uses it as TMPDIR, where
TVM's working directory goes. Each stage that writes is run out of space in turn: the ONNX
model, the manifest, the TVM link (the linker is a subprocess), the packed weights, and
TVM's object file. Each export is a real `python -m kerasport` process: exit 2, a message
with "no space left on device" and the path, no traceback, and no file left but the filler.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import TRAINING_SEED

from kerasport.testing import train_small_model

PAGE = 4096  # tmpfs counts whole pages
DISK = 1 << 20  # the small filesystem: room for one tiny bundle with its TVM library
FILLER = "filler"
F = 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]


def _tvm_runs_here() -> bool:
    if importlib.util.find_spec("tvm") is None:
        return False
    from kerasport.export.tvm import runnable_targets

    return bool(runnable_targets())


needs_tvm = pytest.mark.skipif(not _tvm_runs_here(), reason="needs TVM and a CPU it targets")


@contextmanager
def small_disk(where: Path, free: int) -> Iterator[Path]:
    """A DISK-byte tmpfs at `where`, filled to leave `free` bytes; unmounted whatever happens."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (where / FILLER).write_bytes(b"\0" * (DISK - free))
        assert _free(where) == free
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _free(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("disk_full")
    return train_small_model(root / "model.keras", F, (8,), seed=TRAINING_SEED, rows=512,
                             epochs=1)


@pytest.fixture(scope="module")
def sizes(model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Each file of the model's bundle (with its TVM library where one builds), by name."""
    from kerasport.export import export_bundle

    bundle = export_bundle(model, tmp_path_factory.mktemp("sized") / "bundle",
                           tvm_targets=["auto"] if _tvm_runs_here() else [])
    return {path.name: path.stat().st_size for path in bundle.iterdir()}


def export(model: Path, out: Path, *args: str, tmpdir: Path | None = None) -> tuple[int, str]:
    """`python -m kerasport export` in its own process: (exit status, stderr)."""
    env = dict(os.environ)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    done = subprocess.run(
        [sys.executable, "-m", "kerasport", "export", str(model), "-o", str(out), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    return done.returncode, done.stderr


def assert_out_of_space(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "no space left on device" in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def assert_only_filler(disk: Path, *others: str) -> None:
    """Nothing but the filler (and `others`, files not of kerasport's making) is on `disk`."""
    left = sorted(path.name for path in disk.iterdir() if path.name not in others)
    assert left == [FILLER], left


# ONNX Runtime keeps a small session-id file of its own in TMPDIR, whatever kerasport does.
ORT_SESSION_FILE = ".ses"


def test_a_full_disk_at_the_onnx_model_is_named(model: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", free=0) as disk:
        code, err = export(model, disk / "bundle")
        assert_out_of_space(code, err, f"writing {disk}/.bundle.partial-", "/model.onnx",
                            "0 bytes free")
        assert_only_filler(disk)


def test_a_full_disk_at_the_manifest_is_named(
    model: Path, sizes: dict[str, int], tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", free=_pages(sizes["model.onnx"])) as disk:
        code, err = export(model, disk / "bundle")
        assert_out_of_space(code, err, f"writing {disk}/.bundle.partial-", "/manifest.json")
        assert_only_filler(disk)


@needs_tvm
def test_a_full_disk_at_the_tvm_link_is_named_not_blamed_on_the_model(
    model: Path, sizes: dict[str, int], tmp_path: Path
) -> None:
    """The linker's "No space left on device" came back as "TVM could not compile"."""
    library = next(name for name in sizes if name.endswith(".so"))
    free = _pages(sizes["model.onnx"]) + _pages(sizes[library]) // 2
    with small_disk(tmp_path / "disk", free=free) as disk:
        code, err = export(model, disk / "bundle", "--tvm")
        assert_out_of_space(code, err, "linking the TVM library", f"{disk}/.bundle.partial-",
                            f"/{library}", "TMPDIR", "No space left on device")
        assert "could not compile" not in err
        assert_only_filler(disk)


@needs_tvm
def test_a_full_disk_at_the_packed_weights_is_named(
    model: Path, sizes: dict[str, int], tmp_path: Path
) -> None:
    library = next(name for name in sizes if name.endswith(".so"))
    weights = next(name for name in sizes if name.endswith(".weights.bin"))
    with small_disk(tmp_path / "disk", free=_pages(sizes["model.onnx"])
                    + _pages(sizes[library])) as disk:
        code, err = export(model, disk / "bundle", "--tvm")
        assert_out_of_space(code, err, f"writing {disk}/.bundle.partial-", f"/{weights}")
        assert_only_filler(disk)


@needs_tvm
def test_a_full_tmpdir_at_tvms_object_file_is_named(model: Path, tmp_path: Path) -> None:
    """LLVM ended the process (exit 1, "LLVM ERROR: IO failure on output stream") and left
    the export's partial directory behind; now the object file is written by Python."""
    out = tmp_path / "out"
    out.mkdir()
    with small_disk(tmp_path / "tmp", free=2 * PAGE) as tmpdir:
        code, err = export(model, out / "bundle", "--tvm", tmpdir=tmpdir)
        assert_out_of_space(code, err, "TVM's object file", f"{tmpdir}/kerasport-tvm-",
                            "under TMPDIR")
        assert_only_filler(tmpdir, ORT_SESSION_FILE)
    assert list(out.iterdir()) == []


def test_an_onnx_export_needs_no_tmpdir_space(model: Path, tmp_path: Path) -> None:
    """The control for the TMPDIR case: an ONNX-only export writes nothing there, so a full
    TMPDIR does not stop it (and it leaves nothing there)."""
    with small_disk(tmp_path / "tmp", free=0) as tmpdir:
        code, err = export(model, tmp_path / "bundle", tmpdir=tmpdir)
        assert code == 0, err
        assert_only_filler(tmpdir, ORT_SESSION_FILE)
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    shutil.rmtree(tmp_path / "bundle")
