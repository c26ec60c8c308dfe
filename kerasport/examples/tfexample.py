"""Just enough of the protobuf wire format to read and write `tf.train.Example` records.

Why hand-written: the only other way to parse these records in Python is TensorFlow (or
its generated protos), which production processes and most tools here do not have. The
subset needed is small and fixed by TensorFlow's `example.proto` / `feature.proto`:

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   // entries: key = 1, value = 2
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                            Int64List int64_list = 3; } }
    Int64List { repeated int64 value = 1 [packed = true]; }

Int64 lists are returned as their raw varint bytes (packed and unpacked encodings both end
up as one run of varints), so that a reader can decode many records in one numpy pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from kerasport.examples.model import ExamplesError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
INT64_LIST, BYTES_LIST, FLOAT_LIST, NO_KIND = "int64_list", "bytes_list", "float_list", "no kind"
_KIND_BY_FIELD = {1: BYTES_LIST, 2: FLOAT_LIST, 3: INT64_LIST}


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ExamplesError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ExamplesError("protobuf varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, start, end) of each field's value in buf[pos:end]."""
    while pos < end:
        tag, pos = _read_varint(buf, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _, after = _read_varint(buf, pos, end)
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos, end)
            after = pos + length
        elif wire == _I64:
            after = pos + 8
        elif wire == _I32:
            after = pos + 4
        else:
            raise ExamplesError(f"unsupported protobuf wire type {wire} (field {field})")
        if after > end or field == 0:
            raise ExamplesError("truncated or malformed protobuf message")
        yield field, wire, pos, after
        pos = after


def _parse_feature(buf: bytes, pos: int, end: int) -> tuple[str, bytes]:
    kind, payload = NO_KIND, b""
    for field, wire, start, stop in _fields(buf, pos, end):
        if field not in _KIND_BY_FIELD or wire != _LEN:
            continue
        kind = _KIND_BY_FIELD[field]  # a oneof: the last one set wins
        chunks: list[bytes] = []
        if kind == INT64_LIST:
            for number, inner_wire, a, b in _fields(buf, start, stop):
                if number == 1 and inner_wire in (_LEN, _VARINT):  # packed, or one value
                    chunks.append(buf[a:b])
        payload = b"".join(chunks)
    return kind, payload


def parse_example(buf: bytes) -> dict[str, tuple[str, bytes]]:
    """Map each feature key of a serialized Example to (kind, raw varints if int64_list)."""
    features: dict[str, tuple[str, bytes]] = {}
    end = len(buf)
    for field, wire, start, stop in _fields(buf, 0, end):
        if field != 1 or wire != _LEN:
            continue
        for entry_field, entry_wire, a, b in _fields(buf, start, stop):
            if entry_field != 1 or entry_wire != _LEN:
                continue
            key, value = "", (NO_KIND, b"")
            for number, inner_wire, c, d in _fields(buf, a, b):
                if number == 1 and inner_wire == _LEN:
                    try:
                        key = buf[c:d].decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise ExamplesError("feature key is not UTF-8") from exc
                elif number == 2 and inner_wire == _LEN:
                    value = _parse_feature(buf, c, d)
            features[key] = value
    return features


def decode_varints(buf: bytes) -> np.ndarray:
    """Decode a run of protobuf varints into int64 (two's complement, as int64 fields are)."""
    data = np.frombuffer(buf, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    if data.max() < 0x80:  # every value is 0..127: the common case for these features
        return data.astype(np.int64)
    ends = np.flatnonzero(data < 0x80)
    if ends.size == 0 or ends[-1] != data.size - 1:
        raise ExamplesError("truncated protobuf varint")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise ExamplesError("protobuf varint longer than 10 bytes")
    within = np.arange(data.size) - np.repeat(starts, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * within).astype(np.uint64)
    return np.add.reduceat(parts, starts).view(np.int64)


def count_varints(buf: bytes) -> int:
    """How many varints a run holds: one per byte without the continuation bit."""
    return int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8) < 0x80))


def encode_varints(values: np.ndarray) -> bytes:
    """Encode int64 values as a packed run of varints (negative values take 10 bytes)."""
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64).reshape(-1)
    if unsigned.size == 0 or unsigned.max() < 0x80:
        return unsigned.astype(np.uint8).tobytes()
    sizes = np.ones(unsigned.size, dtype=np.int64)
    for k in range(1, 10):
        sizes += unsigned >= np.uint64(1 << (7 * k))
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    for k in range(10):
        has = sizes > k
        byte = (unsigned[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (sizes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[offsets[has] + k] = (byte | more).astype(np.uint8)
    return out.tobytes()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | _LEN) + _varint(len(payload)) + payload


def encode_example(int64_features: Mapping[str, np.ndarray]) -> bytes:
    """Serialize an Example whose features are all int64 lists, keys in sorted order."""
    entries = []
    for key in sorted(int64_features):
        packed = encode_varints(np.asarray(int64_features[key]))
        int64_list = _length_delimited(1, packed) if packed else b""
        feature = _length_delimited(3, int64_list)
        entry = _length_delimited(1, key.encode("utf-8")) + _length_delimited(2, feature)
        entries.append(_length_delimited(1, entry))
    return _length_delimited(1, b"".join(entries))
