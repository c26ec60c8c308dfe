"""Read a file a user or a bundle supplies: a plain file, within a size bound, read once.

One reader for every file whose size or kind kerasport does not control (bundle artifacts,
manifests, JSON, sample sheets): a FIFO with no writer would hang a plain open, a device or
`/dev/zero` behind a symlink would read forever, and a file that grows while it is read
must not make the read grow with it. Standard library only: the runtime reads through it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kerasport.errors import KerasportError


def read_bounded(
    path: str | Path,
    error: type[KerasportError],
    what: str,
    max_bytes: int,
    follow_symlinks: bool = True,
) -> bytes:
    """The bytes of the regular file `path`, refused over `max_bytes` before it is read.

    Opened without blocking and checked to be a regular file, then read once with a bound,
    so a file that grows while it is read cannot make this read more than `max_bytes + 1`
    bytes. `follow_symlinks=False` refuses a symlink (a bundle holds plain files only).
    Every problem is the caller's `error`, naming `what` and the path.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            raise error(f"{what} {path} is a symlink, not a plain file") from None
        raise error(f"{what} {path}: cannot be read: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is not a regular file")
        if info.st_size > max_bytes:
            raise error(_too_big(what, path, info.st_size, max_bytes))
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(_too_big(what, path, len(data), max_bytes))
    return data


def _too_big(what: str, path: str | Path, size: int, max_bytes: int) -> str:
    return f"{what} {path} is {size:,} bytes, over the {max_bytes:,}-byte limit"
