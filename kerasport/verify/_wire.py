"""Length-prefixed frames of (JSON header, optional array) over a pipe.

The reference runs in a child process when its Keras backend must be chosen before Keras is
imported (JAX). The parent streams example chunks to it and reads probabilities back; this
is the whole protocol, kept apart so both sides import only numpy and the standard library.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

import numpy as np

_LENGTH = struct.Struct("<Q")


def write_frame(stream: IO[bytes], header: dict[str, Any], array: np.ndarray | None = None) -> None:
    """Write a header and, when given, a C-contiguous array after it; then flush."""
    header = dict(header)
    data = b""
    if array is not None:
        array = np.ascontiguousarray(array)
        header["dtype"], header["shape"] = array.dtype.str, list(array.shape)
        data = array.tobytes()
    encoded = json.dumps(header).encode()
    stream.write(_LENGTH.pack(len(encoded)) + encoded)
    stream.write(_LENGTH.pack(len(data)))
    if data:
        stream.write(data)
    stream.flush()


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        block = stream.read(remaining)
        if not block:
            return None
        chunks.append(block)
        remaining -= len(block)
    return b"".join(chunks)


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], np.ndarray | None] | None:
    """The next (header, array or None), or None at a clean or broken end of stream."""
    raw = _read_exact(stream, _LENGTH.size)
    if raw is None:
        return None
    encoded = _read_exact(stream, _LENGTH.unpack(raw)[0])
    raw = _read_exact(stream, _LENGTH.size) if encoded is not None else None
    if encoded is None or raw is None:
        return None
    header = json.loads(encoded)
    size = _LENGTH.unpack(raw)[0]
    data = _read_exact(stream, size) if size else b""
    if data is None:
        return None
    if "dtype" not in header:
        return header, None
    array = np.frombuffer(data, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
    return header, array
