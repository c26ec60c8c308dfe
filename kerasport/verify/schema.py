"""JSON Schema (draft 2020-12) of a verify report, version `SCHEMA_VERSION`.

Kept beside the code that writes the report so that both change together; the test suite
validates real reports against it, and docs/verify-report-schema.md describes each field.
A change that removes or retypes a field bumps SCHEMA_VERSION; adding one does not.
"""

from __future__ import annotations

from typing import Any

from kerasport.verify.result import SCHEMA, SCHEMA_VERSION

_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number"}
_NONNEG = {"type": "number", "minimum": 0}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_PROB = {"type": ["number", "null"]}


def _object(properties: dict[str, Any], extra: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
        "additionalProperties": extra,
    }


_TRIPLES = {
    "type": "array",
    "items": {"type": "array", "prefixItems": [_INT, _INT, _INT], "minItems": 3, "maxItems": 3},
}
_AXIS = {
    "type": "object",
    "required": ["kind"],
    "properties": {"kind": {"enum": ["linear", "log10"]}},
}

_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}}
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
        "scheme": {"const": "exact-below-1024-then-pow2"},
        "exact_below": {"const": 1024},
        "bins": _TRIPLES,
    }
)
HISTOGRAM_2D = _object({"x": _AXIS, "y": _AXIS, "cells": _TRIPLES})

WORST_ROW = _object(
    {
        "input": _STR,
        "row": _INT,
        "score": _NONNEG,
        "max_ulp": _INT,
        "max_abs_diff": _PROB,
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
        "batch_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "all_at_once": _BOOL,
        "max_batch_ulp": _INT,
        "batch_argmax_changes": _INT,
        "batch_gate_flips": _INT,
        "repeat_bit_identical": _BOOL,
        "repeat_max_ulp": _INT,
    }
)

# `sha256` came after version 1's first reports: absent in those, null in a merged report
# for an input whose own report lacked it, so it is not required.
INPUT = {
    "type": "object",
    "required": ["input", "rows"],
    "properties": {
        "input": _STR,
        "rows": _INT,
        "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
    },
    "additionalProperties": True,
}

VERDICT = _object({"passed": _BOOL, "reasons": {"type": "array", "items": _STR}})

BACKEND = _object(
    {
        "rows": _INT,
        "num_classes": {"type": ["integer", "null"], "minimum": 1},
        "positions": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 1}},
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
        "max_ulp": _INT,
        "ulp_p50": _INT,
        "ulp_p99": _INT,
        "ulp_p999": _INT,
        "ulp_histogram": ULP_HISTOGRAM,
        "gq_rows": _INT,
        "max_gq_diff": _NONNEG,
        "mean_gq_diff": _NONNEG,
        "sum_gq_diff": _NONNEG,
        "invalid": _object({"reference": VALIDITY, "candidate": VALIDITY}),
        "dp_vs_p": HISTOGRAM_2D,
        "gq_diff_vs_gq": HISTOGRAM_2D,
        "worst_rows": {"type": "array", "items": WORST_ROW},
        "artifact_sha256": _STR,
        "seconds": _NONNEG,
        "invariance": INVARIANCE,
        "verdict": VERDICT,
    }
)

SETTINGS = _object(
    {
        "snp_threshold": {"type": "integer"},
        "indel_threshold": {"type": "integer"},
        "is_snp_column": _INT,
        "sum_tolerance": _NONNEG,
        "max_ulp": {"type": ["integer", "null"], "minimum": 0},
        "max_batch_ulp": {"type": ["integer", "null"], "minimum": 0},
        "batch_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}},
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
                    "num_features": _INT,
                    "num_classes": _INT,
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
                    "num_features": _INT,
                    "num_classes": _INT,
                    "input_shape": _SHAPE,
                    "output_shape": _SHAPE,
                    "head": {"enum": ["softmax", "sigmoid", "linear"]},
                }
            ),
            "reference": _object(
                {
                    "backend": _STR,
                    "keras_version": _STR,
                    "batch_size": _INT,
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
        }
    ),
}
