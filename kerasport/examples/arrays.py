"""NumPy formats: `.npy` (one features table) and `.npz` (features plus labels and names).

Pickled object arrays are refused (allow_pickle=False): an examples file is data, and
loading it must never run code. A file's first bytes are checked before NumPy sees it:
`np.load` picks its reader from the content, so random bytes would otherwise be reported
as "pickled data" and a `.npz` named `.npy` read as an archive.

An archive's features are its `features` array, or `arr_0` when that is its only array
(what `np.savez(path, table)` writes); any other name is refused with the names found,
so an unrelated array is never verified as if it were the examples.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from kerasport.examples.model import Examples, ExamplesError, as_int64_features
from kerasport.ziplimits import inflation_problem

FEATURES_KEY = "features"
UNNAMED_KEY = "arr_0"  # np.savez's name for its first positional array
LABELS_KEY = "labels"
NAMES_KEY = "feature_names"
POSITIONS_KEY = "positions"

# A fixed timestamp keeps `.npz` files byte-identical from run to run (np.savez stamps now).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


_NPY_MAGIC = b"\x93NUMPY"
# The .npy format versions read here (np.save writes 1.0, and 2.0 for a header over 64 KiB):
# the size of each one's header-length field, and NumPy's parser of its header.
_VERSIONS = {
    b"\x01\x00": (struct.Struct("<H"), np.lib.format.read_array_header_1_0),
    b"\x02\x00": (struct.Struct("<I"), np.lib.format.read_array_header_2_0),
}


def _read_header(handle: IO[bytes], size: int, where: str) -> tuple[np.dtype, int]:
    """The dtype of the `.npy` array that `handle`, a stream of `size` bytes, starts with, and
    the bytes its data takes; refusing, naming which, an empty stream, one that is not a
    `.npy`, or a header or data longer than the bytes that follow it.

    NumPy's reader allocates what a header claims before it reads any data, so a forged
    header could otherwise ask for terabytes. An object array's data is a pickle, whose size
    is not its shape's: the caller refuses it.
    """
    head = handle.read(len(_NPY_MAGIC))
    if not head:
        raise ExamplesError(f"{where}: empty file (0 bytes); expected a .npy array")
    if head != _NPY_MAGIC:
        kind = " (it is a zip archive: name it .npz)" if head.startswith(b"PK") else ""
        raise ExamplesError(f"{where}: not a .npy file: it lacks NumPy's header{kind}")
    version = handle.read(2)
    if version not in _VERSIONS:
        raise ExamplesError(
            f"{where}: not a .npy file this reader reads: format version "
            f"{'.'.join(map(str, version)) or 'missing'} (np.save writes 1.0 and 2.0)"
        )
    length_field, parse = _VERSIONS[version]
    field = handle.read(length_field.size)
    if len(field) < length_field.size:
        raise ExamplesError(f"{where}: not a .npy file: truncated header")
    (length,) = length_field.unpack(field)
    if handle.tell() + length > size:
        raise ExamplesError(
            f"{where}: not a .npy file: truncated header (it claims {length:,} bytes)"
        )
    try:
        shape, _, dtype = parse(io.BytesIO(field + handle.read(length)))
    except ValueError as exc:
        raise ExamplesError(f"{where}: not a .npy file: corrupt header ({exc})") from exc
    nbytes = math.prod(shape) * dtype.itemsize
    available = size - handle.tell()
    if not dtype.hasobject and available < nbytes:
        raise ExamplesError(
            f"{where}: truncated: its header describes a {shape} {dtype} table "
            f"({nbytes:,} bytes of data) but only {available:,} bytes follow it"
        )
    return dtype, nbytes


def _out_of_memory(where: str, nbytes: int) -> ExamplesError:
    return ExamplesError(f"{where}: out of memory: its array needs {nbytes:,} bytes")


def _check_npy(path: Path) -> int:
    """Refuse, naming which, a `.npy` that `_read_header` refuses or that holds Python
    objects, before NumPy's loader sees it (whose messages for these are a traceback,
    "pickled data" or "mmap length"); return the bytes its data takes."""
    try:
        with open(path, "rb") as handle:
            dtype, nbytes = _read_header(handle, os.fstat(handle.fileno()).st_size, str(path))
    except OSError as exc:
        raise ExamplesError(f"{path}: unreadable .npy file ({exc})") from exc
    if dtype.hasobject:
        raise ExamplesError(
            f"{path}: holds Python objects (dtype {dtype}), not numbers; examples files are "
            "data and are never unpickled"
        )
    return nbytes


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    """The array a `.npy` file stores, as stored (any shape and numeric dtype), its header
    and size checked first; `mmap` maps it rather than reading it."""
    nbytes = _check_npy(path)
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except MemoryError:
        raise _out_of_memory(str(path), nbytes) from None
    except (ValueError, EOFError) as exc:
        raise ExamplesError(f"{path}: not a numeric .npy array ({exc})") from exc
    except OSError as exc:
        raise ExamplesError(f"{path}: unreadable .npy file ({exc})") from exc
    return array


def read_npy(path: Path) -> Examples:
    """Read a whole `.npy` table; only features, as the format holds one array."""
    return Examples(as_int64_features(load_npy(path, mmap=False), str(path)))


def iter_npy(path: Path, rows: int) -> Iterator[np.ndarray]:
    """Stream a `.npy` table through a memory map, so memory stays at one chunk."""
    array = load_npy(path, mmap=True)
    if array.ndim != 2:
        raise ExamplesError(f"{path}: expected a 2-D table (rows, features); got {array.shape}")
    for start in range(0, array.shape[0], rows):
        yield as_int64_features(array[start : start + rows], f"{path} rows {start}+")


def load_npz(
    path: Path, extras: tuple[str, ...] = ()
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The features array (see the module's docstring) and those of `extras` present.

    Only these members are inflated (an archive may carry other, larger arrays), and only
    once their declared sizes pass `inflation_problem` and their headers `_read_header`, so
    that neither a zip bomb nor a forged header is allocated for.
    """
    try:
        if not zipfile.is_zipfile(path):
            raise ExamplesError(
                f"{path}: not a .npz archive: not a complete zip file (truncated, or another "
                "kind of file)"
            )
        with zipfile.ZipFile(path) as archive:
            # np.load's names: a member's file name less ".npy"; of two alike, the last.
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            key = _features_key(path, list(members))
            wanted = [key, *(name for name in extras if name in members)]
            problem = inflation_problem([members[name] for name in wanted], path.stat().st_size)
            if problem:
                raise ExamplesError(
                    f"{path}: {problem} (save a real table uncompressed: np.savez, or a "
                    ".npy)"
                )
            arrays = {name: _read_member(archive, members[name], path) for name in wanted}
    except ExamplesError:
        raise
    except (ValueError, EOFError) as exc:
        raise ExamplesError(f"{path}: not a numeric .npz archive ({exc})") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExamplesError(f"{path}: unreadable .npz file ({exc})") from exc
    return arrays.pop(key), arrays


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    """One member's array, its header checked against the member's declared size first."""
    where = f"{path}: member {info.filename!r}"
    with archive.open(info) as member:
        _, nbytes = _read_header(member, info.file_size, where)
        member.seek(0)
        try:
            return np.lib.format.read_array(member, allow_pickle=False)
        except MemoryError:
            raise _out_of_memory(where, nbytes) from None


def _features_key(path: Path, members: list[str]) -> str:
    if FEATURES_KEY in members:
        return FEATURES_KEY
    if members == [UNNAMED_KEY]:
        return UNNAMED_KEY
    raise ExamplesError(
        f"{path}: no {FEATURES_KEY!r} array; it holds {sorted(members) or 'no arrays'}. "
        f"An examples .npz needs the table as {FEATURES_KEY!r} "
        f"(np.savez(path, {FEATURES_KEY}=table)), or as the archive's only array"
        f" (np.savez(path, table) names it {UNNAMED_KEY!r})"
    )


def read_npz(path: Path) -> Examples:
    """Read `features` (or a lone `arr_0`), and `labels`, `feature_names`, `positions`."""
    raw, arrays = load_npz(path, (LABELS_KEY, NAMES_KEY, POSITIONS_KEY))
    features = as_int64_features(raw, f"{path}: features")
    names = arrays.get(NAMES_KEY)
    try:
        return Examples(
            features,
            labels=arrays.get(LABELS_KEY),
            feature_names=None if names is None else [str(n) for n in names.reshape(-1)],
            positions=arrays.get(POSITIONS_KEY),
        )
    except ExamplesError as exc:
        raise ExamplesError(f"{path}: {exc}") from exc


def iter_npz(path: Path, rows: int) -> Iterator[np.ndarray]:
    """Chunks of a `.npz` features array; the array itself is loaded whole (zip members
    cannot be memory-mapped), which callers streaming millions of rows should prefer .npy for.
    """
    features = as_int64_features(load_npz(path)[0], f"{path}: features")
    for start in range(0, features.shape[0], rows):
        yield features[start : start + rows]


def write_npy(examples: Examples, path: Path) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would add .npy to a temporary name
        np.save(handle, examples.features, allow_pickle=False)


def write_npz(examples: Examples, path: Path) -> None:
    """Write every field the examples carry, byte-identical for identical examples."""
    arrays: dict[str, np.ndarray] = {FEATURES_KEY: examples.features}
    if examples.labels is not None:
        arrays[LABELS_KEY] = examples.labels
    if examples.feature_names is not None:
        arrays[NAMES_KEY] = np.array(examples.feature_names, dtype=np.str_)
    if examples.positions is not None:
        arrays[POSITIONS_KEY] = examples.positions
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array),
                                          allow_pickle=False)
