"""Which reader a path goes to, decided by its name alone.

Sniffing content would make a typo'd extension silently read as something else; the name
is what the user chose, so it decides, and anything unknown is refused with the list.
"""

from __future__ import annotations

import re
from pathlib import Path

from kerasport.examples.model import ExamplesError

NPY = "npy"
NPZ = "npz"
CSV = "csv"
TSV = "tsv"
TFRECORD = "tfrecord"
TFRECORD_GZ = "tfrecord.gz"

SUPPORTED = (NPY, NPZ, CSV, TSV, TFRECORD, TFRECORD_GZ)

# DeepVariant names its shards `examples.tfrecord-00003-of-00016.gz`; accept that form too.
_TFRECORD = re.compile(r"\.tfrecords?(-\d+-of-\d+)?(?P<gz>\.gz)?$", re.IGNORECASE)


def detect_format(path: str | Path) -> str:
    """Return one of SUPPORTED for `path`, or raise ExamplesError naming the choices."""
    name = Path(path).name
    match = _TFRECORD.search(name)
    if match:
        return TFRECORD_GZ if match.group("gz") else TFRECORD
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix in (NPY, NPZ, CSV, TSV):
        return suffix
    raise ExamplesError(
        f"{path}: unknown examples format {Path(name).suffix or '(no extension)'!r}; "
        f"expected one of {', '.join('.' + s for s in SUPPORTED)}"
    )


def check_readable(path: str | Path) -> Path:
    """Refuse a missing path, a directory or a file this user cannot open before any reader
    does, so each format's reader need not word these the same way again."""
    path = Path(path)
    if not path.exists():
        raise ExamplesError(f"{path}: no such file")
    if not path.is_file():
        raise ExamplesError(f"{path}: not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ExamplesError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return path
