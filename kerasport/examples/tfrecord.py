"""TFRecord files of DeepVariant small-model examples, read and written without TensorFlow.

Framing of each record (TensorFlow's `record_writer.cc`):

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

all little-endian; `.gz` files are the same stream gzip-compressed (TF's "GZIP" option).
Each record is a tf.train.Example with DeepVariant's keys: `features/encoded` (int64 list,
the model's input row) and, for training data, `label/encoded` (one-hot REF/HET/HOM_ALT).

Both CRCs are checked on every record: a flipped bit in an example would otherwise reach
the verifier as a plausible-looking integer. CRC32C comes from `google-crc32c` (C, with a
pure-Python fallback), imported only when a TFRecord is actually touched.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from kerasport.examples.model import (
    NUM_CLASSES,
    Examples,
    ExamplesError,
    class_ids_to_one_hot,
    one_hot_to_class_ids,
)
from kerasport.examples.tfexample import (
    INT64_LIST,
    count_varints,
    decode_varints,
    encode_example,
    parse_example,
)

FEATURES_KEY = "features/encoded"
LABEL_KEY = "label/encoded"

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
# A .gz stream's records cannot be measured against the file, so each is capped: a
# small-model example is under 1 KiB, and DeepVariant's pileup-image examples a few hundred
# KiB. 64 MiB leaves a hundred times beyond those, and is all a forged length can allocate.
_GZIP_RECORD_LIMIT = 64 << 20


def _crc32c() -> Any:
    try:
        import google_crc32c
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExamplesError(
            "reading or writing TFRecords needs the 'google-crc32c' package "
            "(pip install google-crc32c)"
        ) from exc
    return google_crc32c


def masked_crc(data: bytes, crc32c: Any = None) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits, then add a constant."""
    crc = int((crc32c or _crc32c()).value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@contextmanager
def _opened(path: Path, mode: str, compressed: bool) -> Iterator[IO[bytes]]:
    with open(path, mode) as raw:
        if not compressed:
            yield raw
            return
        # mtime=0 and no file name keep the gzip header, and so the file, reproducible.
        with gzip.GzipFile(filename="", mode=mode, fileobj=raw, mtime=0) as unzipped:
            yield cast(IO[bytes], unzipped)


def iter_records(path: Path, compressed: bool) -> Iterator[bytes]:
    """Yield the data of each record, checking both CRCs and refusing truncation.

    A record's length is checked before its data is read, as reading allocates it: in a
    plain file against the bytes left, in a `.gz` against _GZIP_RECORD_LIMIT.
    """
    crc32c = _crc32c()
    with _opened(path, "rb", compressed) as handle:
        size = None if compressed else os.fstat(handle.fileno()).st_size
        index = offset = 0
        while True:
            try:
                header = handle.read(12)
            except (OSError, EOFError) as exc:
                raise ExamplesError(f"{path}: record {index}: unreadable ({exc})") from exc
            if not header:
                return
            where = f"{path}: record {index}"
            if len(header) < 12:
                raise ExamplesError(f"{where}: truncated record header")
            (length,) = _LENGTH.unpack_from(header)
            if masked_crc(header[:8], crc32c) != _CRC.unpack_from(header, 8)[0]:
                raise ExamplesError(f"{where}: bad TFRecord CRC of the length field "
                                    "(corrupt file, or not a TFRecord)")
            _check_length(where, offset, length, size)
            try:
                data = handle.read(length)
                footer = handle.read(4)
            except (OSError, EOFError) as exc:
                raise ExamplesError(f"{where}: unreadable ({exc})") from exc
            except MemoryError:
                raise ExamplesError(
                    f"{where} (byte {offset}): out of memory reading its {length:,} bytes"
                ) from None
            if len(data) < length or len(footer) < 4:
                raise ExamplesError(f"{where}: truncated record ({length} bytes expected)")
            if masked_crc(data, crc32c) != _CRC.unpack(footer)[0]:
                raise ExamplesError(f"{where}: bad TFRecord CRC of the data (corrupt record)")
            yield data
            index += 1
            offset += 16 + length


def _check_length(where: str, offset: int, length: int, size: int | None) -> None:
    """Refuse a record, at byte `offset` of a file of `size` bytes (None: a `.gz` stream),
    whose length field claims more than the file holds, or over _GZIP_RECORD_LIMIT."""
    if size is None:
        if length > _GZIP_RECORD_LIMIT:
            raise ExamplesError(
                f"{where} (byte {offset} of the uncompressed stream): its length field says "
                f"{length:,} bytes, over the {_GZIP_RECORD_LIMIT >> 20} MiB a record of a .gz "
                "TFRecord may take (corrupt file, or not DeepVariant examples)"
            )
    elif length + 4 > size - offset - 12:
        raise ExamplesError(
            f"{where}: truncated record at byte {offset}: its length field says {length:,} "
            f"bytes of data and a 4-byte CRC, but {size - offset - 12:,} bytes follow its header"
        )


def _int64_payload(features: dict[str, tuple[str, bytes]], key: str, where: str) -> bytes | None:
    if key not in features:
        return None
    kind, payload = features[key]
    if kind != INT64_LIST:
        raise ExamplesError(f"{where}: {key!r} is a {kind}, expected an int64_list")
    return payload


def _decode_batch(payloads: list[bytes], width: int | None, what: str,
                  first_index: int, path: Path) -> np.ndarray:
    """Decode many records' varint runs in one numpy pass into a (records, width) table."""
    counts = [count_varints(p) for p in payloads]
    expected = width if width is not None else counts[0]
    for offset, count in enumerate(counts):
        if count != expected:
            raise ExamplesError(
                f"{path}: record {first_index + offset}: {what} has {count} values; "
                f"earlier records have {expected} (ragged rows)"
            )
    try:
        values = decode_varints(b"".join(payloads))
    except ExamplesError as exc:
        raise ExamplesError(f"{path}: records {first_index}+: {what}: {exc}") from exc
    return values.reshape(len(payloads), expected)


def iter_tfrecord(path: Path, compressed: bool,
                  rows: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield (features, class ids or None) chunks of at most `rows` records each."""
    width: int | None = None
    labelled: bool | None = None
    features: list[bytes] = []
    labels: list[bytes] = []
    first = 0

    def flush() -> tuple[np.ndarray, np.ndarray | None]:
        nonlocal width
        table = _decode_batch(features, width, FEATURES_KEY, first, path)
        width = table.shape[1]
        ids = None
        if labelled:
            one_hot = _decode_batch(labels, NUM_CLASSES, LABEL_KEY, first, path)
            try:
                ids = one_hot_to_class_ids(one_hot, f"{path}: {LABEL_KEY}")
            except ExamplesError as exc:
                raise ExamplesError(f"{exc} (row counted from record {first})") from exc
        return table, ids

    for index, record in enumerate(iter_records(path, compressed)):
        where = f"{path}: record {index}"
        try:
            parsed = parse_example(record)
        except ExamplesError as exc:
            raise ExamplesError(f"{where}: not a tf.train.Example ({exc})") from exc
        payload = _int64_payload(parsed, FEATURES_KEY, where)
        if payload is None:
            raise ExamplesError(
                f"{where}: no {FEATURES_KEY!r} key (keys: {sorted(parsed) or 'none'})"
            )
        label = _int64_payload(parsed, LABEL_KEY, where)
        if labelled is None:
            labelled = label is not None
        elif labelled != (label is not None):
            raise ExamplesError(f"{where}: {LABEL_KEY!r} is present in some records only")
        features.append(payload)
        if label is not None:
            labels.append(label)
        if len(features) == rows:
            yield flush()
            first = index + 1
            features, labels = [], []
    if features:
        yield flush()


def read_tfrecord(path: Path, compressed: bool) -> Examples:
    tables: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for table, labels in iter_tfrecord(path, compressed, rows=65536):
        tables.append(table)
        if labels is not None:
            ids.append(labels)
    if not tables:
        return Examples(np.zeros((0, 0), dtype=np.int64))
    return Examples(np.concatenate(tables), labels=np.concatenate(ids) if ids else None)


def write_tfrecord(examples: Examples, path: Path, compressed: bool) -> None:
    """Write DeepVariant training records: `features/encoded`, plus `label/encoded` one-hot."""
    crc32c = _crc32c()
    one_hot = None if examples.labels is None else class_ids_to_one_hot(examples.labels)
    with _opened(path, "wb", compressed) as handle:
        for row in range(len(examples)):
            fields = {FEATURES_KEY: examples.features[row]}
            if one_hot is not None:
                fields[LABEL_KEY] = one_hot[row]
            data = encode_example(fields)
            length = _LENGTH.pack(len(data))
            handle.write(length + _CRC.pack(masked_crc(length, crc32c)))
            handle.write(data + _CRC.pack(masked_crc(data, crc32c)))
