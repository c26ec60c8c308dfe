"""Say "no space left on device", and where, when a write fails on a full disk.

A full disk surfaces in many shapes: an OSError with errno ENOSPC from Python's own writes
(without the file's name when the open succeeded and a write failed), or the text of a
subprocess's stderr inside some library's error (TVM's linker). Without this, an export
onto a full disk reported "TVM could not compile the Dense chain", sending the user after
the model instead of the disk. Callers name the file or directory they were writing; this
module recognises the condition and adds how much space is left there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from kerasport.errors import KerasportError

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is a full disk or an exhausted quota.

    Checks OSError errnos along the cause/context chain, and each error's text for the
    strerror a subprocess (a linker) prints, since libraries pass those on as text.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return True
        if says_disk_full(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def says_disk_full(text: str) -> bool:
    """Whether `text` holds the strerror of a full disk or quota, as a subprocess prints it."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _FULL_TEXTS)


def free_space(path: str | Path) -> str:
    """'12.3 MB free' on the filesystem holding `path` (or its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        info = os.statvfs(probe)
    except OSError:
        return "free space unknown"
    return f"{_size(info.f_bavail * info.f_frsize)} free"


def _size(count: int) -> str:
    value, unit = float(count), "bytes"
    for bigger in ("KB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def write_error(
    error: type[KerasportError],
    path: str | Path,
    exc: OSError,
    doing: str = "writing",
    note: str = "",
) -> KerasportError:
    """The caller's error for an OSError while `doing` `path`, naming it; a full disk (or
    quota) is called that, with the space left on the filesystem and the caller's `note`."""
    if is_disk_full(exc):
        return error(
            f"{full_disk_phrase(exc)} while {doing} {path} ({free_space(path)} on its "
            f"filesystem{note})"
        )
    return error(f"error while {doing} {path}: {exc.strerror or exc}")


def full_disk_phrase(exc: BaseException) -> str:
    """'disk quota exceeded' or 'no space left on device', as `exc` says."""
    quota = getattr(exc, "errno", None) == errno.EDQUOT or "quota" in str(exc).lower()
    return "disk quota exceeded" if quota else "no space left on device"


def write_file(path: str | Path, data: bytes, error: type[KerasportError]) -> None:
    """Write `data` to `path`; any OSError becomes `error` naming the file."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise write_error(error, path, exc) from exc
