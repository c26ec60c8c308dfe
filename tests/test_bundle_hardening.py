"""The audit's bundle findings, one test each: what a copied or damaged bundle must never do.

The property suite (test_properties.py) searches the same ground at random; these pin down the
cases the audit found, each with the message a user gets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_FEATURES

import kerasport.runtime
from kerasport.errors import BundleError
from kerasport.manifest import MAX_ARTIFACT_BYTES, sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture
def bundle(tiny_bundles: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundles[0], tmp_path / "bundle"))


def edit_manifest(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def load_in_thread(bundle: Path, seconds: float = 10.0) -> BaseException | None:
    """Load on another thread and give up after `seconds`: a hang fails, it never blocks."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            kerasport.runtime.load(bundle, backend="onnxruntime")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"loading did not return within {seconds} s"
    return outcome[0]


@pytest.mark.parametrize("where", ["../../elsewhere/other.onnx", "/tmp/other.onnx", "sub/m.onnx"])
def test_an_artifact_outside_the_bundle_is_refused_even_with_its_hash(
    bundle: Path, tmp_path: Path, where: str
) -> None:
    outside = tmp_path / "elsewhere" / "other.onnx"
    outside.parent.mkdir()
    shutil.copyfile(bundle / "model.onnx", outside)

    def point_outside(m: dict[str, Any]) -> None:
        m["artifacts"]["onnxruntime"].update(file=where, sha256=sha256_file(outside))

    edit_manifest(bundle, point_outside)
    with pytest.raises(BundleError, match="must be a bare file name"):
        kerasport.runtime.load(bundle, backend="onnxruntime")


@pytest.mark.parametrize("name", ["manifest.json", "model.onnx"])
@pytest.mark.parametrize("kind", ["fifo with no writer", "symlink to /dev/zero", "directory"])
def test_a_file_that_is_not_a_plain_file_is_refused_without_blocking(
    bundle: Path, name: str, kind: str
) -> None:
    path = bundle / name
    path.unlink()
    if kind == "fifo with no writer":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    error = load_in_thread(bundle)
    assert isinstance(error, BundleError), error
    assert re.search(rf"{name} (is not a regular file|is a symlink)", str(error)), error


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(bundle: Path) -> None:
    with open(bundle / "model.onnx", "r+b") as handle:
        handle.truncate(MAX_ARTIFACT_BYTES + 1)  # sparse: no disk used
    limit = MAX_ARTIFACT_BYTES
    with pytest.raises(BundleError, match=f"model.onnx is {limit + 1:,} bytes, over the {limit:,}"):
        kerasport.runtime.load(bundle, backend="onnxruntime")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_classes", 2, "class count is 3 in the model but 2 in the manifest"),
        ("num_classes", 4, "class count is 3 in the model but 4 in the manifest"),
        ("num_features", TINY_FEATURES + 1,
         f"feature count is {TINY_FEATURES} in the model but {TINY_FEATURES + 1} in the"),
        ("input_name", "features", "input name is '.*' in the model but 'features' in the"),
        ("output_name", "probs", "output name is '.*' in the model but 'probs' in the manifest"),
    ],
)
def test_a_manifest_that_does_not_describe_its_model_is_refused_naming_both_values(
    bundle: Path, field: str, value: Any, message: str
) -> None:
    def change(manifest: dict[str, Any]) -> None:
        manifest[field] = value
        # the spec says the same as the count beside it, as a consistent forgery would
        if field == "num_classes":
            manifest["output_spec"]["shape"][-1] = value
        if field == "num_features":
            manifest["input_spec"]["shape"] = [value]

    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=message):
        kerasport.runtime.load(bundle, backend="onnxruntime")


def test_a_count_that_disagrees_with_its_spec_is_refused(bundle: Path) -> None:
    edit_manifest(bundle, lambda m: m.update(num_classes=2))
    with pytest.raises(BundleError, match=r"output_spec \[3\] disagree with .*num_classes=2"):
        kerasport.runtime.load(bundle, backend="onnxruntime")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["artifacts"]["onnxruntime"].update(file=5), r"\.file must be a bare .*got 5"),
        (lambda m: m["artifacts"]["onnxruntime"].update(sha256=None), r"\.sha256 .*got None"),
        (lambda m: m.update(num_features=int("9" * 300)), "num_features must be an integer"),
        (lambda m: m.update(num_classes="3"), "num_classes must be an integer"),
        (lambda m: m.pop("input_name"), "field 'input_name' is missing"),
    ],
)
def test_a_malformed_field_is_named_not_blamed_on_tampering(
    bundle: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_manifest(bundle, change)
    with pytest.raises(BundleError, match=message) as raised:
        kerasport.runtime.load(bundle, backend="onnxruntime")
    assert "modified after export" not in str(raised.value)


def test_a_5000_digit_number_is_an_unreadable_manifest_not_a_crash(bundle: Path) -> None:
    path = bundle / "manifest.json"
    path.write_text(path.read_text().replace('"num_classes": 3', '"num_classes": ' + "9" * 5000))
    with pytest.raises(BundleError, match="unreadable bundle manifest"):
        kerasport.runtime.load(bundle)


def test_an_unfinished_exports_directory_is_refused(bundle: Path) -> None:
    partial = bundle.rename(bundle.parent / f".bundle.partial-{os.getpid()}-abc123")
    with pytest.raises(BundleError, match="unfinished export"):
        kerasport.runtime.load(partial)
    assert kerasport.runtime.load(partial.rename(bundle)).num_features == TINY_FEATURES
