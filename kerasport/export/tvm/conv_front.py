"""The convolution route: a graph of convolution and pooling stages in front of a Dense graph.

Why a template again: TVM's untuned conv2d on CPU is plain loop code and tuning takes hours
(docs/tvm-notes.md), while a convolution over a fixed example shape is the same register-
tiled product as a Dense layer, with the input window standing in for the input row. So a
Conv1D/Conv2D stage runs per example, as the Dense kernel does per batch of rows:
- weights [kh, kw, cin, filters] repacked into panels [P, kh*kw*cin, panel] of output
  channels, filters padded to whole panels;
- a register tile of up to `acc_registers` vectors: a run of output positions along the row
  x a group of panels, the reduction over (kh, kw, cin) outside the unrolled tile, each
  input value broadcast from the window (no im2col buffer);
- bias and the stage's elementwise, per-channel and merge steps (activation,
  BatchNormalization, a residual Add, ...) applied on the tile, as for a Dense node.
A depthwise convolution tiles a run of positions x one vector of channels. Pooling (max,
average, global), zero padding and an Embedding's lookup are short vectorized passes over
channels. Stages form a graph: each reads an earlier stage, and merge steps (a residual Add)
read other earlier stages at the same position and channel.
Each example's stages run one after another in small per-call scratch buffers (one example
at a time, so they stay in cache and do not grow with the batch); the last stage (Flatten or
a global pooling) writes the example's row of the flat buffer `F`, which the Dense graph
then reads as its input, row-tiled over the whole batch. Every value is computed in a fixed
order whatever the batch, so bits do not depend on chunking.

Layouts are Keras' channels_last: a position's channels are contiguous, positions row-major,
so the model's input row X[r] is the example as Keras holds it. A 1-D sequence is a grid of
one row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from kerasport.errors import ExportError
from kerasport.export.tvm.activations import (
    Activation,
    ActivationSpec,
    Cell,
    as_activation,
    merge_sources,
    param_count,
    row_step,
    tile_buffers,
    tile_code,
    tile_steps,
)
from kerasport.export.tvm.packing import padded_vector, panel_layout
from kerasport.export.tvm.targets import TvmTarget
from kerasport.export.tvm.tvmscript import Writer

FLAT = "F"  # the flat buffer the front writes and the Dense graph reads
INPUT = -1  # a stage's source: the model's input
MAX_INDEX = 1 << 24  # indices arrive as float32, exact up to 2**24


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class Grid:
    """One example's spatial value: h x w positions of c channels."""

    h: int
    w: int
    c: int

    @property
    def positions(self) -> int:
        return self.h * self.w


@dataclass(frozen=True)
class Pad:
    """Zeros around the grid (ZeroPadding, or a convolution's "same"/"causal" padding)."""

    top: int
    bottom: int
    left: int
    right: int


@dataclass(frozen=True)
class Embed:
    """Embedding: each input value (one channel) indexes a row of `table` [vocabulary,
    dim]; the runtime refuses an index outside the vocabulary before the kernel runs (the
    kernel clamps it too, so no call reads outside the table)."""

    table: np.ndarray


@dataclass(frozen=True)
class Conv:
    """Conv1D/Conv2D with "valid" padding (a Pad stage before it pads it): kernel
    [kh, kw, cin, filters], then `activation` with per-channel `params`. `depthwise`:
    DepthwiseConv1D/2D (and a SeparableConv's first half), kernel [kh, kw, cin, multiplier],
    output channel ci * multiplier + j as TensorFlow orders them."""

    kernel: np.ndarray
    bias: np.ndarray
    strides: tuple[int, int]
    dilation: tuple[int, int]
    activation: ActivationSpec
    params: tuple[np.ndarray, ...] = ()
    depthwise: bool = False


@dataclass(frozen=True)
class Pool:
    """MaxPooling/AveragePooling; `padding` (top, bottom, left, right) clips windows at the
    grid's edge, as Keras' "same" does (an average counts only the values inside)."""

    kind: str  # "max" or "avg"
    size: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(frozen=True)
class Concat:
    """Concatenate on the channel axis: the source's channels, then those of each stage in
    `others` (INPUT: the model's input), `channels` in all."""

    others: tuple[int, ...]
    channels: int


@dataclass(frozen=True)
class Steps:
    """Elementwise and per-channel steps on a value no convolution of its own computed (the
    input, or after pooling)."""

    activation: ActivationSpec
    params: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class GlobalPool:
    """GlobalMaxPooling/GlobalAveragePooling: one value per channel, the flat output (with
    `keepdims`, a 1x1 grid the front goes on with)."""

    kind: str
    keepdims: bool = False


@dataclass(frozen=True)
class Flatten:
    """The grid as one row of h*w*c features, in Keras' order: the flat output."""


Stage = Embed | Pad | Conv | Pool | Concat | Steps | GlobalPool | Flatten
WITH_STEPS = (Conv, Steps)  # the stages that take steps of their own


@dataclass(frozen=True)
class Front:
    """The stages from the model's input grid to its flat features, run in order: stage i
    reads stage `sources[i]` (INPUT: the model's input; no sources: each reads the one
    before it), and its merge steps read earlier stages of its grid."""

    grid: Grid
    stages: tuple[Stage, ...]
    sources: tuple[int, ...] = ()

    def source(self, index: int) -> int:
        return self.sources[index] if self.sources else index - 1


def out_grid(stage: Stage, grid: Grid) -> Grid:
    """The grid a stage makes of `grid` (ExportError when nothing is left of it)."""
    if isinstance(stage, Embed):
        if grid.c != 1:
            raise ExportError(f"an Embedding reads one index per position, not {grid.c}")
        out = Grid(grid.h, grid.w, int(np.shape(stage.table)[1]))
    elif isinstance(stage, Pad):
        out = Grid(grid.h + stage.top + stage.bottom, grid.w + stage.left + stage.right, grid.c)
    elif isinstance(stage, Conv):
        kh, kw, cin, filters = np.shape(stage.kernel)
        (sh, sw), (dh, dw) = stage.strides, stage.dilation
        channels = int(filters) * (int(cin) if stage.depthwise else 1)
        out = Grid((grid.h - (kh - 1) * dh - 1) // sh + 1,
                   (grid.w - (kw - 1) * dw - 1) // sw + 1, channels)
    elif isinstance(stage, Pool):
        (ph, pw), (sh, sw), (t, b, left, right) = stage.size, stage.strides, stage.padding
        out = Grid((grid.h + t + b - ph) // sh + 1, (grid.w + left + right - pw) // sw + 1, grid.c)
    elif isinstance(stage, GlobalPool):
        out = Grid(1, 1, grid.c)
    elif isinstance(stage, Concat):
        out = Grid(grid.h, grid.w, stage.channels)
    elif isinstance(stage, Flatten):
        out = Grid(1, 1, grid.positions * grid.c)
    else:
        out = grid
    if min(out.h, out.w, out.c) < 1:
        raise ExportError(f"{type(stage).__name__} leaves nothing of a {grid} example")
    return out


@dataclass(frozen=True)
class _Buffer:
    """Where a stage's value lives: `stride` floats per position; `rows` buffers (the input X
    and the flat F) are indexed [r, i], scratch buffers (one example) [i]."""

    name: str
    grid: Grid
    stride: int
    rows: bool = False

    def at(self, index: str) -> str:
        return f"{self.name}[r, {index}]" if self.rows else f"{self.name}[{index}]"

    @property
    def size(self) -> int:
        return self.grid.positions * self.stride


@dataclass(frozen=True)
class _Planned:
    """One stage after checking: what it reads, where its value goes, its steps, and for a
    convolution its panels."""

    stage: Stage
    index: int
    src: _Buffer
    dst: _Buffer
    activation: Activation
    width: int = 0  # a convolution's panel width
    panels: int = 0


@dataclass(frozen=True)
class FrontPlan:
    """The checked front: stages with their buffers, the per-call scratch sizes, the flat
    width the Dense graph reads and the arrays the kernels take (in calling order)."""

    front: Front
    stages: tuple[_Planned, ...]
    scratch: tuple[Scratch, ...]
    flat: _Buffer
    arrays: tuple[tuple[str, np.ndarray], ...]  # (buffer name, packed array)

    @property
    def slack(self) -> int:
        """Floats allocated past each scratch buffer's last position: a merge reads another
        stage's value at this stage's columns, and a convolution's panels may pad wider than
        the stride of the value it merges, so its padded lanes read (and discard) up to
        that many floats past the other buffer's end."""
        return max(p.dst.stride for p in self.stages)

    def allocated(self, buffer: Scratch) -> int:
        return buffer.size + self.slack

    def cell(self, p: _Planned, position: str, channel: str) -> Cell:
        """The loads a stage's steps read at (position, channel): a merged stage's value
        at the same place, and the stage's own per-channel arrays."""
        def merged(source: int) -> str:
            buffer = self.stages[source].dst
            return buffer.at(f"({position}) * {buffer.stride} + {channel}")

        return Cell(merged, lambda param: f"CP{p.index}_{param}[{channel}]")

    @property
    def input(self) -> _Buffer:
        return _input_buffer(self.front)

    @property
    def num_features(self) -> int:
        """The model's input width (one example, flattened)."""
        grid = self.front.grid
        return grid.positions * grid.c

    @property
    def flat_width(self) -> int:
        """The true width of the flat features (the Dense graph's input)."""
        return self.flat.grid.c


def _input_buffer(front: Front) -> _Buffer:
    """The model's input rows X: one example per row, its own channel count as stride."""
    return _Buffer("X", front.grid, front.grid.c, rows=True)


def _activation(
    stage: Stage, where: str, grid: Grid, index: int, planned: list[_Planned]
) -> Activation:
    """A stage's steps: elementwise, per-channel and merges of earlier stages of its grid
    (no row-wise step)."""
    spec = stage.activation if isinstance(stage, WITH_STEPS) else "linear"
    try:
        activation = as_activation(spec)
    except ExportError as exc:
        raise ExportError(f"{where}: {exc}") from None
    if row_step(activation) is not None:
        raise ExportError(f"{where}: a convolution stage takes no row-wise step ({activation})")
    channels = grid.c
    for source in merge_sources(activation):
        if not 0 <= source < index or planned[source].dst.grid != grid or planned[source].dst.rows:
            raise ExportError(f"{where}: a merge reads stage {source}, which is not an earlier "
                              f"stage of its grid {grid}")
    params = stage.params if isinstance(stage, WITH_STEPS) else ()
    count = param_count(activation)
    if len(params) != count or any(np.shape(p) != (channels,) for p in params):
        raise ExportError(f"{where}: its steps read {count} arrays of {channels} channels")
    if not all(np.all(np.isfinite(p)) for p in params):
        raise ExportError(f"{where} has non-finite parameters")
    return activation


def plan_front(front: Front, target: TvmTarget) -> FrontPlan:
    """Check the stages, give each its buffer and pack its arrays.

    Pooling, steps and depthwise convolutions read whole vectors of channels, so one that
    reads the input (whose channels need not fill a vector) is refused: the reader of the
    model (keras_conv.py) copies the input to a padded stride first, with a Pad stage of no
    padding."""
    stages = list(front.stages)
    flat = [isinstance(s, Flatten) or (isinstance(s, GlobalPool) and not s.keepdims)
            for s in stages]
    if not flat or not flat[-1]:
        raise ExportError("a convolution front must end in Flatten or a global pooling")
    if any(flat[:-1]):
        raise ExportError("a convolution front has one flat output, its last stage")
    if front.sources and len(front.sources) != len(stages):
        raise ExportError("a convolution front names a source for each stage")
    lanes = target.lanes
    source_x = _input_buffer(front)
    planned: list[_Planned] = []
    arrays: list[tuple[str, np.ndarray]] = []
    for index, stage in enumerate(stages):
        where = f"convolution stage {index} ({type(stage).__name__})"
        source = front.source(index)
        if not INPUT <= source < index:
            raise ExportError(f"{where} reads stage {source}, not an earlier one")
        src = source_x if source == INPUT else planned[source].dst
        if src.rows and src.name == FLAT:
            raise ExportError(f"{where} reads the flat output")
        vectors = isinstance(stage, (Pool, Steps, GlobalPool)) or (
            isinstance(stage, Conv) and stage.depthwise)
        if vectors and src.stride % lanes:
            raise ExportError(f"{where} reads whole vectors of channels: copy the input to a "
                              "padded stride first (a Pad stage of no padding)")
        grid = out_grid(stage, src.grid)
        if flat[index]:
            dst = _Buffer(FLAT, grid, round_up(grid.c, lanes), rows=True)
        elif isinstance(stage, Conv) and not stage.depthwise:
            dst = _Buffer(f"S{index}", grid, 0)  # its panels set the stride (below)
        else:
            dst = _Buffer(f"S{index}", grid, round_up(grid.c, lanes))
        activation = _activation(stage, where, grid, index, planned)
        width = panels = 0
        if isinstance(stage, Conv):
            kernel, bias = np.asarray(stage.kernel), np.asarray(stage.bias)
            if kernel.ndim != 4 or kernel.shape[2] != src.grid.c or bias.shape != (grid.c,):
                raise ExportError(f"{where}: kernel {kernel.shape} and bias {bias.shape} do "
                                  f"not fit {src.grid.c} input channels")
            if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
                raise ExportError(f"{where} has non-finite weights")
        if isinstance(stage, Conv) and stage.depthwise:
            taps = kernel.shape[0] * kernel.shape[1]
            packed = np.zeros((taps, dst.stride), dtype=np.float32)
            packed[:, : grid.c] = kernel.reshape(taps, grid.c)  # column ci * m + j
            arrays += [(f"CD{index}", packed), (f"CB{index}", padded_vector(bias, dst.stride))]
        if isinstance(stage, Conv) and not stage.depthwise:
            width = target.panel_width(grid.c)
            panels = -(-grid.c // width)
            dst = _Buffer(dst.name, grid, width * panels)
            rows = kernel.reshape(-1, grid.c)  # row (ky * kw + kx) * cin + ci
            arrays.append((f"CW{index}", panel_layout(rows, width, panels)))
            arrays.append((f"CB{index}", padded_vector(bias, dst.stride)))
        if isinstance(stage, Concat):
            parts = [src, *(source_x if o == INPUT else planned[o].dst for o in stage.others
                            if INPUT <= o < index)]
            if len(parts) != len(stage.others) + 1 or any(
                (b.grid.h, b.grid.w) != (grid.h, grid.w) or (b.rows and b.name == FLAT)
                for b in parts
            ) or sum(b.grid.c for b in parts) != grid.c:
                raise ExportError(f"{where}: its parts {stage.others} are not earlier values "
                                  f"of {grid.h}x{grid.w} positions and {grid.c} channels in all")
        if isinstance(stage, Embed):
            table = np.asarray(stage.table)
            if table.ndim != 2 or not 1 <= table.shape[0] <= MAX_INDEX:
                raise ExportError(f"{where}: an embedding table of shape {table.shape} is not "
                                  f"[vocabulary of 1-{MAX_INDEX}, dim]")
            if not np.all(np.isfinite(table)):
                raise ExportError(f"{where} has non-finite weights")
            padded = np.zeros((table.shape[0], dst.stride), dtype=np.float32)
            padded[:, : grid.c] = table
            arrays.append((f"CE{index}", padded))
        if isinstance(stage, Pool) and (stage.kind not in ("max", "avg") or min(
                *stage.size, *stage.strides) < 1 or min(stage.padding) < 0):
            raise ExportError(f"{where}: pooling {stage} is not one the route compiles")
        if isinstance(stage, GlobalPool) and stage.kind not in ("max", "avg"):
            raise ExportError(f"{where}: global pooling {stage.kind!r} is not compiled")
        params = stage.params if isinstance(stage, WITH_STEPS) else ()
        arrays += [(f"CP{index}_{p}", padded_vector(a, dst.stride)) for p, a in enumerate(params)]
        planned.append(_Planned(stage, index, src, dst, activation, width, panels))
    shared, scratch = _share_scratch(planned, front)
    return FrontPlan(front, tuple(shared), scratch, shared[-1].dst, tuple(arrays))


@dataclass(frozen=True)
class Scratch:
    """One per-call buffer of the front kernel, shared by stages whose values do not live
    at once; `size` floats (the largest of them)."""

    name: str
    size: int


def _share_scratch(
    planned: list[_Planned], front: Front
) -> tuple[list[_Planned], tuple[Scratch, ...]]:
    """Give each stage's value a scratch buffer no value still to be read holds: a stage's
    buffer is free once the last stage reading it (as its source or a merge) has run. A
    ResNet's front then needs a few buffers of its largest map, not one per layer."""
    last_read: dict[int, int] = {}
    for p in planned:
        others = p.stage.others if isinstance(p.stage, Concat) else ()
        for source in (front.source(p.index), *merge_sources(p.activation), *others):
            last_read[source] = p.index
    sizes: list[int] = []
    holders: dict[int, int] = {}  # buffer -> the stage whose value it holds
    names: dict[int, str] = {}
    for p in planned:
        for buffer, stage in list(holders.items()):
            if last_read.get(stage, stage) < p.index:
                del holders[buffer]
        if p.dst.rows:
            continue
        free = [b for b in range(len(sizes)) if b not in holders]
        fits = [b for b in free if sizes[b] >= p.dst.size]
        if fits:
            buffer = min(fits, key=lambda b: sizes[b])
        elif free:
            buffer = max(free, key=lambda b: sizes[b])
        else:
            buffer = len(sizes)
            sizes.append(0)
        sizes[buffer] = max(sizes[buffer], p.dst.size)
        holders[buffer] = p.index
        names[p.index] = f"S{buffer}"

    def named(buffer: _Buffer, stage: int) -> _Buffer:
        return buffer if buffer.rows else replace(buffer, name=names[stage])

    shared = [replace(p, src=named(p.src, front.source(p.index)), dst=named(p.dst, p.index))
              for p in planned]
    return shared, tuple(Scratch(f"S{b}", size) for b, size in enumerate(sizes))


# --- TVMScript text ---------------------------------------------------------------------------

Out = Writer


def _channels(out: Out, depth: int, buffer: _Buffer, lanes: int, c: int) -> tuple[int, str]:
    """Open a loop over a position's channels: whole vectors when the stride allows, else
    one true channel at a time; returns the new depth and the channel expression."""
    if buffer.stride % lanes == 0:  # the vectors holding true channels (strides differ)
        out(depth, f"for q in range({-(-c // lanes)}):")
        out(depth + 1, f"for c in T.vectorized({lanes}):")
        return depth + 2, f"q * {lanes} + c"
    out(depth, f"for ch in range({c}):")
    return depth + 1, "ch"


def _embed(out: Out, depth: int, p: _Planned, lanes: int) -> None:
    """Each position's row of the table (the index clamped into the table)."""
    src, dst = p.src, p.dst
    assert isinstance(p.stage, Embed)
    last = int(np.shape(p.stage.table)[0]) - 1
    out(depth, f"for i in range({src.grid.positions}):")
    index = f"T.max(0, T.min(T.Cast('int32', {src.at('i')}), {last}))"
    out(depth + 1, f"for q in range({dst.stride // lanes}):")
    out(depth + 2, f"for c in T.vectorized({lanes}):")
    out(depth + 3, f"{dst.at(f'i * {dst.stride} + q * {lanes} + c')} = "
        f"CE{p.index}[{index}, q * {lanes} + c]")


def _pad(out: Out, depth: int, p: _Planned, lanes: int) -> None:
    """Zeros, then the source's positions inside them."""
    stage, src, dst = p.stage, p.src, p.dst
    assert isinstance(stage, Pad)
    out(depth, f"for i in range({dst.size}):")
    out(depth + 1, f"{dst.at('i')} = T.float32(0)")
    out(depth, f"for y in range({src.grid.h}):")
    out(depth + 1, f"for x in range({src.grid.w}):")
    inner, ch = _channels(out, depth + 2, src, lanes, src.grid.c)
    target = f"((y + {stage.top}) * {dst.grid.w} + x + {stage.left}) * {dst.stride} + {ch}"
    out(inner, f"{dst.at(target)} = {src.at(f'(y * {src.grid.w} + x) * {src.stride} + {ch}')}")


def conv_tile(p: _Planned, target: TvmTarget) -> tuple[int, int]:
    """(positions, panels) of a convolution's register tile: as many positions along a row
    as the accumulator budget allows with every panel, else fewer panels per tile."""
    vecs = p.width // target.lanes
    wo = p.dst.grid.w
    group = max(1, min(p.panels, target.acc_registers // (min(wo, target.tile_rows) * vecs)))
    return max(1, min(wo, target.acc_registers // (group * vecs))), group


def _window(p: _Planned, ox: str, channel: str) -> str:
    """The load a convolution reads at tap (ky, kx) for output position (oy, ox)."""
    assert isinstance(p.stage, Conv)
    (sh, sw), (dh, dw) = p.stage.strides, p.stage.dilation
    src = p.src
    return src.at(f"((oy * {sh} + ky * {dh}) * {src.grid.w} + ({ox}) * {sw} + kx * {dw}) "
                  f"* {src.stride} + {channel}")


def _conv(out: Out, depth: int, plan: FrontPlan, p: _Planned, target: TvmTarget) -> None:
    stage, dst = p.stage, p.dst
    assert isinstance(stage, Conv)
    lanes, i = target.lanes, p.index
    kh, kw, cin, _ = np.shape(stage.kernel)
    vecs = p.width // lanes
    positions, group = conv_tile(p, target)
    steps = tile_steps(p.activation)
    long_steps = tile_buffers(steps) > 0
    out(depth, f"for oy in range({dst.grid.h}):")
    for at, panel0, size in out.runs(depth + 1, p.panels, group, "pg"):
        for inner, x0, width in out.runs(at, dst.grid.w, positions, "ox"):
            tiles = [(x, j, v) for x in range(width) for j in range(size) for v in range(vecs)]

            def acc(x: int, j: int, v: int) -> str:
                return f"acc_{x}_{j}_{v}"

            def col(j: int, v: int, panel0: str = panel0) -> str:
                return f"({panel0} + {j}) * {p.width} + {v * lanes} + c"

            def pos(x: int | str, x0: str = x0) -> str:
                return f"oy * {dst.grid.w} + {x0} + {x}"

            for x, j, v in tiles:
                out(inner, f"for c in T.vectorized({lanes}):")
                out(inner + 1, f"{acc(x, j, v)}[c] = CB{i}[{col(j, v)}]")
            out(inner, f"for ky in range({kh}):")
            out(inner + 1, f"for kx in range({kw}):")
            out(inner + 2, f"for ci in range({cin}):")
            for x, j, v in tiles:
                window = _window(p, f"{x0} + {x}", "ci")
                out(inner + 3, f"for c in T.vectorized({lanes}):")
                out(inner + 4, f"{acc(x, j, v)}[c] = {acc(x, j, v)}[c] + {window} * "
                    f"CW{i}[{panel0} + {j}, (ky * {kw} + kx) * {cin} + ci, {v * lanes} + c]")
            for x, j, v in tiles:
                out(inner, f"for c in T.vectorized({lanes}):")
                value = f"{acc(x, j, v)}[c]"
                if not long_steps:
                    value = tile_code(value, steps, plan.cell(p, pos(x), col(j, v)))[1]
                out(inner + 1, f"{dst.at(f'({pos(x)}) * {dst.stride} + {col(j, v)}')} = {value}")
            if long_steps:  # long pipelines in a rolled loop (see dense_graph._tile)
                out(inner, f"for ax in range({width}):")
                out(inner + 1, f"for aq in range({size * vecs}):")
                column = f"{panel0} * {p.width} + aq * {lanes} + c"
                _vector_steps(out, inner + 2, plan, p, lanes, pos("ax"), column, steps)


def depthwise_tile(p: _Planned, target: TvmTarget) -> int:
    """Output positions of a depthwise convolution's register tile (one vector each)."""
    return max(1, min(p.dst.grid.w, target.tile_rows))


def _depthwise(out: Out, depth: int, plan: FrontPlan, p: _Planned, target: TvmTarget) -> None:
    """Each vector of output channels over a run of positions: acc += window * tap, the
    input channel of output channel o being o // multiplier."""
    stage, dst = p.stage, p.dst
    assert isinstance(stage, Conv) and stage.depthwise
    lanes, i = target.lanes, p.index
    kh, kw, _, multiplier = np.shape(stage.kernel)
    positions = depthwise_tile(p, target)
    steps = tile_steps(p.activation)
    channel = f"q * {lanes} + c"
    source = channel if multiplier == 1 else f"({channel}) // {multiplier}"
    out(depth, f"for oy in range({dst.grid.h}):")
    for inner, x0, width in out.runs(depth + 1, dst.grid.w, positions, "ox"):
        out(inner, f"for q in range({-(-dst.grid.c // lanes)}):")
        inner += 1
        for x in range(width):
            out(inner, f"for c in T.vectorized({lanes}):")
            out(inner + 1, f"acc_{x}_0_0[c] = CB{i}[{channel}]")
        out(inner, f"for ky in range({kh}):")
        out(inner + 1, f"for kx in range({kw}):")
        for x in range(width):
            window = _window(p, f"{x0} + {x}", source)
            out(inner + 2, f"for c in T.vectorized({lanes}):")
            out(inner + 3, f"acc_{x}_0_0[c] = acc_{x}_0_0[c] + {window} * "
                f"CD{i}[ky * {kw} + kx, {channel}]")
        for x in range(width):
            position = f"oy * {dst.grid.w} + {x0} + {x}"
            lines, value = tile_code(f"acc_{x}_0_0[c]", steps, plan.cell(p, position, channel))
            out(inner, f"for c in T.vectorized({lanes}):")
            for line in lines:
                out(inner + 1, line)
            out(inner + 1, f"{dst.at(f'({position}) * {dst.stride} + {channel}')} = {value}")


def _vector_steps(out: Out, depth: int, plan: FrontPlan, p: _Planned, lanes: int,
                  position: str, channel: str, steps: list[Activation]) -> None:
    """The stage's value at (position, channel) through `steps` over one vector (lane
    variable c), in place."""
    at = p.dst.at(f"({position}) * {p.dst.stride} + {channel}")
    lines, value = tile_code(at, steps, plan.cell(p, position, channel))
    out(depth, f"for c in T.vectorized({lanes}):")
    for line in lines:
        out(depth + 1, line)
    out(depth + 1, f"{at} = {value}")


def _steps(out: Out, depth: int, plan: FrontPlan, p: _Planned, lanes: int) -> None:
    """A Steps stage: the source through its steps, vector by vector."""
    src, dst = p.src, p.dst
    steps = tile_steps(p.activation)
    out(depth, f"for i in range({src.grid.positions}):")
    out(depth + 1, f"for q in range({dst.stride // lanes}):")
    lines, value = tile_code(src.at(f"i * {src.stride} + q * {lanes} + c"), steps,
                             plan.cell(p, "i", f"q * {lanes} + c"))
    out(depth + 2, f"for c in T.vectorized({lanes}):")
    for line in lines:
        out(depth + 3, line)
    out(depth + 3, f"{dst.at(f'i * {dst.stride} + q * {lanes} + c')} = {value}")


def _pool(out: Out, depth: int, p: _Planned, lanes: int) -> None:
    """Max or average over each window, clipped to the grid; an average divides by the
    number of values inside the window (Keras' "same")."""
    stage, src, dst = p.stage, p.src, p.dst
    assert isinstance(stage, Pool)
    (ph, pw), (sh, sw), (top, _, left, _) = stage.size, stage.strides, stage.padding
    maximum = stage.kind == "max"
    clipped = stage.padding != (0, 0, 0, 0)
    out(depth, f"for oy in range({dst.grid.h}):")
    out(depth + 1, f"for ox in range({dst.grid.w}):")
    out(depth + 2, f"for q in range({dst.stride // lanes}):")
    d = depth + 3
    out(d, f"for c in T.vectorized({lanes}):")
    start = 'T.min_value("float32")' if maximum else "T.float32(0)"
    out(d + 1, f"pool[c] = {start}")
    out(d, f"for ky in range({ph}):")
    out(d + 1, f"for kx in range({pw}):")
    y, x = f"oy * {sh} + ky - {top}", f"ox * {sw} + kx - {left}"
    inner = d + 2
    if clipped:
        out(inner, f"if {y} >= 0 and {y} < {src.grid.h} and {x} >= 0 and {x} < {src.grid.w}:")
        inner += 1
    load = src.at(f"(({y}) * {src.grid.w} + {x}) * {src.stride} + q * {lanes} + c")
    out(inner, f"for c in T.vectorized({lanes}):")
    out(inner + 1, f"pool[c] = {_reduce(maximum, load)}")
    value = "pool[c]"
    if not maximum:
        if clipped:
            inside = [f"(T.min({o} * {s} - {b} + {k}, {n}) - T.max({o} * {s} - {b}, 0))"
                      for o, s, b, k, n in (("oy", sh, top, ph, src.grid.h),
                                            ("ox", sw, left, pw, src.grid.w))]
            value = f"pool[c] / T.Cast('float32', {inside[0]} * {inside[1]})"
        else:
            value = f"pool[c] / T.float32({float(ph * pw)!r})"
    out(d, f"for c in T.vectorized({lanes}):")
    out(d + 1, f"{dst.at(f'(oy * {dst.grid.w} + ox) * {dst.stride} + q * {lanes} + c')} = {value}")


def _reduce(maximum: bool, load: str) -> str:
    return f"T.max(pool[c], {load})" if maximum else f"pool[c] + {load}"


def _global_pool(out: Out, depth: int, p: _Planned, lanes: int) -> None:
    stage, src, dst = p.stage, p.src, p.dst
    assert isinstance(stage, GlobalPool)
    maximum = stage.kind == "max"
    out(depth, f"for q in range({dst.stride // lanes}):")
    out(depth + 1, f"for c in T.vectorized({lanes}):")
    out(depth + 2, f"pool[c] = {src.at(f'q * {lanes} + c')}")
    out(depth + 1, f"for i in range(1, {src.grid.positions}):")
    load = src.at(f"i * {src.stride} + q * {lanes} + c")
    out(depth + 2, f"for c in T.vectorized({lanes}):")
    out(depth + 3, f"pool[c] = {_reduce(maximum, load)}")
    value = "pool[c]" if maximum else f"pool[c] / T.float32({float(src.grid.positions)!r})"
    out(depth + 1, f"for c in T.vectorized({lanes}):")
    out(depth + 2, f"{dst.at(f'q * {lanes} + c')} = {value}")


def _concat(out: Out, depth: int, plan: FrontPlan, p: _Planned) -> None:
    """Each part's true channels, side by side at each position."""
    assert isinstance(p.stage, Concat)
    parts = [p.src, *(plan.stages[o].dst if o != INPUT else plan.input for o in p.stage.others)]
    offset = 0
    for part in parts:
        out(depth, f"for i in range({p.dst.grid.positions}):")
        out(depth + 1, f"for ch in range({part.grid.c}):")
        out(depth + 2, f"{p.dst.at(f'i * {p.dst.stride} + {offset} + ch')} = "
            f"{part.at(f'i * {part.stride} + ch')}")
        offset += part.grid.c


def _flatten(out: Out, depth: int, p: _Planned) -> None:
    """The true channels of each position side by side (Keras' Flatten order)."""
    src, dst = p.src, p.dst
    c = src.grid.c
    out(depth, f"for i in range({src.grid.positions}):")
    out(depth + 1, f"for ch in range({c}):")
    out(depth + 2, f"{dst.at(f'i * {c} + ch')} = {src.at(f'i * {src.stride} + ch')}")


def front_arguments(plan: FrontPlan) -> list[str]:
    """The front kernel's handles in calling order: x, its arrays, its scratch buffers, F."""
    names = ["X", *(name for name, _ in plan.arrays), *(b.name for b in plan.scratch), FLAT]
    return [name.lower() for name in names]


def front_source(name: str, plan: FrontPlan, target: TvmTarget) -> str:
    """TVMScript of the front kernel: every stage for each of its rows (any number, read
    from the buffers' shapes), one example at a time."""
    out = Writer()
    out.header(name, front_arguments(plan))
    out(1, "n = T.int32()")
    out.match("x", "X", f"(n, {plan.num_features})")
    for buffer_name, array in plan.arrays:
        out.match(buffer_name.lower(), buffer_name, str(tuple(array.shape)))
    for scratch in plan.scratch:
        out.match(scratch.name.lower(), scratch.name, f"({plan.allocated(scratch)},)")
    out.match(FLAT.lower(), FLAT, f"(n, {plan.flat.stride})")
    out.lane_buffers(lane_buffers(plan, target), target.lanes)
    out(1, "for r in range(n):")
    for p in plan.stages:
        stage = p.stage
        if isinstance(stage, Embed):
            _embed(out, 2, p, target.lanes)
        elif isinstance(stage, Pad):
            _pad(out, 2, p, target.lanes)
        elif isinstance(stage, Conv) and stage.depthwise:
            _depthwise(out, 2, plan, p, target)
        elif isinstance(stage, Conv):
            _conv(out, 2, plan, p, target)
        elif isinstance(stage, Pool):
            _pool(out, 2, p, target.lanes)
        elif isinstance(stage, Steps):
            _steps(out, 2, plan, p, target.lanes)
        elif isinstance(stage, Concat):
            _concat(out, 2, plan, p)
        elif isinstance(stage, GlobalPool):
            _global_pool(out, 2, p, target.lanes)
        else:
            _flatten(out, 2, p)
    return out.text()


def lane_buffers(plan: FrontPlan, target: TvmTarget) -> set[str]:
    """The small stack buffers the front's code uses: accumulators, `pool`, `act*`."""
    names = {"pool"}
    acts = 0
    for p in plan.stages:
        acts = max(acts, tile_buffers(tile_steps(p.activation)))
        if isinstance(p.stage, Conv) and not p.stage.depthwise:
            positions, group = conv_tile(p, target)
            names.update(f"acc_{x}_{j}_{v}" for x in range(positions) for j in range(group)
                         for v in range(p.width // target.lanes))
        if isinstance(p.stage, Conv) and p.stage.depthwise:
            names.update(f"acc_{x}_0_0" for x in range(depthwise_tile(p, target)))
    return names | {f"act{i}" for i in range(acts)}


def describe(plan: FrontPlan) -> list[dict[str, Any]]:
    """The stages for the manifest (what a reader of the bundle sees, not what runs)."""
    described = []
    for p in plan.stages:
        depthwise = isinstance(p.stage, Conv) and p.stage.depthwise
        kind = "depthwise" if depthwise else type(p.stage).__name__.lower()
        entry: dict[str, Any] = {"kind": kind,
                                 "source": plan.front.source(p.index),
                                 "in": [p.src.grid.h, p.src.grid.w, p.src.grid.c],
                                 "out": [p.dst.grid.h, p.dst.grid.w, p.dst.grid.c]}
        if not p.activation.is_linear:
            entry["activation"] = str(p.activation)
        described.append(entry)
    return described
