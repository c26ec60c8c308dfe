"""Compile a graph of Dense nodes (an MLP classifier) into one hand-scheduled TVM library.

Why a template and not TVM's generic pipelines: at 1-8 rows the model is a few matrix-vector
products, so per-call overhead and weight streaming decide the time, and at 128+ rows it is
compute-bound; a fixed register-tiled schedule beats Relax's default pipeline and tuned
MetaSchedule runs on both (figures in docs/tvm-notes.md), and compiles in about a second.

The graph is a list of nodes run in order, each writing its own buffer (the last one the
output): a Dense node reads the concatenation of earlier buffers (or the input) through its
kernel; a map node copies them without a kernel, for what acts on a value that is not a
Dense output of its own (a normalized input, a pre-norm residual branch, a concatenation).
Each node then applies its pipeline (see activations.py): elementwise, per-column and merge
steps, and at most one row-wise step.

The schedule, written directly as TVMScript text:
- weights repacked into column panels of `panel` output columns ([P, K, panel]), output
  widths padded to whole panels, so every tile is full and every load is aligned;
- a register tile of up to `tile_rows` rows x (g panels) columns, one accumulator buffer per
  (row, vector) so LLVM keeps it in a register; the reduction loops (one per source buffer)
  run outside the unrolled tile and panels are the outer loop, so one panel stays in cache
  while all rows use it;
- bias and the pipeline's steps before its row-wise one applied on the tile; the row-wise
  step and the steps after it as a short per-row pass after the node's tiles;
- static kernels for 1..8 rows, and one kernel for 8*mb rows with `mb` an explicit argument.
Every output element is the same sequential sum over k in every kernel and tile shape, so
results are bit-identical whatever the batching.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    Cell,
    after_row_steps,
    as_activation,
    merge_sources,
    param_count,
    row_code,
    row_step,
    tile_buffers,
    tile_code,
    tile_steps,
)
from kerasport.export.tvm.conv_front import (
    FLAT,
    Front,
    describe,
    front_arguments,
    front_source,
    plan_front,
)
from kerasport.export.tvm.link import export_library
from kerasport.export.tvm.packing import padded_vector, panel_layout
from kerasport.export.tvm.targets import TvmTarget
from kerasport.export.tvm.tvmscript import Writer

ROUTE = "dense-graph"
CONV_ROUTE = "conv-graph"  # a convolution front (conv_front.py), then a Dense graph
INPUT = -1  # the source index of the model's input
BLOCK_ROWS = 8  # the blocked kernel takes 8*mb rows; static kernels take 1..8
ALIGN_FLOATS = 16  # 64 bytes: every array in the weights file starts on a cache line

# (kernel [in, out], bias [out], activation): one layer of a chain, each reading the last
Layer = tuple[np.ndarray, np.ndarray, ActivationSpec]


@dataclass(frozen=True)
class Node:
    """One step of the graph: reads the concatenation of `sources` (INPUT or earlier node
    indices), through `kernel` and `bias` for a Dense node (None for a map node), then applies
    `activation`, whose per-column steps read `params` (arrays of the output width)."""

    sources: tuple[int, ...]
    width: int  # true output width
    activation: ActivationSpec
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    params: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Network:
    """What one library computes: the convolution `front` (None for rows of features), then
    the Dense graph's nodes; `num_features` is one example's input values."""

    nodes: list[Node]
    num_features: int
    front: Front | None = None


def chain(layers: Sequence[Layer]) -> list[Node]:
    """A chain of Dense layers as graph nodes, each reading the one before it."""
    return [
        Node((index - 1,), int(np.shape(weights)[1]), activation, weights, bias)
        for index, (weights, bias, activation) in enumerate(layers)
    ]


@dataclass(frozen=True)
class _Plan:
    """One node after checking, with its widths padded to whole panels."""

    sources: tuple[tuple[str, int], ...]  # (buffer name, true width) read, in order
    k: int  # total input width (the kernel's rows)
    n: int  # true output width
    width: int  # panel width (a multiple of the vector lanes)
    panels: int
    activation: Activation
    dense: bool
    params: int

    @property
    def padded(self) -> int:
        return self.width * self.panels


def _buffer(index: int, last: int) -> str:
    return "X" if index == INPUT else "O" if index == last else f"H{index}"


def _plan_nodes(
    nodes: Sequence[Node], target: TvmTarget, num_features: int, input_buffer: str
) -> list[_Plan]:
    """Check shapes, sources and activations, and choose each node's panel width; the
    graph's input is buffer `input_buffer` (X, or the convolution front's flat F)."""
    if not nodes:
        raise ExportError("a Dense graph needs at least one node")
    plans: list[_Plan] = []
    last = len(nodes) - 1
    for index, node in enumerate(nodes):
        where = "the output node" if index == last else f"node {index}"
        try:
            activation = as_activation(node.activation)
        except ExportError as exc:
            raise ExportError(f"{where}: {exc}; supported: {', '.join(ACTIVATIONS)}") from None
        if not node.sources or any(not INPUT <= s < index for s in node.sources):
            raise ExportError(f"{where} reads {list(node.sources)}, not earlier nodes")
        widths = [num_features if s == INPUT else plans[s].n for s in node.sources]
        k, n = sum(widths), int(node.width)
        dense = node.kernel is not None
        if dense:
            w, b = np.asarray(node.kernel), np.asarray(node.bias)
            if w.shape != (k, n) or b.shape != (n,):
                raise ExportError(
                    f"{where}: weights {w.shape} and bias {b.shape} do not fit its input "
                    f"width {k} and output width {n}"
                )
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise ExportError(f"{where} has non-finite weights")
        elif n != k:
            raise ExportError(f"{where} (no kernel) must keep its input width {k}, not {n}")
        if n < 1:
            raise ExportError(f"{where} has no output columns")
        for source in merge_sources(activation):
            if source >= index or plans[source].n != n:
                raise ExportError(
                    f"{where}: a merge reads node {source}, which is not an earlier node of "
                    f"the same width ({n})"
                )
        count = param_count(activation)
        if len(node.params) != count or any(np.shape(p) != (n,) for p in node.params):
            raise ExportError(f"{where}: its steps read {count} arrays of width {n}")
        if not all(np.all(np.isfinite(p)) for p in node.params):
            raise ExportError(f"{where} has non-finite parameters")
        width = target.panel_width(n)
        sources = tuple(
            (input_buffer if s == INPUT else _buffer(s, last), w)
            for s, w in zip(node.sources, widths, strict=True)
        )
        plans.append(
            _Plan(sources, k, n, width, -(-n // width), activation, dense, len(node.params))
        )
    return plans


def _pack(node: Node, plan: _Plan) -> list[np.ndarray]:
    """Kernel [K, N] -> zero-padded panels [P, K, width]; bias and parameters -> zero-padded
    [P*width]. A map node has only its parameters."""
    arrays: list[np.ndarray] = []
    if plan.dense:
        arrays += [panel_layout(node.kernel, plan.width, plan.panels),
                   padded_vector(node.bias, plan.padded)]
    return arrays + [padded_vector(p, plan.padded) for p in node.params]


def _cell(index: int, row: str, col: str, last: int) -> Cell:
    """Operand loads for node `index`'s steps at (row, col)."""
    return Cell(
        lambda source: f"{_buffer(source, last)}[{row}, {col}]",
        lambda param: f"P{index}_{param}[{col}]",
    )


def _tile(
    out: Writer, depth: int, index: int, plan: _Plan, lanes: int, dst: str, row0: str,
    rows: int, panel0: str, group: int, last: int,
) -> None:
    """One register tile of node `index`: `rows` rows from row0, `group` panels from panel0."""
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
        out(depth + 1, f"{acc(r, j, v)}[c] = B{index}[{col(j, v)}]")
    offset = 0
    for number, (src, k) in enumerate(plan.sources):
        out(depth, f"for k{number} in range({k}):")
        for r, j, v in tiles:
            out(depth + 1, f"for c in T.vectorized({lanes}):")
            out(
                depth + 2,
                f"{acc(r, j, v)}[c] = {acc(r, j, v)}[c] + {src}[{row(r)}, k{number}] * "
                f"W{index}[{panel0} + {j}, {offset} + k{number}, {v * lanes} + c]",
            )
        offset += k
    steps = tile_steps(plan.activation)
    if tile_buffers(steps) == 0:  # a few instructions: applied on the registers
        for r, j, v in tiles:
            out(depth, f"for c in T.vectorized({lanes}):")
            cell = _cell(index, row(r), col(j, v), last)
            _, value = tile_code(f"{acc(r, j, v)}[c]", steps, cell)
            out(depth + 1, f"{dst}[{row(r)}, {col(j, v)}] = {value}")
        return
    for r, j, v in tiles:
        out(depth, f"for c in T.vectorized({lanes}):")
        out(depth + 1, f"{dst}[{row(r)}, {col(j, v)}] = {acc(r, j, v)}[c]")
    # A long pipeline (exp, erf, tanh, ...) over the tile just stored, in a rolled loop.
    # Unrolled on every accumulator, as the short ones are, it made LLVM compile one copy per
    # vector of the tile (up to 24 per tile shape, 9 kernels): 5-17 s for one 32-wide layer.
    # The tile is still in L1, so the extra store and load cost little next to the
    # activation, and the values are the same bits either way.
    out(depth, f"for ar in range({rows}):")
    out(depth + 1, f"for aq in range({group * vecs}):")
    _vector_steps(out, depth + 2, index, plan, lanes, dst, dst, f"{row0} + ar",
                  f"{panel0} * {plan.width} + aq * {lanes} + c", steps, last)


def _vector_steps(
    out: Writer, depth: int, index: int, plan: _Plan, lanes: int, src: str, dst: str,
    row: str, col: str, steps: list[Activation], last: int,
) -> None:
    """dst[row, col] = steps(src[row, col]) over one vector of lanes (variable c)."""
    lines, value = tile_code(f"{src}[{row}, {col}]", steps, _cell(index, row, col, last))
    out(depth, f"for c in T.vectorized({lanes}):")
    for line in lines:
        out(depth + 1, line)
    out(depth + 1, f"{dst}[{row}, {col}] = {value}")


def _group_size(plan: _Plan, target: TvmTarget, rows: int) -> int:
    """Panels a tile of `rows` rows takes at once: as many as the accumulator budget allows.

    Few rows leave registers idle and a single chain of dependent FMAs per accumulator;
    more panels per tile give more independent chains.
    """
    vecs = plan.width // target.lanes
    return max(1, min(plan.panels, target.acc_registers // (rows * vecs)))


def _dense_node(
    out: Writer, index: int, plan: _Plan, target: TvmTarget, dst: str, rows: int | None,
    last: int,
) -> None:
    """All tiles of one Dense node; rows=None means the blocked kernel (8*mb rows)."""
    tile = min(BLOCK_ROWS if rows is None else rows, target.tile_rows)
    block = BLOCK_ROWS if rows is None else rows
    chunks = [(start, min(tile, block - start)) for start in range(0, block, tile)]
    for depth, panel0, size in out.runs(1, plan.panels, _group_size(plan, target, tile), "pg"):
        row_base = "0"
        if rows is None:
            out(depth, "for rb in range(mb):")
            depth += 1
            row_base = f"rb * {BLOCK_ROWS}"
        for start, count_rows in chunks:
            _tile(out, depth, index, plan, target.lanes, dst, f"{row_base} + {start}",
                  count_rows, panel0, size, last)


def _map_node(
    out: Writer, index: int, plan: _Plan, lanes: int, dst: str, extent: str, last: int
) -> None:
    """A node without a kernel: its sources copied side by side into dst (one source that is
    a node's buffer is read in place), then the steps before its row-wise one."""
    steps = tile_steps(plan.activation)
    src = plan.sources[0][0]
    if len(plan.sources) > 1 or src in ("X", FLAT):  # unpadded: the input, a concatenation
        out(1, f"for r in range({extent}):")
        offset = 0
        for number, (name, width) in enumerate(plan.sources):
            out(2, f"for g{number} in range({width}):")
            out(3, f"{dst}[r, {offset} + g{number}] = {name}[r, g{number}]")
            offset += width
        src = dst
    out(1, f"for r in range({extent}):")
    out(2, f"for q in range({-(-plan.n // lanes)}):")
    _vector_steps(out, 3, index, plan, lanes, src, dst, "r", f"q * {lanes} + c", steps, last)


def _row_pass(
    out: Writer, index: int, plan: _Plan, lanes: int, dst: str, extent: str, last: int
) -> None:
    """The node's row-wise step (softmax, ...) over its true width, one row at a time, in a
    fixed order, then the steps after it; padded columns are left alone (no node reads
    them as a kernel's input, and the runner drops them from the output)."""
    step = row_step(plan.activation)
    if step is None:
        return
    out(1, f"for r in range({extent}):")
    def param(p: int, col: str) -> str:
        return f"P{index}_{p}[{col}]"

    for indent, line in row_code(dst, plan.n, lanes, step, param):
        out(2 + indent, line)
    after = after_row_steps(plan.activation)
    if after:
        out(2, f"for q in range({-(-plan.n // lanes)}):")
        _vector_steps(out, 3, index, plan, lanes, dst, dst, "r", f"q * {lanes} + c", after,
                      last)


def _arguments(plans: list[_Plan], input_buffer: str) -> list[tuple[str, str]]:
    """(handle, buffer) names in calling order: the input (X, or the convolution front's F),
    each node's arrays, h*, o."""
    args = [(input_buffer.lower(), input_buffer)]
    for i, plan in enumerate(plans):
        if plan.dense:
            args += [(f"w{i}", f"W{i}"), (f"b{i}", f"B{i}")]
        args += [(f"p{i}_{p}", f"P{i}_{p}") for p in range(plan.params)]
    args += [(f"h{i}", f"H{i}") for i in range(len(plans) - 1)]
    return [*args, ("o", "O")]


def _kernel_source(
    name: str, plans: list[_Plan], target: TvmTarget, input_buffer: str, input_width: int,
    rows: int | None,
) -> str:
    """TVMScript of one kernel: the whole graph for `rows` rows (None: 8*mb rows), reading
    `input_buffer`, (rows, input_width)."""
    out = Writer()
    last = len(plans) - 1
    out.header(name, [handle for handle, _ in _arguments(plans, input_buffer)],
               ", mb: T.int32" if rows is None else "")
    extent = "mb * 8" if rows is None else str(rows)
    out.match(input_buffer.lower(), input_buffer, f"({extent}, {input_width})")
    for i, plan in enumerate(plans):
        if plan.dense:
            out.match(f"w{i}", f"W{i}", f"({plan.panels}, {plan.k}, {plan.width})")
            out.match(f"b{i}", f"B{i}", f"({plan.padded},)")
        for p in range(plan.params):
            out.match(f"p{i}_{p}", f"P{i}_{p}", f"({plan.padded},)")
    for i, plan in enumerate(plans):
        out.match("o" if i == last else f"h{i}", _buffer(i, last), f"({extent}, {plan.padded})")
    # Accumulators: one per (row, panel, vector) of the largest tile, and the steps'
    # intermediate values, one lane buffer each (see activations.py).
    declared: set[str] = set()
    block = BLOCK_ROWS if rows is None else rows
    for plan in (p for p in plans if p.dense):
        tile = min(block, target.tile_rows)
        group = _group_size(plan, target, tile)
        for r in range(tile):
            for j in range(group):
                for v in range(plan.width // target.lanes):
                    declared.add(f"acc_{r}_{j}_{v}")
    lanes_needed = max(
        max(tile_buffers(tile_steps(p.activation)), tile_buffers(after_row_steps(p.activation)))
        for p in plans
    )
    declared.update(f"act{i}" for i in range(lanes_needed))
    out.lane_buffers(declared, target.lanes)
    for i, plan in enumerate(plans):
        dst = _buffer(i, last)
        if plan.dense:
            _dense_node(out, i, plan, target, dst, rows, last)
        else:
            _map_node(out, i, plan, target.lanes, dst, extent, last)
        _row_pass(out, i, plan, target.lanes, dst, extent, last)
    return out.text()


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


def compile_dense_graph(
    nodes: Sequence[Node], num_features: int, target: TvmTarget, out_dir: Path, stem: str,
    front: Front | None = None,
) -> dict[str, Any]:
    """Compile the graph (after the convolution `front`, if any) for one target; write
    `<stem>.so` and `<stem>.weights.bin`.

    Returns a JSON-serializable description (see module kerasport.runtime.backends.tvm_plan
    for how it is read): file names, the kernels and their calling convention, the padded
    widths of the workspace buffers, and the CPU flags the library needs.
    """
    fplan = None if front is None else plan_front(front, target)
    source, width = ("X", num_features) if fplan is None else (FLAT, fplan.flat.stride)
    if fplan is not None and fplan.num_features != num_features:
        raise ExportError(f"the convolution front reads {fplan.num_features} features, "
                          f"not the model's {num_features}")
    plans = _plan_nodes(nodes, target, num_features if fplan is None else fplan.flat_width,
                        source)
    prefix = _symbol_stem(stem)
    static_names = {rows: f"{prefix}_rows{rows}" for rows in range(1, BLOCK_ROWS + 1)}
    blocked_name = f"{prefix}_rows8x"
    names = [*static_names.values(), blocked_name]
    sources = [
        _kernel_source(name, plans, target, source, width, rows)
        for rows, name in [*static_names.items(), (None, blocked_name)]
    ]
    front_name = f"{prefix}_front"
    if fplan is not None:  # one kernel for any rows: its code is the bulk of a CNN's
        names.append(front_name)
        sources.append(front_source(front_name, fplan, target))
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
            for name, source in zip(names, sources, strict=True)
        }
        module = tvm.IRModule(functions)
        built = tvm.tirx.build(module, target=tvm.target.Target(target.llvm_target()))
    except Exception as exc:  # TVM raises its own error types from C++
        what = "the Dense graph" if fplan is None else "the convolutional model"
        raise ExportError(f"TVM could not compile {what} for {target.name}: {exc}") from exc
    export_library(built, out_dir / library_name, target.name)

    arrays = [] if fplan is None else [array for _, array in fplan.arrays]
    for node, plan in zip(nodes, plans, strict=True):
        arrays += _pack(node, plan)
    blob, entries = _weights_blob(arrays)
    write_file(out_dir / weights_name, blob, ExportError)

    description: dict[str, Any] = {
        "route": ROUTE if fplan is None else CONV_ROUTE,
        "target": target.name,
        "cpu_features": list(target.cpu_features),
        "library": library_name,
        "weights": weights_name,
        "weights_dtype": "float32-le",
        "arrays": entries,  # every node's arrays in calling order: offsets in floats
        "num_features": num_features,
        "num_classes": plans[-1].n,
        "layers": [
            {
                "kind": "dense" if plan.dense else "map",
                "sources": list(node.sources),
                "in": plan.k,
                "out": plan.n,
                "padded_out": plan.padded,
                "panel": plan.width,
                "panels": plan.panels,
                "activation": str(plan.activation),
            }
            for node, plan in zip(nodes, plans, strict=True)
        ],
        "buffers": [plan.padded for plan in plans[:-1]],  # h0, h1, ...: padded widths
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
            "args": [handle for handle, _ in _arguments(plans, source)],
            "blocked_extra_args": ["mb"],
        },
        "tvm_version": str(tvm.__version__),
        "tvm_ffi_version": str(getattr(tvm_ffi, "__version__", "unknown")),
    }
    if fplan is not None:
        # The front's per-call scratch buffers (one example, whatever the rows), then its
        # flat output, a (rows, width) buffer before h0.
        description["front"] = describe(fplan)
        description["scratch"] = [fplan.allocated(buffer) for buffer in fplan.scratch]
        # The front kernel runs first, for any rows: x, its arrays (the first
        # `front_arrays` of "arrays"), its scratch buffers, F; then a graph kernel from F.
        description["front_arrays"] = len(fplan.arrays)
        description["functions"]["front"] = front_name
        description["functions"]["front_args"] = front_arguments(fplan)
        description["buffers"] = [fplan.flat.stride, *(plan.padded for plan in plans[:-1])]
    return description


def compile_dense_chain(
    layers: Sequence[Layer], target: TvmTarget, out_dir: Path, stem: str
) -> dict[str, Any]:
    """`compile_dense_graph` for a chain of Dense layers."""
    if not layers:
        raise ExportError("a Dense chain needs at least one layer")
    return compile_dense_graph(
        chain(layers), int(np.shape(layers[0][0])[0]), target, out_dir, stem
    )
