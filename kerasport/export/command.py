"""`kerasport export MODEL.keras -o BUNDLE_DIR [--opset N] [--tvm [--target auto|NAME ...]]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from kerasport.export.onnx import DEFAULT_OPSET


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export model.keras to an ONNX bundle, checked against Keras",
        description="Export a Keras classifier to a bundle (model.onnx + manifest.json). "
        "The bundle is compared with Keras on a probe batch and written only if it agrees.",
    )
    parser.add_argument("model", type=Path, help="the saved Keras model (model.keras)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)"
    )
    parser.add_argument(
        "--tvm",
        action="store_true",
        help="also compile TVM libraries (needs the tvm extra: pip install 'kerasport[tvm]')",
    )
    parser.add_argument(
        "--target",
        nargs="+",
        default=None,
        metavar="NAME",
        help="TVM targets, one library each: auto/host (this CPU), x86-64-v4 (AVX-512), "
        "x86-64-v3 (AVX2); default auto. Implies --tvm",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kerasport.export import export_bundle
    from kerasport.manifest import read_manifest

    targets = args.target or (["auto"] if args.tvm else [])
    bundle = export_bundle(args.model, args.out, opset=args.opset, tvm_targets=targets)
    manifest = read_manifest(bundle)
    inputs, outputs = manifest.inputs, manifest.outputs
    if len(inputs.shape) == 1 and len(outputs.shape) == 1 and inputs.dtype == "float32":
        classes = "class" if manifest.num_classes == 1 else "classes"
        shapes = f"{manifest.num_features} features -> {manifest.num_classes} {classes}"
    else:
        shapes = f"{inputs.dtype} {inputs.shape} -> float32 {outputs.shape} ({outputs.head} head)"
    print(f"wrote {bundle}: {shapes}, artifacts: {', '.join(manifest.artifacts)}")
    for warning in manifest.warnings:
        print(f"warning: {warning}")
    return 0
