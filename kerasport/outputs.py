"""Refuse, before any work, an output path whose writing would destroy something.

Every file kerasport writes is renamed into place (`atomic.atomic_path`), and a rename goes
over whatever the target is: `verify --json BUNDLE/manifest.json` would replace the bundle's
manifest, `--html in.npz` the examples it just read, `--json /dev/null` (run as root, as
DeepVariant's containers are) the system's `/dev/null`, and a FIFO a reader waits on would
become a plain file. So each command checks each of its outputs against its inputs and the
kind of thing already there, before the (possibly hours-long) run, and refuses naming both
paths. A regular file or an absent path is written as before; `-` is standard output where
the option allows it. Standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kerasport.errors import KerasportError

STDOUT = "-"


class OutputError(KerasportError):
    """An output path would overwrite an input, a device, a FIFO, a socket or a directory."""


@dataclass(frozen=True)
class Input:
    """A path a command reads: `what` names it in messages ("model", "examples file")."""

    what: str
    path: str | Path


@dataclass(frozen=True)
class Output:
    """A path a command writes, and the option (or role) that names it."""

    option: str
    path: str | Path


def inputs(what: str, paths: Iterable[str | Path] | None) -> list[Input]:
    """`Input`s for each of `paths` (none for None), all called `what`."""
    return [Input(what, path) for path in paths or ()]


def kind_of(path: str | Path) -> str | None:
    """'a directory', 'a FIFO', 'a character device' ... for what `path` resolves to when it
    is not a regular file; None for a regular file or nothing there."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_output_files(
    outputs: Sequence[Output], reads: Sequence[Input], parent_made: bool = False
) -> None:
    """Refuse any of `outputs` (files to be written whole) that would lose data.

    An output may not be, or resolve to (a symlink, a hard link, `..` in the path), one of
    `reads`, lie inside an input directory (a bundle), be a directory, device, FIFO or socket,
    lie in a directory that does not exist (unless `parent_made`: the command creates it),
    or be the same file as another output.
    """
    written: list[Output] = []
    for output in outputs:
        if str(output.path) == STDOUT:
            continue
        _check_file(output, reads, parent_made)
        for earlier in written:
            if _same_path(earlier.path, output.path):
                raise OutputError(
                    f"{output.option} {output.path} is the same file as {earlier.option} "
                    f"{earlier.path}; give each output its own path"
                )
        written.append(output)


def check_output_dir(
    output: Output, reads: Sequence[Input], files: Sequence[str] = (), replaces: bool = False
) -> None:
    """Refuse a directory output that would lose data, and each of the `files` it will hold.

    The directory may not be a file of any kind, nor be or lie inside an input; with
    `replaces` (export replaces a bundle whole) it may not hold an input either.
    """
    path = Path(output.path)
    kind = kind_of(path)
    if path.exists() and kind != "a directory":
        shown = kind or "a regular file"
        raise OutputError(f"{output.option} {path} exists and is not a directory (it is "
                          f"{shown}); refusing to write into it")
    for read in reads:
        if _same_path(read.path, path) or _inside(path, read.path):
            raise OutputError(f"{output.option} {path} is or lies inside the {read.what} "
                              f"{read.path}; writing there would change what it reads")
        if replaces and _inside(read.path, path):
            raise OutputError(f"{output.option} {path} holds the {read.what} {read.path}, "
                              "which replacing the directory would delete")
    check_output_files([Output(f"{output.option} {path}:", path / name) for name in files], reads,
                       parent_made=True)


def _check_file(output: Output, reads: Sequence[Input], parent_made: bool) -> None:
    path = Path(output.path)
    kind = kind_of(path)
    if kind is not None:
        raise OutputError(f"{output.option} {path} is {kind}, not a regular file; refusing to "
                          "write over it (give a file path)")
    resolved = path.resolve()
    if not parent_made and not resolved.parent.is_dir():
        raise OutputError(f"{output.option} {path}: directory {path.parent} does not exist")
    shown = f"{path} (which resolves to {resolved})" if resolved != path.absolute() else path
    for read in reads:
        if _same_path(read.path, path):
            raise OutputError(f"{output.option} {shown} is the {read.what} {read.path}; "
                              "refusing to write over an input")
        if _inside(path, read.path):
            raise OutputError(f"{output.option} {shown} lies inside the {read.what} "
                              f"{read.path}; refusing to write into an input")


def _same_path(a: str | Path, b: str | Path) -> bool:
    """Whether `a` and `b` name one file: the same resolved path, or the same inode."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: str | Path, directory: str | Path) -> bool:
    """Whether `path` resolves to somewhere under the existing directory `directory`."""
    folder = Path(directory)
    if not folder.is_dir():
        return False
    resolved, base = Path(path).resolve(), folder.resolve()
    if base in resolved.parents:
        return True
    probe = Path(path).absolute()  # a hard-linked or bind-mounted directory on the way
    info = os.stat(base)
    for parent in probe.parents:
        try:
            here = os.stat(parent)
        except OSError:
            continue
        if (here.st_dev, here.st_ino) == (info.st_dev, info.st_ino):
            return True
    return False
