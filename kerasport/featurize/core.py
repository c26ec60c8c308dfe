"""featurize(): reads + reference (+ truth) -> small-model examples for one region.

The region is processed in tiles so memory stays flat for long regions and a progress bar
can move. Each tile's pileup is padded by half the VAF window (and a little more) on both
sides, so a candidate's features never depend on where a tile boundary fell: tiling and
region splits give the same rows as one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kerasport.examples import Examples
from kerasport.featurize.candidates import Candidate, CandidateThresholds, find_candidates
from kerasport.featurize.errors import FeaturizeError
from kerasport.featurize.features import (
    DEFAULT_VAF_WINDOW,
    alt_allele_subsets,
    check_vaf_window,
    encode,
    feature_names,
)
from kerasport.featurize.pileup import build_pileup
from kerasport.featurize.reads import LastRead, check_cram_reference, is_cram, open_reads
from kerasport.featurize.regions import Region, parse_region, resolve_contig
from kerasport.featurize.truth import ConfidentRegions, TruthSet

if TYPE_CHECKING:  # pysam (the featurize extra) is imported where reads are opened
    import pysam

# DeepVariant's make_examples defaults for reads and bases (--min_mapping_quality 5,
# --min_base_quality 10).
DEFAULT_MIN_MAPPING_QUALITY = 5
DEFAULT_MIN_BASE_QUALITY = 10
TILE = 25_000


@dataclass
class ExampleInfo:
    """What each example row is about, for reports and tests (not part of the features)."""

    contig: str
    pos: int  # 1-based
    ref: str
    alts: list[str]  # the example's alt-allele subset
    label: int | None = None


@dataclass
class FeaturizeResult:
    examples: Examples
    candidates: list[Candidate] = field(default_factory=list)
    infos: list[ExampleInfo] = field(default_factory=list)


def _open_inputs(stack: ExitStack, bam: str | Path, ref: str | Path,
                 last: LastRead) -> tuple[pysam.AlignmentFile, pysam.FastaFile]:
    """Open the FASTA first: a CRAM is decoded against it, so it must exist with its .fai."""
    if not Path(bam).is_file():
        raise FeaturizeError(f"reads (BAM/CRAM) {bam}: no such file")
    if not Path(ref).is_file():
        needed = " (a CRAM's reads are decoded against it)" if is_cram(bam) else ""
        raise FeaturizeError(f"reference FASTA {ref}: no such file{needed}")
    import pysam

    try:
        fasta = stack.enter_context(pysam.FastaFile(str(ref)))
    except (OSError, ValueError) as exc:
        raise FeaturizeError(
            f"cannot open reference {ref} (needs a .fai index, and .gzi if bgzipped): {exc}"
        ) from exc
    return open_reads(stack, bam, ref, last), fasta


def _tiles(region: Region, size: int) -> Iterator[tuple[int, int]]:
    for start in range(region.start, region.end, size):
        yield start, min(start + size, region.end)


def featurize_region(
    bam: str | Path,
    ref: str | Path,
    region: str | Region,
    truth_vcf: str | Path | None = None,
    confident_bed: str | Path | None = None,
    vaf_window: int = DEFAULT_VAF_WINDOW,
    *,
    min_mapping_quality: int = DEFAULT_MIN_MAPPING_QUALITY,
    min_base_quality: int = DEFAULT_MIN_BASE_QUALITY,
    thresholds: CandidateThresholds | None = None,
    progress: bool | None = None,
) -> FeaturizeResult:
    """Like `featurize`, but also returns the candidates and what each row is about."""
    check_vaf_window(vaf_window)
    region = parse_region(region) if isinstance(region, str) else region
    thresholds = thresholds or CandidateThresholds()
    if confident_bed is not None and truth_vcf is None:
        raise FeaturizeError("confident regions (--confident) need a truth VCF (--truth)")
    truth = TruthSet(truth_vcf, region) if truth_vcf is not None else None
    confident = ConfidentRegions(confident_bed, region.contig) if confident_bed else None

    result = FeaturizeResult(Examples(np.zeros((0, len(feature_names(vaf_window))), np.int64)))
    rows: list[list[int]] = []
    labels: list[int] = []
    positions: list[int] = []
    last = LastRead()
    with ExitStack() as stack:
        reads, fasta = _open_inputs(stack, bam, ref, last)
        bam_contig = resolve_contig(region.contig, reads.references, f"{reads.format} {bam}")
        ref_contig = resolve_contig(region.contig, fasta.references, f"reference {ref}")
        pad = vaf_window // 2 + 1  # a tile's pileup reaches this far past the tile
        if reads.is_cram:  # before any read is decoded: the bases the region needs must match
            check_cram_reference(reads, bam_contig, bam, fasta, ref_contig, ref, region, pad)
        length = fasta.get_reference_length(ref_contig)
        if region.start >= length:
            raise FeaturizeError(f"region {region} starts past the end of {ref_contig} "
                                 f"({length:,} bp)")
        region = Region(region.contig, region.start, min(region.end, length))

        def ref_at(a: int, b: int) -> str:
            return str(fasta.fetch(ref_contig, max(a, 0), min(b, length))).upper()

        from tqdm import tqdm

        bar = tqdm(list(_tiles(region, TILE)), unit="tile", desc=f"featurize {region}",
                   disable=None if progress is None else not progress, leave=False)
        for start, end in stack.enter_context(bar):
            window_start, window_end = max(start - pad, 0), min(end + pad, length)
            try:
                pileup = build_pileup(reads, bam_contig, window_start,
                                      ref_at(window_start, window_end),
                                      min_mapping_quality, min_base_quality,
                                      last.follow(reads.fetch(bam_contig, window_start,
                                                              window_end)))
            except OSError as exc:  # htslib's errors ("truncated file") carry no file or place
                raise FeaturizeError(
                    f"cannot read {reads.format} {bam} at {bam_contig}:{window_start + 1:,}-"
                    f"{window_end:,}: {exc}, after the read at {last}"
                    + (f" (is {ref} the reference it was written with?)" if reads.is_cram else "")
                ) from exc
            frequency = pileup.allele_frequency()
            for candidate in find_candidates(pileup, region.contig, start, end, thresholds,
                                             ref_at):
                if confident is not None and not confident.contains(candidate.start,
                                                                    candidate.end):
                    continue
                result.candidates.append(candidate)
                for subset in alt_allele_subsets(len(candidate.alts)):
                    label = truth.label(candidate, subset) if truth is not None else None
                    rows.append(encode(candidate, subset, frequency, pileup.start, vaf_window))
                    positions.append(candidate.pos)
                    if label is not None:
                        labels.append(label)
                    result.infos.append(ExampleInfo(
                        region.contig, candidate.pos, candidate.ref,
                        [candidate.alts[i] for i in subset], label,
                    ))
    names = feature_names(vaf_window)
    result.examples = Examples(
        np.array(rows, dtype=np.int64).reshape(-1, len(names)),
        labels=np.array(labels, dtype=np.int64) if truth is not None else None,
        feature_names=names,
        positions=np.array(positions, dtype=np.int64),
    )
    return result


def featurize(
    bam: str | Path,
    ref: str | Path,
    region: str | Region,
    truth_vcf: str | Path | None = None,
    confident_bed: str | Path | None = None,
    vaf_window: int = DEFAULT_VAF_WINDOW,
    *,
    min_mapping_quality: int = DEFAULT_MIN_MAPPING_QUALITY,
    min_base_quality: int = DEFAULT_MIN_BASE_QUALITY,
    thresholds: CandidateThresholds | None = None,
    progress: bool | None = None,
) -> Examples:
    """Small-model examples for `region` ("chr20:10,000,001-10,020,000" or a Region).

    `bam` is indexed reads: BAM, SAM or CRAM, told apart by content; a CRAM is decoded
    against `ref` and refused if its @SQ LN for the contig differs, or if the slices the
    region's reads are in were encoded against other bases (their MD5s differ).
    One row per (candidate, alt-allele subset), in position order. With `truth_vcf`, rows
    carry labels (0=REF, 1=HET, 2=HOM_ALT); with `confident_bed` too, candidates outside
    its intervals are dropped. `positions` are 1-based VCF POS. Reads below
    `min_mapping_quality` and bases below `min_base_quality` are ignored (DeepVariant's
    defaults); `thresholds` sets the candidate thresholds; `progress` shows a tqdm bar
    (None: only on a terminal).
    """
    return featurize_region(
        bam, ref, region, truth_vcf, confident_bed, vaf_window,
        min_mapping_quality=min_mapping_quality, min_base_quality=min_base_quality,
        thresholds=thresholds, progress=progress,
    ).examples
