"""Write a bundle directory atomically: readers see no bundle or a whole one, never part."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from kerasport.atomic import current_umask
from kerasport.errors import BundleError, ExportError
from kerasport.manifest import read_manifest


def check_destination(out_dir: str | Path) -> Path:
    """The absolute bundle path, after refusing anything export must not replace.

    Only an empty directory or an existing kerasport bundle (its manifest reads) may be
    replaced: a directory that merely holds some `manifest.json` is someone else's.
    """
    out = Path(out_dir).absolute()
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
    back if that fails).
    """
    out = check_destination(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the bundle from others
        fill(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
