"""Compile a Dense chain (an MLP classifier) into one hand-scheduled TVM library.

Why a template and not TVM's generic pipelines: at 1-8 rows the model is a few matrix-vector
products, so per-call overhead and weight streaming decide the time, and at 128+ rows it is
compute-bound; a fixed register-tiled schedule beats Relax's default pipeline and tuned
MetaSchedule runs on both (figures in docs/tvm-notes.md), and compiles in about a second.

The schedule, written directly as TVMScript text:
- weights repacked into column panels of `panel` output columns ([P, K, panel]), output
  widths padded to whole panels, so every tile is full and every load is aligned;
- a register tile of up to `tile_rows` rows x (g panels) columns, one accumulator buffer per
  (row, vector) so LLVM keeps it in a register; the reduction loop runs outside the unrolled
  tile and panels are the outer loop, so one panel stays in cache while all rows use it;
- bias and elementwise activation applied on the tile (vectorized forms of every Keras
  activation, see activations.py); a row-wise step (softmax, log_softmax, layer_norm,
  unit_norm) as a short per-row pass after its layer;
- static kernels for 1..8 rows, and one kernel for 8*mb rows with `mb` an explicit argument.
Every output element is the same sequential sum over k in every kernel and tile shape, so
results are bit-identical whatever the batching.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.diskspace import write_file
from kerasport.errors import ExportError
from kerasport.export.tvm.activations import (
    ACTIVATIONS,
    Activation,
    ActivationSpec,
    as_activation,
    merge_sources,
    row_code,
    row_step,
    tile_buffers,
    tile_code,
)
from kerasport.export.tvm.link import export_library
from kerasport.export.tvm.targets import TvmTarget

ROUTE = "dense-chain"
BLOCK_ROWS = 8  # the blocked kernel takes 8*mb rows; static kernels take 1..8
# Every layer takes any of them (a row-wise step such as softmax on a hidden layer is a pass
# over that layer's true width before the next layer reads it).
HIDDEN_ACTIVATIONS = ACTIVATIONS
HEAD_ACTIVATIONS = ACTIVATIONS
ALIGN_FLOATS = 16  # 64 bytes: every array in the weights file starts on a cache line

# (kernel [in, out], bias [out], activation): a name, or an Activation with its arguments
Layer = tuple[np.ndarray, np.ndarray, ActivationSpec]


@dataclass(frozen=True)
class _Plan:
    """Shapes of one layer after padding to whole panels."""

    k: int  # input width actually read (the previous layer's true width)
    n: int  # true output width
    width: int  # panel width (a multiple of the vector lanes)
    panels: int
    activation: Activation

    @property
    def padded(self) -> int:
        return self.width * self.panels


def _plan_layers(layers: Sequence[Layer], target: TvmTarget) -> list[_Plan]:
    """Check shapes and activations, and choose each layer's panel width."""
    if not layers:
        raise ExportError("a Dense chain needs at least one layer")
    plans: list[_Plan] = []
    previous: int | None = None
    for index, (weights, bias, activation) in enumerate(layers):
        where = "the output layer" if index == len(layers) - 1 else f"hidden layer {index}"
        try:
            checked = as_activation(activation)
        except ExportError as exc:
            raise ExportError(
                f"{where}: {exc}; supported: {', '.join(ACTIVATIONS)}"
            ) from None
        w = np.asarray(weights)
        b = np.asarray(bias)
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ExportError(
                f"layer {index}: weights {w.shape} and bias {b.shape} are not a Dense layer"
            )
        if previous is not None and w.shape[0] != previous:
            raise ExportError(f"layer {index} takes {w.shape[0]} inputs, not {previous}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ExportError(f"layer {index} has non-finite weights")
        k, n = (int(s) for s in w.shape)
        if k < 1 or n < 1:
            raise ExportError(f"layer {index} has an empty weight matrix {w.shape}")
        lanes = target.lanes
        width = min(target.panel, -(-n // lanes) * lanes)
        for source in merge_sources(checked):
            if source >= index or plans[source].n != n:
                raise ExportError(
                    f"{where}: a merge reads layer {source}, which is not an earlier layer "
                    f"of the same width ({n})"
                )
        plans.append(_Plan(k=k, n=n, width=width, panels=-(-n // width), activation=checked))
        previous = n
    return plans


def _pack(weights: np.ndarray, bias: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Weights [K, N] -> zero-padded panels [P, K, width]; bias -> zero-padded [P*width]."""
    w = np.zeros((plan.k, plan.padded), dtype=np.float32)
    w[:, : plan.n] = np.asarray(weights, dtype=np.float32)
    packed = np.ascontiguousarray(w.reshape(plan.k, plan.panels, plan.width).transpose(1, 0, 2))
    b = np.zeros(plan.padded, dtype=np.float32)
    b[: plan.n] = np.asarray(bias, dtype=np.float32)
    return packed, b


class _Writer:
    """Indented TVMScript lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def _tile(
    out: _Writer,
    depth: int,
    plan: _Plan,
    lanes: int,
    src: str,
    dst: str,
    wbuf: str,
    bbuf: str,
    row0: str,
    rows: int,
    panel0: str,
    group: int,
) -> None:
    """One register tile: `rows` rows from row0, `group` panels from panel0."""
    vecs = plan.width // lanes
    tiles = [(r, j, v) for r in range(rows) for j in range(group) for v in range(vecs)]

    def acc(r: int, j: int, v: int) -> str:
        return f"acc_{r}_{j}_{v}"

    def col(j: int, v: int) -> str:
        return f"({panel0} + {j}) * {plan.width} + {v * lanes} + c"

    def row(r: int) -> str:
        return f"{row0} + {r}"

    for r, j, v in tiles:
        out(depth, f"for c in T.vectorized({lanes}):")
        out(depth + 1, f"{acc(r, j, v)}[c] = {bbuf}[{col(j, v)}]")
    out(depth, f"for k in range({plan.k}):")
    for r, j, v in tiles:
        out(depth + 1, f"for c in T.vectorized({lanes}):")
        out(
            depth + 2,
            f"{acc(r, j, v)}[c] = {acc(r, j, v)}[c] + {src}[{row(r)}, k] * "
            f"{wbuf}[{panel0} + {j}, k, {v * lanes} + c]",
        )
    if tile_buffers(plan.activation) == 0:  # a few instructions: applied on the registers
        for r, j, v in tiles:
            out(depth, f"for c in T.vectorized({lanes}):")
            where = f"[{row(r)}, {col(j, v)}]"
            _, value = tile_code(f"{acc(r, j, v)}[c]", plan.activation, _hidden_at(where))
            out(depth + 1, f"{dst}{where} = {value}")
        return
    for r, j, v in tiles:
        out(depth, f"for c in T.vectorized({lanes}):")
        out(depth + 1, f"{dst}[{row(r)}, {col(j, v)}] = {acc(r, j, v)}[c]")
    _activate_tile(out, depth, plan, lanes, dst, row0, rows, panel0, group)


def _hidden_at(where: str) -> Callable[[int], str]:
    """Load of layer `source`'s output (its workspace buffer H<source>) at one cell."""
    return lambda source: f"H{source}{where}"


def _activate_tile(
    out: _Writer,
    depth: int,
    plan: _Plan,
    lanes: int,
    dst: str,
    row0: str,
    rows: int,
    panel0: str,
    group: int,
) -> None:
    """A long activation (exp, erf, tanh, ...) over a tile just stored, in a rolled loop.

    Unrolled on every accumulator, as the short ones are, it made LLVM compile one copy per
    vector of the tile (up to 24 per tile shape, 9 kernels): 5-17 s for one 32-wide layer.
    The tile is still in L1, so the extra store and load cost little next to the activation,
    and the values are the same bits either way.
    """
    where = f"[{row0} + ar, {panel0} * {plan.width} + aq * {lanes} + c]"
    cell = f"{dst}{where}"
    lines, value = tile_code(cell, plan.activation, _hidden_at(where))
    out(depth, f"for ar in range({rows}):")
    out(depth + 1, f"for aq in range({group * plan.width // lanes}):")
    out(depth + 2, f"for c in T.vectorized({lanes}):")
    for line in lines:
        out(depth + 3, line)
    out(depth + 3, f"{cell} = {value}")


def _group_size(plan: _Plan, target: TvmTarget, rows: int) -> int:
    """Panels a tile of `rows` rows takes at once: as many as the accumulator budget allows.

    Few rows leave registers idle and a single chain of dependent FMAs per accumulator;
    more panels per tile give more independent chains.
    """
    vecs = plan.width // target.lanes
    return max(1, min(plan.panels, target.acc_registers // (rows * vecs)))


def _layer(
    out: _Writer,
    plan: _Plan,
    target: TvmTarget,
    src: str,
    dst: str,
    wbuf: str,
    bbuf: str,
    rows: int | None,
) -> None:
    """All tiles of one layer; rows=None means the blocked kernel (8*mb rows)."""
    tile = min(BLOCK_ROWS if rows is None else rows, target.tile_rows)
    block = BLOCK_ROWS if rows is None else rows
    chunks = [(start, min(tile, block - start)) for start in range(0, block, tile)]
    group = _group_size(plan, target, tile)
    full, rest = divmod(plan.panels, group)
    spans: list[tuple[str, int, int]] = []  # (panel0 expression, group, loop count)
    if full:
        spans.append(("pg" if full > 1 else "0", group, full))
    if rest:
        spans.append((str(full * group), rest, 1))
    for panel_expr, size, count in spans:
        depth = 1
        if count > 1:
            out(depth, f"for pg in range({count}):")
            depth += 1
            panel0 = f"pg * {size}"
        else:
            panel0 = panel_expr
        row_base = "0"
        if rows is None:
            out(depth, "for rb in range(mb):")
            depth += 1
            row_base = f"rb * {BLOCK_ROWS}"
        for start, count_rows in chunks:
            row0 = f"{row_base} + {start}"
            _tile(
                out, depth, plan, target.lanes, src, dst, wbuf, bbuf, row0, count_rows, panel0, size
            )


def _row_pass(out: _Writer, dst: str, plan: _Plan, rows: int | None) -> None:
    """The layer's row-wise step (softmax, ...) over its true width, one row at a time, in a
    fixed order; padded columns are left alone (the next layer never reads them)."""
    step = row_step(plan.activation)
    if step is None:
        return
    extent = "mb * 8" if rows is None else str(rows)
    out(1, f"for r in range({extent}):")
    for indent, line in row_code(dst, plan.n, step):
        out(2 + indent, line)


def _kernel_source(
    name: str, plans: list[_Plan], target: TvmTarget, num_features: int, rows: int | None
) -> str:
    """TVMScript of one kernel: the whole chain for `rows` rows (None: 8*mb rows)."""
    out = _Writer()
    count = len(plans)
    handles = ["x"]
    for i in range(count):
        handles += [f"w{i}", f"b{i}"]
    handles += [f"h{i}" for i in range(count - 1)]
    handles.append("o")
    params = ", ".join(f"{h}: T.handle" for h in handles)
    if rows is None:
        params += ", mb: T.int32"
    extent = "mb * 8" if rows is None else str(rows)
    out(0, "@T.prim_func")
    out(0, f"def {name}({params}):")
    out(1, f'T.func_attr({{"global_symbol": "{name}", "tir.noalias": True}})')
    out(1, f'X = T.match_buffer(x, ({extent}, {num_features}), "float32", align=64)')
    for i, plan in enumerate(plans):
        out(
            1,
            f"W{i} = T.match_buffer(w{i}, ({plan.panels}, {plan.k}, {plan.width}), "
            '"float32", align=64)',
        )
        out(1, f'B{i} = T.match_buffer(b{i}, ({plan.padded},), "float32", align=64)')
    for i, plan in enumerate(plans[:-1]):
        out(1, f'H{i} = T.match_buffer(h{i}, ({extent}, {plan.padded}), "float32", align=64)')
    out(1, f'O = T.match_buffer(o, ({extent}, {plans[-1].padded}), "float32", align=64)')
    # Accumulators: one small stack buffer per (row, panel, vector) of the largest tile, so
    # LLVM promotes each to a register (one big buffer stays in memory, and anything over
    # 1 KiB goes to TVM's heap workspace).
    declared: set[str] = set()
    block = BLOCK_ROWS if rows is None else rows
    for plan in plans:
        tile = min(block, target.tile_rows)
        group = _group_size(plan, target, tile)
        for r in range(tile):
            for j in range(group):
                for v in range(plan.width // target.lanes):
                    declared.add(f"acc_{r}_{j}_{v}")
    # The activation's intermediate values, one lane buffer each (see activations.py).
    declared.update(f"act{i}" for i in range(max(tile_buffers(p.activation) for p in plans)))
    for acc in sorted(declared):
        out(1, f"{acc} = T.alloc_buffer(({target.lanes},), 'float32', scope='global')")
    for i, plan in enumerate(plans):
        src = "X" if i == 0 else f"H{i - 1}"
        dst = "O" if i == count - 1 else f"H{i}"
        _layer(out, plan, target, src, dst, f"W{i}", f"B{i}", rows)
        _row_pass(out, dst, plan, rows)
    return "\n".join(out.lines) + "\n"


def _symbol_stem(stem: str) -> str:
    """A C identifier prefix from a file stem."""
    clean = re.sub(r"[^0-9A-Za-z_]", "_", stem) or "kp"
    return clean if not clean[0].isdigit() else f"kp_{clean}"


def _weights_blob(arrays: list[np.ndarray]) -> tuple[bytes, list[dict[str, Any]]]:
    """Concatenate float32 arrays little-endian, each starting on a 64-byte boundary."""
    parts: list[bytes] = []
    entries: list[dict[str, Any]] = []
    offset = 0
    for array in arrays:
        data = np.ascontiguousarray(array, dtype="<f4")
        entries.append({"offset": offset, "shape": list(data.shape)})
        size = int(data.size)
        padded = -(-size // ALIGN_FLOATS) * ALIGN_FLOATS
        parts.append(data.tobytes() + b"\0" * 4 * (padded - size))
        offset += padded
    return b"".join(parts), entries


def compile_dense_chain(
    layers: Sequence[Layer], target: TvmTarget, out_dir: Path, stem: str
) -> dict[str, Any]:
    """Compile the chain for one target; write `<stem>.so` and `<stem>.weights.bin`.

    Returns a JSON-serializable description (see module kerasport.runtime.backends.tvm for
    how it is used): file names, the kernels and their calling convention, the padded
    widths, and the CPU flags the library needs.
    """
    plans = _plan_layers(layers, target)
    num_features = plans[0].k
    prefix = _symbol_stem(stem)
    static_names = {rows: f"{prefix}_rows{rows}" for rows in range(1, BLOCK_ROWS + 1)}
    blocked_name = f"{prefix}_rows8x"
    sources = [_kernel_source(n, plans, target, num_features, r) for r, n in static_names.items()]
    sources.append(_kernel_source(blocked_name, plans, target, num_features, None))
    try:
        import tvm
        import tvm_ffi
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExportError(f"the TVM backend needs apache-tvm installed: {exc}") from exc

    out_dir.mkdir(parents=True, exist_ok=True)
    library_name = f"{stem}.so"
    weights_name = f"{stem}.weights.bin"
    try:
        from tvm.script import tirx as script_tir

        functions = {
            name: tvm.script.from_source(source, extra_vars={"T": script_tir})
            for name, source in zip([*static_names.values(), blocked_name], sources, strict=True)
        }
        module = tvm.IRModule(functions)
        built = tvm.tirx.build(module, target=tvm.target.Target(target.llvm_target()))
    except Exception as exc:  # TVM raises its own error types from C++
        message = f"TVM could not compile the Dense chain for {target.name}: {exc}"
        raise ExportError(message) from exc
    export_library(built, out_dir / library_name, target.name)

    arrays: list[np.ndarray] = []
    for (weights, bias, _), plan in zip(layers, plans, strict=True):
        arrays.extend(_pack(weights, bias, plan))
    blob, entries = _weights_blob(arrays)
    write_file(out_dir / weights_name, blob, ExportError)

    return {
        "route": ROUTE,
        "target": target.name,
        "cpu_features": list(target.cpu_features),
        "library": library_name,
        "weights": weights_name,
        "weights_dtype": "float32-le",
        "arrays": entries,  # w0, b0, w1, b1, ...: offsets in floats
        "num_features": num_features,
        "num_classes": plans[-1].n,
        "layers": [
            {
                "in": plan.k,
                "out": plan.n,
                "padded_out": plan.padded,
                "panel": plan.width,
                "panels": plan.panels,
                "activation": str(plan.activation),
            }
            for plan in plans
        ],
        "lanes": target.lanes,
        "panel": target.panel,
        "tile_rows": target.tile_rows,
        "alignment": ALIGN_FLOATS * 4,
        "functions": {
            "static": {str(rows): name for rows, name in static_names.items()},
            "blocked": blocked_name,
            "block_rows": BLOCK_ROWS,
            # Arguments, in order; x/h*/o are (rows, width) float32, 64-byte aligned; the
            # blocked kernel takes rows = 8*mb and mb last.
            "args": ["x"]
            + [f"{kind}{i}" for i in range(len(plans)) for kind in ("w", "b")]
            + [f"h{i}" for i in range(len(plans) - 1)]
            + ["o"],
            "blocked_extra_args": ["mb"],
        },
        "tvm_version": str(tvm.__version__),
        "tvm_ffi_version": str(getattr(tvm_ffi, "__version__", "unknown")),
    }
