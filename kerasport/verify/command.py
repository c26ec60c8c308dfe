"""`kerasport verify`: the command-line face of `verify_bundle` and `merge_reports`.

Exit status is the verdict: 0 when every backend passes, 1 when any fails (an arg-max
change, a gate flip, unusable probabilities, a batch-size or rerun difference, or a max ULP
above --max-ulp), 2 for a usage or input error. Every tolerance is an option with its
default shown in --help; none is applied silently. The gate is `--gate`; without it,
DeepVariant's for a DeepVariant model (or when one of its options is given), else none.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kerasport import outputs
from kerasport.cliargs import nonnegative_int, positive_int
from kerasport.errors import KerasportError
from kerasport.examples.text import HEADER_CHOICES, HEADER_HELP
from kerasport.runtime import BACKENDS
from kerasport.verify.core import DEFAULT_CHUNK_ROWS, progress_available, verify_bundle
from kerasport.verify.merge import check_reports_current, load_report, merge_reports
from kerasport.verify.policies import GATE_HELP, parse_gate
from kerasport.verify.reference import (
    DEFAULT_REFERENCE_TIMEOUT,
    PROCESS_MODES,
    REFERENCE_BACKENDS,
)
from kerasport.verify.report import render_table, report_json_text, write_html, write_json
from kerasport.verify.result import EXIT_USAGE, Report
from kerasport.verify.settings import DEEPVARIANT_FIELDS, Settings

DESCRIPTION = """\
Compare a bundle with the Keras model it was exported from, row by row (and position by
position), as its consumer would use it: decision (arg-max) changes, gate flips,
bit-identical outputs, |dp|, ULP distances, GQ differences, invalid probabilities, and
batch-size and rerun invariance. The gate is --gate: deepvariant (DeepVariant's GQ
thresholds by is_snp; the default for a DeepVariant model), confidence:T (max p >= T) or
none (the default for any other model). Exit 0 = pass, 1 = fail, 2 = usage or input error.

  kerasport verify model.keras bundle/ --examples chr20.npy --json r.json --html r.html
  kerasport verify --merge a.json b.json --json total.json [--check-inputs]
"""


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(positive_int(part.strip()) for part in text.split(",") if part.strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,7,128: {exc}") from exc
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one batch size")
    return sizes


def _gate(text: str) -> str:
    try:
        return parse_gate(text)
    except KerasportError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--gate ")) from None


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `verify` subcommand (with func=run) to an argparse subparsers object."""
    defaults = Settings()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="compare a bundle with its Keras model; exit 1 if any decision changes",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="the original model.keras (the reference)")
    parser.add_argument("bundle", nargs="?", help="the bundle directory under test")
    parser.add_argument(
        "--examples",
        nargs="+",
        metavar="FILE",
        help="examples files (.npy .npz .csv .tsv .tfrecord[.gz]); streamed in chunks. An "
        ".npz needs a 'features' array (or a lone 'arr_0', as np.savez(path, table) writes)",
    )
    parser.add_argument(
        "--header", choices=HEADER_CHOICES, default="auto", help=HEADER_HELP
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="REPORT",
        help="instead of verifying, merge these JSON reports (same model and bundle)",
    )
    parser.add_argument(
        "--check-inputs",
        action="store_true",
        help="with --merge: refuse (exit 2) a report whose examples files, model or bundle "
        "are no longer the ones it verified (sha256 of the files at its recorded paths)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="examples with no rows give a 0-row report instead of an error (a cohort "
        "shard, e.g. a region without candidates)",
    )
    which = parser.add_argument_group("what to compare")
    which.add_argument(
        "--backend",
        default="onnxruntime",
        help=f"backend under test: {', '.join(BACKENDS)}, one artifact of the bundle "
        "(e.g. tvm-x86-64-v3), or all: every artifact this host can serve "
        "(default: %(default)s)",
    )
    which.add_argument(
        "--reference-backend",
        choices=REFERENCE_BACKENDS,
        default="tensorflow",
        help="Keras backend of the reference (DeepVariant r1.10 runs jax; default: %(default)s)",
    )
    which.add_argument(
        "--reference-process",
        choices=PROCESS_MODES,
        default="auto",
        help="run the reference here or in a child process (auto: a child only when this "
        "process's Keras backend differs; default: %(default)s)",
    )
    which.add_argument(
        "--reference-timeout",
        type=positive_int,
        default=int(DEFAULT_REFERENCE_TIMEOUT),
        metavar="SECONDS",
        help="a reference child process that takes longer than this to start or to answer "
        "one chunk is killed, and verify exits 2 (default: %(default)s)",
    )
    which.add_argument(
        "--allow-source-mismatch",
        action="store_true",
        help="compare even when the model is not the file the bundle was exported from",
    )
    rules = parser.add_argument_group("gate and tolerances")
    rules.add_argument(
        "--gate",
        type=_gate,
        default=None,
        metavar="POLICY",
        help=f"which calls count as accepted: {GATE_HELP} (default: deepvariant for a bundle "
        "that records DeepVariant's feature names or a DeepVariant-shaped model whose is_snp "
        "column holds 0 and 1, or when a DeepVariant option below is given; else none)",
    )
    rules.add_argument(
        "--snp-threshold",
        type=int,
        default=None,
        help="deepvariant gate: GQ a SNP call needs to be accepted; -1 disables SNPs "
        f"(default: {defaults.snp_threshold})",
    )
    rules.add_argument(
        "--indel-threshold",
        type=int,
        default=None,
        help="deepvariant gate: GQ an indel call needs to be accepted; -1 disables indels "
        f"(default: {defaults.indel_threshold})",
    )
    rules.add_argument(
        "--is-snp-column",
        type=nonnegative_int,
        default=None,
        help="deepvariant gate: 0-based feature column of is_snp (default: "
        f"{defaults.is_snp_column}, the 13th feature)",
    )
    rules.add_argument(
        "--sum-tolerance",
        type=float,
        default=defaults.sum_tolerance,
        help="a row whose probabilities sum further than this from 1 is invalid "
        "(default: %(default)g)",
    )
    rules.add_argument(
        "--max-ulp",
        type=nonnegative_int,
        default=argparse.SUPPRESS,
        help="also fail when any output is more than N ULP from the reference (default: off)",
    )
    rules.add_argument(
        "--max-batch-ulp",
        type=nonnegative_int,
        default=argparse.SUPPRESS,
        help="also fail when batch sizes move an output more than N ULP (default: off)",
    )
    rules.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=defaults.batch_sizes,
        help="batch sizes of the invariance check, besides all at once (default: 1,7,128)",
    )
    rules.add_argument(
        "--invariance-rows",
        type=nonnegative_int,
        default=defaults.invariance_rows,
        help="rows (the first ones) the invariance checks run on (default: %(default)s)",
    )
    out = parser.add_argument_group("output and resources")
    out.add_argument(
        "--json", metavar="PATH", help="write the JSON report here (- for standard output)"
    )
    out.add_argument("--html", metavar="PATH", help="write the HTML report (with plots) here")
    out.add_argument(
        "--list-rows",
        type=nonnegative_int,
        default=defaults.list_rows,
        help="row ids kept per list (arg-max changes, gate flips; default: %(default)s)",
    )
    out.add_argument(
        "--worst-rows",
        type=nonnegative_int,
        default=defaults.worst_rows,
        help="most different rows listed with their ids (default: %(default)s)",
    )
    out.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=DEFAULT_CHUNK_ROWS,
        help="rows read and compared at a time; memory scales with it (default: %(default)s)",
    )
    out.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="threads per backend under test (default: %(default)s)",
    )
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar, which needs tqdm (default: when stderr is a terminal and "
        "tqdm is installed)",
    )
    out.add_argument("--quiet", action="store_true", help="print no table, only errors")
    parser.set_defaults(func=run)
    return parser


def _settings(args: argparse.Namespace) -> Settings | str:
    """The settings the options give, or a usage error message.

    An option of DeepVariant's gate asks for that gate; with another --gate it is refused
    rather than ignored.
    """
    defaults = Settings()
    given = [name for name in DEEPVARIANT_FIELDS if getattr(args, name) is not None]
    gate = args.gate
    if given and gate not in (None, "deepvariant"):
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        return f"{options} set(s) DeepVariant's gate; it does not apply to --gate {gate}"
    if given:
        gate = "deepvariant"
    dv = {name: getattr(args, name) for name in given}
    return Settings(
        gate=gate,
        snp_threshold=dv.get("snp_threshold", defaults.snp_threshold),
        indel_threshold=dv.get("indel_threshold", defaults.indel_threshold),
        is_snp_column=dv.get("is_snp_column", defaults.is_snp_column),
        sum_tolerance=args.sum_tolerance,
        max_ulp=getattr(args, "max_ulp", None),
        max_batch_ulp=getattr(args, "max_batch_ulp", None),
        batch_sizes=args.batch_sizes,
        invariance_rows=args.invariance_rows,
        list_rows=args.list_rows,
        worst_rows=args.worst_rows,
    )


def _usage(message: str) -> int:
    print(f"kerasport verify: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _build(args: argparse.Namespace) -> Report | str:
    """The report the arguments ask for, or a usage error message."""
    if args.merge:
        if args.model or args.bundle or args.examples:
            return "--merge takes only reports: drop MODEL, BUNDLE and --examples"
        overrides = {k: getattr(args, k) for k in ("max_ulp", "max_batch_ulp") if k in args}
        reports = [load_report(path) for path in args.merge]
        if args.check_inputs:
            check_reports_current(reports, args.merge)
        return merge_reports(reports, list(args.merge), **overrides)
    if not (args.model and args.bundle and args.examples):
        return "give MODEL BUNDLE --examples FILE [FILE ...], or --merge REPORT [REPORT ...]"
    if args.check_inputs:
        return "--check-inputs checks the reports of --merge; a verify hashes its inputs itself"
    if args.progress is None:  # auto: a bar on a terminal, when tqdm is there to draw it
        progress = sys.stderr.isatty() and progress_available()
    else:
        progress = args.progress
    settings = _settings(args)
    if isinstance(settings, str):
        return settings
    return verify_bundle(
        args.model,
        args.bundle,
        args.examples,
        backends=args.backend,
        reference_backend=args.reference_backend,
        reference_process=args.reference_process,
        reference_timeout=args.reference_timeout,
        settings=settings,
        chunk_rows=args.chunk_rows,
        threads=args.threads,
        progress=progress,
        allow_source_mismatch=args.allow_source_mismatch,
        allow_empty=args.allow_empty,
        header=args.header,
    )


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before the (possibly hours-long) run, a --json or --html path that would
    overwrite an input (model, bundle or a file in it, examples, merged reports), a device,
    FIFO, socket or directory, or the other output."""
    reads = [
        *outputs.inputs("model", [args.model] if args.model else None),
        *outputs.inputs("bundle", [args.bundle] if args.bundle else None),
        *outputs.inputs("examples file", args.examples),
        *outputs.inputs("report", args.merge),
    ]
    wanted = [outputs.Output(option, path)
              for option, path in (("--json", args.json), ("--html", args.html)) if path]
    if args.html == outputs.STDOUT:
        raise outputs.OutputError("--html - is not supported: give a file path (only --json "
                                  "writes to standard output)")
    outputs.check_output_files(wanted, reads)


def run(args: argparse.Namespace) -> int:
    """Run `kerasport verify`; return the exit status (0 pass, 1 fail, 2 usage/input).

    Output directories are checked before the (possibly hours-long) run, and the table is
    printed before the report files are written, so a failed write loses neither.
    """
    try:
        _check_outputs(args)
        report = _build(args)
    except (KerasportError, OSError) as exc:
        return _usage(str(exc))
    if isinstance(report, str):
        return _usage(report)
    to_stdout = args.json == outputs.STDOUT
    if not args.quiet:  # the table goes to stderr when the JSON has standard output
        print(render_table(report), flush=True, file=sys.stderr if to_stdout else sys.stdout)
    try:
        if to_stdout:
            sys.stdout.write(report_json_text(report))
        elif args.json:
            write_json(report, args.json)
        if args.html:
            write_html(report, args.html)
    except (KerasportError, OSError) as exc:
        return _usage(str(exc))
    return report.exit_code
