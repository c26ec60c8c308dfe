"""`kerasport workflow verify|snakefile`: a cohort's verify as the shipped Snakemake workflow.

`workflow verify` checks its inputs, writes `config.json` into the run directory and runs
`python -m snakemake` (this Python's) on the shipped Snakefile there: one verify job per
examples file, or per (reads, region) line of a sample sheet after a featurize job, then
one merge. Its exit status is the merged verdict, as `kerasport verify`'s is: 0 pass,
1 fail (the cohort report is written either way), 2 when inputs are unusable or a job
failed (the failed jobs' logs are shown). Rerunning the same command resumes: Snakemake
redoes only the jobs whose outputs are missing, incomplete or older than their inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kerasport.cliargs import positive_int

DESCRIPTION = """\
Verify a bundle against its Keras model over a cohort, as a Snakemake workflow: one verify
job per examples file (or, from a sample sheet of reads, one featurize and one verify job
per reads file and region), then one merge into the cohort report, equal to one verify over
all rows. Jobs take one thread each and declare their memory, so a Snakemake profile runs
them on a cluster unchanged. Exit 0 = pass, 1 = fail, 2 = usage, input or job error.

  kerasport workflow verify model.keras bundle/ --examples 'cohort/*.npz' --out run/ --cores 8
  kerasport workflow verify model.keras bundle/ --samples samples.tsv --ref ref.fa --out run/
  kerasport workflow verify model.keras bundle/ --examples 'cohort/*.npz' --out run/ \\
      --profile slurm/
  snakemake --snakefile "$(kerasport workflow snakefile)" --directory run/ \\
      --configfile run/config.json --cores 8
"""

COHORT_TARGET = "cohort"  # the Snakefile's rule for the shard reports and the cohort report
FAILED_LOG_LINES = 12  # of each failed job's log, shown when the workflow stops


def register(subparsers: Any) -> None:
    """Add `workflow` with its actions `verify` and `snakefile` (imports nothing heavy)."""
    parser = subparsers.add_parser(
        "workflow",
        help="verify a cohort as a Snakemake workflow (one job per shard, exact merge)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    verify = actions.add_parser(
        "verify",
        help="run verify (featurize first, from reads) per shard, then merge",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("model", help="the original model.keras (the reference)")
    verify.add_argument("bundle", help="the bundle directory under test")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--examples",
        nargs="+",
        metavar="FILE_OR_GLOB",
        help="examples files, or quoted globs ('cohort/*.tfrecord.gz'): one verify job each",
    )
    source.add_argument(
        "--samples",
        metavar="SHEET.tsv",
        help="tab-separated sample sheet, header `sample reads region [truth confident]`: "
        "one featurize and one verify job per line (needs --ref)",
    )
    verify.add_argument("--ref", metavar="FASTA", help="the reads' reference, for --samples")
    verify.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="run directory (created): config.json, shards/, cohort.json, cohort.html, "
        "logs/; rerunning with the same DIR resumes",
    )
    verify.add_argument(
        "--cores",
        type=positive_int,
        help="jobs at once on this machine (default: every core, or the profile's setting)",
    )
    verify.add_argument(
        "--profile", metavar="DIR", help="a Snakemake profile, e.g. one for the SLURM executor"
    )
    verify.add_argument("--dry-run", action="store_true", help="list the jobs; run none")
    verify.add_argument(
        "--unlock",
        action="store_true",
        help="first remove the lock a killed run left in DIR (only when no other run uses it)",
    )
    verify.add_argument(
        "--verify-args",
        default="",
        metavar="'OPTIONS'",
        help="options for every shard's `kerasport verify`, as one quoted string "
        "(e.g. '--backend all --max-ulp 200'; a lone option as --verify-args=--OPTION); "
        "checked before any job starts",
    )
    verify.add_argument(
        "--featurize-args",
        default="",
        metavar="'OPTIONS'",
        help="options for every `kerasport featurize` job (e.g. '--vaf-window 51')",
    )
    verify.add_argument(
        "--snakemake",
        nargs=argparse.REMAINDER,
        default=[],
        metavar="ARG",
        help="give it last: the rest goes to snakemake as is "
        "(e.g. --snakemake --forcerun merge)",
    )
    verify.set_defaults(func=run_verify)
    snakefile = actions.add_parser(
        "snakefile",
        help="print the path of the shipped Snakefile (to run snakemake yourself)",
        description="Print the path of the Snakefile that `workflow verify` runs.",
    )
    snakefile.set_defaults(func=print_snakefile)


def print_snakefile(args: argparse.Namespace) -> int:
    from kerasport.workflow import SNAKEFILE

    print(SNAKEFILE)
    return 0


def _require(*modules: str) -> None:
    """Raise ModuleNotFoundError for the first module missing here, so `kerasport` names
    the extra that brings it before any job starts (and fails) on its own."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def snakemake_command(run_dir: Path, args: argparse.Namespace) -> list[str]:
    """`python -m snakemake` on the shipped Snakefile for the run directory.

    The target (the Snakefile's `cohort` rule: every shard report and the merge, but not
    the `verdict` rule, whose failure would hide a FAIL among job errors) comes first: an
    option at the end of --snakemake may take several values.
    """
    from kerasport.workflow import SNAKEFILE, layout

    command = [sys.executable, "-m", "snakemake", COHORT_TARGET]
    command += ["--snakefile", str(SNAKEFILE), "--directory", str(run_dir)]
    command += ["--configfile", str(run_dir / layout.CONFIG)]
    # Redo a job a killed run left half done; let the other shards finish when one fails.
    command += ["--rerun-incomplete", "--keep-going"]
    if args.cores is not None:
        command += ["--cores", str(args.cores)]
    elif args.profile is None:
        command += ["--cores", "all"]
    if args.profile is not None:
        command += ["--profile", args.profile]
    if args.dry_run:
        command.append("--dry-run")
    return [*command, *args.snakemake]


def failed_job_logs(run_dir: Path, since: float) -> list[Path]:
    """Logs written since `since` by jobs whose output is missing: the jobs that failed."""
    from kerasport.workflow import layout

    failed = []
    for log_pattern, output_pattern in layout.LOG_OUTPUTS:
        head, _, tail = log_pattern.partition("{shard}")
        for log in sorted(run_dir.glob(log_pattern.replace("{shard}", "*"))):
            name = log.relative_to(run_dir).as_posix()
            shard = name[len(head) : len(name) - len(tail)]
            if log.stat().st_mtime >= since and not (
                run_dir / output_pattern.format(shard=shard)
            ).exists():
                failed.append(log)
    return failed


def _show_failed_jobs(run_dir: Path, since: float) -> None:
    for log in failed_job_logs(run_dir, since):
        lines = log.read_text(errors="replace").splitlines()[-FAILED_LOG_LINES:]
        print(f"failed job, {log}:", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)


def _run(command: list[str]) -> int:
    """Run Snakemake and return its exit status, letting it stop cleanly when stopped.

    Ctrl-C at a terminal reaches Snakemake itself (same process group), so this process
    ignores it and waits while Snakemake stops its jobs and releases its lock; a SIGTERM
    sent to this process alone is passed on to Snakemake.
    """
    process = subprocess.Popen(command)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stale_lock(run_dir: Path) -> bool:
    """Whether Snakemake's lock files are still there after it exited: a killed run's."""
    locks = run_dir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def _check_run_dir(run_dir: Path, config: Any, sheet: str | None) -> None:
    """Refuse an --out that is, or lies inside, a file the cohort reads (the bundle, an
    examples file), or that is not a directory, before any job."""
    from kerasport import outputs

    reads = [outputs.Input(link.split("/")[1], path) for link, path in config.files().items()]
    reads += outputs.inputs("sample sheet", [sheet] if sheet else None)
    outputs.check_output_dir(outputs.Output("--out", run_dir), reads)


def run_verify(args: argparse.Namespace) -> int:
    """Run `kerasport workflow verify`; return the cohort verdict (0, 1) or 2."""
    import snakemake  # noqa: F401  (the workflow extra: named first when it is missing)

    from kerasport.atomic import atomic_path
    from kerasport.verify.merge import load_report
    from kerasport.verify.report import render_table
    from kerasport.workflow import layout
    from kerasport.workflow.config import build_config, usable_path
    from kerasport.workflow.options import featurize_options, verify_options

    _require("keras", "matplotlib", *(("pysam",) if args.samples else ()))
    usable_path(str(args.out.absolute()), "--out")
    config = build_config(
        args.model,
        args.bundle,
        examples=args.examples,
        samples=args.samples,
        ref=args.ref,
        verify_args=verify_options(args.verify_args),
        featurize_args=featurize_options(args.featurize_args),
    )
    run_dir = args.out.absolute()
    _check_run_dir(run_dir, config, args.samples)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / layout.CONFIG) as tmp:
        tmp.write_text(json.dumps(config.to_json(), indent=1) + "\n")
    command = snakemake_command(run_dir, args)
    print(f"{len(config.shards)} shards; running: {shlex.join(command)}", flush=True)
    if args.unlock:
        _run([*command, "--unlock"])
    since = time.time() - 1.0  # file times lag the clock by up to a tick
    code = _run(command)
    if code != 0:
        _show_failed_jobs(run_dir, since)
        hint = (
            f"; a killed run left its lock in {run_dir / '.snakemake' / 'locks'}: if no other "
            "run uses this directory, add --unlock"
            if _stale_lock(run_dir)
            else ""
        )
        print(
            f"kerasport workflow: error: snakemake stopped with exit status {code}; finished "
            f"shards are kept, and the same command resumes once the cause is fixed{hint}",
            file=sys.stderr,
        )
        return 2
    if args.dry_run:
        return 0
    report = load_report(run_dir / layout.COHORT_JSON)
    print(render_table(report))
    print(f"cohort report: {run_dir / layout.COHORT_JSON}, {run_dir / layout.COHORT_HTML}")
    return report.exit_code
