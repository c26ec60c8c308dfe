"""Link a compiled TVM module into a shared library, reporting a full disk as one.

TVM's own `export_library` has LLVM write the object file into a fresh directory under
TMPDIR, then runs the system compiler (a subprocess) to link it. Two failures on a full disk
hid the cause: LLVM ends the whole process when it cannot write a file ("LLVM ERROR: IO
failure on output stream", exit 1: no message naming the disk, the export's partial
directory left behind), and the linker's "No space left on device" came back inside TVM's
RuntimeError, which export reported as "TVM could not compile the Dense chain". Here LLVM
writes into an anonymous memory file, Python copies it into a working directory of ours
(where a full disk is an OSError), and the linker's failure is told apart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasport.diskspace import (
    free_space,
    full_disk_phrase,
    is_disk_full,
    says_disk_full,
    write_error,
)
from kerasport.errors import ExportError

OBJECT_NAME = "lib0.o"


def export_library(built: Any, library: Path, target_name: str) -> None:
    """Write `built` (a TVM runtime module) as the shared library `library`.

    The working directory is made where TVM makes its own, by Python's tempfile: in $TMPDIR
    when a file can be written there (a TMPDIR without a free byte is passed over), else
    /tmp. It is removed whatever happens; every failure is an ExportError naming the file
    or directory involved.
    """
    try:
        workspace = Path(tempfile.mkdtemp(prefix="kerasport-tvm-"))
    except OSError as exc:
        where = tempfile.gettempdir()
        raise write_error(ExportError, where, exc, "creating TVM's working directory in") from exc
    try:
        if _can_emit_in_memory(built):
            obj = workspace / OBJECT_NAME
            _emit_object(built, obj)
            _link(lambda: _create_shared(obj, library), library, workspace, target_name)
        else:  # pragma: no cover - another platform, or a module with imports
            _link(
                lambda: built.export_library(str(library), workspace_dir=str(workspace)),
                library, workspace, target_name,
            )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _can_emit_in_memory(built: Any) -> bool:
    """Whether `built` is one LLVM module without imports (what export_library would write
    as one object file) and this system has memory files reachable by a path."""
    return (
        hasattr(os, "memfd_create")
        and Path("/proc/self/fd").is_dir()
        and built.kind == "llvm"
        and not built.imports
    )


def _emit_object(built: Any, obj: Path) -> None:
    """LLVM's object file for `built`, written to `obj` by Python (see the module doc)."""
    fd = os.memfd_create("kerasport-tvm-object", os.MFD_CLOEXEC)
    try:
        built.write_to_file(f"/proc/self/fd/{fd}", "o")
        data = os.pread(fd, os.fstat(fd).st_size, 0)
    except Exception as exc:  # TVM's own error types, from C++
        raise ExportError(f"TVM could not emit its object file: {exc}") from exc
    finally:
        os.close(fd)
    try:
        obj.write_bytes(data)
    except OSError as exc:
        note = "; TVM's working directory, under TMPDIR"
        raise write_error(ExportError, obj, exc, "writing TVM's object file", note) from exc


def _create_shared(obj: Path, library: Path) -> None:
    """TVM's default way to link one object file (what export_library calls for one)."""
    from tvm.support import cc

    cc.create_shared(str(library), [str(obj)])


def _link(
    run: Callable[[], object], library: Path, workspace: Path, target_name: str
) -> None:
    """Run the link step; a failure says whether the disk was full, and where it writes."""
    try:
        run()
    except Exception as exc:  # TVM passes the linker's output on in a RuntimeError
        if is_disk_full(exc):
            raise ExportError(_full_disk_message(exc, library, workspace)) from exc
        raise ExportError(
            f"TVM could not link the Dense chain for {target_name} into {library}: {exc}"
        ) from exc


def _full_disk_message(exc: BaseException, library: Path, workspace: Path) -> str:
    """Name both places the linker writes, with the space left on each, and its own line."""
    lines = [line.strip() for line in str(exc).splitlines()]
    said = next((line for line in lines if says_disk_full(line)), lines[0] if lines else "")
    return (
        f"{full_disk_phrase(exc)} while linking the TVM library {library} "
        f"({free_space(library.parent)} there); the linker also writes temporary files in "
        f"{workspace.parent} (TMPDIR; {free_space(workspace.parent)}). The linker said: {said}"
    )
