"""Decision policies without models: how `--gate` values read, and which gate a bundle
gets by default (and why)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kerasport.errors import InputError
from kerasport.verify.policies import (
    ConfidenceGate,
    DeepVariantGate,
    NoGate,
    choose_default,
    parse_gate,
    policy_for,
)
from kerasport.verify.settings import Settings
from kerasport.verify.spec import BundleSpec, TensorSpec, bundle_spec


def spec(inputs: tuple[int, ...] = (20,), outputs: tuple[int, ...] = (3,),
         head: str = "softmax") -> BundleSpec:
    return BundleSpec(TensorSpec(inputs, "float32"), TensorSpec(outputs, "float32"), head)


def test_gate_values_have_one_canonical_form() -> None:
    assert parse_gate("deepvariant") == "deepvariant"
    assert parse_gate(" none ") == "none"
    assert parse_gate("confidence:0.90") == parse_gate("confidence:.9") == "confidence:0.9"
    assert parse_gate("confidence:1") == "confidence:1.0"
    assert Settings(gate="confidence:0.50").gate == "confidence:0.5"
    with pytest.raises(InputError, match="not a gate policy"):
        Settings(gate="strict")
    assert isinstance(policy_for("confidence:0.25"), ConfidenceGate)
    assert isinstance(policy_for("none"), NoGate)
    dv = policy_for(None, 15, -1, 3)  # not chosen: the comparator's historic gate
    assert dv == DeepVariantGate(15, -1, 3) and dv.spec == "deepvariant"
    assert dv.to_json() == {
        "policy": "deepvariant",
        "parameters": {"snp_threshold": 15, "indel_threshold": -1, "is_snp_column": 3},
    }
    assert ConfidenceGate(0.9).to_json() == {"policy": "confidence",
                                             "parameters": {"threshold": 0.9}}


def never() -> None:
    pytest.fail("the default was decided without the examples, yet read them")


def test_the_default_is_decided_by_the_bundle_when_it_can_be() -> None:
    names = [f"f{i}" for i in range(20)]
    choice = choose_default(spec(), names, 12, never)  # type: ignore[arg-type]
    assert choice.spec == "deepvariant" and "feature names" in choice.chosen_by
    for other, why in (
        (spec(inputs=(8, 8, 2), outputs=(8, 8, 3)), "(8, 8, 2) -> (8, 8, 3)"),
        (spec(outputs=(10,)), "10 softmax outputs"),
        (spec(head="sigmoid"), "3 sigmoid outputs"),
        (spec(inputs=(12,)), "no is_snp column 12"),
    ):
        choice = choose_default(other, None, 12, never)  # type: ignore[arg-type]
        assert choice.spec == "none" and why in choice.chosen_by, choice.chosen_by
        assert not choice.from_examples and not choice.undecided


def test_a_deepvariant_shaped_model_is_decided_from_its_is_snp_column() -> None:
    rows = np.random.default_rng(0).integers(0, 101, size=(50, 20))
    rows[:, 12] = np.arange(50) % 2
    choice = choose_default(spec(), None, 12, lambda: (rows, "a.npy"))
    assert choice.spec == "deepvariant" and choice.from_examples
    assert "column 12 of the first 50 row(s) of a.npy" in choice.chosen_by
    floats = rows.astype(np.float64)
    floats[:, 12] = 0.625
    choice = choose_default(spec(), None, 12, lambda: (floats, "b.npy"))
    assert choice.spec == "none" and "holds 0.625" in choice.chosen_by
    nan = np.full((4, 20), np.nan)  # proves nothing: the reader then names the problem
    assert choose_default(spec(), None, 12, lambda: (nan, "c.npy")).spec == "deepvariant"
    text = np.full((4, 20), "x")
    assert choose_default(spec(), None, 12, lambda: (text, "d.npy")).spec == "none"
    empty = choose_default(spec(), None, 12, lambda: None)
    assert empty.spec == "none" and empty.undecided


def test_policies_refuse_models_they_cannot_judge() -> None:
    with pytest.raises(InputError, match="--gate none or confidence:T"):
        DeepVariantGate().check(spec(inputs=(8, 8, 2), outputs=(8, 8, 3)))
    with pytest.raises(InputError, match="head is linear"):
        ConfidenceGate(0.5).check(spec(head="linear"))
    ConfidenceGate(0.5).check(spec(head="sigmoid"))
    NoGate().check(spec(inputs=(4, 4), outputs=(4, 2), head="linear"))


def test_the_spec_accessor_reads_a_manifest_or_derives_it() -> None:
    from kerasport.manifest import InputSpec, Manifest, OutputSpec

    def manifest(**fields: Any) -> Manifest:
        return Manifest(
            input_name="x", output_name="y", artifacts={}, source_file="model.keras",
            source_sha256="0" * 64, versions={}, created="now", **fields,
        )

    warning = "the model's head is 'sigmoid' over 4 output(s) (...), not a softmax over classes"
    old = manifest(num_features=40, num_classes=4, warnings=[warning], format_version=2)
    assert bundle_spec(old) == spec(inputs=(40,), outputs=(4,), head="sigmoid")
    relu = "the model's head is 'relu' over 3 output(s), not a softmax over classes"
    assert bundle_spec(manifest(num_features=5, num_classes=3, warnings=[relu])).head == "linear"
    recorded = bundle_spec(
        manifest(
            num_features=256, num_classes=3, warnings=[],
            input_spec=InputSpec((16, 16, 1)), output_spec=OutputSpec((16, 16, 3), "linear"),
        )
    )
    assert recorded.positions == (16, 16) and recorded.num_classes == 3
    assert recorded.head == "linear" and recorded.input.shape == (16, 16, 1)
