"""TVMScript text: the writer both routes' kernel sources are built with."""

from __future__ import annotations

from collections.abc import Iterator


class Writer:
    """Indented TVMScript lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def match(self, handle: str, buffer: str, shape: str) -> None:
        """A float32 argument buffer, 64-byte aligned (the runner allocates them so)."""
        self(1, f'{buffer} = T.match_buffer({handle}, {shape}, "float32", align=64)')

    def header(self, name: str, handles: list[str], extra: str = "") -> None:
        """A kernel's signature: `handles` as T.handle arguments, then `extra` ones."""
        params = ", ".join(f"{handle}: T.handle" for handle in handles) + extra
        self(0, "@T.prim_func")
        self(0, f"def {name}({params}):")
        self(1, f'T.func_attr({{"global_symbol": "{name}", "tir.noalias": True}})')

    def lane_buffers(self, names: set[str], lanes: int) -> None:
        """One small stack buffer per name, so LLVM keeps each in a register (one big buffer
        stays in memory, and anything over 1 KiB goes to TVM's heap workspace)."""
        for name in sorted(names):
            self(1, f"{name} = T.alloc_buffer(({lanes},), 'float32', scope='global')")

    def runs(self, depth: int, extent: int, size: int, var: str) -> Iterator[tuple[int, str, int]]:
        """`extent` items (panels, output positions) in runs of `size`, then a shorter tail:
        for each kind of run, (the depth of its body, its first item as an expression, its
        length). Several full runs share one loop over `var`, opened here."""
        full, tail = divmod(extent, size)
        if full > 1:
            self(depth, f"for {var} in range({full}):")
            yield depth + 1, f"{var} * {size}", size
        elif full:
            yield depth, "0", size
        if tail:
            yield depth, str(full * size), tail

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
