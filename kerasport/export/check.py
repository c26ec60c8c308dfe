"""Compare an exported model with the Keras original before anything is written."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.manifest import InputSpec

PROBE_ROWS = 256
MIN_PROBE_ROWS = 16
PROBE_BYTES = 256 << 20  # the engine's working memory a probe may take: a few large tiles


def probe_rows(row_bytes: int) -> int:
    """How many examples to probe with: PROBE_ROWS, fewer when one example needs so much
    working memory (a 256 x 256 tile through a conv net) that 256 would take gigabytes."""
    return max(MIN_PROBE_ROWS, min(PROBE_ROWS, PROBE_BYTES // max(row_bytes, 1)))
DEFAULT_ATOL = 1e-5


def probe_examples(
    inputs: InputSpec | int, rows: int = PROBE_ROWS, seed: int = 0, deepvariant: bool = True
) -> np.ndarray:
    """Deterministic examples of the model's input spec (an int: (features,) floats).

    DeepVariant's rows (`deepvariant`: a (features,) float spec whose model records
    DeepVariant's feature names, small_model_info.json) and an integer input get values
    0-100 (int64 for a float32 table), the range DeepVariant's features live in;
    an Embedding's indices are drawn over the whole vocabulary; any other float input gets
    standard normal values, the scale normalized inputs and images have (a 784-512-256-10
    MNIST MLP fed 0-100 runs at activations in the thousands, where float32 rounding alone
    moves its probabilities past 1e-5).
    """
    spec = InputSpec((inputs,)) if isinstance(inputs, int) else inputs
    rng = np.random.default_rng(seed)
    shape = (rows, *spec.shape)
    if spec.index_range is not None:
        low, high = spec.index_range
        return rng.integers(low, high, size=shape, dtype=np.int64).astype(spec.dtype)
    if (len(spec.shape) == 1 and deepvariant) or np.dtype(spec.dtype).kind in "iu":
        table = rng.integers(0, 101, size=shape, dtype=np.int64)
        return table if spec.dtype == "float32" else table.astype(spec.dtype)
    return rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype)


def check_agreement(
    reference: np.ndarray, candidate: np.ndarray, atol: float = DEFAULT_ATOL, head: str = "softmax"
) -> None:
    """Refuse an export whose outputs differ by more than the tolerance or whose decisions
    move, at any example and position.

    The tolerance is `atol` for probabilities (softmax, sigmoid heads) and `atol` times the
    value's magnitude above 1 for a linear head: float32 resolution scales with magnitude,
    so logits of 1e3 cannot agree to 1e-5 absolute. A decision is the arg-max over the class
    axis (last), or for a sigmoid head each class's p >= 0.5; a change is forgiven where the
    reference is a tie at the tolerance (top two within it, or p within it of 0.5).
    """
    if reference.shape != candidate.shape:
        raise ExportError(
            f"exported model returns shape {candidate.shape}; Keras returns {reference.shape}"
        )
    scale = np.maximum(1.0, np.abs(reference)) if head == "linear" else 1.0
    excess = np.abs(reference.astype(np.float64) - candidate) / scale
    worst = float(np.max(excess, initial=0.0))
    if not worst <= atol:  # also catches NaN
        where = "relative " if head == "linear" else ""
        raise ExportError(
            f"exported model disagrees with Keras: max {where}|difference| {worst:.3g} > {atol:g}"
        )
    moved = _moved_decisions(reference, candidate, atol, head)
    if moved.any():
        first = tuple(int(i) for i in np.argwhere(moved)[0])
        raise ExportError(
            f"exported model changes {int(moved.sum())} decisions on the probe batch "
            f"(first: row {first[0]}" + (f", position {first[1:]}" if len(first) > 1 else "")
            + ")"
        )


def _moved_decisions(
    reference: np.ndarray, candidate: np.ndarray, atol: float, head: str
) -> np.ndarray:
    """Where a decision differs and the reference is not a tie, per example and position."""
    if head == "sigmoid":
        moved = (reference >= 0.5) != (candidate >= 0.5)
        return moved & (np.abs(reference - 0.5) > atol)
    if reference.shape[-1] < 2:
        return np.zeros(reference.shape[:-1], dtype=bool)
    top2 = np.sort(reference, axis=-1)[..., -2:]
    moved = reference.argmax(axis=-1) != candidate.argmax(axis=-1)
    return moved & ((top2[..., 1] - top2[..., 0]) > atol)


# Chunk sizes the invariance probe cuts its rows into: odd sizes and 1, since ONNX Runtime's
# MatMul kernels take rows in groups (of 4 on the CPUs measured) and treat a tail apart.
INVARIANCE_CHUNKS = (1, 5, 7)
INVARIANCE_ROWS = 24


def depends_on_chunking(model: bytes, input_name: str, probe: np.ndarray) -> bool:
    """Whether ONNX Runtime's answer for an example changes with how many examples share
    its call, on this graph and this CPU.

    A Dense chain's Gemm gives every row the same bits in any batch, but other graphs need
    not: an EinsumDense becomes a MatMul over (batch x something) rows, and examples in a
    call's tail get other bits than the same examples in a full group. Such a bundle is
    served one example per engine call (the manifest says so), which keeps results
    independent of the caller's batching.
    """
    import onnxruntime as ort

    from kerasport.runtime.backends.onnxruntime import session_options

    rows = probe[:INVARIANCE_ROWS]
    try:
        session = ort.InferenceSession(
            model, session_options(1), providers=["CPUExecutionProvider"]
        )
        def run(part: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {input_name: part})[0])

        whole = run(rows)
        chunked = [
            np.concatenate([run(rows[i : i + n]) for i in range(0, len(rows), n)])
            for n in INVARIANCE_CHUNKS
        ]
    except Exception as exc:  # ONNX Runtime raises its own types for a graph it cannot run
        raise ExportError(f"ONNX Runtime cannot run the converted model: {exc}") from exc
    return not all(np.array_equal(parts, whole) for parts in chunked)


def keras_predict(model: Any, examples: np.ndarray) -> np.ndarray:
    """Keras' own answer, computed as DeepVariant computes it."""
    return np.asarray(model.predict(examples, batch_size=128, verbose=0), dtype=np.float32)
