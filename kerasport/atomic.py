"""Write output files whole or not at all.

A verify report, an examples file or a calls table that a Ctrl-C or a full disk cut short
would read back as a smaller, valid-looking result; writing a sibling temporary file and
renaming it over the target means readers see the old file or the new one, never part.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kerasport.outputs import OutputError, kind_of


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds.

    A symlink is written through (its target is replaced, the link kept), and anything but a
    regular file is refused before and again just before the rename, so no caller can turn
    a device, FIFO, socket or directory into a plain file (`outputs` says why).
    """
    target = _writable(Path(path))
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from others
        _writable(target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _writable(target: Path) -> Path:
    """The file to rename over for `target` (its resolved path), refused when not a file."""
    resolved = target.resolve() if target.is_symlink() else target
    kind = kind_of(resolved)
    if kind is not None:
        raise OutputError(f"{target} is {kind}, not a regular file; refusing to write over it")
    return resolved


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
