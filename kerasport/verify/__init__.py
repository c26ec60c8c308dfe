"""Verify a bundle against the Keras model it came from, as its consumer would use it.

    report = verify_bundle("model.keras", "bundle/", ["chr20.npy"])
    print(render_table(report)); sys.exit(report.exit_code)

The comparator (`compare.Comparison`) knows nothing about backends or DeepVariant: it
accumulates, in flat memory and mergeably, the differences between two float32 output
streams shaped (N, C) or (N, ..., C), deciding per row and position (`decisions`) and
asking a decision policy which calls are accepted (`policies`: DeepVariant's gate, a
confidence threshold, or none). The rest reads the bundle's specs (`spec`), feeds the
comparator (`core`, `inputs`), runs the reference (`reference`), judges (`result.judge`),
renders (`report`, `html`) and merges cohorts (`merge`). Importing this package loads
numpy only.
"""

from __future__ import annotations

from kerasport.verify.compare import Comparison
from kerasport.verify.core import verify_bundle
from kerasport.verify.merge import load_report, merge_reports
from kerasport.verify.report import render_table, write_html, write_json
from kerasport.verify.result import (
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_USAGE,
    SCHEMA_VERSION,
    Report,
    judge,
)
from kerasport.verify.rows import RowId
from kerasport.verify.settings import Settings

__all__ = [
    "EXIT_FAIL",
    "EXIT_PASS",
    "EXIT_USAGE",
    "SCHEMA_VERSION",
    "Comparison",
    "Report",
    "RowId",
    "Settings",
    "judge",
    "load_report",
    "merge_reports",
    "render_table",
    "verify_bundle",
    "write_html",
    "write_json",
]
