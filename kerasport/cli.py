"""Thin command-line front end: each stage registers its own subcommand."""

from __future__ import annotations

import argparse
import sys

from kerasport.errors import KerasportError


def build_parser() -> argparse.ArgumentParser:
    from kerasport import demo
    from kerasport.export import command as export_command
    from kerasport.featurize import command as featurize_command

    parser = argparse.ArgumentParser(
        prog="kerasport",
        description="Export a small Keras classifier to ONNX, serve it, and verify it.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for stage in (featurize_command, export_command, demo):
        stage.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KerasportError as exc:
        print(f"kerasport {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
