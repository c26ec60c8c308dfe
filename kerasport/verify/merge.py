"""Combine stored reports of one model and bundle over several cohorts into one report.

Counts are summed, maxima kept, histograms added, row lists concatenated (to the smaller
limit) and worst rows re-ranked; every derived number (fractions, means, percentiles) and
the verdict are then recomputed by the same code a single pass uses. So merging the reports
of disjoint inputs gives the report of their union, and is judged by the same rules.

`check_reports_current` guards a merge against stale parts: every report records the sha256
of its examples files, model and bundle artifacts, and a report whose files have changed
since is refused rather than merged (a workflow that reruns only changed shards relies on
file times, which a copy that keeps them can fool).

Nothing in a stored report is trusted: `load_report` refuses one whose content no longer
matches its digest, or with any value out of its type, range or relation to the others
(`schema.check_report_json`), naming the file and the field; and `merge_reports` refuses a
report given twice (under any name) and examples counted twice (the same sha256, in one
report or two), which would double every count and still pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kerasport.errors import InputError, KerasportError
from kerasport.manifest import Manifest, read_manifest, sha256_file
from kerasport.verify.compare import Comparison
from kerasport.verify.invariance import Invariance
from kerasport.verify.report import read_json
from kerasport.verify.result import BackendResult, GateInfo, ReferenceInfo, Report
from kerasport.verify.settings import COMPARISON_FIELDS, VERDICT_FIELDS, Settings

_UNSET: Any = object()


def load_report(path: str | Path) -> Report:
    """Read a stored report: an InputError naming the file (and the field) when it is not
    JSON, not a current report, edited since verify wrote it, or malformed."""
    return Report.from_json(read_json(path), str(path))


class _CurrentFiles:
    """sha256 of files and manifests of bundles as they are now, each read once."""

    def __init__(self) -> None:
        self._digests: dict[str, str | None] = {}
        self._manifests: dict[str, Manifest] = {}

    def sha256(self, path: str) -> str | None:
        """The file's sha256, None when no such file."""
        if path not in self._digests:
            file = Path(path)
            self._digests[path] = sha256_file(file) if file.is_file() else None
        return self._digests[path]

    def manifest(self, bundle: str) -> Manifest:
        if bundle not in self._manifests:
            self._manifests[bundle] = read_manifest(Path(bundle))
        return self._manifests[bundle]


def _changed(what: str, path: str, now: str | None, then: str) -> str:
    found = "no longer exists" if now is None else f"now has sha256 {now[:12]}"
    return f"{what} {path} {found}, but the report verified sha256 {then[:12]}"


def _staleness(report: Report, files: _CurrentFiles) -> str | None:
    """What no longer matches the files `report` verified, or None when all still do."""
    for item in report.inputs:
        if item.sha256 is None:
            return f"input {item.input} has no recorded sha256 (a report built in memory)"
        now = files.sha256(item.input)
        if now != item.sha256:
            return _changed("examples file", item.input, now, item.sha256)
    model = report.model
    now = files.sha256(model.path)
    if now != model.sha256:
        return _changed("model", model.path, now, model.sha256)
    bundle = report.bundle
    try:
        manifest = files.manifest(bundle.path)
    except KerasportError as exc:
        return f"bundle {bundle.path} is no longer readable: {exc}"
    if manifest.source_sha256 != bundle.source_sha256:
        return (
            f"bundle {bundle.path} is now exported from sha256 {manifest.source_sha256[:12]}, "
            f"but the report verified one exported from {bundle.source_sha256[:12]}"
        )
    artifacts = {artifact.sha256 for artifact in manifest.artifacts.values()}
    for name, result in report.backends.items():
        if result.artifact_sha256 not in artifacts:
            return (
                f"bundle {bundle.path} no longer has the {name} artifact the report verified "
                f"(sha256 {result.artifact_sha256[:12]})"
            )
    return None


def check_reports_current(reports: Sequence[Report], labels: Sequence[str]) -> None:
    """Refuse any report whose examples, model or bundle changed since it was written.

    Files are compared by sha256 at the paths each report recorded (a relative path from
    the current directory); a file several reports share is read once. Raises InputError
    naming the report and the file.
    """
    files = _CurrentFiles()
    for report, label in zip(reports, labels, strict=True):
        problem = _staleness(report, files)
        if problem:
            raise InputError(f"{label}: stale report: {problem}; verify it again")


def _one_value(reports: Sequence[Report], labels: Sequence[str], what: str, get: Any) -> Any:
    values = [get(r) for r in reports]
    if any(v != values[0] for v in values):
        listed = ", ".join(f"{label}: {v!r}" for label, v in zip(labels, values, strict=True))
        raise InputError(f"cannot merge reports with different {what} ({listed})")
    return values[0]


def merged_gate(reports: Sequence[Report], labels: Sequence[str]) -> tuple[str, GateInfo]:
    """The one gate policy of the reports (refused, naming each report's, when they differ)
    and how it was chosen. A 0-row report whose default gate had no rows to decide from
    takes the others' gate: it adds nothing to any count."""
    decided = [(r, label) for r, label in zip(reports, labels, strict=True) if not r.gate.undecided]
    judged = decided or list(zip(reports, labels, strict=True))
    gates = [r.settings.gate for r, _ in judged]
    if any(gate != gates[0] for gate in gates):
        listed = ", ".join(f"{label}: {r.settings.gate}" for r, label in judged)
        raise InputError(
            f"cannot merge reports of different gate policies ({listed}); verify them again "
            "with one --gate"
        )
    chosen = list(dict.fromkeys(r.gate.chosen_by for r, _ in judged))
    return str(gates[0]), GateInfo("; ".join(chosen), undecided=not decided)


def merged_settings(
    reports: Sequence[Report], labels: Sequence[str], overrides: dict[str, Any]
) -> Settings:
    """Settings of the merged report; the ones that change numbers must agree."""
    gate, _ = merged_gate(reports, labels)
    reports = [dataclasses.replace(r, settings=dataclasses.replace(r.settings, gate=gate))
               for r in reports]
    for name in COMPARISON_FIELDS:
        _one_value(reports, labels, f"settings.{name}", lambda r, n=name: getattr(r.settings, n))
    values: dict[str, Any] = {}
    for name in VERDICT_FIELDS:
        if overrides.get(name, _UNSET) is not _UNSET:
            values[name] = overrides[name]
        else:
            option = f"--{name.replace('_', '-')} (give it to override)"
            values[name] = _one_value(
                reports, labels, option, lambda r, n=name: getattr(r.settings, n)
            )
    values["list_rows"] = min(r.settings.list_rows for r in reports)
    values["worst_rows"] = min(r.settings.worst_rows for r in reports)
    return dataclasses.replace(reports[0].settings, **values)


def _refuse_repeats(reports: Sequence[Report], labels: Sequence[str]) -> None:
    """Refuse a report given twice, or examples in two places: their rows would be counted
    twice, and a cohort that passes once passes doubled.

    A report is known by the digest of its content, so a copy under another name is the
    same report; examples by the sha256 of their bytes, so a copy of the file is the same
    examples. Files of 0 rows add nothing and may repeat (two empty shards are
    byte-identical); so may inputs without a sha256 (a report built in memory), which
    cannot be told apart.
    """
    first_seen: dict[str, str] = {}
    for report, label in zip(reports, labels, strict=True):
        digest = report.to_json()["digest"]
        if digest in first_seen:
            same = first_seen[digest]
            where = f"{label} is given twice" if same == label else (
                f"{same} and {label} are the same report")
            raise InputError(
                f"cannot merge: {where} (digest {digest[:12]}); its rows would count twice"
            )
        first_seen[digest] = label
    examples: dict[str, tuple[str, str]] = {}
    for report, label in zip(reports, labels, strict=True):
        for item in report.inputs:
            if not item.rows or item.sha256 is None:
                continue
            if item.sha256 in examples:
                other, path = examples[item.sha256]
                places = f"{other} ({path}) and {label} ({item.input})"
                raise InputError(
                    f"cannot merge: {places} verified the same examples (sha256 "
                    f"{item.sha256[:12]}); their rows would count twice"
                )
            examples[item.sha256] = (label, item.input)


def merge_reports(
    reports: Sequence[Report],
    labels: Sequence[str] | None = None,
    *,
    max_ulp: int | None = _UNSET,
    max_batch_ulp: int | None = _UNSET,
) -> Report:
    """One report over all of `reports`' rows. `labels` name them (default: 1, 2, ...).

    `max_ulp` / `max_batch_ulp` replace the stored limits (None removes one); when not
    given, the reports must agree on them.
    """
    if not reports:
        raise InputError("no reports to merge")
    labels = list(labels) if labels is not None else [str(i + 1) for i in range(len(reports))]
    if len(labels) != len(reports):
        raise InputError(f"{len(labels)} labels for {len(reports)} reports")
    settings = merged_settings(
        reports, labels, {"max_ulp": max_ulp, "max_batch_ulp": max_batch_ulp}
    )
    _, gate = merged_gate(reports, labels)
    first = reports[0]
    _one_value(reports, labels, "models (sha256)", lambda r: r.model.sha256)
    _one_value(reports, labels, "bundle sources (sha256)", lambda r: r.bundle.source_sha256)
    _one_value(
        reports, labels, "bundle outputs", lambda r: (r.bundle.output_shape, r.bundle.head)
    )
    _one_value(reports, labels, "backends", lambda r: sorted(r.backends))
    _one_value(reports, labels, "reference backends", lambda r: r.reference.backend)
    _one_value(reports, labels, "reference batch sizes", lambda r: r.reference.batch_size)
    for name in first.backends:
        artifact = f"{name} artifacts (sha256)"
        _one_value(reports, labels, artifact, lambda r, n=name: r.backends[n].artifact_sha256)
    _refuse_repeats(reports, labels)

    backends = {}
    for name, template in first.backends.items():
        merged = BackendResult(
            name,
            Comparison(settings, first.bundle.head),
            Invariance(),
            artifact_sha256=template.artifact_sha256,
        )
        for report in reports:
            part = report.backends[name]
            try:
                merged.comparison.merge(part.comparison)
                merged.invariance.merge(part.invariance)
            except ValueError as exc:
                raise InputError(f"cannot merge {name} results: {exc}") from exc
            merged.seconds += part.seconds
        backends[name] = merged

    warnings = list(dict.fromkeys(w for r in reports for w in r.warnings))
    inputs = [item for r in reports for item in r.inputs]
    names = [item.input for item in inputs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        warnings.append(
            f"input name(s) {', '.join(repeated)} appear in more than one report: their "
            "row ids are ambiguous in the merged lists"
        )
    keras_versions = sorted({r.reference.keras_version for r in reports})
    if len(keras_versions) > 1:
        warnings.append(f"the reports' references ran different Keras: {keras_versions}")
    return Report(
        settings=settings,
        model=first.model,
        bundle=first.bundle,
        reference=ReferenceInfo(
            first.reference.backend,
            ", ".join(keras_versions),
            first.reference.batch_size,
            first.reference.process,
            sum(r.reference.seconds for r in reports),
        ),
        inputs=inputs,
        backends=backends,
        warnings=warnings,
        merged_from=labels,
        gate=gate,
    )
