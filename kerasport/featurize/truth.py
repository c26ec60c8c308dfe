"""Training labels from a truth VCF and its confident regions (BED).

DeepVariant's label for an example is how many copies of the example's alt alleles the
truth genotype carries: 0 = REF, 1 = HET, 2 = HOM_ALT (`label_for_alt_alleles`). Alleles
are matched after trimming the bases they share with the reference at either end, so
`CA>C` at 100 and `A>-` at 101 are the same deletion however each file spells it.

Rules, chosen to keep labels trustworthy rather than plentiful:
- a candidate is kept only if its whole reference span lies inside one confident interval
  (examples outside are dropped: there, "not in truth" does not mean REF);
- a confident candidate that no truth allele matches is REF;
- truth records that are filtered (FILTER not PASS or `.`), or whose genotype is missing,
  are ignored, as DeepVariant's labeler ignores non-variant truth records.
"""

from __future__ import annotations

import bisect
import gzip
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kerasport.featurize.candidates import Candidate
from kerasport.featurize.errors import FeaturizeError
from kerasport.featurize.regions import Region, contig_aliases, resolve_contig

if TYPE_CHECKING:  # pysam (the featurize extra) is imported where reads are opened
    import pysam

AlleleKey = tuple[int, str, str]


def allele_key(start: int, ref: str, alt: str) -> AlleleKey:
    """(position, ref, alt) with shared suffix, then shared prefix, trimmed off."""
    ref, alt = ref.upper(), alt.upper()
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while ref and alt and ref[0] == alt[0]:
        ref, alt, start = ref[1:], alt[1:], start + 1
    return start, ref, alt


@dataclass(frozen=True)
class TruthRecord:
    keys: tuple[AlleleKey, ...]  # one per alt allele, in VCF order
    genotype: tuple[int, ...]  # allele indices, 0 = REF


class ConfidentRegions:
    """Merged BED intervals of one contig; answers "is [start, end) inside one of them"."""

    def __init__(self, path: str | Path, contig: str) -> None:
        intervals_by_contig: dict[str, list[tuple[int, int]]] = defaultdict(list)
        path = Path(path)
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rt") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip() or line.startswith(("#", "track", "browser")):
                        continue
                    fields = line.split("\t") if "\t" in line else line.split()
                    try:
                        name, a, b = fields[0], int(fields[1]), int(fields[2])
                    except (IndexError, ValueError):
                        raise FeaturizeError(
                            f"{path}: line {number} is not 'CONTIG START END'"
                        ) from None
                    intervals_by_contig[name].append((a, b))
        except OSError as exc:
            raise FeaturizeError(f"cannot read confident regions {path}: {exc}") from exc
        name = resolve_contig(contig, intervals_by_contig, f"confident regions {path}")
        merged: list[tuple[int, int]] = []
        for a, b in sorted(intervals_by_contig[name]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._starts = [a for a, _ in merged]
        self._ends = [b for _, b in merged]

    def contains(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and end <= self._ends[i]


class TruthSet:
    """The truth genotypes of one sample over a region, indexed by trimmed allele."""

    def __init__(self, path: str | Path, region: Region, padding: int = 1000) -> None:
        import pysam

        try:
            vcf = pysam.VariantFile(str(path))
        except (OSError, ValueError) as exc:
            raise FeaturizeError(f"cannot open truth VCF {path}: {exc}") from exc
        with vcf:
            contig = resolve_contig(region.contig, [str(c) for c in vcf.header.contigs],
                                    f"truth VCF {path}")
            if not vcf.header.samples:
                raise FeaturizeError(f"truth VCF {path} has no sample (no genotypes)")
            start, end = max(0, region.start - padding), region.end + padding
            try:
                records = list(vcf.fetch(contig, start, end))
            except (ValueError, OSError):  # no index: read the whole file
                records = [r for r in vcf if r.contig in contig_aliases(region.contig)
                           and r.stop > start and r.start < end]
            self._by_key: dict[AlleleKey, list[tuple[TruthRecord, int]]] = defaultdict(list)
            self.records: list[TruthRecord] = []
            for rec in records:
                self._add(rec)

    def _add(self, rec: pysam.VariantRecord) -> None:
        filters = list(rec.filter.keys())
        if filters and filters != ["PASS"]:
            return
        genotype = rec.samples[0].get("GT")
        if not genotype or any(g is None for g in genotype) or not rec.alts:
            return
        keys = tuple(allele_key(rec.start, rec.ref or "", alt) for alt in rec.alts)
        if len(genotype) == 1:  # haploid (chrX/Y in males): one copy reads as HOM_ALT
            genotype = (genotype[0], genotype[0])
        record = TruthRecord(keys, tuple(int(g) for g in genotype))
        self.records.append(record)
        for index, key in enumerate(keys, start=1):
            self._by_key[key].append((record, index))

    def label(self, candidate: Candidate, subset: tuple[int, ...]) -> int:
        """Copies of the subset's alleles in the truth genotype: 0, 1 or 2."""
        keys = [allele_key(candidate.start, candidate.ref, alt) for alt in candidate.alts]
        wanted = {keys[i] for i in subset}
        copies = 0
        seen: set[int] = set()
        for key in keys:
            for record, _ in self._by_key.get(key, []):
                if id(record) in seen:
                    continue
                seen.add(id(record))
                copies += sum(1 for g in record.genotype if g > 0 and record.keys[g - 1] in wanted)
        return min(copies, 2)
