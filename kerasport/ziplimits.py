"""How far zip members may inflate, judged from the sizes the archive declares before a
byte is inflated: `.npz` examples and `.keras` models are zip archives, and a small one can
declare gigabytes (a zip bomb: 1 MB of deflated zeros inflates to 1 GB).

The declared sizes bound what reading holds: Python's zipfile stops a stored or deflated
member at its declared size (and then fails its CRC if the stream held more). Members
compressed otherwise are refused: zipfile inflates a bzip2 or LZMA member's compressed
chunk whole, with no bound, and neither NumPy nor Keras writes them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence

# Real members inflate far less: kerasport's bundled DeepVariant examples 20x, a saved
# Keras model's stored members 1x; deflate's own ceiling is about 1,030x. 200x leaves real
# data ten times its room and still refuses deflated zeros.
MAX_RATIO = 200
# Below this many bytes a member (or an archive's members together) inflates freely: too
# little memory to matter next to a model and its runtime, whatever the ratio.
RATIO_FLOOR = 64 << 20

_READABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _allowed(stored: int) -> int:
    return max(RATIO_FLOOR, MAX_RATIO * stored)


def inflation_problem(members: Sequence[zipfile.ZipInfo], archive_bytes: int) -> str | None:
    """Why inflating `members` of an archive of `archive_bytes` is refused, or None: a member
    encrypted or compressed other than stored or deflated, or declaring over MAX_RATIO times
    its compressed size, or all of them together over MAX_RATIO times the archive's size
    (each beyond RATIO_FLOOR). Without the total, many members each under the floor could
    add up to gigabytes."""
    for info in members:
        name = info.filename
        if info.flag_bits & 0x1:
            return f"member {name!r} is encrypted"
        if info.compress_type not in _READABLE:
            return (
                f"member {name!r} is compressed with zip method {info.compress_type}; only "
                "stored and deflated members are read"
            )
        if info.file_size > _allowed(info.compress_size):
            return (
                f"member {name!r} declares {info.file_size:,} bytes inflated from "
                f"{info.compress_size:,} (over {MAX_RATIO}x, beyond {RATIO_FLOOR >> 20} MiB): "
                "a zip bomb, or a corrupt archive"
            )
    total = sum(info.file_size for info in members)
    if total > _allowed(archive_bytes):
        return (
            f"its members declare {total:,} bytes inflated in all, over {MAX_RATIO}x the "
            f"archive's {archive_bytes:,} bytes (beyond {RATIO_FLOOR >> 20} MiB): a zip bomb, "
            "or a corrupt archive"
        )
    return None
