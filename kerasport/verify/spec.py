"""What a bundle takes and gives, as verify needs it: the one place that reads it.

Verify compares outputs shaped (N, *output shape), the class axis last, and reads a head
kind to know what a decision is (arg-max, or p >= 0.5 per class for a sigmoid) and which
probability checks apply. Bundles that record an input and output spec (`input_spec`,
`output_spec` on the manifest) are read as recorded; older bundles, which hold a
(batch, features) -> (batch, classes) classifier, are derived from `num_features` and
`num_classes`, and their head from the warning export wrote for a head that is not a softmax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

HEADS = ("softmax", "sigmoid", "linear")
# export's head warning: "the model's head is 'sigmoid' over 4 output(s) ..."
_HEAD_WARNING = re.compile(r"the model's head is '([A-Za-z0-9_]+)' over")


@dataclass(frozen=True)
class TensorSpec:
    """One side of the model, without the batch axis: `shape`, and `dtype` (numpy name)."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class BundleSpec:
    """A bundle's input, its output (the class axis last) and its head kind."""

    input: TensorSpec
    output: TensorSpec
    head: str

    @property
    def num_classes(self) -> int:
        return self.output.shape[-1]

    @property
    def positions(self) -> tuple[int, ...]:
        """The output's axes between the batch and the class axis: () for (N, C)."""
        return self.output.shape[:-1]


def _head_from_warnings(warnings: list[str]) -> str:
    """The head kind of a bundle written before manifests recorded it.

    Export warned about any head that is not a softmax over classes, naming its
    activation; a sigmoid is read per class, anything else (linear, relu, ...) as scores.
    """
    for warning in warnings:
        match = _HEAD_WARNING.search(warning)
        if match:
            name = match.group(1)
            return name if name in ("softmax", "sigmoid") else "linear"
    return "softmax"


def bundle_spec(manifest: Any) -> BundleSpec:
    """The bundle's specs: `manifest.input_spec` / `output_spec` when it has them, else
    derived from today's fields ((num_features,) -> (num_classes,), head from warnings)."""
    recorded_in = getattr(manifest, "input_spec", None)
    recorded_out = getattr(manifest, "output_spec", None)
    if recorded_in is not None:
        inputs = TensorSpec(tuple(int(d) for d in recorded_in.shape), str(recorded_in.dtype))
    else:
        inputs = TensorSpec((int(manifest.num_features),), "float32")
    if recorded_out is not None:
        outputs = TensorSpec(
            tuple(int(d) for d in recorded_out.shape),
            str(getattr(recorded_out, "dtype", "float32")),
        )
        head = str(recorded_out.head)
    else:
        outputs = TensorSpec((int(manifest.num_classes),), "float32")
        head = _head_from_warnings(list(manifest.warnings))
    if head not in HEADS:
        head = "linear"  # an unknown kind is read as scores: arg-max only, no range checks
    return BundleSpec(inputs, outputs, head)
