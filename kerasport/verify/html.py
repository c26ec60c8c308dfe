"""The HTML report: one self-contained file, plots embedded as base64 PNG.

Plots are drawn from the report's stored histograms only, so a merged cohort report draws
the same plots as a single pass would. Figures are made with matplotlib's object API (no
pyplot), so rendering never changes the backend of a notebook or program that calls it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kerasport.errors import KerasportError
from kerasport.verify.compare import Comparison
from kerasport.verify.histograms import Histogram2D, LogAxis, ulp_bin_bounds
from kerasport.verify.report import columns, format_ids, gate_line, model_shape, table_rows
from kerasport.verify.result import BackendResult, Report
from kerasport.verify.rows import RowId
from kerasport.verify.settings import Settings

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
.pass { color: #060; font-weight: bold; } .fail { color: #a00; font-weight: bold; }
.plots img { width: 32%; min-width: 320px; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _figure() -> tuple[Figure, Axes]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise KerasportError(
            "the HTML report needs matplotlib: pip install 'kerasport[report]'"
        ) from exc
    figure = Figure(figsize=(6, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _log_ticks(axis: LogAxis) -> tuple[list[int], list[str]]:
    """Tick positions at the zero bin and whole decades of a LogAxis."""
    positions, labels = [0], ["0"]
    for j in range(1, axis.size):
        exponent = axis.low_exp + (j - 1) / axis.per_decade
        if exponent == int(exponent) and (int(exponent) - axis.low_exp) % 2 == 0:
            positions.append(j)
            labels.append(f"1e{int(exponent)}")
    return positions, labels


def ulp_plot(comp: Comparison, name: str) -> str:
    figure, ax = _figure()
    counts = comp.ulp_histogram.counts
    nonzero = np.flatnonzero(counts)
    labels = []
    for index in nonzero:
        low, high = ulp_bin_bounds(int(index))
        labels.append(str(low) if low == high else f"2^{low.bit_length() - 1}+")
    ax.bar(range(len(nonzero)), counts[nonzero], color="#4477aa")
    step = max(1, len(nonzero) // 20)
    ax.set_xticks(range(0, len(nonzero), step), labels[::step], rotation=45)
    ax.set_yscale("log")
    ax.set_xlabel("ULP distance (float32 outputs)")
    ax.set_ylabel("values")
    title = f"{name}: ULP histogram (max {comp.max_ulp:,})"
    ax.set_title(title)
    return _png(figure, title)


def _heatmap(
    hist: Histogram2D, title: str, xlabel: str, ylabel: str, x_ticks: Sequence[float]
) -> tuple[Figure, Axes]:
    from matplotlib.colors import LogNorm

    figure, ax = _figure()
    counts = np.ma.masked_equal(hist.counts.T.astype(float), 0)
    x = hist.x_axis
    norm = LogNorm(vmin=1, vmax=max(1.0, float(hist.counts.max())))
    image = ax.imshow(
        counts,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=(x.low, x.high, -0.5, hist.y_axis.size - 0.5),
        norm=norm,
        cmap="viridis",
    )
    figure.colorbar(image, ax=ax, label="count")
    positions, labels = _log_ticks(hist.y_axis)
    ax.set_yticks(positions, labels)
    ax.set_xticks(list(x_ticks))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return figure, ax


def dp_plot(comp: Comparison, name: str) -> str:
    title = f"{name}: |dp| against p (max {comp.max_abs_diff:.2e})"
    figure, _ = _heatmap(
        comp.dp_vs_p,
        title,
        "reference probability p",
        "|dp| (candidate - reference)",
        [0, 0.25, 0.5, 0.75, 1.0],
    )
    return _png(figure, title)


GATE_COLOURS = ("#cc3311", "#ee7733", "#aa3377")


def gq_plot(comp: Comparison, name: str, settings: Settings) -> str:
    title = f"{name}: GQ difference (max {comp.max_gq_diff:.1e} phred)"
    figure, ax = _heatmap(
        comp.gq_diff_vs_gq,
        title,
        "reference GQ (phred)",
        "|GQ difference| (phred)",
        [0, 10, 20, 30, 40, 50, 60, 70],
    )
    marks = settings.policy().phred_thresholds()
    for (threshold, label), colour in zip(marks, GATE_COLOURS, strict=False):
        ax.axvline(threshold, color=colour, linestyle="--", label=label)
    if marks:
        ax.legend(loc="upper left", fontsize="small")
    return _png(figure, title)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _probs(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.9g}" for v in values)


def _worst_rows(comp: Comparison) -> str:
    if not comp.worst:
        return "<p>Every row is bit-identical: no worst rows to list.</p>"
    header = (
        "input id",
        "gate group",
        "reference p",
        "candidate p",
        "max |dp|",
        "max ULP",
        "GQ ref",
        "GQ cand",
        "arg-max ref/cand",
        "gate ref/cand",
    )
    rows = [
        (
            str(w.id),
            w.group or "",
            _probs(w.reference),
            _probs(w.candidate),
            f"{w.max_abs_diff:.3g}",
            f"{w.max_ulp:,}",
            f"{w.gq_reference:.4f}",
            f"{w.gq_candidate:.4f}",
            f"{w.argmax_reference}/{w.argmax_candidate}",
            f"{int(w.gate_reference)}/{int(w.gate_candidate)}",
        )
        for w in comp.worst
    ]
    return _table(header, rows)


def _id_list(title: str, ids: list[RowId], total: int) -> str:
    if not total:
        return ""
    return f"<p><b>{title}</b> ({total:,}): {html.escape(format_ids(ids, total, 200))}</p>"


def _backend_section(result: BackendResult, settings: Settings, reasons: list[str]) -> str:
    comp, inv, name = result.comparison, result.invariance, result.name
    verdict = (
        '<span class="pass">PASS</span>'
        if not reasons
        else '<span class="fail">FAIL</span>: ' + html.escape("; ".join(reasons))
    )
    parts = [
        f"<h2>{html.escape(name)}</h2>",
        f"<p>Verdict: {verdict}</p>",
        '<div class="plots">'
        + ulp_plot(comp, name)
        + dp_plot(comp, name)
        + gq_plot(comp, name, settings)
        + "</div>",
        _table(
            ("check", "value"),
            [
                ("mean |dp|", f"{comp.mean_abs_diff:.3g}"),
                ("mean GQ diff (phred)", f"{comp.mean_gq_diff:.3g}"),
                (
                    "rows accepted by gate (reference / candidate)",
                    f"{comp.gate_accepted_reference:,} / {comp.gate_accepted_candidate:,}",
                ),
                (
                    "invalid candidate rows (NaN / outside [0,1] / sum off 1)",
                    f"{comp.candidate_validity.nan_rows:,} / "
                    f"{comp.candidate_validity.out_of_range_rows:,} / "
                    f"{comp.candidate_validity.not_normalized_rows:,}",
                ),
                ("invariance rows", f"{inv.rows:,}"),
                ("batch sizes (and all at once)", ", ".join(map(str, inv.batch_sizes))),
                ("max ULP between batch sizes", f"{inv.max_batch_ulp:,}"),
                (
                    "decision changes between batch sizes (arg-max / gate)",
                    f"{inv.batch_argmax_changes:,} / {inv.batch_gate_flips:,}",
                ),
                (
                    "two runs bit-identical",
                    "yes" if inv.repeat_bit_identical else f"no (max {inv.repeat_max_ulp:,} ULP)",
                ),
                ("artifact sha256", result.artifact_sha256),
                ("seconds", f"{result.seconds:.2f}"),
            ],
        ),
        _id_list("Arg-max changes", comp.argmax_change_rows.ids, comp.argmax_changes),
        _id_list("Gate flips", comp.gate_flip_rows.ids, comp.gate_flips),
        _id_list(
            "Invalid candidate rows",
            comp.candidate_validity.rows.ids,
            comp.candidate_validity.invalid_rows,
        ),
        f"<h3>Worst rows (top {len(comp.worst)})</h3>",
        _worst_rows(comp),
    ]
    return "\n".join(parts)


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    reasons = report.reasons()
    verdict = (
        '<p class="pass">PASS</p>'
        if report.passed
        else '<p class="fail">FAIL</p><ul>'
        + "".join(
            f"<li>{html.escape(name)}: {html.escape(r)}</li>"
            for name, items in reasons.items()
            for r in items
        )
        + "</ul>"
    )
    model, ref, bundle = report.model, report.reference, report.bundle
    context = _table(
        ("item", "value"),
        [
            ("model", f"{model.path} (sha256 {model.sha256})"),
            (
                "bundle",
                f"{bundle.path} (source {bundle.source_file}, sha256 "
                f"{bundle.source_sha256}, matches model: {bundle.source_matches})",
            ),
            (
                "reference",
                f"Keras {ref.keras_version} on {ref.backend}, "
                f"predict(batch_size={ref.batch_size}), {ref.process}",
            ),
            ("features / classes", model_shape(report)),
            ("gate", gate_line(report)),
            ("inputs", ", ".join(f"{i.input} ({i.rows:,} rows)" for i in report.inputs)),
            ("settings", ", ".join(f"{k}={v}" for k, v in report.settings.to_json().items())),
            ("created", f"{report.created} by kerasport {report.kerasport_version}"),
        ]
        + [("warning", w) for w in report.warnings]
        + ([("merged from", ", ".join(report.merged_from))] if report.merged_from else []),
    )
    sections = [
        _backend_section(result, report.settings, reasons[name])
        for name, result in report.backends.items()
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8"><title>kerasport verify report</title>',
            f"<style>{STYLE}</style></head><body>",
            "<h1>kerasport verify report</h1>",
            verdict,
            _table(columns(report), table_rows(report)),
            context,
            *sections,
            "</body></html>",
        ]
    )
