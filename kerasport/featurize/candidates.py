"""Candidate variants: positions where enough reads disagree with the reference.

The thresholds are DeepVariant's make_examples defaults for short reads (the `vsc_*`
flags): an allele becomes a candidate when it is seen in at least 2 reads AND in at least
12% (SNPs) or 6% (indels) of the reads with an allele at that position. Indels get the lower
fraction because aligners often place them inconsistently, spreading real support thinner.
Long-read models raise the indel fraction to 12%; pass `CandidateThresholds(...)` for that.

All alleles that pass at one position form one candidate, written the VCF way: the
reference allele spans the longest deletion, and every alt is padded to the same span.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kerasport.featurize.pileup import BASES, IndelAllele, Pileup


@dataclass(frozen=True)
class CandidateThresholds:
    """DeepVariant's `vsc_min_count_*` / `vsc_min_fraction_*` (WGS defaults)."""

    min_count_snps: int = 2
    min_fraction_snps: float = 0.12
    min_count_indels: int = 2
    min_fraction_indels: float = 0.06


@dataclass
class Support:
    """The reads behind one allele: read indices into the pileup, and each one's base
    quality for this allele (the base's own, or the inserted bases' mean for insertions,
    or the anchor base's for deletions)."""

    reads: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.reads.shape[0])


@dataclass
class Candidate:
    """One candidate site: VCF-style alleles and the reads supporting each of them."""

    contig: str
    start: int  # 0-based position of the first reference base
    ref: str
    alts: list[str]
    ref_support: Support
    alt_support: list[Support]
    mapq: np.ndarray = field(repr=False)  # per read index, shared with the pileup
    reverse: np.ndarray = field(repr=False)

    @property
    def pos(self) -> int:
        """1-based VCF POS."""
        return self.start + 1

    @property
    def end(self) -> int:
        return self.start + len(self.ref)


def _vcf_alleles(ref_at: Callable[[int, int], str], start: int, snps: list[str],
                 indels: list[IndelAllele]) -> tuple[str, list[str]]:
    longest = max((a.deleted for a in indels), default=0)
    ref = ref_at(start, start + 1 + longest)
    alts = [base + ref[1:] for base in snps]
    for allele in indels:
        if allele.is_insertion:
            alts.append(ref[0] + allele.inserted + ref[1:])
        else:
            alts.append(ref[0] + ref[1 + allele.deleted :])
    return ref, alts


def find_candidates(pileup: Pileup, contig: str, start: int, end: int,
                    thresholds: CandidateThresholds,
                    ref_at: Callable[[int, int], str]) -> list[Candidate]:
    """Candidates with 0-based start in [start, end), in position order.

    `ref_at(a, b)` returns upper-case reference bases [a, b); it is needed because a long
    deletion may run past the pileup window.
    """
    lo, hi = start - pileup.start, end - pileup.start
    depth = np.maximum(pileup.depth[lo:hi], 1)
    counts = pileup.snp_count[lo:hi]
    snp_pass = (counts >= thresholds.min_count_snps) & (
        counts / depth[:, None] >= thresholds.min_fraction_snps
    )
    indel_counts: Counter[tuple[int, IndelAllele]] = Counter(
        (pos, allele) for pos, allele in zip(pileup.indels.pos, pileup.indels.allele, strict=True)
        if start <= pos < end
    )
    indel_pass: dict[int, list[IndelAllele]] = defaultdict(list)
    for (pos, allele), count in indel_counts.items():
        if (count >= thresholds.min_count_indels
                and count / max(int(pileup.depth[pos - pileup.start]), 1)
                >= thresholds.min_fraction_indels):
            indel_pass[pos].append(allele)
    positions = sorted(set((np.flatnonzero(snp_pass.any(axis=1)) + start).tolist())
                       | set(indel_pass))
    if not positions:
        return []

    # Per-read detail, gathered only for the candidate positions.
    at = np.isin(pileup.base_pos, positions)
    order = np.argsort(pileup.base_pos[at], kind="stable")
    base_pos = pileup.base_pos[at][order]
    base_read = pileup.base_read[at][order]
    base_code = pileup.base_code[at][order]
    base_qual = pileup.base_qual[at][order]
    base_is_ref = pileup.base_is_ref[at][order]
    indel_reads: dict[tuple[int, IndelAllele], list[tuple[int, int]]] = defaultdict(list)
    wanted = set(positions)
    for pos, read, allele, qual in zip(pileup.indels.pos, pileup.indels.read,
                                       pileup.indels.allele, pileup.indels.qual, strict=True):
        if pos in wanted:
            indel_reads[(pos, allele)].append((read, qual))

    candidates = []
    for pos in positions:
        a, b = np.searchsorted(base_pos, [pos, pos + 1])
        reads, codes, quals, is_ref = (base_read[a:b], base_code[a:b], base_qual[a:b],
                                       base_is_ref[a:b])
        snp_codes = np.flatnonzero(snp_pass[pos - start]).tolist()
        indels = sorted(indel_pass.get(pos, []), key=IndelAllele.sort_key)
        ref, alts = _vcf_alleles(ref_at, pos, [chr(BASES[c]) for c in snp_codes], indels)
        supports = [Support(reads[codes == c], quals[codes == c]) for c in snp_codes]
        for allele in indels:
            pairs = np.array(indel_reads[(pos, allele)], dtype=np.int64).reshape(-1, 2)
            supports.append(Support(pairs[:, 0], pairs[:, 1]))
        candidates.append(Candidate(
            contig=contig, start=pos, ref=ref, alts=alts,
            ref_support=Support(reads[is_ref], quals[is_ref]), alt_support=supports,
            mapq=pileup.mapq, reverse=pileup.reverse,
        ))
    return candidates
