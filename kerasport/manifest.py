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
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kerasport.errors import BundleError

FORMAT = "kerasport-bundle"
FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_ARTIFACT_BYTES = 1 << 30  # a small model's artifacts are a few MB
MAX_DIMENSION = 1 << 20  # features or classes: far above any model of the family
_SHA256 = re.compile(r"[0-9a-f]{64}")
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
class Manifest:
    """What a runtime needs to know about a bundle, and where it came from."""

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
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

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
        if data.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {data.get('format_version')!r} is not supported "
                f"(this kerasport reads version {FORMAT_VERSION}; export the model again)"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BundleError(f"malformed bundle manifest: unknown fields {unknown}")
        num_features = _dimension(data, "num_features")
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
        return cls(
            input_name=_nonempty_string(data, "input_name"),
            output_name=_nonempty_string(data, "output_name"),
            num_features=num_features,
            num_classes=_dimension(data, "num_classes"),
            artifacts={_key(k): _artifact(k, v) for k, v in artifacts.items()},
            source_file=_field(data, "source_file", str),
            source_sha256=_sha256(data.get("source_sha256"), "source_sha256"),
            versions=_string_map(_field(data, "versions", dict), "versions"),
            created=_field(data, "created", str),
            feature_names=feature_names,
            model_info=model_info,
            warnings=_string_list(data.get("warnings", []), "warnings"),
        )


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


def _dimension(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSION:
        raise BundleError(
            f"malformed bundle manifest: {name} must be an integer 1-{MAX_DIMENSION}, "
            f"got {_show(value)}"
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
    """The bytes of a plain file inside the bundle, read once.

    Opened without following symlinks and without blocking (a FIFO with no writer would
    hang a plain open), then refused unless it is a regular file within `limit` bytes.
    """
    path = bundle / name
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise BundleError(f"bundle file missing: {path}") from None
    except OSError as exc:
        if os.path.islink(path):
            raise BundleError(
                f"bundle file {path} is a symlink; bundles hold plain files"
            ) from None
        raise BundleError(f"bundle file unreadable: {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"bundle file {path} is not a regular file")
        if info.st_size > limit:
            raise BundleError(f"bundle file {path} is {info.st_size} bytes, over {limit}")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise BundleError(f"bundle file unreadable: {path}: {exc}") from exc
    finally:
        os.close(fd)
    if len(data) > limit:
        raise BundleError(f"bundle file {path} grew over {limit} bytes while being read")
    return data


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Read and validate `manifest.json` of a bundle directory."""
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        what = "is not a directory" if bundle.exists() else "not found"
        raise BundleError(f"bundle directory {what}: {bundle}")
    if not (bundle / MANIFEST_NAME).exists() and not (bundle / MANIFEST_NAME).is_symlink():
        raise BundleError(f"bundle has no {MANIFEST_NAME}: {bundle}")
    raw = read_bundle_file(bundle, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSON, or an absurd integer
        raise BundleError(f"unreadable bundle manifest {bundle / MANIFEST_NAME}: {exc}") from exc
    return Manifest.from_dict(data)


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
