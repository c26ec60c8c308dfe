"""The small model's feature vector for one (candidate, alt-allele subset).

Order and meaning follow docs/deepvariant-small-model.md (WGS, 70 features for window 51):
12 base features, 7 variant features, then the VAF context window. The names live in one
list (`feature_names`) so the order is stated once; every value is an integer, as
DeepVariant computes them with integer division.

Why subsets: DeepVariant asks the model about each alt allele alone and about each pair
of alts, so a multi-allelic site yields several rows (alts {A, B}: {A}, {B}, {A, B}).
"""

from __future__ import annotations

import itertools

import numpy as np

from kerasport.featurize.candidates import Candidate, Support
from kerasport.featurize.errors import FeaturizeError

BASE_FEATURES = (
    "num_reads_supports_ref",
    "num_reads_supports_alt",
    "alt_indices_depth",
    "total_depth",
    "variant_allele_frequency",
    "alt_indices_variant_allele_frequency",
    "ref_mapping_quality",
    "alt_mapping_quality",
    "ref_base_quality",
    "alt_base_quality",
    "ref_reverse_strand_ratio",
    "alt_reverse_strand_ratio",
)
VARIANT_FEATURES = (
    "is_snp",
    "is_insertion",
    "is_deletion",
    "is_multiallelic",
    "is_multiple_alt_alleles",
    "insertion_length",
    "deletion_length",
)
DEFAULT_VAF_WINDOW = 51


def check_vaf_window(vaf_window: int) -> int:
    """The window is centred on the candidate, so it must be odd (and positive)."""
    if isinstance(vaf_window, bool) or not isinstance(vaf_window, int):
        raise FeaturizeError(f"vaf_window must be an integer; got {vaf_window!r}")
    if vaf_window < 1 or vaf_window % 2 == 0:
        raise FeaturizeError(f"vaf_window must be a positive odd number; got {vaf_window}")
    return vaf_window


def vaf_offsets(vaf_window: int) -> range:
    half = check_vaf_window(vaf_window) // 2
    return range(-half, half + 1)


def feature_names(vaf_window: int = DEFAULT_VAF_WINDOW) -> list[str]:
    """Names of the features, in the order of the columns (70 for the default window)."""
    context = [
        f"variant_allele_frequency_at_{'minus' if o < 0 else 'plus'}_{abs(o)}"
        for o in vaf_offsets(vaf_window)
    ]
    return [*BASE_FEATURES, *VARIANT_FEATURES, *context]


def alt_allele_subsets(num_alts: int) -> list[tuple[int, ...]]:
    """Each alt alone, then each pair of alts, as DeepVariant enumerates them."""
    singles = [(i,) for i in range(num_alts)]
    return singles + list(itertools.combinations(range(num_alts), 2))


def _mean(values: np.ndarray, multiplier: int = 1) -> int:
    return int(multiplier * int(values.sum()) // values.shape[0]) if values.shape[0] else 0


def _base_features(candidate: Candidate, subset: tuple[int, ...]) -> list[int]:
    ref = candidate.ref_support
    chosen = [candidate.alt_support[i] for i in subset]
    alt = Support(
        np.concatenate([s.reads for s in chosen]), np.concatenate([s.quals for s in chosen])
    )
    n_ref, n_alt = len(ref), len(alt)
    total = n_ref + sum(len(s) for s in candidate.alt_support)
    alt_depth = n_ref + n_alt
    return [
        n_ref,
        n_alt,
        alt_depth,
        total,
        100 * n_alt // total if total else 0,
        100 * n_alt // alt_depth if alt_depth else 0,
        _mean(candidate.mapq[ref.reads]),
        _mean(candidate.mapq[alt.reads]),
        _mean(ref.quals),
        _mean(alt.quals),
        _mean(candidate.reverse[ref.reads].astype(np.int64), 100),
        _mean(candidate.reverse[alt.reads].astype(np.int64), 100),
    ]


def _variant_features(candidate: Candidate, subset: tuple[int, ...]) -> list[int]:
    ref_len = len(candidate.ref)
    alt_lens = [len(candidate.alts[i]) for i in subset]
    return [
        int(ref_len == 1 and all(n == 1 for n in alt_lens)),
        int(all(n > ref_len for n in alt_lens)),
        int(all(n < ref_len for n in alt_lens)),
        int(len(candidate.alts) > 1),
        int(len(subset) > 1),
        max(0, *(n - ref_len for n in alt_lens)),
        max(0, *(ref_len - n for n in alt_lens)),
    ]


def encode(candidate: Candidate, subset: tuple[int, ...], allele_frequency: np.ndarray,
           frequency_start: int, vaf_window: int) -> list[int]:
    """One example row. `allele_frequency[i]` is the VAF at `frequency_start + i`; positions
    outside it read as 0, as DeepVariant reads positions missing from its map."""
    context = []
    for offset in vaf_offsets(vaf_window):
        i = candidate.start + offset - frequency_start
        context.append(int(allele_frequency[i]) if 0 <= i < allele_frequency.shape[0] else 0)
    return [
        *_base_features(candidate, subset),
        *_variant_features(candidate, subset),
        *context,
    ]
