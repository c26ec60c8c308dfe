"""Thin command-line front end: each stage registers its own subcommand.

Registering a subcommand imports only its argument definitions, never its stage's heavy
libraries, so `kerasport --help` and every command's `--help` work with any set of extras
installed, and a command whose extra is missing says which `pip install` brings it.
"""

from __future__ import annotations

import argparse
import os
import sys

from kerasport.errors import KerasportError
from kerasport.quiet import VERBOSE_ENV

# The extra that brings each optional top-level module, for the message when one is missing.
EXTRA_OF_MODULE = {
    "tensorflow": "export",
    "keras": "export",
    "tf2onnx": "export",
    "onnx": "export",
    "google_crc32c": "export",
    "pysam": "featurize",
    "matplotlib": "report",
    "tqdm": "report",
    "jax": "jax",
    "tvm": "tvm",
    "tvm_ffi": "tvm",
    "snakemake": "workflow",
}


def build_parser() -> argparse.ArgumentParser:
    from kerasport import demo
    from kerasport.bench import command as bench_command
    from kerasport.export import command as export_command
    from kerasport.featurize import command as featurize_command
    from kerasport.verify import command as verify_command
    from kerasport.workflow import command as workflow_command

    parser = argparse.ArgumentParser(
        prog="kerasport",
        description="Export a small Keras classifier to ONNX (and TVM), serve it, and verify it.",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's own log lines too"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for stage in (
        featurize_command, export_command, verify_command, workflow_command, bench_command, demo
    ):
        stage.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:  # TensorFlow's C++ notices; the import itself is quieted by kerasport.quiet
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        code: int = args.func(args)
    except (KerasportError, OSError) as exc:  # bad input, or a file that cannot be written
        print(f"kerasport {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"kerasport {args.command}: error: this command needs {exc.name}, which comes with "
            f"kerasport's '{extra}' extra: pip install 'kerasport[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
