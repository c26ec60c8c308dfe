"""Options passed through to every verify or featurize job of the workflow.

They are checked here, by the command's own parser, before any job starts: a typo would
otherwise fail every shard of a cohort on the cluster, one by one. Options the workflow
sets itself (inputs, outputs, the merge) are refused, since a job would then write where
the workflow does not look.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from pathlib import Path
from typing import Any

from kerasport.workflow.config import WorkflowConfigError

_VERIFY_PLACEHOLDERS = ["MODEL", "BUNDLE", "--examples", "EXAMPLES"]
_VERIFY_OWNED = {
    "model": "MODEL",
    "bundle": "BUNDLE",
    "examples": ["EXAMPLES"],
    "merge": None,
    "check_inputs": False,
    "json": None,
    "html": None,
    "progress": None,
}
_FEATURIZE_PLACEHOLDERS = ["READS", "--ref", "REF", "--region", "chr1:1-2", "-o", "OUT.npz"]
_FEATURIZE_OWNED = {
    "bam": "READS",
    "ref": "REF",
    "region": "chr1:1-2",
    "out": "OUT.npz",
    "truth": None,
    "confident": None,
}


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise instead of printing and exiting."""

    def error(self, message: str) -> Any:
        raise WorkflowConfigError(message)


def _checked(command: str, text: str, placeholders: list[str], owned: dict[str, Any]) -> tuple[
    str, ...
]:
    from kerasport.featurize import command as featurize_command
    from kerasport.verify import command as verify_command

    option = f"--{command}-args {text!r}"
    try:
        words = shlex.split(text)
    except ValueError as exc:  # an unclosed quote, or a trailing backslash
        raise WorkflowConfigError(
            f"{option}: {exc} (the options are split as a shell splits words)"
        ) from None
    parser = _RaisingParser(prog="kerasport", add_help=False)
    stages = parser.add_subparsers(dest="command")
    (verify_command if command == "verify" else featurize_command).register(stages)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # --help would print it all
            parsed = parser.parse_args([command, *placeholders, *words])
    except WorkflowConfigError as exc:
        raise WorkflowConfigError(f"{option}: {exc}") from exc
    except SystemExit:  # --help and --version print and exit
        raise WorkflowConfigError(f"{option}: give options for the jobs, not --help") from None
    for name, expected in owned.items():
        value = getattr(parsed, name)
        if isinstance(value, list) and value[: len(expected)] == expected != value:
            stray = " ".join(value[len(expected) :])
            raise WorkflowConfigError(f"{option}: unexpected argument(s) {stray}")
        if (str(value) if isinstance(value, Path) else value) != expected:
            raise WorkflowConfigError(
                f"{option}: --{name.replace('_', '-')} is the workflow's to set; leave it out"
            )
    return tuple(words)


def verify_options(text: str) -> tuple[str, ...]:
    """Words of `--verify-args` (e.g. "--backend all --max-ulp 200"), checked."""
    return _checked("verify", text, _VERIFY_PLACEHOLDERS, _VERIFY_OWNED)


def featurize_options(text: str) -> tuple[str, ...]:
    """Words of `--featurize-args` (e.g. "--vaf-window 51 --min-mapq 10"), checked."""
    return _checked("featurize", text, _FEATURIZE_PLACEHOLDERS, _FEATURIZE_OWNED)
