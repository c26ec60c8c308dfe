"""Child process that runs the Keras reference on the backend named by KERAS_BACKEND.

Usage (by kerasport.verify.reference only): python -m kerasport.verify._worker MODEL.keras

Protocol on stdin/stdout (kerasport.verify._wire frames): first a hello frame
{input_shape, output_shape, keras_version, backend} or {error}; then, for every chunk of
examples read (int64 or float, any rank), one float32 frame with {seconds}, or {error}.
The real stdout is kept for frames and fd 1 is pointed at stderr, so nothing a library
prints can corrupt the stream.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO


def _protocol_stream() -> IO[bytes]:
    stream = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main(argv: list[str]) -> int:
    out = _protocol_stream()
    from kerasport.verify._wire import read_frame, write_frame

    try:
        from kerasport.export.check import keras_predict
        from kerasport.export.keras_model import load_keras_model
        from kerasport.quiet import quiet_import
        from kerasport.verify.reference import io_shapes

        keras = quiet_import("keras")

        model = load_keras_model(argv[0])
        input_shape, output_shape = io_shapes(model)
    except Exception as exc:  # report any failure to the parent, which names it
        write_frame(out, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    write_frame(
        out,
        {
            "input_shape": list(input_shape),
            "output_shape": list(output_shape),
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
        },
    )
    while (frame := read_frame(sys.stdin.buffer)) is not None:
        _, chunk = frame
        try:
            if chunk is None:
                raise ValueError("a frame without examples")
            start = time.perf_counter()
            result = keras_predict(model, chunk)
            write_frame(out, {"seconds": time.perf_counter() - start}, result)
        except Exception as exc:
            write_frame(out, {"error": f"{type(exc).__name__}: {exc}"})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
