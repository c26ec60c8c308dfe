"""Render a report: the terminal table (shaped like DeepVariant PR 1089's), JSON, HTML.

The table is a Markdown pipe table, so it reads in a terminal and pastes into a pull
request as the same table PR 1089 used to argue that a change is decision-identical.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kerasport.atomic import atomic_path
from kerasport.errors import InputError
from kerasport.jsonfile import read_json_file
from kerasport.verify.compare import Comparison
from kerasport.verify.decisions import rule
from kerasport.verify.result import Report
from kerasport.verify.rows import RowId

# The table's columns under DeepVariant's gate; `columns` gives any report's.
COLUMNS = (
    "backend",
    "examples compared",
    "genotype-call (arg-max) changes",
    "bit-identical probabilities",
    "max prob diff",
    "max GQ (phred) diff",
    "gate flips (SNP / indel)",
    "ULP max / p50 / p99 / p99.9",
    "verdict",
)
LISTED_IDS = 10  # row ids shown per list in the terminal; the JSON keeps more
# A report is about 30 KB at the default settings; its row lists grow some 20 bytes a kept
# row (--list-rows) and a cohort's list of inputs some 150 bytes a file. 64 MiB holds a
# million kept rows, and bounds the memory a merge spends parsing one report (a few hundred
# MB).
MAX_REPORT_BYTES = 64 << 20


def percent_identical(identical: int, rows: int, unit: str = "row") -> str:
    """'99.9983% (5 rows differ)': rounded down, so 100% only when every row is identical."""
    if rows == 0:
        return f"n/a (0 {unit}s)"
    value = f"{math.floor(identical * 1_000_000 / rows) / 10_000:.4f}%"
    differ = rows - identical
    plural = "s" if differ != 1 else ""
    return value if differ == 0 else f"{value} ({differ:,} {unit}{plural} differ)"


def columns(report: Report) -> tuple[str, ...]:
    """The table's columns, in the terms of the report's gate and head: under
    DeepVariant's gate on a softmax, exactly `COLUMNS` (PR 1089's table)."""
    policy, head = report.settings.policy(), report.bundle.head
    groups = f" ({' / '.join(policy.group_labels)})" if policy.group_labels else ""
    scores = head == "linear"  # not probabilities
    return (
        "backend",
        "examples compared",
        f"{policy.call_name} ({rule(head)}) changes",
        "bit-identical outputs" if scores else "bit-identical probabilities",
        "max output diff" if scores else "max prob diff",
        "max GQ (phred) diff",
        f"gate flips{groups}",
        "ULP max / p50 / p99 / p99.9",
        "verdict",
    )


def _gate_flips(comp: Comparison) -> str:
    if not comp.groups:
        return f"{comp.gate_flips:,}"
    split = " / ".join(f"{group.gate_flips:,}" for group in comp.groups.values())
    return f"{comp.gate_flips:,} ({split})"


def _sci(value: float, digits: int) -> str:
    return "0" if value == 0 else f"{value:.{digits}e}"


def format_ids(ids: list[RowId], total: int, limit: int = LISTED_IDS) -> str:
    """`file:row` (`file:row@i,j` for a position) of the first `limit` ids, and how many more."""
    shown = ", ".join(str(row) for row in ids[:limit])
    more = total - min(len(ids), limit)
    return shown + (f" (+{more:,} more)" if more > 0 else "")


def table_rows(report: Report) -> list[list[str]]:
    """The table's cells, one list per backend (shared by the terminal and the HTML)."""
    reasons = report.reasons()
    rows = []
    for name, result in report.backends.items():
        comp = result.comparison
        unit = "position" if comp.positions else "row"
        rows.append(
            [
                name,
                f"{comp.rows:,}",
                f"{comp.argmax_changes:,}",
                percent_identical(comp.bit_identical_rows, comp.decisions, unit),
                _sci(comp.max_abs_diff, 2),
                _sci(comp.max_gq_diff, 1),
                _gate_flips(comp),
                f"{comp.max_ulp:,} / {comp.ulp_percentile(50):,} / {comp.ulp_percentile(99):,}"
                f" / {comp.ulp_percentile(99.9):,}",
                "PASS" if not reasons[name] else "FAIL",
            ]
        )
    return rows


def model_shape(report: Report) -> str:
    """'F=70, C=3' for a (features) -> (classes) model, else its shapes and head."""
    model, bundle = report.model, report.bundle
    if len(model.input_shape) == 1 and len(model.output_shape) == 1:
        text = f"F={model.num_features}, C={model.num_classes}"
    else:
        text = f"{model.input_shape} -> {model.output_shape} per row"
    return text + ("" if bundle.head == "softmax" else f", {bundle.head} head")


def gate_line(report: Report) -> str:
    """Which decision policy ran, with its parameters, and why it was chosen."""
    policy = report.settings.policy()
    return f"{policy.spec} ({report.gate.chosen_by}): {policy.describe()}"


def render_table(report: Report) -> str:
    """The terminal report: the table, then the details a reviewer needs to trust it."""
    header = columns(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    s, ref, model = report.settings, report.reference, report.model
    lines.append("")
    lines.append(
        f"reference: {model.path} (sha256 {model.sha256[:12]}, {model_shape(report)}) "
        f"on Keras {ref.keras_version} / {ref.backend}, "
        f"predict(batch_size={ref.batch_size}), {ref.process}"
    )
    lines.append(
        f"gate: {gate_line(report)}"
        + (f"; sum tolerance {s.sum_tolerance:g}" if report.bundle.head == "softmax" else "")
        + (f"; --max-ulp {s.max_ulp}" if s.max_ulp is not None else "")
    )
    for name, result in report.backends.items():
        comp, inv = result.comparison, result.invariance
        unit = "positions" if comp.positions else "rows"
        lines.append(
            f"{name}: mean |dp| {_sci(comp.mean_abs_diff, 2)}, mean GQ diff "
            f"{_sci(comp.mean_gq_diff, 1)}; gate accepts {comp.gate_accepted_candidate:,} "
            f"{unit} (reference {comp.gate_accepted_reference:,}); "
            f"{comp.candidate_validity.invalid_rows:,} invalid {unit}; {result.seconds:.1f} s"
        )
        if inv.rows:
            sizes = ", ".join(str(b) for b in inv.batch_sizes)
            lines.append(
                f"  invariance: {inv.rows:,} rows at batch sizes {sizes} and all at once: "
                f"max {inv.max_batch_ulp:,} ULP apart, {inv.batch_argmax_changes:,} "
                f"{rule(report.bundle.head)} / "
                f"{inv.batch_gate_flips:,} gate differences; two runs "
                + (
                    "bit-identical"
                    if inv.repeat_bit_identical
                    else f"DIFFER (max {inv.repeat_max_ulp:,} ULP)"
                )
            )
        if comp.argmax_changes:
            lines.append(
                f"  {rule(report.bundle.head)} changes: "
                + format_ids(comp.argmax_change_rows.ids, comp.argmax_changes)
            )
        if comp.gate_flips:
            lines.append("  gate flips: " + format_ids(comp.gate_flip_rows.ids, comp.gate_flips))
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    if report.merged_from:
        lines.append(f"merged from {len(report.merged_from)} reports")
    if report.passed:
        lines.append(f"verdict: PASS ({report.rows:,} rows)")
    else:
        lines.append("verdict: FAIL")
        for name, items in report.reasons().items():
            lines += [f"  {name}: {reason}" for reason in items]
    return "\n".join(lines)


def report_json_text(report: Report) -> str:
    """The JSON text of a report: strict JSON (no NaN), stable key order."""
    return json.dumps(report.to_json(), indent=1, allow_nan=False) + "\n"


def write_json(report: Report, path: str | Path) -> None:
    """Write the JSON report whole or not at all (a sibling temporary file, renamed)."""
    text = report_json_text(report)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> dict[str, Any]:
    """Parsed JSON of a stored report; an InputError naming the file if it is not one."""
    data = read_json_file(path, InputError, "verify report", max_bytes=MAX_REPORT_BYTES)
    if not isinstance(data, dict):
        raise InputError(f"verify report {path}: not a JSON object")
    return data


def write_html(report: Report, path: str | Path) -> None:
    """Self-contained HTML report with plots (needs matplotlib)."""
    from kerasport.verify.html import render_html

    page = render_html(report)
    with atomic_path(path) as tmp:
        tmp.write_text(page)
