"""The bundle manifest: the one contract between the export and runtime stages.

Export writes `manifest.json` beside the artifacts; the runtime reads nothing else to learn
the model's shape and which files to trust. Every file carries its sha256, and the runtime
hands an engine the very bytes it hashed (never the path again), so a file swapped after the
check is never served. Bundles are copied between machines, so every field is type-checked
and every file name must be a plain file inside the bundle.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kerasport.errors import BundleError
from kerasport.jsonfile import parse_json
from kerasport.plainfile import read_bounded

FORMAT = "kerasport-bundle"
# Version 3 adds the input and output specs (any rank, integer inputs, the head); version 2
# bundles (one (batch, features) float input, (batch, classes) output) keep loading.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
HEADS = ("softmax", "sigmoid", "linear")
INPUT_DTYPES = (
    "float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint16", "uint8"
)
MAX_RANK = 8
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is 1-20 KB (four TVM libraries, 100 feature names)
MAX_ARTIFACT_BYTES = 1 << 30  # a small model's artifacts are a few MB
MAX_DIMENSION = 1 << 20  # one axis of an input or output, or the number of classes
MAX_VALUES = 1 << 26  # values in one example: a 4096 x 4096 x 4 tile
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEAD_WARNING = re.compile(r"the model's head is '([A-Za-z0-9_]+)' over")
# An export writes the bundle into `.<name>.partial-<pid>-<random>` beside its destination and
# renames it into place only after checking it; the runtime refuses a directory so named.
_PARTIAL = re.compile(r"\..+\.partial-\d+-.+")


def partial_prefix(bundle_name: str, pid: int) -> str:
    """The name prefix of the directory an export (process `pid`) writes `bundle_name` in."""
    return f".{bundle_name}.partial-{pid}-"


def is_partial_bundle(path: str | Path) -> bool:
    """Whether `path` is the directory of an export still writing it, or killed while it did."""
    return _PARTIAL.fullmatch(Path(path).absolute().name) is not None


@dataclass(frozen=True)
class FileRef:
    """A file inside the bundle and the sha256 it must have."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Artifact:
    """One backend's compiled model inside a bundle.

    `backend` names the runner that serves it; a bundle may hold several artifacts of one
    backend (one TVM library per target CPU). `extra_files` are further files the runner
    needs (a TVM library's packed weights), checked like the main one.
    """

    backend: str
    file: str
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, FileRef] = field(default_factory=dict)


@dataclass(frozen=True)
class InputSpec:
    """One example as the model takes it: its shape without the batch axis and its dtype.

    `index_range` is [low, high) for an input whose values index an Embedding: those keep
    integer semantics, and a value outside the vocabulary is refused rather than clamped.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    index_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class OutputSpec:
    """One example's output: shape without the batch axis, classes on the last axis.

    `head` says how to read the scores: "softmax" (probabilities over classes), "sigmoid"
    (one independent probability per class) or "linear" (logits, or anything else).
    """

    shape: tuple[int, ...]
    head: str = "softmax"
    dtype: str = "float32"


@dataclass(frozen=True)
class Manifest:
    """What a runtime needs to know about a bundle, and where it came from.

    `num_features` is the number of values in one example (the product of the input's
    shape) and `num_classes` the size of the output's class axis, so code written for
    (batch, features) -> (batch, classes) models reads them as before.
    """

    input_name: str
    output_name: str
    num_features: int
    num_classes: int
    artifacts: dict[str, Artifact]
    source_file: str
    source_sha256: str
    versions: dict[str, str]
    created: str
    # DeepVariant's small_model_info.json, when it sat beside the model: the feature names
    # in model order and the DeepVariant version that wrote it.
    feature_names: list[str] | None = None
    model_info: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    input_spec: InputSpec | None = None
    output_spec: OutputSpec | None = None
    # Working memory one example needs inside the engine (its largest layer's input and
    # output), so chunks can be bounded by bytes as well as rows.
    row_bytes: int | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # A version 2 bundle (no specs) served one (batch, features) -> (batch, classes)
        # float32 model; derive its specs so every reader sees one shape of manifest.
        if self.input_spec is None:
            object.__setattr__(self, "input_spec", InputSpec((self.num_features,)))
        if self.output_spec is None:
            object.__setattr__(self, "output_spec", OutputSpec((self.num_classes,), _v2_head(self)))
        if self.row_bytes is None:
            object.__setattr__(self, "row_bytes", 4 * (self.num_features + self.num_classes))

    @property
    def inputs(self) -> InputSpec:
        assert self.input_spec is not None  # set in __post_init__
        return self.input_spec

    @property
    def outputs(self) -> OutputSpec:
        assert self.output_spec is not None  # set in __post_init__
        return self.output_spec

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def backends(self) -> list[str]:
        """Backends with at least one artifact, in manifest order."""
        return list(dict.fromkeys(a.backend for a in self.artifacts.values()))

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Build a manifest from parsed JSON, naming the first field that is wrong."""
        if not isinstance(data, dict):
            raise BundleError("malformed bundle manifest: not a JSON object")
        if data.get("format") != FORMAT:
            raise BundleError(f"not a kerasport bundle manifest (format={data.get('format')!r})")
        version = data.get("format_version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise BundleError(
                f"bundle format version {version!r} is not supported (this kerasport reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}; export the model again)"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"malformed bundle manifest: unknown fields {unknown}")
        num_features = _dimension(data, "num_features", MAX_VALUES)
        feature_names = data.get("feature_names")
        if feature_names is not None:
            _string_list(feature_names, "feature_names")
            if len(feature_names) != num_features:
                raise BundleError(
                    f"malformed bundle manifest: feature_names has {len(feature_names)} names "
                    f"for num_features={num_features}"
                )
        model_info = data.get("model_info")
        if model_info is not None and not isinstance(model_info, dict):
            raise BundleError("malformed bundle manifest: model_info must be an object or null")
        artifacts = _field(data, "artifacts", dict)
        if not artifacts:
            raise BundleError("malformed bundle manifest: it lists no artifacts")
        num_classes = _dimension(data, "num_classes")
        specs = _specs(data, num_features, num_classes) if version >= 3 else {}
        return cls(
            input_name=_nonempty_string(data, "input_name"),
            output_name=_nonempty_string(data, "output_name"),
            num_features=num_features,
            num_classes=num_classes,
            artifacts={_key(k): _artifact(k, v) for k, v in artifacts.items()},
            source_file=_field(data, "source_file", str),
            source_sha256=_sha256(data.get("source_sha256"), "source_sha256"),
            versions=_string_map(_field(data, "versions", dict), "versions"),
            created=_field(data, "created", str),
            feature_names=feature_names,
            model_info=model_info,
            warnings=_string_list(data.get("warnings", []), "warnings"),
            format_version=version,
            **specs,
        )


def _v2_head(manifest: Manifest) -> str:
    """A version 2 bundle's head, read from the warning its export wrote for any head that
    is not a softmax over classes ("the model's head is 'sigmoid' over 4 output(s) ..."): a
    sigmoid is read per class, any other activation (linear, relu, ...) as scores."""
    for warning in manifest.warnings:
        match = _HEAD_WARNING.search(warning)
        if match:
            name = match.group(1)
            return name if name in ("softmax", "sigmoid") else "linear"
    return "softmax"


def _specs(data: dict[str, Any], num_features: int, num_classes: int) -> dict[str, Any]:
    """The version 3 fields, each checked, and checked against the counts beside them."""
    raw_in = _field(data, "input_spec", dict)
    raw_out = _field(data, "output_spec", dict)
    for where, raw, allowed in (
        ("input_spec", raw_in, InputSpec.__dataclass_fields__),
        ("output_spec", raw_out, OutputSpec.__dataclass_fields__),
    ):
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise BundleError(f"malformed bundle manifest: {where} has unknown fields {unknown}")
    in_shape = _shape(raw_in.get("shape"), "input_spec.shape")
    out_shape = _shape(raw_out.get("shape"), "output_spec.shape")
    if math.prod(in_shape) != num_features or out_shape[-1] != num_classes:
        raise BundleError(
            f"malformed bundle manifest: input_spec {list(in_shape)} and output_spec "
            f"{list(out_shape)} disagree with num_features={num_features}, "
            f"num_classes={num_classes}"
        )
    dtype = _choice(raw_in.get("dtype", "float32"), INPUT_DTYPES, "input_spec.dtype")
    index_range = raw_in.get("index_range")
    if index_range is not None:
        if (
            not isinstance(index_range, list)
            or len(index_range) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in index_range)
            or not -(1 << 62) <= index_range[0] < index_range[1] <= 1 << 62
        ):
            raise BundleError(
                "malformed bundle manifest: input_spec.index_range must be [low, high) "
                f"integers, got {_show(index_range)}"
            )
        index_range = (index_range[0], index_range[1])
    row_bytes = data.get("row_bytes")
    if isinstance(row_bytes, bool) or not isinstance(row_bytes, int) or row_bytes < 1:
        raise BundleError(
            f"malformed bundle manifest: row_bytes must be a positive integer, got "
            f"{_show(row_bytes)}"
        )
    return {
        "input_spec": InputSpec(in_shape, dtype, index_range),
        "output_spec": OutputSpec(
            out_shape,
            _choice(raw_out.get("head", "softmax"), HEADS, "output_spec.head"),
            _choice(raw_out.get("dtype", "float32"), ("float32",), "output_spec.dtype"),
        ),
        "row_bytes": row_bytes,
    }


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_RANK
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_DIMENSION
            for v in value
        )
        or math.prod(value) > MAX_VALUES
    ):
        raise BundleError(
            f"malformed bundle manifest: {name} must be 1-{MAX_RANK} dimensions of 1-"
            f"{MAX_DIMENSION} (at most {MAX_VALUES} values), got {_show(value)}"
        )
    return tuple(value)


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed or not isinstance(value, str):
        raise BundleError(
            f"malformed bundle manifest: {name} must be one of {', '.join(allowed)}, got "
            f"{_show(value)}"
        )
    return value


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise BundleError(f"malformed bundle manifest: field {name!r} is missing")
    value = data[name]
    if not isinstance(value, kind):
        raise BundleError(
            f"malformed bundle manifest: {name} must be a {kind.__name__}, got {_show(value)}"
        )
    return value


def _nonempty_string(data: dict[str, Any], name: str) -> str:
    value: str = _field(data, name, str)
    if not value:
        raise BundleError(f"malformed bundle manifest: {name} is empty")
    return value


def _dimension(data: dict[str, Any], name: str, limit: int = MAX_DIMENSION) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise BundleError(
            f"malformed bundle manifest: {name} must be an integer 1-{limit}, got {_show(value)}"
        )
    return value


def _sha256(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise BundleError(
            f"malformed bundle manifest: {name} must be 64 lowercase hex digits, got "
            f"{_show(value)}"
        )
    return value


def _file_name(value: Any, name: str) -> str:
    """A bare file name: never a path that could leave the bundle directory."""
    if (
        not isinstance(value, str)
        or not value
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or "\0" in value
        or value == MANIFEST_NAME
    ):
        raise BundleError(
            f"malformed bundle manifest: {name} must be a bare file name inside the bundle, "
            f"got {_show(value)}"
        )
    return value


def _key(value: str) -> str:
    if not value or len(value) > 200:
        raise BundleError(f"malformed bundle manifest: artifact name {_show(value)}")
    return value


def _artifact(key: str, data: Any) -> Artifact:
    where = f"artifacts[{key!r}]"
    if not isinstance(data, dict):
        raise BundleError(f"malformed bundle manifest: {where} must be an object")
    unknown = sorted(set(data) - set(Artifact.__dataclass_fields__))
    if unknown:
        raise BundleError(f"malformed bundle manifest: {where} has unknown fields {unknown}")
    details = data.get("details", {})
    if not isinstance(details, dict):
        raise BundleError(f"malformed bundle manifest: {where}.details must be an object")
    extra = data.get("extra_files", {})
    if not isinstance(extra, dict):
        raise BundleError(f"malformed bundle manifest: {where}.extra_files must be an object")
    return Artifact(
        backend=_nonempty_string(data, "backend"),
        file=_file_name(data.get("file"), f"{where}.file"),
        sha256=_sha256(data.get("sha256"), f"{where}.sha256"),
        details=details,
        extra_files={
            role: _file_ref(ref, f"{where}.extra_files[{role!r}]") for role, ref in extra.items()
        },
    )


def _file_ref(data: Any, where: str) -> FileRef:
    if not isinstance(data, dict) or set(data) != {"file", "sha256"}:
        raise BundleError(f"malformed bundle manifest: {where} must be {{file, sha256}}")
    return FileRef(_file_name(data["file"], f"{where}.file"), _sha256(data["sha256"], where))


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BundleError(f"malformed bundle manifest: {name} must be a list of strings")
    return value


def _string_map(value: dict[str, Any], name: str) -> dict[str, str]:
    if not all(isinstance(v, str) for v in value.values()):
        raise BundleError(f"malformed bundle manifest: {name} must map names to strings")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks so large artifacts need no large buffer."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bundle_file(bundle: Path, name: str, limit: int = MAX_ARTIFACT_BYTES) -> bytes:
    """The bytes of a plain file inside the bundle, read once: no symlink, FIFO or device,
    nothing over `limit` bytes (see kerasport.plainfile)."""
    return read_bounded(bundle / name, BundleError, "bundle file", limit, follow_symlinks=False)


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Read and validate `manifest.json` of a bundle directory."""
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        what = "is not a directory" if bundle.exists() else "not found"
        raise BundleError(f"bundle directory {what}: {bundle}")
    if not (bundle / MANIFEST_NAME).exists() and not (bundle / MANIFEST_NAME).is_symlink():
        raise BundleError(f"bundle has no {MANIFEST_NAME}: {bundle}")
    raw = read_bundle_file(bundle, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    source = f"unreadable bundle manifest {bundle / MANIFEST_NAME}"
    return Manifest.from_dict(parse_json(raw, BundleError, source))


def checked_bytes(bundle_dir: str | Path, ref: FileRef | Artifact) -> bytes:
    """A bundle file's bytes after checking its sha256: the bytes to hand an engine."""
    data = read_bundle_file(Path(bundle_dir), ref.file)
    actual = sha256_bytes(data)
    if actual != ref.sha256:
        raise BundleError(
            f"bundle file {Path(bundle_dir) / ref.file} was modified after export: sha256 "
            f"{actual} does not match the manifest's {ref.sha256}"
        )
    return data


def artifacts_of(manifest: Manifest, backend: str) -> dict[str, Artifact]:
    """The artifacts a backend could serve, in manifest order; refused if there are none."""
    found = {k: a for k, a in manifest.artifacts.items() if a.backend == backend}
    if not found:
        raise BundleError(
            f"bundle has no {backend!r} artifact (it has: {', '.join(manifest.backends())})"
        )
    return found
