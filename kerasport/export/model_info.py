"""DeepVariant's `small_model_info.json`, read from beside `model.keras`.

DeepVariant writes it next to every small model it trains (`{"version", "shape",
"model_features", "config"}`) and reads its feature names back from the model's directory.
Export records those names in the manifest so the runtime can tell a caller, before a
genome-long run, whether its features are the model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kerasport.errors import ExportError
from kerasport.jsonfile import read_json_file
from kerasport.manifest import sha256_file

MODEL_INFO_NAME = "small_model_info.json"
# DeepVariant's WGS model's is 2.8 KB (70 feature names); 1 MiB holds thousands of names and
# a large training config, and bounds what export reads before it has checked anything.
MAX_MODEL_INFO_BYTES = 1 << 20


def read_model_info(
    model_path: Path, num_features: int
) -> tuple[list[str] | None, dict[str, Any] | None]:
    """(feature names, provenance) from the model's directory, or (None, None) if absent.

    A file that is there but unreadable, or whose names do not fit the model, is an error:
    exporting anyway would record names the model does not take.
    """
    path = model_path.parent / MODEL_INFO_NAME
    if not path.exists():
        return None, None
    # DeepVariant writes it with Python's json, which spells a NaN in its training config as
    # NaN; only the names, shape and version are used, so such constants are let through.
    data = read_json_file(path, ExportError, "DeepVariant model info",
                          max_bytes=MAX_MODEL_INFO_BYTES, allow_non_finite=True)
    names = data.get("model_features") if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ExportError(f"{path}: model_features must be a list of feature names")
    if len(names) != num_features:
        raise ExportError(
            f"{path} names {len(names)} features but the model takes {num_features}"
        )
    if len(set(names)) != len(names):
        raise ExportError(f"{path}: model_features repeats a name")
    shape = data.get("shape", len(names))
    if shape != len(names):
        raise ExportError(f"{path}: shape {shape!r} but {len(names)} model_features")
    version = data.get("version")
    return names, {
        "file": MODEL_INFO_NAME,
        "sha256": sha256_file(path),
        "version": version if isinstance(version, str) else None,
    }


def write_model_info(model_dir: Path, feature_names: list[str], version: str) -> Path:
    """Write `small_model_info.json` as DeepVariant does, for a model kerasport trained."""
    path = Path(model_dir) / MODEL_INFO_NAME
    info = {"version": version, "shape": len(feature_names), "model_features": feature_names,
            "config": {}}
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path
