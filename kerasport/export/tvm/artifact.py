"""One TVM library per target, written into a bundle and described for its manifest."""

from __future__ import annotations

from pathlib import Path

from kerasport.export.tvm.dense_graph import Network, compile_dense_graph
from kerasport.export.tvm.targets import TvmTarget
from kerasport.manifest import Artifact, FileRef, sha256_file

BACKEND = "tvm"


def artifact_key(target: TvmTarget) -> str:
    return f"{BACKEND}-{target.name}"


def compile_artifact(network: Network, target: TvmTarget, bundle: Path) -> Artifact:
    """Compile the network for `target` into `bundle`; the library and its packed weights.

    The manifest records, beside the sha256 of both files, what the runtime checks before
    it loads any code: the target, the CPU flags it needs, the kernel route and the TVM
    versions that built it. It is not preferred to ONNX Runtime until export has timed it
    on this CPU (kerasport/export/speed.py).
    """
    stem = f"model-{target.name}"
    details = compile_dense_graph(
        network.nodes, network.num_features, target, bundle, stem, network.front
    )
    library, weights = details.pop("library"), details.pop("weights")
    details["preferred"] = False  # until export times it against ONNX Runtime (speed.py)
    return Artifact(
        backend=BACKEND,
        file=library,
        sha256=sha256_file(bundle / library),
        details=details,
        extra_files={"weights": FileRef(weights, sha256_file(bundle / weights))},
    )
