"""Build DeepVariant small-model examples from reads, a reference and (optionally) a truth set.

    examples = featurize("reads.bam", "ref.fasta.gz", "chr20:10,000,001-10,100,000",
                         truth_vcf="truth.vcf.gz", confident_bed="confident.bed")
    write_examples(examples, "train.tfrecord.gz")

Candidates are found as DeepVariant's make_examples does in spirit (pileup with its read
filters and candidate thresholds), and each (candidate, alt-allele subset) becomes one row
of `feature_names(vaf_window)` int64 features. Needs pysam (the `featurize` extra).
"""

from __future__ import annotations

from kerasport.examples import write_examples  # re-exported: featurize's output writer
from kerasport.featurize.candidates import Candidate, CandidateThresholds
from kerasport.featurize.core import (
    DEFAULT_MIN_BASE_QUALITY,
    DEFAULT_MIN_MAPPING_QUALITY,
    ExampleInfo,
    FeaturizeResult,
    featurize,
    featurize_region,
)
from kerasport.featurize.errors import FeaturizeError
from kerasport.featurize.features import DEFAULT_VAF_WINDOW, alt_allele_subsets, feature_names
from kerasport.featurize.regions import Region, parse_region

__all__ = [
    "DEFAULT_MIN_BASE_QUALITY",
    "DEFAULT_MIN_MAPPING_QUALITY",
    "DEFAULT_VAF_WINDOW",
    "Candidate",
    "CandidateThresholds",
    "ExampleInfo",
    "FeaturizeError",
    "FeaturizeResult",
    "Region",
    "alt_allele_subsets",
    "feature_names",
    "featurize",
    "featurize_region",
    "parse_region",
    "write_examples",
]
