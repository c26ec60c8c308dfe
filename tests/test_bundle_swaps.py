"""Loading while another process swaps the bundle's files: never a model the manifest does
not vouch for.

A second process replaces every artifact of a bundle, over and over, with the same-shaped file
of another model (by rename, and by rewriting in place) and back. Meanwhile threads load every
artifact this host serves and run a probe batch. Each load must either serve the exported
model's exact numbers or be refused with a kerasport error.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_FEATURES

import kerasport.runtime
from kerasport.errors import KerasportError

pytestmark = pytest.mark.slow

SWAP_SECONDS = 20.0

SWAPPER = textwrap.dedent(
    """
    import os, sys, time
    bundle, twin, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    names = [n for n in os.listdir(twin) if n != "manifest.json"]
    versions = {n: [open(os.path.join(d, n), "rb").read() for d in (bundle, twin)] for n in names}
    deadline, turn = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        for name in names:
            data = versions[name][turn % 2]
            target = os.path.join(bundle, name)
            if turn % 3:  # replace by rename: a reader sees one file or the other
                tmp = f"{target}.swap"
                with open(tmp, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, target)
            else:  # rewrite in place: a reader may see a mix of both
                with open(target, "r+b") as handle:
                    handle.write(data)
                    handle.truncate()
        turn += 1
    """
)


def test_loads_during_swaps_serve_the_manifests_model_or_are_refused(
    tiny_bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    original, twin = tiny_bundles
    bundle = Path(shutil.copytree(original, tmp_path / "bundle"))
    keys = kerasport.runtime.servable_artifacts(bundle)
    probe = np.random.default_rng(0).integers(0, 101, size=(9, TINY_FEATURES), dtype=np.int64)
    expected = {key: kerasport.runtime.load(original, backend=key).predict(probe) for key in keys}
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    unexpected: list[BaseException] = []

    def load_until(deadline: float, key: str) -> None:
        while time.monotonic() < deadline:
            try:
                got = kerasport.runtime.load(bundle, backend=key).predict(probe)
            except KerasportError:
                outcome = "refused"
            except BaseException as exc:  # any other error is a finding
                unexpected.append(exc)
                return
            else:
                outcome = "served" if np.array_equal(got, expected[key]) else "WRONG MODEL"
            with lock:
                counts[f"{key}: {outcome}"] += 1

    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(bundle), str(twin), str(SWAP_SECONDS)]
    )
    started = time.monotonic()
    deadline = started + SWAP_SECONDS
    threads = [threading.Thread(target=load_until, args=(deadline, k)) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert swapper.wait(timeout=60) == 0
    print(f"\n{time.monotonic() - started:.1f} s of swaps: {dict(sorted(counts.items()))}")
    assert not unexpected, f"raw errors while loading: {unexpected[:3]}"
    assert not any("WRONG" in outcome for outcome in counts)
    for key in keys:  # both outcomes happened, so the loads really raced the swaps
        assert counts[f"{key}: served"] >= 10 and counts[f"{key}: refused"] >= 10, counts
