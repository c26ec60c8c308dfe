"""Thin command-line front end: each stage registers its own subcommand.

Registering a subcommand imports only its argument definitions, never its stage's heavy
libraries, so `kerasport --help` and every command's `--help` work with any set of extras
installed, and a command whose extra is missing says which `pip install` brings it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import traceback

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


class Stopped(BaseException):
    """A stop signal turned into an exception, so every `finally` and `atomic_path` cleanup
    runs (no partial output is left) before the process exits with 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    raise Stopped(signum)


# SIGINT is Python's KeyboardInterrupt already; these would otherwise end the process
# without unwinding, leaving temporary files and child processes behind.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status, with every failure said in one line, never a
    traceback (--verbose adds the traceback of an unexpected error)."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:  # TensorFlow's C++ notices; the import itself is quieted by kerasport.quiet
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, while it can still be reported
    except BaseException as exc:  # each kind is said in one line below
        return _failure(args, exc)
    return code


def _failure(args: argparse.Namespace, exc: BaseException) -> int:
    """Say what `exc` means in one line on stderr and return the exit status."""
    if isinstance(exc, SystemExit):  # argparse's usage errors and explicit exits
        return exc.code if isinstance(exc.code, int) else 2
    if isinstance(exc, KeyboardInterrupt | Stopped):
        signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
        name = signal.Signals(signum).name
        _say(args, f"stopped by {name}; nothing was written (outputs are written whole or "
                   "not at all)")
        return 128 + signum
    if isinstance(exc, BrokenPipeError):  # `kerasport verify --json - | head`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    if isinstance(exc, ModuleNotFoundError):
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is not None:
            _say(args, f"this command needs {exc.name}, which comes with kerasport's "
                       f"'{extra}' extra: pip install 'kerasport[{extra}]'")
            return 2
    if isinstance(exc, MemoryError):
        _say(args, f"out of memory: {memory_needed(exc)}; {available_memory()}")
        return 2
    if isinstance(exc, KerasportError | OSError):  # bad input, or a file that cannot be written
        _say(args, str(exc))
        return 2
    if args.verbose:
        traceback.print_exception(exc)
    _say(args, f"unexpected {type(exc).__name__}: {exc} (kerasport --verbose {args.command} "
               "... shows where)")
    return 2


def _say(args: argparse.Namespace, message: str) -> None:
    print(f"kerasport {args.command}: error: {message}", file=sys.stderr)


def memory_needed(exc: MemoryError) -> str:
    """What the failed allocation was: NumPy's error carries the array's shape and dtype."""
    shape, dtype = getattr(exc, "shape", None), getattr(exc, "dtype", None)
    if shape is None or dtype is None:
        return str(exc) or "an allocation failed"
    size = math.prod(shape) * dtype.itemsize
    return f"an array of shape {tuple(shape)} and dtype {dtype} needs {size:,} bytes"


def available_memory() -> str:
    """'N bytes of memory available' from /proc/meminfo, where there is one."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return f"{int(line.split()[1]) * 1024:,} bytes of memory available"
    except (OSError, ValueError, IndexError):
        pass
    return "available memory unknown"


if __name__ == "__main__":
    sys.exit(main())
