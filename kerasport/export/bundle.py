"""Write a bundle directory atomically: readers see no bundle or a whole one, never part."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from kerasport.errors import ExportError
from kerasport.manifest import MANIFEST_NAME


def write_atomically(out_dir: str | Path, fill: Callable[[Path], None]) -> Path:
    """Call `fill(tmp)` on a fresh sibling directory, then rename it to `out_dir`.

    The temporary directory sits beside `out_dir` so the rename stays on one filesystem. An
    existing bundle is moved aside and removed only after the new one is in place; a
    directory that is not a bundle is never replaced.
    """
    out = Path(out_dir).absolute()
    if out.exists() and not (out / MANIFEST_NAME).is_file() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not a kerasport bundle; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_current_umask())  # mkdtemp's 0700 would hide the bundle from others
        fill(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
