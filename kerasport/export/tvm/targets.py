"""Named CPU targets for TVM libraries, and their mapping to what a host CPU offers.

Each library is built for one named target, and records the Linux /proc/cpuinfo flags it
needs: an AVX-512 library dies with an illegal instruction on an AVX2-only CPU, so the
runtime compares these flags with the host's before loading (see kerasport.cpu).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kerasport.cpu import host_cpu_features, missing_features
from kerasport.errors import ExportError


@dataclass(frozen=True)
class TvmTarget:
    """One code-generation target and the register tile its kernels use.

    `lanes` is the float32 vector width, `panel` the width of a packed weight panel (a
    multiple of `lanes`), `tile_rows` the most rows one register tile holds, and
    `acc_registers` how many vector registers the tile may spend on accumulators (the rest
    hold the broadcast input and the weight loads). Whether `load(backend="auto")` serves a
    library is not the target's to say: export times it against ONNX Runtime (speed.py).
    """

    name: str
    llvm: dict[str, Any] = field(hash=False, compare=False)
    cpu_features: tuple[str, ...]
    lanes: int
    panel: int
    tile_rows: int
    acc_registers: int

    def panel_width(self, n: int) -> int:
        """The widest panel (a whole number of vectors, at most `panel`) that pads n columns
        to within 1/32 of the least padding any width gives: 48-wide panels pad a 64-wide
        layer to 96 columns (half again the work) where 32-wide ones pad nothing, while 750
        columns keep 48-wide panels (768, against 752 at best)."""
        widths = range(self.panel, 0, -self.lanes)
        least = min(-(-n // width) * width for width in widths)
        return next(width for width in widths if -(-n // width) * width * 32 < least * 33)

    def llvm_target(self) -> dict[str, Any]:
        """A fresh copy of the TVM target dict (TVM 0.27 takes targets as dicts)."""
        return {key: (list(v) if isinstance(v, list) else v) for key, v in self.llvm.items()}


# x86-64-v3: AVX2 + FMA, 16 ymm registers: 4 rows x 3 vectors = 12 accumulators. The budget
# that sets how many panels a 1- or 2-row tile takes is 9, three quarters of them, as for
# x86-64-v4 (`python benchmarks/bench_tvm_tiles.py --target x86-64-v3` compares budgets).
X86_64_V3 = TvmTarget(
    name="x86-64-v3",
    llvm={"kind": "llvm", "mcpu": "haswell", "mtriple": "x86_64-linux-gnu"},
    cpu_features=("avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe"),
    lanes=8,
    panel=24,
    tile_rows=4,
    acc_registers=9,
)

# x86-64-v4: AVX-512, 32 zmm registers: 8 rows x 3 vectors = 24 accumulators. The budget for
# 1- to 4-row tiles is 18: at 24 (2 rows x 4 panels) the 2-row kernel spilled, 30.5-51.6 us
# per call depending on the process against 29.5-31.2 us at 18 on DeepVariant's model
# (benchmarks/tvm-tiles/TILES.md, AMD EPYC Zen 4), and no other row count moved.
X86_64_V4 = TvmTarget(
    name="x86-64-v4",
    llvm={"kind": "llvm", "mcpu": "skylake-avx512", "mtriple": "x86_64-linux-gnu"},
    cpu_features=(
        "avx512f",
        "avx512bw",
        "avx512cd",
        "avx512dq",
        "avx512vl",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi1",
        "bmi2",
        "movbe",
    ),
    lanes=16,
    panel=48,
    tile_rows=8,
    acc_registers=18,
)

# Best first: host_target() picks the first one the CPU can run.
_TARGETS: tuple[TvmTarget, ...] = (X86_64_V4, X86_64_V3)
HOST_ALIASES = ("auto", "host")


def known_targets() -> dict[str, TvmTarget]:
    """Named targets by name, best first."""
    return {target.name: target for target in _TARGETS}


def runnable_targets(features: frozenset[str] | None = None) -> list[TvmTarget]:
    """The named targets this CPU (or the given flag set) can run, best first."""
    host = host_cpu_features() if features is None else features
    return [target for target in _TARGETS if not missing_features(target.cpu_features, host)]


def host_target(features: frozenset[str] | None = None) -> TvmTarget:
    """The best named target this CPU (or the given flag set) can run.

    Raises ExportError on a CPU that offers none of them (not x86-64, or older than AVX2).
    """
    runnable = runnable_targets(features)
    if runnable:
        return runnable[0]
    raise ExportError(
        "this CPU runs none of the TVM targets "
        f"({', '.join(t.name for t in _TARGETS)}); name one explicitly to cross-compile"
    )


def resolve_targets(names: list[str]) -> list[TvmTarget]:
    """Map target names (or "auto"/"host") to targets, once each, in the order given."""
    known = known_targets()
    resolved: list[TvmTarget] = []
    for name in names:
        key = name.strip().lower()
        if key in HOST_ALIASES:
            target = host_target()
        elif key in known:
            target = known[key]
        else:
            choices = ", ".join([*known, *HOST_ALIASES])
            raise ExportError(f"unknown TVM target {name!r}; known targets: {choices}")
        if target not in resolved:
            resolved.append(target)
    return resolved
