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

import math
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kerasport.examples.model import Examples, ExamplesError, as_int64_features

FEATURES_KEY = "features"
UNNAMED_KEY = "arr_0"  # np.savez's name for its first positional array
LABELS_KEY = "labels"
NAMES_KEY = "feature_names"
POSITIONS_KEY = "positions"

# A fixed timestamp keeps `.npz` files byte-identical from run to run (np.savez stamps now).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


_NPY_MAGIC = b"\x93NUMPY"
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _check_npy(path: Path) -> None:
    """Refuse, naming which, a `.npy` that is empty, not a `.npy` at all, holds Python
    objects, or is shorter than its header says, before NumPy's loader sees it (whose
    messages for these are a traceback, "pickled data" or "mmap length")."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
            if not head:
                raise ExamplesError(f"{path}: empty file (0 bytes); expected a .npy array")
            if head != _NPY_MAGIC:
                kind = " (it is a zip archive: name it .npz)" if head.startswith(b"PK") else ""
                raise ExamplesError(f"{path}: not a .npy file: it lacks NumPy's header{kind}")
            handle.seek(0)
            reader = _HEADER_READERS.get(np.lib.format.read_magic(handle))
            if reader is None:  # a later format version: NumPy's loader checks it
                return
            shape, _, dtype = reader(handle)
            available = os.fstat(handle.fileno()).st_size - handle.tell()
    except ExamplesError:
        raise
    except (ValueError, EOFError) as exc:
        raise ExamplesError(f"{path}: not a .npy file: corrupt header ({exc})") from exc
    except OSError as exc:
        raise ExamplesError(f"{path}: unreadable .npy file ({exc})") from exc
    if dtype.hasobject:
        raise ExamplesError(
            f"{path}: holds Python objects (dtype {dtype}), not numbers; examples files are "
            "data and are never unpickled"
        )
    expected = math.prod(shape) * dtype.itemsize
    if available < expected:
        raise ExamplesError(
            f"{path}: truncated: its header describes a {shape} {dtype} table "
            f"({expected} bytes of data) but the file holds {available}"
        )


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    """The array a `.npy` file stores, as stored (any shape and numeric dtype), its header
    and size checked first; `mmap` maps it rather than reading it."""
    _check_npy(path)
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
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

    Only these members are decompressed: an archive may carry other, larger arrays.
    """
    try:
        if not zipfile.is_zipfile(path):
            raise ExamplesError(
                f"{path}: not a .npz archive: not a complete zip file (truncated, or another "
                "kind of file)"
            )
        with np.load(path, allow_pickle=False) as npz:
            members = list(npz.files)
            features = npz[_features_key(path, members)]
            return features, {name: npz[name] for name in extras if name in members}
    except ExamplesError:
        raise
    except (ValueError, EOFError) as exc:
        raise ExamplesError(f"{path}: not a numeric .npz archive ({exc})") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExamplesError(f"{path}: unreadable .npz file ({exc})") from exc


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
