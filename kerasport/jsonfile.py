"""Read JSON that a user or a file supplies: bounded, checked, and refused by the caller's error.

Python's `json` parses whatever it is handed. A file of 100,000 nested brackets raises a raw
RecursionError, a 10 GB file is read whole, `NaN` and `1e999` become floats that strict JSON
cannot spell, a repeated key silently keeps its last value (another reader may keep the
first), and a `\\ud800` escape makes a string that cannot be printed or written back. Every
JSON file the tools read (a bundle's manifest, DeepVariant's small_model_info.json, verify
reports, trace summaries) goes through `read_json_file`, or `parse_json` for bytes already
read, with limits suited to it; any problem is raised as the caller's `KerasportError`
subclass, naming the file and the problem. Standard library only: the runtime reads
manifests through this module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kerasport.errors import KerasportError
from kerasport.plainfile import read_bounded

# The deepest file the tools write (a manifest: artifacts > key > details > arrays > entry >
# shape) nests 6 levels. 64 leaves room for hand-written and future fields, and is far below
# Python's recursion limit (1,000), so no later recursive code (dataclasses.asdict, repr,
# json.dumps, copy.deepcopy) can overflow on a file that passed.
MAX_DEPTH = 64


class _Refused(Exception):
    """A problem found inside the parser's hooks; turned into the caller's error outside it."""


def decode_utf8(raw: bytes, error: type[KerasportError], source: str) -> str:
    """`raw` as UTF-8 text, or the caller's error naming the first bad byte's offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start]
        raise error(
            f"{source}: not UTF-8 text (byte 0x{bad:02x} at offset {exc.start})"
        ) from None


def read_json_file(
    path: str | Path,
    error: type[KerasportError],
    what: str,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    allow_non_finite: bool = False,
) -> Any:
    """The parsed JSON of the file `path` (a `what`, as messages call it), checked.

    Refused with `error` when the file is missing, not a regular file, over `max_bytes`,
    not UTF-8, not JSON, nested deeper than `max_depth`, or holds a repeated key or a
    string with an unpaired surrogate; and, unless `allow_non_finite`, NaN, Infinity or a
    number too large for a float.
    """
    raw = read_bounded(path, error, what, max_bytes)
    return parse_json(raw, error, f"{what} {path}", max_depth=max_depth,
                      allow_non_finite=allow_non_finite)


def parse_json(
    raw: bytes,
    error: type[KerasportError],
    source: str,
    *,
    max_depth: int = MAX_DEPTH,
    allow_non_finite: bool = False,
) -> Any:
    """Parse `raw` (already read within its size limit) as `read_json_file` does.

    `source` names the file in messages ("bundle manifest /b/manifest.json"). The nesting
    limit is held twice: json's C parser raises RecursionError near Python's recursion limit
    (caught here, however deep the file), and an iterative walk of the result refuses
    anything deeper than `max_depth`.
    """
    text = decode_utf8(raw, error, source)
    hooks: dict[str, Any] = {"object_pairs_hook": _unique_keys}
    if not allow_non_finite:
        hooks.update(parse_constant=_no_constant, parse_float=_finite_float)
    try:
        data = json.loads(text, **hooks)
    except _Refused as exc:
        raise error(f"{source}: {exc}") from None
    except RecursionError:
        raise error(f"{source}: nested more than {max_depth} levels deep") from None
    except MemoryError:
        raise error(f"{source}: too large to parse in memory") from None
    except ValueError as exc:  # malformed JSON, or an integer of over 4,300 digits
        raise error(f"{source}: not valid JSON: {exc}") from None
    problem = _shape_problem(data, max_depth)
    if problem:
        raise error(f"{source}: {problem}")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's dict, refused when a key repeats (readers disagree on which one wins)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"repeats the key {_show(key)} in one object")
            seen.add(key)
    return result


def _no_constant(name: str) -> float:
    raise _Refused(f"holds {name}, which strict JSON does not allow here")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"holds the number {_show(text)}, too large for a float")
    return value


def _shape_problem(data: Any, max_depth: int) -> str | None:
    """What is wrong with the parsed value's nesting or strings, walked without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                return f"nested more than {max_depth} levels deep"
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
        elif isinstance(value, str) and not _encodable(value):
            return f"holds a string with an unpaired surrogate escape: {_show(value)}"
    return None


def _encodable(text: str) -> bool:
    """Whether `text` has a UTF-8 form: a JSON `\\ud800` escape parses to one that has not."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: str) -> str:
    shown = ascii(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
