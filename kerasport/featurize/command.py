"""`kerasport featurize BAM|CRAM --ref FASTA --region CONTIG:START-END [--truth VCF --confident BED]
[--vaf-window 51] -o OUT`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kerasport.featurize.core import DEFAULT_MIN_BASE_QUALITY, DEFAULT_MIN_MAPPING_QUALITY
from kerasport.featurize.features import DEFAULT_VAF_WINDOW


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "featurize",
        help="build small-model examples from a BAM or CRAM (labelled with a truth set)",
        description="Find candidate variants in a region of a BAM or CRAM as DeepVariant does and "
        "write one small-model example per (candidate, alt-allele subset). With --truth and "
        "--confident the examples are labelled REF/HET/HOM_ALT and those outside the "
        "confident regions are dropped. The output format follows OUT's extension: .npz, "
        ".tfrecord, .tfrecord.gz (DeepVariant training records), .npy, .csv or .tsv.",
    )
    parser.add_argument("bam", type=Path,
                        help="indexed BAM or CRAM of aligned reads (the format is read from "
                        "the file's first bytes)")
    parser.add_argument("--ref", type=Path, required=True,
                        help="reference FASTA (with .fai; .gzi if bgzipped); a CRAM is decoded "
                        "against it and refused if its @SQ length differs or the region's "
                        "reads were encoded against other bases (their slices' MD5s)")
    parser.add_argument("--region", required=True,
                        help="CONTIG:START-END, 1-based inclusive (chr20 and 20 both work)")
    parser.add_argument("--truth", type=Path, help="truth VCF: label the examples")
    parser.add_argument("--confident", type=Path,
                        help="confident-regions BED for --truth: drop examples outside it")
    parser.add_argument("--vaf-window", type=int, default=DEFAULT_VAF_WINDOW,
                        help="odd width of the allele-frequency context (default %(default)s)")
    parser.add_argument("--min-mapq", type=int, default=DEFAULT_MIN_MAPPING_QUALITY,
                        help="ignore reads below this mapping quality (default %(default)s)")
    parser.add_argument("--min-base-quality", type=int, default=DEFAULT_MIN_BASE_QUALITY,
                        help="ignore bases below this quality (default %(default)s)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="examples file to write")
    parser.set_defaults(func=run)


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an -o that is one of the inputs, a device, FIFO, socket or directory, before
    any read is decoded (their indexes need no check: no examples format ends .bai, .fai)."""
    from kerasport import outputs

    given = [("reads", args.bam), ("reference", args.ref), ("truth VCF", args.truth),
             ("confident-regions BED", args.confident)]
    reads = [outputs.Input(what, path) for what, path in given if path is not None]
    outputs.check_output_files([outputs.Output("-o", args.out)], reads)


def run(args: argparse.Namespace) -> int:
    import pysam  # noqa: F401  (the featurize extra: say it is missing before any other check)

    from kerasport.examples import CLASS_NAMES, detect_format, write_examples
    from kerasport.featurize.core import featurize_region

    detect_format(args.out)  # refuse an unknown extension before the work, not after
    _check_output(args)
    started = time.perf_counter()
    result = featurize_region(
        args.bam, args.ref, args.region, args.truth, args.confident, args.vaf_window,
        min_mapping_quality=args.min_mapq, min_base_quality=args.min_base_quality,
    )
    examples = result.examples
    write_examples(examples, args.out)
    summary = (f"wrote {args.out}: {len(examples)} examples x {examples.num_features} features "
               f"from {len(result.candidates)} candidates in {args.region} "
               f"({time.perf_counter() - started:.1f} s)")
    if examples.labels is not None:
        counts = [int((examples.labels == k).sum()) for k in range(len(CLASS_NAMES))]
        summary += "; labels " + ", ".join(
            f"{name} {count}" for name, count in zip(CLASS_NAMES, counts, strict=True)
        )
    print(summary)
    return 0
