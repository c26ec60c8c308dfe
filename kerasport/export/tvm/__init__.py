"""TVM backend, export side: hand-scheduled TIR kernels for Dense chains, one library a CPU.

Importing this package is cheap; the TVM compiler is imported only inside the compile
functions, so `kerasport export` without a TVM target never pays its 1-2 s import.
"""

from kerasport.export.tvm.targets import (
    TvmTarget,
    host_target,
    known_targets,
    resolve_targets,
    runnable_targets,
)

__all__ = ["TvmTarget", "host_target", "known_targets", "resolve_targets", "runnable_targets"]
