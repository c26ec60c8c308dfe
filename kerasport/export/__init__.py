"""Export stage: `model.keras` -> bundle directory (ONNX model + manifest), checked before written.

    kerasport.export.export_bundle("model.keras", "bundle/")

The export is validated the way Hugging Face Optimum validates its exports: the written
bundle is loaded through the runtime and compared with Keras on a probe batch, and only a
bundle that agrees is renamed into place.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from kerasport.errors import ExportError, InputError
from kerasport.export.bundle import check_destination, write_atomically
from kerasport.export.check import DEFAULT_ATOL, check_agreement, keras_predict, probe_examples
from kerasport.export.keras_model import classifier_shape, load_keras_model
from kerasport.export.model_info import read_model_info
from kerasport.export.onnx import DEFAULT_OPSET, check_opset, keras_to_onnx
from kerasport.manifest import MANIFEST_NAME, Artifact, Manifest, sha256_file
from kerasport.versions import installed_versions

__all__ = ["DEFAULT_OPSET", "export_bundle"]

ONNX_FILE = "model.onnx"
_VERSIONED = ("keras", "tensorflow", "tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "numpy")


def export_bundle(
    model_path: str | Path,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    probe: np.ndarray | None = None,
    atol: float = DEFAULT_ATOL,
) -> Path:
    """Export `model_path` to `out_dir` and return the bundle's path.

    `probe` (int or float rows) is the batch Keras and the exported model must agree on;
    by default 256 seeded random rows of values 0-100.
    """
    model_path = Path(model_path)
    check_opset(opset)
    check_destination(out_dir)  # fail before the slow load and conversion, not after
    model = load_keras_model(model_path)
    num_features, num_classes = classifier_shape(model)
    feature_names, model_info = read_model_info(model_path, num_features)
    proto = keras_to_onnx(model, num_features, opset)
    probe = probe_examples(num_features) if probe is None else probe
    reference = keras_predict(model, probe)

    def fill(bundle: Path) -> None:
        (bundle / ONNX_FILE).write_bytes(proto.SerializeToString())
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
                    details={"opset": opset, "ir_version": int(proto.ir_version)},
                )
            },
            source_file=model_path.name,
            source_sha256=sha256_file(model_path),
            versions=installed_versions(_VERSIONED),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            feature_names=feature_names,
            model_info=model_info,
        )
        (bundle / MANIFEST_NAME).write_text(manifest.to_json())
        _check_bundle(bundle, probe, reference, atol)

    return write_atomically(out_dir, fill)


def _check_bundle(bundle: Path, probe: np.ndarray, reference: np.ndarray, atol: float) -> None:
    """Load the bundle as a user would and compare it with Keras."""
    from kerasport import runtime

    classifier = runtime.load(bundle, backend="onnxruntime")
    try:
        candidate = classifier.predict(probe, batch_size=128)
    except InputError as exc:
        raise ExportError(f"the probe batch is unusable: {exc}") from exc
    check_agreement(reference, candidate, atol)
