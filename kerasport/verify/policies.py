"""Decision policies: which of a classifier's calls its consumer accepts (the gate).

A backend must not move any decision its consumer takes. Beyond the arg-max, a consumer
may accept only some calls: DeepVariant keeps a small-model call when its GQ clears a
threshold that differs for SNPs and indels; a generic service may keep a call when its top
probability clears a threshold; or it takes every call. Each is a policy here, named as
`--gate` names it, and the comparator only asks a policy, per decision unit, whether the
call is accepted (and, for DeepVariant's SNP/indel split, which group a unit counts in):

    deepvariant     GQ >= --snp-threshold / --indel-threshold by the is_snp feature column
    confidence:T    max p >= T (T in [0, 1])
    none            no gate: every call is taken, only the decisions are compared

Without `--gate`, DeepVariant's gate is the default only for a DeepVariant model: a bundle
that recorded DeepVariant's feature names (small_model_info.json), or a model shaped like
DeepVariant's small model, decided from the examples (`choose_default`). Anything else
gets `none`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kerasport.errors import InputError
from kerasport.verify.gq import MAX_CONFIDENCE, gate_passes, genotype_quality
from kerasport.verify.spec import BundleSpec

DEEPVARIANT = "deepvariant"
CONFIDENCE = "confidence"
NONE = "none"
GATE_HELP = "deepvariant, confidence:T (accept when max p >= T, T in [0, 1]) or none"
DEEPVARIANT_CLASSES = 3  # REF, HET, HOM_ALT


def parse_gate(text: str) -> str:
    """The canonical form of a `--gate` value (confidence's T as Python writes the float).

    Raises InputError naming the accepted forms.
    """
    value = text.strip()
    if value in (DEEPVARIANT, NONE):
        return value
    name, sep, threshold = value.partition(":")
    if name == CONFIDENCE and sep:
        try:
            number = float(threshold)
        except ValueError:
            number = math.nan
        if 0.0 <= number <= 1.0:
            return f"{CONFIDENCE}:{number!r}"
        raise InputError(
            f"--gate {text!r}: the confidence threshold T must be a number in [0, 1]"
        )
    raise InputError(f"--gate {text!r} is not a gate policy; choose {GATE_HELP}")


class DecisionPolicy:
    """A gate over decision units: (M, C) outputs in, (M,) accepted out.

    `context` is what the policy needs from each row's features (DeepVariant: the is_snp
    flag), read once per chunk and handed back with the outputs; `groups` are named subsets
    in which gate flips are also counted. Subclasses override what differs.
    """

    name: ClassVar[str]
    groups: ClassVar[tuple[str, ...]] = ()
    group_labels: ClassVar[tuple[str, ...]] = ()  # as tables print them
    integer_features: ClassVar[bool] = False  # the model takes only whole-number features
    call_name: ClassVar[str] = "call"  # what one decision is called in tables

    @property
    def spec(self) -> str:
        """The policy as `--gate` names it (stored as `settings.gate`)."""
        return self.name

    def parameters(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, bundle: BundleSpec) -> None:
        """Refuse (InputError) a model this policy cannot judge."""

    def context(self, features: np.ndarray, source: str, first_row: int) -> np.ndarray | None:
        """Per-row input of the gate drawn from a chunk of features (checked), or None."""
        return None

    def accepts(self, units: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        """(M,) bool: which of the (M, C) units' calls the gate accepts."""
        raise NotImplementedError

    def group_index(self, context: np.ndarray | None, size: int) -> np.ndarray | None:
        """(M,) index into `groups` of each unit; None when the policy has no groups."""
        return None

    def flip_reason(self, flips: int, group_flips: Sequence[int]) -> str:
        return f"{flips} gate flip(s) ({self.describe()})"

    def change_words(self, rule: str) -> str:
        """What a changed decision is called in a verdict ("arg-max", "p >= 0.5")."""
        return rule

    def phred_thresholds(self) -> list[tuple[float, str]]:
        """Where the gate's thresholds fall on the GQ (phred of max p) axis, for plots."""
        return []

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.name, "parameters": self.parameters()}


@dataclass(frozen=True)
class DeepVariantGate(DecisionPolicy):
    """DeepVariant's small-model gate: accept when GQ >= the threshold of the row's type.

    GQ is DeepVariant's bounded phred of max(p) (`gq.genotype_quality`); the type is the
    `is_snp` feature, which must be 0 or 1 (a wrong column would judge SNPs against the
    indel threshold, so anything else is an error naming the column and the option).
    """

    snp_threshold: int = 20
    indel_threshold: int = 28
    is_snp_column: int = 12

    name: ClassVar[str] = DEEPVARIANT
    groups: ClassVar[tuple[str, ...]] = ("snp", "indel")
    group_labels: ClassVar[tuple[str, ...]] = ("SNP", "indel")
    integer_features: ClassVar[bool] = True
    call_name: ClassVar[str] = "genotype-call"

    def parameters(self) -> dict[str, Any]:
        return {
            "snp_threshold": self.snp_threshold,
            "indel_threshold": self.indel_threshold,
            "is_snp_column": self.is_snp_column,
        }

    def describe(self) -> str:
        return (
            f"accept when GQ >= {self.snp_threshold} (SNP) / {self.indel_threshold} (indel), "
            f"-1 disables; is_snp = feature column {self.is_snp_column}"
        )

    def check(self, bundle: BundleSpec) -> None:
        if len(bundle.input.shape) != 1 or bundle.positions:
            raise InputError(
                f"--gate {DEEPVARIANT} judges a (rows, features) -> (rows, classes) model by "
                f"its is_snp feature; this one maps {bundle.input.shape} -> "
                f"{bundle.output.shape} per row (use --gate none or confidence:T)"
            )

    def context(self, features: np.ndarray, source: str, first_row: int) -> np.ndarray:
        return is_snp_flags(features, self.is_snp_column, source, first_row)

    def accepts(self, units: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        if context is None:
            raise ValueError("the deepvariant gate needs each row's is_snp flag")
        snp = np.asarray(context).astype(bool)
        return gate_passes(
            genotype_quality(units), snp, self.snp_threshold, self.indel_threshold
        )

    def group_index(self, context: np.ndarray | None, size: int) -> np.ndarray:
        if context is None:
            raise ValueError("the deepvariant gate needs each row's is_snp flag")
        return np.where(np.asarray(context).astype(bool), 0, 1)

    def change_words(self, rule: str) -> str:
        return "arg-max (genotype)" if rule == "arg-max" else rule

    def phred_thresholds(self) -> list[tuple[float, str]]:
        """The thresholds in use (a negative one disables its type: not drawn)."""
        marks = [(self.snp_threshold, "SNP gate"), (self.indel_threshold, "indel gate")]
        return [(float(value), label) for value, label in marks if value >= 0]

    def flip_reason(self, flips: int, group_flips: Sequence[int]) -> str:
        snp, indel = group_flips
        return (
            f"{flips} gate flip(s) at GQ thresholds SNP {self.snp_threshold} / "
            f"indel {self.indel_threshold} ({snp} SNP, {indel} indel)"
        )


@dataclass(frozen=True)
class ConfidenceGate(DecisionPolicy):
    """Accept a call when its top probability is at least `threshold`: the general form
    of a confidence gate (DeepVariant's is this on a phred scale, per variant type)."""

    threshold: float = 0.5

    name: ClassVar[str] = CONFIDENCE

    @property
    def spec(self) -> str:
        return f"{CONFIDENCE}:{float(self.threshold)!r}"

    def parameters(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def describe(self) -> str:
        return f"accept a call when max p >= {self.threshold:g}"

    def check(self, bundle: BundleSpec) -> None:
        if bundle.head == "linear":
            raise InputError(
                f"--gate {self.spec} compares probabilities with {self.threshold:g}, but the "
                "bundle's head is linear (scores, not probabilities); use --gate none"
            )

    def accepts(self, units: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        if units.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        with np.errstate(invalid="ignore"):
            return np.asarray(units.max(axis=1) >= np.float32(self.threshold))

    def flip_reason(self, flips: int, group_flips: Sequence[int]) -> str:
        return f"{flips} gate flip(s) at max p >= {self.threshold:g}"

    def phred_thresholds(self) -> list[tuple[float, str]]:
        if self.threshold >= 1:  # beyond GQ's cap
            return []
        phred = float(-10.0 * np.log10(1.0 - min(self.threshold, MAX_CONFIDENCE)))
        return [(phred, f"max p >= {self.threshold:g}")]


@dataclass(frozen=True)
class NoGate(DecisionPolicy):
    """No gate: every call is taken, so only the decisions themselves can move."""

    name: ClassVar[str] = NONE

    def describe(self) -> str:
        return "every call is taken (no gate); only the decisions are compared"

    def accepts(self, units: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        return np.ones(units.shape[0], dtype=bool)


def policy_for(
    gate: str | None, snp_threshold: int = 20, indel_threshold: int = 28, is_snp_column: int = 12
) -> DecisionPolicy:
    """The policy a `--gate` value names; None (not chosen yet) is DeepVariant's gate,
    the comparator's historic meaning when handed is_snp flags directly."""
    spec = DEEPVARIANT if gate is None else parse_gate(gate)
    if spec == DEEPVARIANT:
        return DeepVariantGate(snp_threshold, indel_threshold, is_snp_column)
    if spec == NONE:
        return NoGate()
    return ConfidenceGate(float(spec.partition(":")[2]))


def is_snp_flags(features: np.ndarray, column: int, source: str, first_row: int) -> np.ndarray:
    """The `is_snp` feature of each row as bool, refusing values other than 0 and 1."""
    if not 0 <= column < features.shape[1]:
        raise InputError(
            f"--is-snp-column {column} is outside the {features.shape[1]} features of {source}"
        )
    values = features[:, column]
    bad = (values != 0) & (values != 1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source} row {first_row + index}: feature column {column} holds "
            f"{int(values[index])}, but is_snp is 0 or 1; set --is-snp-column to the column "
            "of is_snp (DeepVariant's is the 13th feature, column 12)"
        )
    return values.astype(bool)


# -- the default ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateChoice:
    """The gate a verification runs, and why: `chosen_by` is stored in the report.

    `undecided` marks a default taken for lack of rows to decide from: such a (0-row)
    report merges with reports of any gate. `from_examples` marks a default read from the
    first chunk of examples, a guess the rest of the examples may contradict.
    """

    spec: str
    chosen_by: str
    undecided: bool = False
    from_examples: bool = False


FirstChunk = Callable[[], "tuple[np.ndarray, str] | None"]


def choose_default(
    bundle: BundleSpec,
    feature_names: Sequence[str] | None,
    is_snp_column: int,
    first_chunk: FirstChunk,
) -> GateChoice:
    """DeepVariant's gate for a DeepVariant model, else none.

    A DeepVariant model is a bundle that recorded DeepVariant's feature names, or a model
    shaped like its small model: (rows, features) in, 3 softmax classes out, and an is_snp
    column whose values are 0 and 1. Those values are read from the first chunk of examples
    (`first_chunk()`: the raw rows and their file, or None when there are none) only when
    the shape leaves the question open; non-finite values prove nothing either way (every
    policy refuses them as features).
    """
    if feature_names is not None:
        return GateChoice(
            DEEPVARIANT,
            "default: the bundle records DeepVariant's feature names (small_model_info.json)",
        )
    shape = f"{bundle.input.shape} -> {bundle.output.shape}"
    if len(bundle.input.shape) != 1 or bundle.positions:
        return GateChoice(NONE, f"default: the model maps {shape} per row, not DeepVariant's")
    if bundle.num_classes != DEEPVARIANT_CLASSES or bundle.head != "softmax":
        return GateChoice(
            NONE,
            f"default: the model gives {bundle.num_classes} {bundle.head} outputs, not "
            f"DeepVariant's {DEEPVARIANT_CLASSES}-class softmax",
        )
    features = bundle.input.shape[0]
    if not 0 <= is_snp_column < features:
        return GateChoice(
            NONE, f"default: the model's {features} features have no is_snp column {is_snp_column}"
        )
    first = first_chunk()
    if first is None:
        return GateChoice(NONE, "default: no rows to decide from", undecided=True)
    rows, source = first
    column = _column(rows, is_snp_column)
    where = f"column {is_snp_column} of the first {len(rows):,} row(s) of {source}"
    if column is None:
        return GateChoice(NONE, f"default: {where} is not numeric")
    with np.errstate(invalid="ignore"):
        finite = column[np.isfinite(column)] if column.dtype.kind == "f" else column
        stray = finite[(finite != 0) & (finite != 1)]
    if stray.size:
        return GateChoice(
            NONE,
            f"default: {where} holds {stray[0].item()!r}, so it is no is_snp flag (decided "
            "from the first chunk)",
            from_examples=True,
        )
    return GateChoice(
        DEEPVARIANT,
        f"default: a DeepVariant-shaped model, and {where} (is_snp) holds only 0 and 1 "
        "(decided from the first chunk)",
        from_examples=True,
    )


def _column(rows: np.ndarray, column: int) -> np.ndarray | None:
    """One column of a raw 2-D chunk as numbers, None when it cannot be one."""
    if rows.ndim != 2 or rows.shape[1] <= column or rows.dtype.kind not in "iuf":
        return None
    return np.asarray(rows[:, column])
