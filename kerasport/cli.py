"""Thin command-line front end: each stage registers its own subcommand."""

from __future__ import annotations

import argparse
import os
import sys

from kerasport.errors import KerasportError


def build_parser() -> argparse.ArgumentParser:
    from kerasport import demo
    from kerasport.bench import command as bench_command
    from kerasport.export import command as export_command
    from kerasport.featurize import command as featurize_command
    from kerasport.verify import command as verify_command

    parser = argparse.ArgumentParser(
        prog="kerasport",
        description="Export a small Keras classifier to ONNX, serve it, and verify it.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for stage in (featurize_command, export_command, verify_command, bench_command, demo):
        stage.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow (export, verify's reference) logs C++ notices to stderr unless told not to.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (KerasportError, OSError) as exc:  # bad input, or a file that cannot be written
        print(f"kerasport {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
