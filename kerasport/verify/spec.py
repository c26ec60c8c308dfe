"""What a bundle takes and gives, as verify needs it: the one place verify reads it.

Verify compares outputs shaped (N, *output shape), the class axis last, and reads a head
kind to know what a decision is (arg-max, or p >= 0.5 per class for a sigmoid) and which
probability checks apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from kerasport.manifest import Manifest


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


def bundle_spec(manifest: Manifest) -> BundleSpec:
    """The bundle's specs as its manifest records them (a version 2 manifest derives them
    from its counts and its head warning; see kerasport.manifest)."""
    inputs, outputs = manifest.inputs, manifest.outputs
    return BundleSpec(
        TensorSpec(inputs.shape, inputs.dtype),
        TensorSpec(outputs.shape, outputs.dtype),
        outputs.head,
    )
