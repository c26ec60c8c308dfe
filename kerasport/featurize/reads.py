"""Open aligned reads (BAM, SAM or CRAM) and refuse a CRAM whose reference is not the FASTA.

The format is taken from the file's first bytes, not its name: CRAM begins with the magic
`CRAM`, and htslib tells BAM from SAM by itself. A CRAM misnamed `.bam` therefore still opens,
and a CRAM is always opened with `--ref` as its reference, so htslib never goes looking for
one elsewhere (the @SQ UR path, REF_PATH, or EBI's reference server over the network).

A CRAM stores reads as differences from its reference: decoded against other bases, its
bases are wrong. Before any read is decoded, the contig's name and @SQ length must match the
FASTA's. Its whole-contig MD5 (@SQ M5) need not: a FASTA masked to N outside the regions
of interest (DeepVariant's test reference) decodes those regions exactly. So when M5 differs,
the slices the region's reads are in decide, as htslib's own per-slice check would (see
cram_slices.py), and a mismatch names the CRAM, the contig, the region and both MD5s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from kerasport.featurize.cram_slices import CramLayoutError, Slice, region_slices
from kerasport.featurize.errors import FeaturizeError
from kerasport.featurize.regions import Region
from kerasport.featurize.truncation import find_truncation, last_read

if TYPE_CHECKING:  # pysam (the featurize extra) is imported where reads are opened
    import pysam

CRAM_MAGIC = b"CRAM"
_MD5_CHUNK = 1 << 22  # bases hashed at a time, so chr1 costs 4 MB of memory, not 250 MB
_ADVICE = "; pass the FASTA the CRAM was made with as --ref"
_INDEX_SUFFIX = {"CRAM": ".crai", "BAM": ".bai/.csi", "SAM": ".csi, of a bgzipped SAM"}


def is_cram(path: str | Path) -> bool:
    """True when the file starts with CRAM's magic bytes, whatever its name says."""
    with open(path, "rb") as handle:
        return handle.read(len(CRAM_MAGIC)) == CRAM_MAGIC


class LastRead:
    """The last read taken from a file of reads: where reading stopped, when it fails."""

    def __init__(self) -> None:
        self._read: pysam.AlignedSegment | None = None

    def follow(self, reads: Iterable[pysam.AlignedSegment]) -> Iterator[pysam.AlignedSegment]:
        """`reads`, each remembered as it is taken (named only if reading then fails)."""
        for read in reads:
            self._read = read
            yield read

    def __str__(self) -> str:
        if self._read is None:
            return "none (no read had been read)"
        return f"{self._read.reference_name}:{self._read.reference_start + 1:,}"


def open_reads(stack: ExitStack, path: str | Path, ref: str | Path,
               last: LastRead) -> pysam.AlignmentFile:
    """Open indexed reads for fetching; a CRAM is decoded against `ref` and nothing else.

    A file its index shows was cut short is refused now, naming the last read it holds
    (truncation.py: htslib would read it as a shorter file). An error htslib reports only
    on closing (after it stopped reading without one) is raised as truncated or damaged,
    naming `last`, unless another error is already on its way.
    """
    import pysam

    cram = is_cram(path)
    try:  # htslib tells BAM, SAM and bgzipped SAM apart from the contents
        reads = pysam.AlignmentFile(
            str(path), "rc" if cram else "r", reference_filename=str(ref) if cram else None)
    except (OSError, ValueError) as exc:  # no EOF marker: maybe cut, and the index can tell
        _check_whole(Path(path), Path(ref), "CRAM" if cram else "BAM", cram)
        raise FeaturizeError(f"cannot open {'CRAM' if cram else 'reads'} {path}: {exc}") from exc
    kind = reads.format
    stack.push(_closer(reads, f"{kind} {path}", last))
    if not reads.has_index():
        raise FeaturizeError(
            f"{kind} {path} has no index ({_INDEX_SUFFIX.get(kind, 'index')}): run "
            f"`samtools index {path}` (or `pysam.index({str(path)!r})` in Python)"
        )
    _check_whole(Path(path), Path(ref), kind, cram)
    return reads


def _check_whole(path: Path, ref: Path, kind: str, cram: bool) -> None:
    truncation = find_truncation(path, cram)
    if truncation is not None:
        raise FeaturizeError(
            f"{kind} {path} is truncated: its index {truncation.index.name} records reads up "
            f"to byte {truncation.indexed_end:,}, but its data end at byte "
            f"{truncation.data_end:,}; the last read it holds is at "
            f"{last_read(path, ref, cram, truncation)}. It was cut short (an interrupted "
            "copy or download?): copy it again"
        )


def _closer(reads: pysam.AlignmentFile, what: str, last: LastRead) -> Callable[..., bool]:
    """An ExitStack exit callback that closes `reads`, raising a close error only when no
    other error is on its way (which it would otherwise replace)."""

    def close(exc_type: type[BaseException] | None, *_: object) -> bool:
        try:
            reads.close()
        except OSError as exc:  # pysam's "[Errno 0] Closing failed: Success"
            if exc_type is None:
                raise FeaturizeError(
                    f"{what} is truncated or damaged: htslib stopped reading it with an error "
                    f"it reported only on closing ({exc}), after the read at {last}; reads "
                    "past there may be missing"
                ) from exc
        return False

    return close


def contig_md5(fasta: pysam.FastaFile, contig: str, start: int = 0,
               end: int | None = None) -> str:
    """MD5 of the uppercased bases [start, end) of a contig: SAM's M5 for the whole contig,
    and a CRAM slice's reference MD5 for the span its reads use."""
    digest = hashlib.md5(usedforsecurity=False)
    length = fasta.get_reference_length(contig)
    end = length if end is None else min(end, length)
    for first in range(max(start, 0), end, _MD5_CHUNK):
        chunk = fasta.fetch(contig, first, min(first + _MD5_CHUNK, end))
        digest.update(chunk.upper().encode("ascii"))
    return digest.hexdigest()


def check_cram_reference(
    reads: pysam.AlignmentFile,
    reads_contig: str,
    cram: str | Path,
    fasta: pysam.FastaFile,
    ref_contig: str,
    ref: str | Path,
    region: Region,
    pad: int = 0,
) -> None:
    """Refuse `fasta` unless it holds the bases the CRAM's reads in `region` were encoded on.

    Name and @SQ LN must match: either differing means another assembly. A differing (or
    missing) M5 only says some base of the contig may differ, perhaps far from `region`, so
    the slices holding the reads of `region` widened by `pad` (what the tiles fetch) decide:
    each slice's MD5 is compared with the FASTA's bases over its span, exactly as htslib
    compares them when it decodes the slice (it would stop there with a bare "truncated
    file"). A slice htslib would not check (no MD5) is refused only when the M5 is known to
    differ; without an M5 nothing says it should be. Only the contig being featurized is
    checked; its M5 costs one pass over it (about 0.2 s for chr20).
    """
    where = f"CRAM {cram} was not written against reference {ref}: contig {reads_contig}"
    if reads_contig != ref_contig:  # htslib finds the reference sequence by the CRAM's name
        raise FeaturizeError(f"{where} is called {ref_contig} in the FASTA{_ADVICE}")
    entry = next(sq for sq in reads.header.to_dict()["SQ"] if sq["SN"] == reads_contig)
    length = fasta.get_reference_length(ref_contig)
    if entry["LN"] != length:
        raise FeaturizeError(
            f"{where} is {entry['LN']:,} bp in the CRAM's header (@SQ LN) but {ref_contig} is "
            f"{length:,} bp in the FASTA{_ADVICE}"
        )
    expected = str(entry.get("M5", "")).lower()
    actual = contig_md5(fasta, ref_contig) if expected else ""
    if expected == actual != "":
        return  # the same contig: every slice's MD5 matches too
    written = f" (UR {entry['UR']})" if entry.get("UR") else ""  # the CRAM's own reference
    whole = (f"@SQ M5 {expected} in the CRAM's header{written} but M5 {actual} in the FASTA"
             if expected else f"no @SQ M5 in the CRAM's header{written}")
    start, end = max(region.start - pad, 0), min(region.end + pad, length)
    try:
        slices = region_slices(Path(cram), reads.get_tid(reads_contig), start, end)
    except CramLayoutError as exc:
        if expected:  # the contig differs somewhere, and nothing shows it is not here
            raise FeaturizeError(
                f"{where} has {whole} (same length, different bases), and the CRAM's slices "
                f"for {region} could not be read to check the bases it needs ({exc})"
                f"{_ADVICE}") from exc
        return  # nothing to compare with: htslib's own slice checks still run
    for piece in slices:
        _check_slice(piece, where, whole, fasta, ref_contig, region, strict=bool(expected))


def _check_slice(piece: Slice, where: str, whole: str, fasta: pysam.FastaFile, contig: str,
                 region: Region, *, strict: bool) -> None:
    """Refuse a slice whose MD5 is not the FASTA's over its span, or, when the contig's M5
    is known to differ (`strict`), a slice htslib would decode without checking."""
    span = f"{contig}:{piece.start:,}-{piece.end:,}"
    if piece.embedded:  # decoded against the bases stored with it, not the FASTA
        return
    if not piece.md5 or piece.multi_ref:
        if strict:
            kind = "a multi-reference slice" if piece.multi_ref else "its MD5 is zeros"
            raise FeaturizeError(
                f"{where} has {whole} (same length, different bases), and the reads at {span} "
                f"that {region} needs are in a CRAM slice with no reference MD5 ({kind}), "
                f"which htslib would decode against the FASTA unchecked{_ADVICE}")
        return
    found = contig_md5(fasta, contig, piece.start - 1, piece.end)
    if found != piece.md5:
        raise FeaturizeError(
            f"{where} differs in the bases that {region} needs: the reads at {span} (one "
            f"CRAM slice) were encoded against bases with MD5 {piece.md5}, but those bases "
            f"in the FASTA have MD5 {found}; for the whole contig, {whole}{_ADVICE}")
