"""The verify report's JSON Schema (draft 2020-12), version `SCHEMA_VERSION`, and the
checks a report must pass before anything reads a number from it.

Kept beside the code that writes the report so that both change together; the test suite
validates real reports against the schema with `jsonschema`, and
docs/verify-report-schema.md describes each field. A change that removes or retypes a
field bumps SCHEMA_VERSION; adding one does not.

A report is read back to be merged, and a merge adds its counts to others and judges the
sum: a count edited to -2 would cancel two arg-max changes, one of 10**400 overflows the
first float it meets, a list where an object goes breaks the first attribute read. So
`check_report_json` refuses, before `Report.from_json` builds anything, every value that
is not of its field's type and range (`REPORT_SCHEMA`, applied here by a small
interpreter, so the schema the tests validate against is the one enforced), every count
that does not fit the others (no more arg-max changes than decisions, histograms that
count the values compared, row ids inside their files), and any report whose content no
longer matches the digest verify wrote into it. Each refusal names the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kerasport.errors import InputError
from kerasport.verify.histograms import (
    EXACT_BELOW,
    ULP_BINS,
    ULP_SCHEME,
    Histogram2D,
    dp_vs_p_histogram,
    gq_diff_histogram,
    ulp_bin_bounds,
    ulp_bin_index,
)
from kerasport.verify.policies import parse_gate, policy_for

SCHEMA = "kerasport-verify-report"
# 2: any classifier: a gate policy (settings.gate, gate), outputs with positions (row ids
# with a position, decision units), gate flips per group of the gate (gate_groups).
# 3: every report records `digest` (the sha256 of its own content) and `inputs[].sha256`,
# so a merge can refuse an edited report and the same examples counted twice.
SCHEMA_VERSION = 3

# The most any count may be: 2^48 (2.8e14) decision units is far beyond any cohort (a
# million 512x512 segmentation tiles of 21 classes compare 5.5e12 values), and keeps every
# count exact in a float64 and thousands of reports' sums inside the int64 histogram bins.
MAX_COUNT = 1 << 48
MAX_ULP = ulp_bin_bounds(ULP_BINS - 1)[1]  # 2^32 - 1: the largest float32 ULP distance
_INT32 = 1 << 31  # DeepVariant's thresholds and column are int32 flags
_SHA256 = "^[0-9a-f]{64}$"

_INT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_ULP = {"type": "integer", "minimum": 0, "maximum": MAX_ULP}
_POSITIVE = {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}
_THRESHOLD = {"type": "integer", "minimum": -_INT32, "maximum": _INT32 - 1}
_NONNEG = {"type": "number", "minimum": 0}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_PROB = {"type": ["number", "null"]}
_DIGEST = {"type": "string", "pattern": _SHA256}


def _object(properties: dict[str, Any], extra: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
        "additionalProperties": extra,
    }


def _triples(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """An array of [first, second, count] (a histogram's non-empty bins or cells)."""
    return {
        "type": "array",
        "items": {
            "type": "array",
            "prefixItems": [first, second, _INT],
            "minItems": 3,
            "maxItems": 3,
        },
    }


_SHAPE = {"type": "array", "items": _POSITIVE}
_POSITION = {"type": "array", "items": _INT}
ROW_ID = _object({"input": _STR, "row": _INT, "position": _POSITION})
ROW_IDS = {"type": "array", "items": ROW_ID}

VALIDITY = _object(
    {
        "invalid_rows": _INT,
        "nan_rows": _INT,
        "out_of_range_rows": _INT,
        "not_normalized_rows": _INT,
        "rows": ROW_IDS,
    }
)

ULP_HISTOGRAM = _object(
    {
        "scheme": {"const": ULP_SCHEME},
        "exact_below": {"const": EXACT_BELOW},
        "bins": _triples(_ULP, _ULP),
    }
)


def _histogram_2d(histogram: Histogram2D) -> dict[str, Any]:
    """A 2-D histogram with exactly this kerasport's axes (a report of other bins cannot
    be added to them), its cells inside them."""

    def axis(described: dict[str, Any]) -> dict[str, Any]:
        return _object({key: {"const": value} for key, value in described.items()}, extra=False)

    def bins(size: int) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "maximum": size - 1}

    x, y = histogram.x_axis, histogram.y_axis
    return _object(
        {
            "x": axis(x.describe()),
            "y": axis(y.describe()),
            "cells": _triples(bins(x.size), bins(y.size)),
        }
    )


DP_VS_P = _histogram_2d(dp_vs_p_histogram())
GQ_DIFF_VS_GQ = _histogram_2d(gq_diff_histogram())

WORST_ROW = _object(
    {
        "input": _STR,
        "row": _INT,
        # 4 (invalid) + 2 (a decision or gate answer changed) + min(max |dp|, 1)
        "score": {"type": "number", "minimum": 0, "maximum": 7},
        "max_ulp": _ULP,
        "max_abs_diff": {"type": ["number", "null"], "minimum": 0},
        "position": _POSITION,
        "group": {"type": ["string", "null"]},
        "reference": {"type": "array", "items": _PROB},
        "candidate": {"type": "array", "items": _PROB},
        "gq_reference": _PROB,
        "gq_candidate": _PROB,
        "argmax_reference": _INT,
        "argmax_candidate": _INT,
        "gate_reference": _BOOL,
        "gate_candidate": _BOOL,
    }
)

INVARIANCE = _object(
    {
        "rows": _INT,
        "batch_sizes": {"type": "array", "items": _POSITIVE},
        "all_at_once": _BOOL,
        "max_batch_ulp": _ULP,
        "batch_argmax_changes": _INT,
        "batch_gate_flips": _INT,
        "repeat_bit_identical": _BOOL,
        "repeat_max_ulp": _ULP,
    }
)

# `sha256` is null only in a report built through the Python API without it (InputInfo's
# default); a merge refuses that report, as it cannot tell its examples from another's.
INPUT = _object(
    {"input": _STR, "rows": _INT, "sha256": {"type": ["string", "null"], "pattern": _SHA256}}
)

VERDICT = _object({"passed": _BOOL, "reasons": {"type": "array", "items": _STR}})

BACKEND = _object(
    {
        "rows": _INT,
        "num_classes": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_COUNT},
        "positions": {"type": ["array", "null"], "items": _POSITIVE},
        "decisions": _INT,
        "argmax_changes": _INT,
        "argmax_change_rows": ROW_IDS,
        "gate_flips": _INT,
        "gate_groups": {
            "type": "object",
            "additionalProperties": _object({"rows": _INT, "gate_flips": _INT}),
        },
        "gate_flip_rows": ROW_IDS,
        "gate_accepted_reference": _INT,
        "gate_accepted_candidate": _INT,
        "bit_identical_rows": _INT,
        "bit_identical_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "compared_values": _INT,
        "max_abs_diff": _NONNEG,
        "mean_abs_diff": _NONNEG,
        "sum_abs_diff": _NONNEG,
        "max_ulp": _ULP,
        "ulp_p50": _ULP,
        "ulp_p99": _ULP,
        "ulp_p999": _ULP,
        "ulp_histogram": ULP_HISTOGRAM,
        "gq_rows": _INT,
        "max_gq_diff": _NONNEG,
        "mean_gq_diff": _NONNEG,
        "sum_gq_diff": _NONNEG,
        "invalid": _object({"reference": VALIDITY, "candidate": VALIDITY}),
        "dp_vs_p": DP_VS_P,
        "gq_diff_vs_gq": GQ_DIFF_VS_GQ,
        "worst_rows": {"type": "array", "items": WORST_ROW},
        "artifact_sha256": _STR,
        "seconds": _NONNEG,
        "invariance": INVARIANCE,
        "verdict": VERDICT,
    }
)

SETTINGS = _object(
    {
        "snp_threshold": _THRESHOLD,
        "indel_threshold": _THRESHOLD,
        "is_snp_column": {"type": "integer", "minimum": 0, "maximum": _INT32 - 1},
        "sum_tolerance": _NONNEG,
        "max_ulp": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_COUNT},
        "max_batch_ulp": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_COUNT},
        "batch_sizes": {"type": "array", "items": _POSITIVE, "minItems": 1},
        "invariance_rows": _INT,
        "list_rows": _INT,
        "worst_rows": _INT,
        "gate": _STR,
    }
)

GATE = _object(
    {
        "policy": {"enum": ["deepvariant", "confidence", "none"]},
        "parameters": {"type": "object"},
        "chosen_by": _STR,
        "undecided": _BOOL,
    }
)

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "kerasport verify report",
    **_object(
        {
            "schema": {"const": SCHEMA},
            "schema_version": {"const": SCHEMA_VERSION},
            "created": _STR,
            "kerasport_version": _STR,
            "model": _object(
                {
                    "path": _STR,
                    "sha256": _STR,
                    "num_features": _POSITIVE,
                    "num_classes": _POSITIVE,
                    "input_shape": _SHAPE,
                    "output_shape": _SHAPE,
                }
            ),
            "bundle": _object(
                {
                    "path": _STR,
                    "source_file": _STR,
                    "source_sha256": _STR,
                    "source_matches": _BOOL,
                    "num_features": _POSITIVE,
                    "num_classes": _POSITIVE,
                    "input_shape": _SHAPE,
                    "output_shape": _SHAPE,
                    "head": {"enum": ["softmax", "sigmoid", "linear"]},
                }
            ),
            "reference": _object(
                {
                    "backend": _STR,
                    "keras_version": _STR,
                    "batch_size": _POSITIVE,
                    "process": _STR,
                    "seconds": _NONNEG,
                }
            ),
            "inputs": {"type": "array", "items": INPUT},
            "rows": _INT,
            "settings": SETTINGS,
            "gate": GATE,
            "backends": {"type": "object", "additionalProperties": BACKEND, "minProperties": 1},
            "warnings": {"type": "array", "items": _STR},
            "merged_from": {"type": "array", "items": _STR},
            "verdict": _object(
                {
                    "passed": _BOOL,
                    "exit_code": {"enum": [0, 1]},
                    "reasons": {"type": "array", "items": _STR},
                }
            ),
            "digest": _DIGEST,
        }
    ),
}


# --- the digest ---------------------------------------------------------------------------


def report_digest(data: Mapping[str, Any]) -> str:
    """sha256 of a report's content: its JSON without `digest`, serialized canonically.

    Canonical (sorted keys, no spaces, ASCII escapes, floats as Python's shortest repr) so
    that the digest depends only on the values, not on how a file was indented, and reads
    back the same from the file as from the report that wrote it. It tells a report edited
    after verify wrote it (by hand, or a tool that kept no digest) from the one verify
    wrote; it is not a signature: whoever edits a report can compute a new one, which is
    why every value is also checked for its range and against the others.
    """
    body = {key: value for key, value in data.items() if key != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --- checking a report read back ----------------------------------------------------------


class _Invalid(Exception):
    """A refused value: where (a field path, "" for the report as a whole) and why."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where, self.problem = where, problem


def check_report_json(data: Any, source: str) -> None:
    """Refuse, with an InputError naming `source` and the field, a report that
    `Report.from_json` could not build, or could build only into numbers no verify makes.

    In order: the schema name and version (an old report is refused as such: it has no
    digest), the digest, every field's type and range (`REPORT_SCHEMA`), then the counts
    against each other. Passing this, `Report.from_json` raises nothing.
    """
    try:
        _check_report(data)
    except _Invalid as exc:
        where = f"{exc.where}: " if exc.where else ""
        raise InputError(
            f"{source}: not a usable kerasport verify report: {where}{exc.problem}"
        ) from None


def _check_report(data: Any) -> None:
    if not isinstance(data, dict):
        raise _Invalid("", f"not a JSON object but {_kind(data)}")
    if data.get("schema") != SCHEMA:
        raise _Invalid("", f"not a kerasport verify report (schema={_show(data.get('schema'))})")
    version = data.get("schema_version")
    if not _same(version, SCHEMA_VERSION):
        raise _Invalid(
            "",
            f"report schema version {_show(version)} is not supported (this kerasport reads "
            f"version {SCHEMA_VERSION}, whose reports record their digest and the sha256 of "
            "their examples); verify its examples again",
        )
    recorded = data.get("digest")
    if not (isinstance(recorded, str) and re.fullmatch(_SHA256, recorded)):
        raise _Invalid("digest", f"{_show(recorded)} is not a sha256 digest")
    try:
        actual = report_digest(data)
    except (TypeError, ValueError) as exc:  # handed Python objects, not parsed JSON
        raise _Invalid("", f"holds a value JSON cannot spell: {exc}") from None
    if recorded != actual:
        raise _Invalid(
            "digest",
            f"the report's content does not match its digest (recorded {recorded[:12]}, "
            f"content {actual[:12]}): it was changed after verify wrote it; verify its "
            "examples again",
        )
    _check_schema(data, REPORT_SCHEMA, "")
    _check_consistent(data)


# --- the schema's interpreter -------------------------------------------------------------

# The keywords REPORT_SCHEMA uses, and all that `_check_schema` applies (a test holds the
# schema to them, so a keyword added to the schema cannot go unenforced).
SCHEMA_KEYWORDS = frozenset(
    {
        "$schema", "title", "type", "const", "enum", "minimum", "maximum", "pattern",
        "required", "properties", "additionalProperties", "minProperties", "items",
        "prefixItems", "minItems", "maxItems",
    }
)

_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    # Stricter than JSON Schema where Python is loose: a bool is not a number, and an
    # integer is written without a fraction (1.0 is a number only).
    "object": ("an object", lambda v: isinstance(v, dict)),
    "array": ("an array", lambda v: isinstance(v, list)),
    "string": ("a string", lambda v: isinstance(v, str)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "null": ("null", lambda v: v is None),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
}


def _check_schema(value: Any, schema: Mapping[str, Any], path: str) -> None:
    """Raise _Invalid at the first place `value` breaks `schema` (the keywords above)."""
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_TYPES[name][1](value) for name in names):
            wanted = " or ".join(_TYPES[name][0] for name in names)
            raise _Invalid(path, f"{_show(value)} is not {wanted}")
    if "const" in schema and not _same(value, schema["const"]):
        raise _Invalid(path, f"{_show(value)} is not {_show(schema['const'])}")
    if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
        raise _Invalid(path, f"{_show(value)} is not one of {_show(schema['enum'])}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, path)
    elif isinstance(value, str):
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise _Invalid(path, f"{_show(value)} does not match {schema['pattern']}")
    elif isinstance(value, dict):
        _check_object(value, schema, path)
    elif isinstance(value, list):
        _check_array(value, schema, path)


def _check_number(value: float, schema: Mapping[str, Any], path: str) -> None:
    # Parsed files hold neither (the reader refuses NaN and 1e999); a dict handed to
    # Report.from_json may hold both, and an integer of 10**400 parses.
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(path, f"{value} is not a finite number")
    if "minimum" in schema and value < schema["minimum"]:
        raise _Invalid(path, f"{_show(value)} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise _Invalid(path, f"{_show(value)} is above the maximum {schema['maximum']:,}")
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        raise _Invalid(path, f"{_show(value)} is beyond any float64")


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> None:
    for key in schema.get("required", ()):
        if key not in value:
            raise _Invalid(_field(path, key), "is missing")
    if len(value) < schema.get("minProperties", 0):
        raise _Invalid(path, f"has {len(value)} fields, fewer than {schema['minProperties']}")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check_schema(item, properties[key], _field(path, key))
        elif extra is False:
            raise _Invalid(_field(path, key), "is not a field of this object")
        elif isinstance(extra, dict):
            _check_schema(item, extra, _field(path, key))


def _check_array(value: list[Any], schema: Mapping[str, Any], path: str) -> None:
    if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
        bounds = f"{schema.get('minItems', 0)} to {schema.get('maxItems', 'any')}"
        raise _Invalid(path, f"has {len(value)} items, not {bounds}")
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if index < len(prefix):
            _check_schema(item, prefix[index], where)
        elif "items" in schema:
            _check_schema(item, schema["items"], where)


# --- the counts against each other ---------------------------------------------------------


def _check_consistent(data: dict[str, Any]) -> None:
    """The relations between fields that every report verify writes (and every merge of
    such reports) holds; the values already have their schema's types."""
    settings = data["settings"]
    try:
        gate = parse_gate(settings["gate"])
    except InputError as exc:
        raise _Invalid("settings.gate", str(exc)) from None
    groups = policy_for(
        gate, settings["snp_threshold"], settings["indel_threshold"], settings["is_snp_column"]
    ).groups
    sizes: dict[str, int] = {}
    for index, item in enumerate(data["inputs"]):
        if item["sha256"] is None:
            raise _Invalid(
                f"inputs[{index}].sha256",
                f"is null: no record of which examples {_show(item['input'])} held, so a "
                "merge could not refuse them counted twice; verify them again",
            )
        sizes[item["input"]] = max(sizes.get(item["input"], 0), item["rows"])
    rows = data["rows"]
    total = sum(item["rows"] for item in data["inputs"])
    if rows != total:
        raise _Invalid("rows", f"{rows:,} is not the sum of inputs[].rows ({total:,})")
    shape = _check_shapes(data["model"], data["bundle"])
    for name, entry in data["backends"].items():
        _Backend(_field("backends", name), entry, rows, sizes, settings, groups).check(shape)


def _check_shapes(model: dict[str, Any], bundle: dict[str, Any]) -> tuple[int, ...]:
    """The model's F and C are its shapes', and the bundle has its shapes (verify refuses
    any other bundle); returns a row's output shape."""
    shapes = {}
    for side, info in (("model", model), ("bundle", bundle)):
        # An empty shape means the (F,) -> (C,) default, as ModelInfo and BundleInfo read it.
        shapes[side] = (tuple(info["input_shape"]) or (info["num_features"],),
                        tuple(info["output_shape"]) or (info["num_classes"],))
    inputs, outputs = shapes["model"]
    if math.prod(inputs) != model["num_features"]:
        raise _Invalid("model.num_features", f"{model['num_features']:,} is not the product "
                                             f"of input_shape {list(inputs)}")
    if outputs[-1] != model["num_classes"]:
        raise _Invalid("model.num_classes", f"{model['num_classes']:,} is not the last axis "
                                            f"of output_shape {list(outputs)}")
    for index, field in enumerate(("input_shape", "output_shape")):
        if shapes["bundle"][index] != shapes["model"][index]:
            raise _Invalid(f"bundle.{field}", f"{list(shapes['bundle'][index])} is not the "
                                              f"model's {list(shapes['model'][index])}")
    return outputs


class _Backend:
    """The checks of one backend's entry, with what they share."""

    def __init__(
        self,
        path: str,
        entry: dict[str, Any],
        rows: int,
        sizes: dict[str, int],
        settings: dict[str, Any],
        groups: tuple[str, ...],
    ) -> None:
        self.path, self.entry, self.rows = path, entry, rows
        self.sizes, self.settings, self.groups = sizes, settings, groups
        self.units = entry["decisions"]
        self.positions: tuple[int, ...] | None = (
            None if entry["positions"] is None else tuple(entry["positions"])
        )

    def fail(self, field: str, problem: str) -> _Invalid:
        return _Invalid(f"{self.path}.{field}", problem)

    def at_most(self, field: str, value: int, limit: int, what: str) -> None:
        if value > limit:
            raise self.fail(field, f"{value:,} is more than {what} ({limit:,})")

    def check(self, shape: tuple[int, ...]) -> None:
        entry, units = self.entry, self.units
        if entry["rows"] != self.rows:
            raise self.fail("rows", f"{entry['rows']:,} is not the report's rows ({self.rows:,})")
        self.check_outputs(shape)
        for field in ("bit_identical_rows", "argmax_changes", "gate_flips",
                      "gate_accepted_reference", "gate_accepted_candidate", "gq_rows"):
            self.at_most(field, entry[field], units, "the decision units compared")
        classes = entry["num_classes"] or 0
        self.at_most("compared_values", entry["compared_values"], units * classes,
                     "the decision units' values")
        self.check_groups()
        limit = self.settings["list_rows"]
        self.check_ids("argmax_change_rows", entry["argmax_change_rows"],
                       min(entry["argmax_changes"], limit))
        self.check_ids("gate_flip_rows", entry["gate_flip_rows"], min(entry["gate_flips"], limit))
        for side, validity in entry["invalid"].items():
            invalid = sum(validity[k] for k in ("nan_rows", "out_of_range_rows",
                                                "not_normalized_rows"))
            self.at_most(f"invalid.{side}", invalid, units, "the decision units compared")
            self.check_ids(f"invalid.{side}.rows", validity["rows"], min(invalid, limit))
        self.check_ulp_histogram()
        self.check_cells("dp_vs_p", "compared_values")
        self.check_cells("gq_diff_vs_gq", "gq_rows")
        self.check_worst_rows()
        self.check_invariance()

    def check_outputs(self, shape: tuple[int, ...]) -> None:
        """Outputs per row are the bundle's, and decisions the rows times their positions."""
        classes, positions = self.entry["num_classes"], self.positions
        if (classes is None) != (positions is None):
            null, other = ("num_classes", "positions") if classes is None else (
                "positions", "num_classes")
            raise self.fail(null, f"is null, but {other} is not")
        if positions is None or classes is None:
            if self.rows:
                raise self.fail("num_classes", f"is null, but {self.rows:,} rows were compared")
            expected = 0
        else:
            if (*positions, classes) != shape:
                raise self.fail(
                    "positions",
                    f"outputs {[*positions, classes]} per row are not the bundle's "
                    f"output_shape {list(shape)}",
                )
            expected = self.rows * math.prod(positions)
        if self.units != expected:
            raise self.fail("decisions", f"{self.units:,} is not rows times positions "
                                         f"({expected:,})")

    def check_groups(self) -> None:
        groups = self.entry["gate_groups"]
        if sorted(groups) != sorted(self.groups):
            raise self.fail(
                "gate_groups",
                f"groups {sorted(groups)} are not those of the gate "
                f"{self.settings['gate']!r} ({sorted(self.groups)})",
            )
        if not groups:
            return
        for name, counts in groups.items():
            self.at_most(f"gate_groups.{name}.gate_flips", counts["gate_flips"], counts["rows"],
                         "the group's units")
        for field, total in (("rows", self.units), ("gate_flips", self.entry["gate_flips"])):
            summed = sum(counts[field] for counts in groups.values())
            if summed != total:
                raise self.fail("gate_groups", f"the groups' {field} add up to {summed:,}, "
                                               f"not {total:,}")

    def check_ids(self, field: str, ids: list[dict[str, Any]], expected: int) -> None:
        """A row list holds its first min(count, list_rows) ids, each inside its file."""
        if len(ids) != expected:
            raise self.fail(field, f"lists {len(ids):,} row ids, but its count and "
                                   f"settings.list_rows make {expected:,}")
        for index, row in enumerate(ids):
            self.check_id(f"{field}[{index}]", row)

    def check_id(self, field: str, row: dict[str, Any]) -> None:
        name = row["input"]
        if name not in self.sizes:
            raise self.fail(f"{field}.input", f"{_show(name)} is none of the report's inputs")
        self.at_most(f"{field}.row", row["row"], self.sizes[name] - 1,
                     f"the last row of {_show(name)}")
        position, dims = row["position"], self.positions or ()
        if len(position) != len(dims) or any(
            i >= d for i, d in zip(position, dims, strict=True)
        ):
            raise self.fail(f"{field}.position",
                            f"{position} is not a position in outputs of {list(dims)}")

    def check_ulp_histogram(self) -> None:
        """Bins on the scheme's grid, each once, counting every value compared, the top one
        holding max_ulp."""
        seen: set[int] = set()
        top: tuple[int, int] = (0, 0)
        for index, (low, high, count) in enumerate(self.entry["ulp_histogram"]["bins"]):
            field = f"ulp_histogram.bins[{index}]"
            bin_index = int(ulp_bin_index(np.array([low]))[0])
            if ulp_bin_bounds(bin_index) != (low, high):
                raise self.fail(field, f"[{low}, {high}] is not a bin of {ULP_SCHEME}")
            if bin_index in seen:
                raise self.fail(field, f"repeats the bin [{low}, {high}]")
            seen.add(bin_index)
            if count:
                top = max(top, (low, high))
        self.check_total("ulp_histogram.bins", self.entry["ulp_histogram"]["bins"],
                         "compared_values")
        max_ulp = self.entry["max_ulp"]
        if not top[0] <= max_ulp <= top[1]:
            raise self.fail("max_ulp", f"{max_ulp:,} is not in the histogram's top bin "
                                       f"[{top[0]:,}, {top[1]:,}]")

    def check_cells(self, field: str, count: str) -> None:
        """Each cell once (the schema holds them inside the axes), counting `count`."""
        cells = self.entry[field]["cells"]
        seen: set[tuple[int, int]] = set()
        for index, (i, j, _) in enumerate(cells):
            if (i, j) in seen:
                raise self.fail(f"{field}.cells[{index}]", f"repeats the cell ({i}, {j})")
            seen.add((i, j))
        self.check_total(f"{field}.cells", cells, count)

    def check_total(self, field: str, triples: list[list[int]], count: str) -> None:
        total = sum(triple[2] for triple in triples)
        if total != self.entry[count]:
            raise self.fail(field, f"count {total:,} values, but {count} is "
                                   f"{self.entry[count]:,}")

    def check_worst_rows(self) -> None:
        """At most worst_rows units that are not bit-identical, each shaped like an output."""
        entry = self.entry
        worst = entry["worst_rows"]
        self.at_most("worst_rows", len(worst), min(self.settings["worst_rows"],
                                                   self.units - entry["bit_identical_rows"]),
                     "settings.worst_rows and the units not bit-identical allow")
        classes = entry["num_classes"] or 0
        for index, row in enumerate(worst):
            field = f"worst_rows[{index}]"
            self.check_id(field, row)
            self.at_most(f"{field}.max_ulp", row["max_ulp"], entry["max_ulp"], "max_ulp")
            for side in ("reference", "candidate"):
                if len(row[side]) != classes:
                    raise self.fail(f"{field}.{side}", f"holds {len(row[side])} values, not "
                                                       f"num_classes ({classes})")
                self.at_most(f"{field}.argmax_{side}", row[f"argmax_{side}"], classes - 1,
                             "the last class")
            group = row["group"]
            if (group is None) != (not self.groups) or (
                group is not None and group not in self.groups
            ):
                raise self.fail(f"{field}.group", f"{_show(group)} is not a group of the gate "
                                                  f"({sorted(self.groups)})")

    def check_invariance(self) -> None:
        inv = self.entry["invariance"]
        self.at_most("invariance.rows", inv["rows"], self.rows, "the rows compared")
        per_row = self.units // self.rows if self.rows else 0
        for field in ("batch_argmax_changes", "batch_gate_flips"):
            self.at_most(f"invariance.{field}", inv[field], inv["rows"] * per_row,
                         "the sample's decision units")
        if inv["repeat_bit_identical"] and inv["repeat_max_ulp"]:
            raise self.fail("invariance.repeat_max_ulp",
                            f"is {inv['repeat_max_ulp']:,}, but repeat_bit_identical is true")


# --- messages -------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _field(path: str, key: str) -> str:
    """`path.key`, or `path["key"]` for a key that is not a plain name."""
    if _NAME.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_show(key)}]"


def _same(value: Any, expected: Any) -> bool:
    """Equal and of one JSON type (True is not 1, 3.0 is not 3)."""
    return type(value) is type(expected) and value == expected


def _kind(value: Any) -> str:
    for name, (article, matches) in _TYPES.items():
        if name != "integer" and matches(value):
            return article
    return type(value).__name__


def _show(value: Any) -> str:
    """A value as JSON would spell it, cut short: never a whole 10**400 or a huge list."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = ascii(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
