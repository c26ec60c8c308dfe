"""The reference MD5 each CRAM slice carries, read from the .crai index and the slice headers.

A CRAM is cut into slices, and each slice records the MD5 of the reference span its reads
were encoded against. htslib checks it before decoding the slice, so a FASTA may differ from
the CRAM's reference anywhere except under the reads being decoded (DeepVariant's test FASTA
is hg19's chr20 masked to N outside two windows). But htslib skips the check, and decodes
against whatever FASTA it was given, when a slice has no MD5 to check: a multi-reference slice
(reference id -2, which htslib writes when a container holds few reads per contig) or one whose
MD5 is zeros. Reading the headers here lets featurize catch those slices and, for a mismatch,
name the slice and both MD5s instead of htslib's bare "truncated file".

Only what that needs is parsed, CRAM 2.x and 3.x as the spec lays them out (and as htslib
reads them): the .crai's rows (reference id, start, span, container offset, slice offset from
the container's data, slice size), the container header (to find where its data starts) and
the slice header block (raw, never compressed). Anything else, CRAM 4 included, is a
`CramLayoutError`, and the caller decides what that means.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_FILE_DEFINITION = 26  # "CRAM", major, minor, 20-byte file id
_RAW, _MAPPED_SLICE = 0, 2  # block compression method and content type of a slice header
_MD5_BYTES = 16
_NO_MD5 = bytes(_MD5_BYTES)
_MULTI_REF = -2
_MAX_SLICE_HEADER = 1 << 20  # read no more for a damaged size: a real one is a few hundred bytes


class CramLayoutError(Exception):
    """The .crai or a slice header is missing, damaged, or not CRAM 2.x or 3.x."""


@dataclass(frozen=True)
class Slice:
    """One slice's claim about its reference: the span its reads use and that span's MD5."""

    start: int  # 1-based, as in the CRAM
    span: int
    md5: str  # hex; "" when the slice carries none (htslib then checks nothing)
    multi_ref: bool  # reads of several contigs: htslib never checks such a slice
    embedded: bool  # its reference bases are stored in the CRAM: the FASTA is not used

    @property
    def end(self) -> int:
        """1-based inclusive end of the span."""
        return self.start + self.span - 1


class _Cursor:
    """CRAM's variable-length integers (ITF8, LTF8) read from a buffer, bounds checked."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise CramLayoutError("a header ends early")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def itf8(self) -> int:
        """A signed 32-bit ITF8: the first byte's leading ones say how many bytes follow."""
        first = self.take(1)[0]
        extra = next((n for n in range(4) if not first & (0x80 >> n)), 4)
        rest = self.take(extra)
        if extra == 4:  # 4 + 8 + 8 + 8 + 4 bits
            value = ((first & 0x0F) << 28 | rest[0] << 20 | rest[1] << 12 | rest[2] << 4
                     | rest[3] & 0x0F)
        else:
            value = first & (0xFF >> (extra + 1))
            for byte in rest:
                value = value << 8 | byte
        return value - (1 << 32) if value >= 1 << 31 else value

    def ltf8(self) -> int:
        """A 64-bit LTF8, read only to step over it (record counters, base counts)."""
        first = self.take(1)[0]
        extra = next((n for n in range(8) if not first & (0x80 >> n)), 8)
        value = first & (0xFF >> (extra + 1)) if extra < 8 else 0
        for byte in self.take(extra):
            value = value << 8 | byte
        return value

    def counter(self, major: int) -> int:
        """A record counter: ITF8 in CRAM 2, LTF8 from CRAM 3 on."""
        return self.itf8() if major == 2 else self.ltf8()


def index_path(cram: Path) -> Path | None:
    """The .crai htslib would use: `reads.cram.crai`, then `reads.crai`."""
    for candidate in (Path(f"{cram}.crai"), cram.with_suffix(".crai") if cram.suffix else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def index_rows(index: Path) -> list[tuple[int, ...]]:
    """The .crai's rows as six ints each; the file is gzipped text (plain text is read too)."""
    raw = index.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("ascii")
    rows = [tuple(int(field) for field in line.split()) for line in text.splitlines() if line]
    if any(len(row) != 6 for row in rows):
        raise CramLayoutError(f"{index} is not a .crai (rows of six numbers)")
    return rows


def _read(handle: BinaryIO, offset: int, count: int) -> bytes:
    handle.seek(offset)
    return handle.read(count)


def _container_data_start(handle: BinaryIO, offset: int, major: int) -> int:
    """Where a container's blocks begin: past its header, whose length varies."""
    for size in (1 << 10, 1 << 20):  # the landmark list rarely needs more than the first
        cursor = _Cursor(_read(handle, offset, size))
        try:
            cursor.take(4)  # length of the data
            for _ in range(4):  # reference id, start, span, number of records
                cursor.itf8()
            cursor.counter(major)  # record counter
            cursor.ltf8()  # bases
            cursor.itf8()  # number of blocks
            for _ in range(cursor.itf8()):  # landmarks
                cursor.itf8()
            if major >= 3:
                cursor.take(4)  # CRC32
        except CramLayoutError:
            continue
        return offset + cursor.pos
    raise CramLayoutError(f"the container header at byte {offset:,} ends early")


def _slice_at(handle: BinaryIO, offset: int, major: int, row_start: int,
              row_span: int) -> Slice:
    """Parse the slice header block at `offset` (a block header, then the slice header).

    A multi-reference slice's header has no span (0, 0); the .crai row's, for the contig
    asked about, is used instead.
    """
    block = _Cursor(_read(handle, offset, 32))
    method, content_type = block.take(2)
    block.itf8()  # content id
    size = block.itf8()
    if method != _RAW or content_type != _MAPPED_SLICE or size < 0:
        raise CramLayoutError(f"no raw slice header at byte {offset:,}")
    block.itf8()  # raw size (equal: raw)
    header = _Cursor(_read(handle, offset + block.pos, min(size, _MAX_SLICE_HEADER)))
    reference_id, start, span = header.itf8(), header.itf8(), header.itf8()
    header.itf8()  # number of records
    header.counter(major)  # record counter
    header.itf8()  # number of blocks
    for _ in range(header.itf8()):  # content ids of its blocks
        header.itf8()
    embedded = header.itf8() >= 0  # id of an embedded reference block, -1 for none
    md5 = header.take(_MD5_BYTES)
    multi_ref = reference_id == _MULTI_REF
    if multi_ref:
        start, span = row_start, row_span
    return Slice(start, span, "" if md5 == _NO_MD5 or multi_ref else md5.hex(), multi_ref,
                 embedded)


def region_slices(cram: Path, reference_id: int, start: int, end: int) -> list[Slice]:
    """The slices whose reads on `reference_id` overlap [start, end) (0-based), in file order.

    The .crai has a row per (slice, contig), so a multi-reference slice is found by each
    contig it holds; each slice is returned once.
    """
    try:
        index = index_path(cram)
        if index is None:
            raise CramLayoutError(f"no .crai beside {cram}")
        with open(cram, "rb") as handle:
            definition = handle.read(_FILE_DEFINITION)
            if len(definition) < _FILE_DEFINITION or definition[4] not in (2, 3):
                version = f"{definition[4]}.{definition[5]}" if len(definition) > 5 else "?"
                raise CramLayoutError(
                    f"CRAM version {version}: only 2.x and 3.x slice headers are read")
            major = definition[4]
            places = {  # (container, slice offset) -> the row's start and span
                (container, offset): (first, span)
                for ref, first, span, container, offset, _ in index_rows(index)
                if ref == reference_id and first - 1 < end and first - 1 + span > start
            }
            data_start = {container: _container_data_start(handle, container, major)
                          for container in {container for container, _ in places}}
            return [_slice_at(handle, data_start[container] + offset, major, *row)
                    for (container, offset), row in places.items()]
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # unreadable, or not gzip/ints
        raise CramLayoutError(str(exc)) from exc
