"""Export stage: `model.keras` -> bundle directory (ONNX model, optional TVM libraries,
manifest), each artifact checked against Keras before the bundle is written.

    kerasport.export.export_bundle("model.keras", "bundle/", tvm_targets=["auto"])

The export is validated the way Hugging Face Optimum validates its exports: the written
bundle is loaded through the runtime and compared with Keras on a probe batch, and only a
bundle that agrees is renamed into place.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.cpu import host_cpu_features, missing_features
from kerasport.diskspace import write_file
from kerasport.errors import ExportError, InputError
from kerasport.export.bundle import check_destination, write_atomically
from kerasport.export.check import (
    DEFAULT_ATOL,
    check_agreement,
    depends_on_chunking,
    keras_predict,
    probe_examples,
    probe_rows,
)
from kerasport.export.keras_model import (
    head_warning,
    largest_layer_bytes,
    load_keras_model,
    model_signature,
    refuse_half_precision,
)
from kerasport.export.model_info import read_model_info
from kerasport.export.onnx import DEFAULT_OPSET, check_opset, keras_to_onnx, row_bytes
from kerasport.manifest import MANIFEST_NAME, Artifact, Manifest, sha256_file
from kerasport.versions import installed_versions

__all__ = ["DEFAULT_OPSET", "export_bundle"]

ONNX_FILE = "model.onnx"
ONE_ROW_WARNING = (
    "ONNX Runtime gives this graph's examples other bits depending on how many share a call "
    "(its MatMul kernels take rows in groups), so the bundle is served one example per "
    "engine call: results never depend on the caller's batching, at the cost of speed"
)
_VERSIONED = (
    "keras", "tensorflow", "tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "numpy",
    "apache-tvm", "apache-tvm-ffi",
)


def export_bundle(
    model_path: str | Path,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    probe: np.ndarray | None = None,
    atol: float = DEFAULT_ATOL,
    tvm_targets: Sequence[str] = (),
) -> Path:
    """Export `model_path` to `out_dir` and return the bundle's path.

    `probe` (a batch of examples) is what Keras and the exported model must agree on; by
    default 256 seeded examples drawn for the input spec (`probe_examples`). `tvm_targets`
    (names, or "auto" for this CPU) adds one TVM library per target; each one this CPU can
    run is checked against Keras like the ONNX model, and one it cannot run is recorded as
    unchecked, with a warning.
    """
    model_path = Path(model_path)
    check_opset(opset)
    check_destination(out_dir, model_path)  # fail before the slow load and conversion, not after
    targets = _resolve_tvm_targets(tvm_targets)
    model = load_keras_model(model_path)
    inputs, outputs = model_signature(model)
    refuse_half_precision(model)
    num_features, num_classes = math.prod(inputs.shape), outputs.shape[-1]
    feature_names, model_info = read_model_info(model_path, num_features)
    network = _tvm_network(model) if targets else None
    proto = keras_to_onnx(model, inputs, opset)
    per_example = max(
        row_bytes(proto),
        largest_layer_bytes(model),
        4 * (num_features + math.prod(outputs.shape)),
    )
    if probe is None:
        probe = probe_examples(inputs, probe_rows(per_example),
                               deepvariant=feature_names is not None)
    reference = keras_predict(model, probe)
    onnx_bytes = proto.SerializeToString()
    onnx_details: dict[str, Any] = {"opset": opset, "ir_version": int(proto.ir_version)}
    warnings = [warning for warning in (head_warning(model),) if warning]
    if depends_on_chunking(onnx_bytes, proto.graph.input[0].name, probe.astype(inputs.dtype)):
        onnx_details["rows_per_call"] = 1
        warnings.append(ONE_ROW_WARNING)

    def fill(bundle: Path) -> None:
        write_file(bundle / ONNX_FILE, onnx_bytes, ExportError)
        tvm_artifacts = _compile_tvm(network, targets, bundle)
        unchecked = [
            f"{key} was not checked against Keras at export: this CPU lacks "
            f"{', '.join(missing)}; run kerasport verify --backend {key} on a CPU that has them"
            for key, artifact in tvm_artifacts.items()
            if (missing := missing_features(artifact.details["cpu_features"], host_cpu_features()))
        ]
        manifest = Manifest(
            input_name=proto.graph.input[0].name,
            output_name=proto.graph.output[0].name,
            num_features=num_features,
            num_classes=num_classes,
            artifacts={
                "onnxruntime": Artifact(
                    backend="onnxruntime",
                    file=ONNX_FILE,
                    sha256=sha256_file(bundle / ONNX_FILE),
                    details=onnx_details,
                ),
                **tvm_artifacts,
            },
            source_file=model_path.name,
            source_sha256=sha256_file(model_path),
            versions=installed_versions(_VERSIONED),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            feature_names=feature_names,
            model_info=model_info,
            warnings=warnings + unchecked,
            input_spec=inputs,
            output_spec=outputs,
            row_bytes=per_example,
        )
        write_file(bundle / MANIFEST_NAME, manifest.to_json().encode(), ExportError)
        _check_bundle(bundle, probe, reference, atol, outputs.head)
        if tvm_artifacts:
            measured = _measure_tvm(bundle, manifest, tvm_artifacts, probe)
            write_file(bundle / MANIFEST_NAME, measured.to_json().encode(), ExportError)

    return write_atomically(out_dir, fill)


def _resolve_tvm_targets(names: Sequence[str]) -> list[Any]:
    if not names:
        return []
    from kerasport.export.tvm import resolve_targets

    return resolve_targets(list(names))


def _tvm_network(model: Any) -> Any:
    from kerasport.export.tvm.keras_layers import tvm_network

    return tvm_network(model)


def _compile_tvm(network: Any, targets: list[Any], bundle: Path) -> dict[str, Artifact]:
    """One library per TVM target, by manifest key; the compiler is imported only here."""
    if not targets:
        return {}
    from kerasport.export.tvm.artifact import artifact_key, compile_artifact

    return {artifact_key(target): compile_artifact(network, target, bundle) for target in targets}


def _measure_tvm(
    bundle: Path, manifest: Manifest, tvm_artifacts: dict[str, Artifact], probe: np.ndarray
) -> Manifest:
    """The manifest with each TVM library's speed against ONNX Runtime on this CPU, and
    `preferred` (what `auto` obeys) set from it; a library not preferred is named in the
    warnings, with why."""
    from kerasport import runtime
    from kerasport.export.speed import faster, measure_libraries

    here = [key for key in runtime.servable_artifacts(bundle) if key in tvm_artifacts]
    figures = measure_libraries(bundle, here, probe)
    warnings = list(manifest.warnings)
    for key, artifact in tvm_artifacts.items():
        measured = figures.get(key)
        artifact.details["measured"] = measured
        artifact.details["preferred"] = faster(measured)
        if measured is None:
            warnings.append(f"{key} was not timed at export (this CPU cannot run it): "
                            "backend='auto' serves ONNX Runtime; ask for it by name")
        elif not artifact.details["preferred"]:
            slower = [
                f"{rows} rows ({tvm:g} vs {ort:g} µs)" for rows, tvm, ort in zip(
                    measured["rows"], measured["tvm_us"], measured["onnxruntime_us"],
                    strict=True,
                ) if tvm > ort
            ]
            warnings.append(f"{key} was slower than ONNX Runtime on this CPU at "
                            f"{', '.join(slower)}: backend='auto' serves ONNX Runtime; ask "
                            "for it by name")
    return dataclasses.replace(manifest, warnings=warnings)


def _check_bundle(
    bundle: Path, probe: np.ndarray, reference: np.ndarray, atol: float, head: str
) -> None:
    """Load each artifact this CPU can run as a user would, and compare it with Keras (the
    others are named in the manifest's warnings)."""
    from kerasport import runtime

    for key in runtime.servable_artifacts(bundle):
        classifier = runtime.load_partial(bundle, backend=key)
        try:
            candidate = classifier.predict(probe, batch_size=128)
        except InputError as exc:
            raise ExportError(f"the probe batch is unusable: {exc}") from exc
        try:
            check_agreement(reference, candidate, atol, head)
        except ExportError as exc:
            raise ExportError(f"{key}: {exc}") from None
