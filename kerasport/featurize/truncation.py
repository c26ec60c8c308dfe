"""Tell a BAM or CRAM that was cut short by what its index says should follow.

A file cut at a BGZF block (or CRAM container) boundary with its end-of-file marker put
back, as a copy resumed or "repaired" after an interruption leaves it, reads to htslib as a
shorter, valid file: a fetch past the cut seeks beyond the end and finds no reads, without
a word, or sets an error that pysam reports only when the file is closed ("[Errno 0]
Closing failed: Success"). Reads would be lost silently. The index, made from the whole
file, still records where every region's reads are: an offset in it past the end of the
file's data means the file was cut. The reads from the last place the index records inside
the data are then read until they stop, to name the last read the file still holds.

Only what that needs is parsed: the .bai's and .csi's chunk offsets (and the .bai's linear
index), the .crai's rows. An index this cannot read, or cannot find where htslib looks for
it, is no evidence either way, and the check is skipped; htslib's own errors while reading
are still caught (core.py). An index made again from the cut file agrees with it, and then
nothing can tell: a file of reads records no count of them.
"""

from __future__ import annotations

import contextlib
import gzip
import struct
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kerasport.featurize.cram_slices import CramLayoutError, index_path, index_rows

# The empty container htslib ends a CRAM with (3.x, then 2.1), as htslib writes them: no
# slice reaches into it. (A .bai or .csi may point at a BAM's very end, past its EOF block.)
CRAM_EOFS = (
    bytes.fromhex("0f000000ffffffff0fe0454f4600000000010005bdd94f0001000606010001000100ee63014b"),
    bytes.fromhex("0b000000ffffffff0fe0454f460000000001000001000606010001000100"),
)
_BAI_PSEUDO_BIN = 37450  # its second "chunk" is a count of reads, not offsets


@dataclass(frozen=True)
class Truncation:
    """The index records data to `indexed_end` (a byte offset), past the `data_end` bytes
    of data the file holds. `resume` is where reading may restart inside the data: a BAM
    record's virtual offset, or a CRAM slice's (reference id, 1-based start, span)."""

    index: Path
    indexed_end: int
    data_end: int
    resume: int | tuple[int, int, int] | None


def find_truncation(path: Path, cram: bool) -> Truncation | None:
    """The file's truncation, as its index shows it; None when whole, or when no index is
    found or read here (see the module's docstring)."""
    try:
        size = path.stat().st_size
        if not cram:
            return _bai_truncation(path, size)
        with open(path, "rb") as handle:
            handle.seek(max(size - 64, 0))
            tail = handle.read()
        eof = next((len(eof) for eof in CRAM_EOFS if tail.endswith(eof)), 0)
        return _crai_truncation(path, size - eof)
    except (OSError, EOFError, ValueError, struct.error, zlib.error, CramLayoutError):
        return None  # an index this cannot read says nothing; htslib read it to open the file


def _bai_truncation(path: Path, data_end: int) -> Truncation | None:
    """From a .bai or .csi, where htslib looks for one: `reads.bam.bai`, `reads.bam.csi`,
    `reads.bai`, `reads.csi`."""
    stems = [str(path), *([str(path.with_suffix(""))] if path.suffix else [])]
    index = next((Path(stem + suffix) for stem in stems for suffix in (".bai", ".csi")
                  if Path(stem + suffix).is_file()), None)
    if index is None:
        return None
    raw = index.read_bytes()
    ends, starts = _csi_offsets(gzip.decompress(raw)) if index.suffix == ".csi" else (
        _bai_offsets(raw))
    limit = data_end << 16  # virtual offsets: the block's byte offset, then 16 bits within it
    if max(ends, default=0) <= limit:
        return None
    inside = [start for start in starts if start < limit]
    return Truncation(index, max(ends) >> 16, data_end, max(inside, default=None))


def _bai_offsets(data: bytes) -> tuple[list[int], list[int]]:
    """(chunk ends, record starts: chunk starts and the linear index) of a .bai."""
    if data[:4] != b"BAI\1":
        raise ValueError("not a .bai")
    (references,), pos = struct.unpack_from("<i", data, 4), 8
    ends: list[int] = []
    starts: list[int] = []
    for _ in range(references):
        (bins,), pos = struct.unpack_from("<i", data, pos), pos + 4
        for _ in range(bins):
            number, chunks = struct.unpack_from("<Ii", data, pos)
            pos = _chunks(data, pos + 8, chunks, number == _BAI_PSEUDO_BIN, ends, starts)
        (intervals,), pos = struct.unpack_from("<i", data, pos), pos + 4
        starts.extend(struct.unpack_from(f"<{intervals}Q", data, pos))
        pos += 8 * intervals
    return ends, starts


def _csi_offsets(data: bytes) -> tuple[list[int], list[int]]:
    """(chunk ends, record starts: chunk starts and each bin's first offset) of a .csi."""
    if data[:4] != b"CSI\1":
        raise ValueError("not a .csi")
    _, depth, aux = struct.unpack_from("<iii", data, 4)
    pseudo_bin = ((1 << ((depth + 1) * 3)) - 1) // 7 + 1
    pos = 16 + aux
    (references,), pos = struct.unpack_from("<i", data, pos), pos + 4
    ends: list[int] = []
    starts: list[int] = []
    for _ in range(references):
        (bins,), pos = struct.unpack_from("<i", data, pos), pos + 4
        for _ in range(bins):
            number, first, chunks = struct.unpack_from("<IQi", data, pos)
            starts.append(first)
            pos = _chunks(data, pos + 16, chunks, number == pseudo_bin, ends, starts)
    return ends, starts


def _chunks(data: bytes, pos: int, count: int, pseudo: bool, ends: list[int],
            starts: list[int]) -> int:
    """Add a bin's chunks (begin, end virtual offsets) to `starts` and `ends`; return the
    position after them. Of the pseudo-bin, only the first pair is offsets."""
    pairs = struct.unpack_from(f"<{2 * count}Q", data, pos)
    if pseudo:
        pairs = pairs[:2]
    starts.extend(pairs[0::2])
    ends.extend(pairs[1::2])
    return pos + 16 * count


def _crai_truncation(path: Path, data_end: int) -> Truncation | None:
    """From the .crai: a slice ends no sooner than its container's offset plus the slice's
    offset and size (the container's header comes between); one past the data is cut."""
    index = index_path(path)
    if index is None:
        return None
    rows = [(container + offset + size, (reference, start, span))
            for reference, start, span, container, offset, size in index_rows(index)]
    indexed_end = max((end for end, _ in rows), default=0)
    if indexed_end <= data_end:
        return None
    inside = [(end, place) for end, place in rows if end <= data_end and place[0] >= 0]
    return Truncation(index, indexed_end, data_end, max(inside)[1] if inside else None)


def last_read(path: Path, ref: Path, cram: bool, truncation: Truncation) -> str:
    """`contig:pos` of the last read the cut file holds, read from `truncation.resume` on
    (at most a slice, or a 16 kb window's reads, in a .bai); or why there is none."""
    import pysam

    if truncation.resume is None:
        return "none (no read the index records is inside the file)"
    last = "none (no read could be read from it)"
    verbosity = pysam.set_verbosity(0)  # htslib's own complaints about the cut: said by caller
    try:
        with warnings.catch_warnings():  # pysam's about a missing EOF marker, likewise
            warnings.simplefilter("ignore")
            reads = pysam.AlignmentFile(str(path), "rc" if cram else "rb",
                                        ignore_truncation=True,
                                        reference_filename=str(ref) if cram else None)
        with contextlib.suppress(OSError, ValueError):  # where the cut is: expected
            found: Iterable[pysam.AlignedSegment]
            if isinstance(truncation.resume, tuple):
                reference, start, span = truncation.resume
                found = reads.fetch(reads.get_reference_name(reference), start - 1,
                                    start - 1 + span)
            else:
                reads.seek(truncation.resume)
                found = reads
            for read in found:
                if read.reference_name is not None:
                    last = f"{read.reference_name}:{read.reference_start + 1:,}"
        with contextlib.suppress(OSError):  # htslib's error at the cut, again
            reads.close()
    except (OSError, ValueError):  # it cannot even be opened so: no read to name
        pass
    finally:
        pysam.set_verbosity(verbosity)
    return last
