"""What the runtime's import path costs, package by package, as a share of the whole.

The runtime is loaded into processes that start 16 at a time, so its cold start is a promise
(<= 0.35 s, benchmarks/bench_cold_start.py). A dependency release can break it without any
kerasport change: ml_dtypes 0.7.0, which tvm-ffi imports on every library load, takes 0.4-0.6 s
to import where 0.6.0 takes 5 ms. So each top-level package's self time from `python -X
importtime` in a fresh process that imports the runtime and loads a bundle is compared with
the whole import time of the same process: machine speed cancels, and a wall-clock threshold
(which would depend on this CPU) is never used. The share kept is the smallest over a few
fresh processes, so a scheduling hiccup in one run cannot fail the check, while a package that
is slow every time does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from kerasport.export.tvm import runnable_targets

RUNS = 3
# The engines themselves, and numpy under both, are what a cold start is for; any other
# package (ml_dtypes, kerasport's own modules, a stdlib module) is at most DEFAULT_BUDGET.
BUDGETS = {"numpy": 0.70, "onnxruntime": 0.60, "tvm_ffi": 0.50}
DEFAULT_BUDGET = 0.20


def import_shares(code: str, path: Path | None = None) -> dict[str, float]:
    """Each top-level package's share of one fresh process's total import time (`path`
    first on the module search path, when given)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    self_us: Counter[str] = Counter()
    for line in proc.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or "self" in fields[0]:
            continue
        self_us[fields[2].strip().split(".")[0]] += int(fields[0])
    total = sum(self_us.values())
    assert total > 0, proc.stderr[-3000:]
    return {name: us / total for name, us in self_us.items()}


def smallest_shares(code: str, path: Path | None = None) -> dict[str, float]:
    """Per package, the smallest share it took over RUNS fresh processes."""
    runs = [import_shares(code, path) for _ in range(RUNS)]
    return {name: min(run.get(name, 0.0) for run in runs) for name in set().union(*runs)}


def over_budget(shares: dict[str, float]) -> dict[str, str]:
    return {
        name: f"{share:.0%} of the import time (budget {BUDGETS.get(name, DEFAULT_BUDGET):.0%})"
        for name, share in shares.items()
        if share > BUDGETS.get(name, DEFAULT_BUDGET)
    }


BACKENDS = [
    "onnxruntime",
    pytest.param(
        "tvm",
        marks=pytest.mark.skipif(not runnable_targets(), reason="this CPU runs no TVM target"),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_no_package_on_the_runtime_import_path_grows_past_its_budget(
    backend: str, tiny_bundles: tuple[Path, Path]
) -> None:
    if backend == "tvm":
        pytest.importorskip("tvm_ffi")
    code = textwrap.dedent(
        f"""
        import numpy as np
        import kerasport.runtime as runtime
        classifier = runtime.load({str(tiny_bundles[0])!r}, backend={backend!r})
        classifier.predict(np.zeros((2, classifier.num_features), np.float32))
        """
    )
    shares = smallest_shares(code)
    assert not over_budget(shares), over_budget(shares)
    assert shares.get(backend if backend == "onnxruntime" else "tvm_ffi", 0) > 0, shares


def test_the_budget_names_a_package_that_is_slow_to_import(tmp_path: Path) -> None:
    """A stand-in for ml_dtypes 0.7.0: a package whose import sleeps as long as the whole
    runtime import, found on the same path as the runtime and named by the check."""
    slow = tmp_path / "slowpkg"
    slow.mkdir()
    (slow / "__init__.py").write_text("import time\ntime.sleep(0.5)\n")
    shares = smallest_shares("import kerasport.runtime, onnxruntime, slowpkg", tmp_path)
    assert set(over_budget(shares)) == {"slowpkg"}, over_budget(shares)
