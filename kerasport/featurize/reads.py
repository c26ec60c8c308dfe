"""Open aligned reads (BAM, SAM or CRAM) and refuse a CRAM whose reference is not the FASTA.

The format is taken from the file's first bytes, not its name: CRAM begins with the magic
`CRAM`, and htslib tells BAM from SAM by itself. A CRAM misnamed `.bam` therefore still opens,
and a CRAM is always opened with `--ref` as its reference, so htslib never goes looking for
one elsewhere (the @SQ UR path, REF_PATH, or EBI's reference server over the network).

A CRAM stores reads as differences from its reference. Decoded against another FASTA, its
bases are wrong, or htslib's per-slice MD5 check stops the read with a bare "truncated file".
So before any read is decoded, the header's @SQ length and MD5 (M5) of the contig being
featurized are compared with the FASTA's, and a mismatch names the contig and both values.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from kerasport.featurize.errors import FeaturizeError

if TYPE_CHECKING:  # pysam (the featurize extra) is imported where reads are opened
    import pysam

CRAM_MAGIC = b"CRAM"
_MD5_CHUNK = 1 << 22  # bases hashed at a time, so chr1 costs 4 MB of memory, not 250 MB
_INDEX_SUFFIX = {"CRAM": ".crai", "BAM": ".bai/.csi", "SAM": ".csi, of a bgzipped SAM"}


def is_cram(path: str | Path) -> bool:
    """True when the file starts with CRAM's magic bytes, whatever its name says."""
    with open(path, "rb") as handle:
        return handle.read(len(CRAM_MAGIC)) == CRAM_MAGIC


def open_reads(stack: ExitStack, path: str | Path, ref: str | Path) -> pysam.AlignmentFile:
    """Open indexed reads for fetching; a CRAM is decoded against `ref` and nothing else."""
    import pysam

    cram = is_cram(path)
    try:  # htslib tells BAM, SAM and bgzipped SAM apart from the contents
        reads = stack.enter_context(pysam.AlignmentFile(
            str(path), "rc" if cram else "r", reference_filename=str(ref) if cram else None))
    except (OSError, ValueError) as exc:
        raise FeaturizeError(f"cannot open {'CRAM' if cram else 'reads'} {path}: {exc}") from exc
    kind = reads.format
    if not reads.has_index():
        raise FeaturizeError(
            f"{kind} {path} has no index ({_INDEX_SUFFIX.get(kind, 'index')}): run "
            f"`samtools index {path}` (or `pysam.index({str(path)!r})` in Python)"
        )
    return reads


def contig_md5(fasta: pysam.FastaFile, contig: str) -> str:
    """A contig's M5 as SAM and CRAM define it: MD5 of the uppercased sequence."""
    digest = hashlib.md5(usedforsecurity=False)
    length = fasta.get_reference_length(contig)
    for start in range(0, length, _MD5_CHUNK):
        chunk = fasta.fetch(contig, start, min(start + _MD5_CHUNK, length))
        digest.update(chunk.upper().encode("ascii"))
    return digest.hexdigest()


def check_cram_reference(
    reads: pysam.AlignmentFile,
    reads_contig: str,
    cram: str | Path,
    fasta: pysam.FastaFile,
    ref_contig: str,
    ref: str | Path,
) -> None:
    """Refuse `fasta` unless its `ref_contig` is the CRAM's `reads_contig` (name, @SQ LN, M5).

    Only the contig being featurized is checked: the M5 costs one pass over it (about 0.2 s
    for chr20), and other contigs are never decoded. A header without M5 is checked on
    length alone.
    """
    where = f"CRAM {cram} was not written against reference {ref}: contig {reads_contig}"
    advice = "; pass the FASTA the CRAM was made with as --ref"
    if reads_contig != ref_contig:  # htslib finds the reference sequence by the CRAM's name
        raise FeaturizeError(f"{where} is called {ref_contig} in the FASTA{advice}")
    entry = next(sq for sq in reads.header.to_dict()["SQ"] if sq["SN"] == reads_contig)
    length = fasta.get_reference_length(ref_contig)
    if entry["LN"] != length:
        raise FeaturizeError(
            f"{where} is {entry['LN']:,} bp in the CRAM's header (@SQ LN) but {ref_contig} is "
            f"{length:,} bp in the FASTA{advice}"
        )
    expected = str(entry.get("M5", "")).lower()
    if expected:
        actual = contig_md5(fasta, ref_contig)
        if actual != expected:
            raise FeaturizeError(
                f"{where} has @SQ M5 {expected} in the CRAM's header but {ref_contig} in the "
                f"FASTA has M5 {actual} (same length, different bases){advice}"
            )
