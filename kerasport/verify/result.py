"""A verification report as data: what was compared, the numbers, and the verdict.

The verdict is never stored as a fact to trust: it is recomputed from the numbers and the
settings (`judge`), so a merged cohort report is judged by exactly the same rules as each
of its parts. JSON is the storage format; its schema is versioned (`SCHEMA_VERSION`) and
documented in docs/verify-report-schema.md. Nor is a stored number trusted: the JSON carries
the digest of its own content, and `Report.from_json` refuses any report that fails it or
the schema's checks (`schema.check_report_json`) before reading a value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import kerasport
from kerasport.verify.compare import Comparison
from kerasport.verify.decisions import rule
from kerasport.verify.invariance import Invariance
from kerasport.verify.schema import SCHEMA, SCHEMA_VERSION, check_report_json, report_digest
from kerasport.verify.settings import Settings

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _shape(value: Any, default: int) -> tuple[int, ...]:
    return tuple(int(d) for d in value) if value else (default,)


@dataclass(frozen=True)
class ModelInfo:
    """The Keras model used as the reference; shapes without the batch axis (by default
    a (features,) -> (classes,) classifier's)."""

    path: str
    sha256: str
    num_features: int
    num_classes: int
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.num_features))
        object.__setattr__(self, "output_shape", _shape(self.output_shape, self.num_classes))


@dataclass(frozen=True)
class BundleInfo:
    """The bundle under test, and whether it says it came from the model given; its
    shapes without the batch axis and its head kind (softmax, sigmoid or linear)."""

    path: str
    source_file: str
    source_sha256: str
    source_matches: bool
    num_features: int
    num_classes: int
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    head: str = "softmax"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _shape(self.input_shape, self.num_features))
        object.__setattr__(self, "output_shape", _shape(self.output_shape, self.num_classes))


@dataclass(frozen=True)
class GateInfo:
    """Which decision policy ran and why (`chosen_by`: --gate, or the default's reason).

    `undecided` marks a default taken for lack of rows (a 0-row report): it merges with
    reports of any gate.
    """

    chosen_by: str = "given"
    undecided: bool = False


@dataclass(frozen=True)
class ReferenceInfo:
    """How the reference outputs were produced (DeepVariant: predict, batch size 128)."""

    backend: str
    keras_version: str
    batch_size: int
    process: str
    seconds: float = 0.0


@dataclass(frozen=True)
class InputInfo:
    """One examples file, how many rows it gave, and the sha256 of its bytes.

    The sha256 lets a merge refuse the same examples counted twice, and a report whose
    file has since changed (`--merge --check-inputs`). It is None only in a report built
    through the Python API without it, which cannot be read back to be merged.
    """

    input: str
    rows: int
    sha256: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputInfo:
        return cls(str(data["input"]), int(data["rows"]), str(data["sha256"]))


@dataclass
class BackendResult:
    """One backend's comparison with the reference, its invariance checks and timing."""

    name: str
    comparison: Comparison
    invariance: Invariance = field(default_factory=Invariance)
    artifact_sha256: str = ""
    seconds: float = 0.0


def judge(result: BackendResult, settings: Settings, head: str = "softmax") -> list[str]:
    """Reasons this backend fails; empty when it passes.

    Fails on any decision change, any gate flip, any output no consumer could use, a batch
    size or a rerun that changes outputs beyond what is allowed, and a max ULP above
    --max-ulp when one is given.
    """
    comp, inv = result.comparison, result.invariance
    policy = settings.policy()
    reasons: list[str] = []
    decision = policy.change_words(rule(head))
    if comp.argmax_changes:
        reasons.append(f"{comp.argmax_changes} {decision} change(s)")
    if comp.gate_flips:
        per_group = [group.gate_flips for group in comp.groups.values()]
        reasons.append(policy.flip_reason(comp.gate_flips, per_group))
    for side, validity in (
        ("candidate", comp.candidate_validity),
        ("reference", comp.reference_validity),
    ):
        if validity.invalid_rows:
            reasons.append(f"{validity.invalid_rows} {side} {_unusable(validity, head, settings)}")
    if settings.max_ulp is not None and comp.max_ulp > settings.max_ulp:
        reasons.append(f"max ULP {comp.max_ulp} exceeds --max-ulp {settings.max_ulp}")
    if inv.batch_argmax_changes or inv.batch_gate_flips:
        reasons.append(
            f"batch size changes decisions: {inv.batch_argmax_changes} {rule(head)} and "
            f"{inv.batch_gate_flips} gate difference(s) between batch sizes"
        )
    if settings.max_batch_ulp is not None and inv.max_batch_ulp > settings.max_batch_ulp:
        reasons.append(
            f"max ULP between batch sizes {inv.max_batch_ulp} exceeds --max-batch-ulp "
            f"{settings.max_batch_ulp}"
        )
    if not inv.repeat_bit_identical:
        reasons.append(
            f"not deterministic: two identical runs differ (max {inv.repeat_max_ulp} ULP)"
        )
    return reasons


def _unusable(validity: Any, head: str, settings: Settings) -> str:
    """What made a side's outputs unusable, in the terms of its head."""
    if head == "linear":
        return f"row(s) with unusable scores ({validity.nan_rows} NaN, " \
            f"{validity.out_of_range_rows} infinite)"
    counts = f"{validity.nan_rows} NaN, {validity.out_of_range_rows} outside [0, 1]"
    if head == "sigmoid":
        return f"row(s) with unusable probabilities ({counts})"
    return (
        f"row(s) with unusable probabilities ({counts}, {validity.not_normalized_rows} "
        f"not summing to 1 within {settings.sum_tolerance:g})"
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Report:
    """Everything `kerasport verify` found; `passed` and `exit_code` follow `judge`."""

    settings: Settings
    model: ModelInfo
    bundle: BundleInfo
    reference: ReferenceInfo
    inputs: list[InputInfo]
    backends: dict[str, BackendResult]
    warnings: list[str] = field(default_factory=list)
    merged_from: list[str] = field(default_factory=list)
    created: str = field(default_factory=_now)
    kerasport_version: str = kerasport.__version__
    gate: GateInfo = field(default_factory=GateInfo)

    def __post_init__(self) -> None:
        if self.settings.gate is None:  # not chosen: the settings' meaning, DeepVariant's
            self.settings = dataclasses.replace(self.settings, gate=self.settings.policy().spec)

    @property
    def rows(self) -> int:
        return sum(item.rows for item in self.inputs)

    def gate_json(self) -> dict[str, Any]:
        """The policy that ran, its parameters, and why it was chosen."""
        return {
            **self.settings.policy().to_json(),
            "chosen_by": self.gate.chosen_by,
            "undecided": self.gate.undecided,
        }

    def reasons(self) -> dict[str, list[str]]:
        head = self.bundle.head
        return {
            name: judge(result, self.settings, head) for name, result in self.backends.items()
        }

    @property
    def passed(self) -> bool:
        return not any(self.reasons().values())

    @property
    def exit_code(self) -> int:
        return EXIT_PASS if self.passed else EXIT_FAIL

    def to_json(self) -> dict[str, Any]:
        reasons = self.reasons()
        backends = {}
        for name, result in self.backends.items():
            backends[name] = {
                **result.comparison.to_json(),
                "artifact_sha256": result.artifact_sha256,
                "seconds": result.seconds,
                "invariance": result.invariance.to_json(),
                "verdict": {"passed": not reasons[name], "reasons": reasons[name]},
            }
        flat = [f"{name}: {reason}" for name, items in reasons.items() for reason in items]
        data = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "kerasport_version": self.kerasport_version,
            "model": asdict(self.model),
            "bundle": asdict(self.bundle),
            "reference": asdict(self.reference),
            "inputs": [asdict(item) for item in self.inputs],
            "rows": self.rows,
            "settings": self.settings.to_json(),
            "gate": self.gate_json(),
            "backends": backends,
            "warnings": list(self.warnings),
            "merged_from": list(self.merged_from),
            "verdict": {"passed": not flat, "exit_code": self.exit_code, "reasons": flat},
        }
        data["digest"] = report_digest(data)
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "report") -> Report:
        """Rebuild a report from its JSON, after `check_report_json` has refused (an
        InputError naming `source` and the field) anything edited, malformed or out of
        range. Fields this kerasport does not know are ignored."""
        check_report_json(data, source)
        settings = Settings.from_json(data["settings"])
        bundle = BundleInfo(**_known(BundleInfo, data["bundle"]))
        gate = data["gate"]
        backends = {
            name: BackendResult(
                name=name,
                comparison=Comparison.from_json(entry, settings, bundle.head),
                invariance=Invariance.from_json(entry["invariance"]),
                artifact_sha256=str(entry["artifact_sha256"]),
                seconds=float(entry["seconds"]),
            )
            for name, entry in data["backends"].items()
        }
        return cls(
            settings=settings,
            model=ModelInfo(**_known(ModelInfo, data["model"])),
            bundle=bundle,
            reference=ReferenceInfo(**_known(ReferenceInfo, data["reference"])),
            inputs=[InputInfo.from_json(item) for item in data["inputs"]],
            backends=backends,
            warnings=list(data["warnings"]),
            merged_from=list(data["merged_from"]),
            created=str(data["created"]),
            kerasport_version=str(data["kerasport_version"]),
            gate=GateInfo(str(gate["chosen_by"]), bool(gate["undecided"])),
        )


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of dataclass `cls` in `data`: a later kerasport may add others."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}
