"""Write a bundle directory atomically: readers see no bundle or a whole one, never part."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from kerasport.atomic import current_umask
from kerasport.diskspace import write_error
from kerasport.errors import BundleError, ExportError
from kerasport.manifest import partial_prefix, read_manifest
from kerasport.outputs import Input, Output, OutputError, check_output_dir


def check_destination(out_dir: str | Path, model_path: str | Path | None = None) -> Path:
    """The absolute bundle path, after refusing anything export must not replace.

    Only an empty directory or an existing kerasport bundle (its manifest reads) may be
    replaced: a directory that merely holds some `manifest.json` is someone else's, and one
    that holds the model being exported (or is inside it) would delete it.
    """
    out = Path(out_dir).absolute()
    if model_path is not None:
        try:
            check_output_dir(Output("-o", out), [Input("model", model_path)], replaces=True)
        except OutputError as exc:
            raise ExportError(str(exc)) from None
    if not out.exists():
        return out
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory; refusing to replace it")
    if any(out.iterdir()):
        try:
            read_manifest(out)
        except BundleError as exc:
            raise ExportError(
                f"{out} exists and is not a kerasport bundle ({exc}); refusing to replace it"
            ) from None
    return out


def write_atomically(out_dir: str | Path, fill: Callable[[Path], None]) -> Path:
    """Call `fill(tmp)` on a fresh sibling directory, then rename it to `out_dir`.

    The temporary directory sits beside `out_dir` so the rename stays on one filesystem. An
    existing bundle is moved aside and removed only after the new one is in place (and put
    back if that fails). Temporary names carry the writer's pid, so what a killed export
    left behind is recognised and cleared by the next export to the same place.
    """
    out = check_destination(out_dir)  # again: the caller checked before its slow work
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(ExportError, out.parent, exc, "creating") from exc
    clear_stale(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(out.name, os.getpid()), dir=out.parent))
    except OSError as exc:
        raise write_error(ExportError, out.parent, exc, "creating a directory in") from exc
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the bundle from others
        fill(tmp)
        _rename_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _rename_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` to `out`, moving an existing bundle aside until it is in.

    A rename needs no data blocks but may need a directory block, so even it can meet a full
    disk; that is reported as such, naming the bundle.
    """
    try:
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex}"
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except OSError as exc:
        raise write_error(ExportError, out, exc, "renaming the new bundle into place at") from exc


def clear_stale(out: Path) -> None:
    """Remove the temporary directories of exports to `out` whose writer is gone.

    A `.partial-` directory is removed. An `.old-` directory is the previous bundle, moved
    aside by an export killed before its new bundle was renamed in: it is put back when
    `out` is missing, removed otherwise. A directory whose writer still runs is left alone.
    """
    for kind in ("partial", "old"):
        for path in sorted(out.parent.glob(f".{out.name}.{kind}-*")):
            pid = _writer_pid(path.name.removeprefix(f".{out.name}.{kind}-"))
            if pid is None or _alive(pid):
                continue
            if kind == "old" and not out.exists():
                path.rename(out)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _writer_pid(suffix: str) -> int | None:
    head = suffix.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:
        return False
    return True
