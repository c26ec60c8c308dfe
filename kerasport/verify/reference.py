"""The reference: the original Keras model, run the way DeepVariant runs it.

DeepVariant calls `model.predict(examples, batch_size=128, verbose=0)` on int64 rows; r1.10
does so with KERAS_BACKEND=jax. Any other model is called the same way on its examples as
read (any rank; integers as int64, floats as stored), which the candidates get too.
Keras fixes its backend at import, so a reference on a backend other than the one this
process already runs (or would run) is started in a child process (`_worker.py`) and fed
chunks over a pipe. Either way the reference computes in the
background (a thread, or the child) while the caller runs the candidate on the same chunk.

A child is never waited on forever: each exchange with it (starting, sending a chunk,
receiving its answer) has a deadline, past which the child is killed and the failure
reported; a child that dies is reported with its signal or exit status and its stderr.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np

import kerasport
from kerasport.errors import KerasportError
from kerasport.verify._wire import read_frame, write_frame

REFERENCE_BACKENDS = ("tensorflow", "jax")
PROCESS_MODES = ("auto", "in-process", "subprocess")
REFERENCE_BATCH_SIZE = 128  # keras_predict's, and DeepVariant's default
# Seconds a child may take to start or to answer one chunk: generous (a 65,536-row chunk of
# the 70-750-750-3 model takes about a second), since a false timeout would end a long run.
DEFAULT_REFERENCE_TIMEOUT = 600.0


class ReferenceModelError(KerasportError):
    """The reference model could not be started or failed while predicting."""


class Pending(Protocol):
    def result(self) -> np.ndarray: ...


def io_shapes(model: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, output shape) of a loaded servable model, without the batch axis, as
    export reads them (`model_signature`, which also knows a subclassed model's shapes)."""
    from kerasport.export.keras_model import model_signature

    inputs, outputs = model_signature(model)
    return inputs.shape, outputs.shape


class Reference(Protocol):
    """A running reference model: its shapes (without batch) and how it runs."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    keras_version: str
    backend: str
    process: str
    seconds: float

    def submit(self, examples: np.ndarray) -> Pending: ...

    def close(self) -> None: ...


class InProcessReference:
    """Keras in this process; predictions run on one background thread."""

    process = "in-process"

    def __init__(self, model_path: Path, backend: str) -> None:
        from kerasport.export.keras_model import load_keras_model
        from kerasport.quiet import quiet_import

        keras = quiet_import("keras")

        if keras.backend.backend() != backend:
            raise ReferenceModelError(
                f"Keras in this process runs on {keras.backend.backend()}, not {backend}; "
                "run the reference in a subprocess (--reference-process subprocess)"
            )
        self._model = load_keras_model(model_path)
        self.input_shape, self.output_shape = io_shapes(self._model)
        self.keras_version = str(keras.__version__)
        self.backend = backend
        self.seconds = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kerasport-reference")

    def _predict(self, examples: np.ndarray) -> np.ndarray:
        from kerasport.export.check import keras_predict

        start = time.perf_counter()
        result = keras_predict(self._model, examples)
        self.seconds += time.perf_counter() - start
        return result

    def submit(self, examples: np.ndarray) -> Future[np.ndarray]:
        return self._pool.submit(self._predict, examples)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _SubprocessPending:
    def __init__(self, owner: SubprocessReference) -> None:
        self._owner = owner

    def result(self) -> np.ndarray:
        return self._owner._receive()


class SubprocessReference:
    """Keras in a child process with KERAS_BACKEND set before it imports Keras.

    `timeout` bounds each exchange with the child; past it the child is killed.
    """

    process = "subprocess"

    def __init__(self, model_path: Path, backend: str, timeout: float) -> None:
        env = dict(os.environ, KERAS_BACKEND=backend)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        package_root = str(Path(kerasport.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        # Kept for the child's life, read only to explain a failure.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "kerasport.verify._worker", str(model_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.backend = backend
        self.seconds = 0.0
        self._timeout = timeout
        self._timed_out = False
        try:  # the child must not outlive a failed start, whatever the failure
            hello = self._read("starting")
            self.input_shape = tuple(int(d) for d in hello["input_shape"])
            self.output_shape = tuple(int(d) for d in hello["output_shape"])
            self.keras_version = str(hello["keras_version"])
            if hello["backend"] != backend:
                raise ReferenceModelError(f"the reference child ran Keras on {hello['backend']}")
        except BaseException:
            self.close()
            raise

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return "\n".join(lines[-15:])

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[None]:
        """Kill the child if the block outlasts the timeout: the pipe then ends (EOF or a
        broken pipe), so a read or write blocked on a hung child returns."""
        timer = threading.Timer(self._timeout, self._expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _expire(self) -> None:
        self._timed_out = True
        self._proc.kill()

    def _read(self, doing: str) -> dict[str, Any]:
        assert self._proc.stdout is not None
        with self._deadline():
            frame = read_frame(self._proc.stdout)
        if frame is None or "error" in frame[0]:
            self._fail(doing, frame[0]["error"] if frame else None)
        return frame[0] | {"_array": frame[1]}

    def _fail(self, doing: str, error: str | None) -> NoReturn:
        """Stop the child and raise a ReferenceModelError saying why it failed."""
        self._stop()
        if self._timed_out:
            message = (
                f"it gave no answer within {self._timeout:g} s and was killed "
                "(--reference-timeout)"
            )
        elif error is not None:
            message = error
        else:
            message = f"it exited unexpectedly ({_exit_status(self._proc.returncode)})"
        tail = self._stderr_tail()
        self.close()
        raise ReferenceModelError(
            f"the {self.backend} reference failed while {doing}: {message}"
            + (f"\n--- its stderr ---\n{tail}" if tail else "")
        )

    def submit(self, examples: np.ndarray) -> _SubprocessPending:
        assert self._proc.stdin is not None
        try:
            with self._deadline():
                write_frame(self._proc.stdin, {}, np.ascontiguousarray(examples))
        except BrokenPipeError:  # the child died, or was killed past its deadline
            self._read("predicting")  # raises with the child's error
        return _SubprocessPending(self)

    def _receive(self) -> np.ndarray:
        header = self._read("predicting")
        self.seconds += float(header["seconds"])
        result: np.ndarray = header["_array"]
        return result

    def close(self) -> None:
        self._stop()
        self._stderr.close()

    def _stop(self) -> None:
        """End the child: closing stdin asks it to finish; closing stdout first means a
        child still writing an unread answer (after an error here) fails instead of
        blocking. One that has not exited within the grace period is killed; closing stdin
        flushes what an interrupted write left, so it too has a deadline."""
        with self._deadline():
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None and not stream.closed:
                    with contextlib.suppress(OSError):  # a dead child leaves a broken pipe
                        stream.close()
        try:
            self._proc.wait(timeout=_EXIT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_EXIT_GRACE_SECONDS = 30


def _exit_status(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


def _in_process_possible(backend: str) -> bool:
    """Whether Keras in this process runs (or, once imported, will run) on `backend`."""
    if "keras" in sys.modules:
        return bool(sys.modules["keras"].backend.backend() == backend)
    return os.environ.get("KERAS_BACKEND", "tensorflow") == backend


def open_reference(
    model_path: str | Path,
    backend: str = "tensorflow",
    process: str = "auto",
    timeout: float = DEFAULT_REFERENCE_TIMEOUT,
) -> Reference:
    """Start the reference model; `process` is auto, in-process or subprocess.

    `timeout` (seconds) bounds each exchange with a child process. An in-process reference
    has none: its thread cannot be stopped, and it waits on no other process.
    """
    if backend not in REFERENCE_BACKENDS:
        raise ReferenceModelError(
            f"unknown reference backend {backend!r}; choose from {', '.join(REFERENCE_BACKENDS)}"
        )
    if process not in PROCESS_MODES:
        raise ReferenceModelError(f"unknown process mode {process!r}; choose from {PROCESS_MODES}")
    if importlib.util.find_spec(backend) is None:
        raise ReferenceModelError(
            f"--reference-backend {backend} needs the {backend} package, which is not "
            f"installed for {sys.executable}"
            + (
                " (DeepVariant r1.10 runs its small model on JAX: pip install 'jax[cpu]')"
                if backend == "jax"
                else ""
            )
        )
    from kerasport.export.keras_model import check_model_file

    path = check_model_file(model_path)  # before a child starts only to fail on it
    if process == "auto":
        process = "in-process" if _in_process_possible(backend) else "subprocess"
    if process == "in-process":
        return InProcessReference(path, backend)
    if not timeout > 0:
        raise ReferenceModelError(f"the reference timeout must be positive; got {timeout!r}")
    return SubprocessReference(path, backend, timeout)
