"""The bundle manifest: the one contract between the export and runtime stages.

Export writes `manifest.json` beside the artifacts; the runtime reads nothing else to learn
the model's shape and which files to trust. Every artifact carries its sha256 so a runtime
refuses a file that changed after export.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kerasport.errors import BundleError

FORMAT = "kerasport-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """One backend's compiled model inside a bundle."""

    file: str
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)


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
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build a manifest from parsed JSON, naming the first field that is wrong."""
        if data.get("format") != FORMAT:
            raise BundleError(f"not a kerasport bundle manifest (format={data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {data.get('format_version')!r} is not supported "
                f"(this kerasport reads version {FORMAT_VERSION})"
            )
        try:
            artifacts = {name: Artifact(**a) for name, a in data["artifacts"].items()}
            manifest = cls(**{**data, "artifacts": artifacts})
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"malformed bundle manifest: {exc}") from exc
        for name in ("num_features", "num_classes"):
            value = getattr(manifest, name)
            if not isinstance(value, int) or value < 1:
                raise BundleError(f"malformed bundle manifest: {name}={value!r}")
        if not manifest.artifacts:
            raise BundleError("malformed bundle manifest: it lists no artifacts")
        return manifest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks so large artifacts need no large buffer."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Read and validate `manifest.json` of a bundle directory."""
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise BundleError(f"bundle directory not found: {bundle}")
    path = bundle / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"bundle has no {MANIFEST_NAME}: {bundle}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"unreadable bundle manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"malformed bundle manifest {path}: not a JSON object")
    return Manifest.from_dict(data)


def checked_artifact_path(bundle_dir: str | Path, manifest: Manifest, backend: str) -> Path:
    """Path of a backend's artifact after checking it exists and its sha256 matches."""
    if backend not in manifest.artifacts:
        raise BundleError(
            f"bundle has no {backend!r} artifact (it has: {', '.join(sorted(manifest.artifacts))})"
        )
    artifact = manifest.artifacts[backend]
    path = Path(bundle_dir) / artifact.file
    if not path.is_file():
        raise BundleError(f"bundle artifact missing: {path}")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise BundleError(f"bundle artifact unreadable: {path}: {exc}") from exc
    if actual != artifact.sha256:
        raise BundleError(
            f"bundle artifact {path} was modified after export: sha256 {actual} does not "
            f"match the manifest's {artifact.sha256}"
        )
    return path
