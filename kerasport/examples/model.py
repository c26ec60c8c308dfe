"""The in-memory form of a set of examples, and the checks every reader shares.

Every format ends up here so that "what is a valid example" is decided in one place: an
int64 table of shape (N, F) (DeepVariant hands the small model exactly that), optional
class ids 0=REF, 1=HET, 2=HOM_ALT, optional feature names and optional positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasport.errors import KerasportError

#: The classes of DeepVariant's small model, in the order of its output columns.
CLASS_NAMES = ("REF", "HET", "HOM_ALT")
NUM_CLASSES = len(CLASS_NAMES)


class ExamplesError(KerasportError):
    """A file of examples is missing, of an unknown kind, or holds something that is not
    a rectangular table of integers. The message names the file and the first problem."""


@dataclass
class Examples:
    """A table of examples: `features` int64 (N, F), `labels` int64 class ids (N,) or None.

    `feature_names` (F names) and `positions` (N ints, 1-based VCF POS of each example's
    candidate) are carried when the source has them, so that a model trained on one order of
    features is never fed another by mistake.
    """

    features: np.ndarray
    labels: np.ndarray | None = None
    feature_names: list[str] | None = None
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.features = as_int64_features(self.features, "features")
        rows, cols = self.features.shape
        if self.labels is not None:
            self.labels = as_class_ids(self.labels, "labels")
            if self.labels.shape[0] != rows:
                raise ExamplesError(
                    f"labels: {self.labels.shape[0]} labels for {rows} rows of features"
                )
        if self.feature_names is not None:
            self.feature_names = [str(name) for name in self.feature_names]
            if len(self.feature_names) != cols:
                raise ExamplesError(
                    f"feature_names: {len(self.feature_names)} names for {cols} features"
                )
        if self.positions is not None:
            self.positions = as_int64_array(np.asarray(self.positions), "positions").reshape(-1)
            if self.positions.shape[0] != rows:
                raise ExamplesError(
                    f"positions: {self.positions.shape[0]} positions for {rows} rows"
                )

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])


def as_int64_array(array: Any, what: str) -> np.ndarray:
    """Convert to int64, refusing anything that would change a value on the way.

    Floats are accepted only when every value is finite and whole (np.savetxt and pandas
    write integer tables as floats); text, objects, complex numbers, booleans (a mask saved
    in place of the table, more likely than a table of flags) and out-of-range unsigned
    values are not.
    """
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "i":
        return array.astype(np.int64, copy=False)
    if kind == "b":
        raise ExamplesError(f"{what}: boolean values (dtype bool); expected integers")
    if kind == "u":
        if array.size and array.max() > np.iinfo(np.int64).max:
            raise ExamplesError(f"{what}: value {array.max()} does not fit in int64")
        return array.astype(np.int64)
    if kind == "f":
        finite = np.isfinite(array)
        whole = finite & (np.floor(np.where(finite, array, 0)) == array)
        if not whole.all():
            index = tuple(int(i) for i in np.argwhere(~whole)[0])
            raise ExamplesError(
                f"{what}: non-integer value {array[index]} at index {list(index)}; "
                "examples must be whole numbers"
            )
        if array.size and np.abs(array).max() >= 2.0**63:
            raise ExamplesError(f"{what}: value {np.abs(array).max()} does not fit in int64")
        return array.astype(np.int64)
    values = "complex" if kind == "c" else "non-numeric"
    raise ExamplesError(f"{what}: {values} values (dtype {array.dtype}); expected integers")


def as_int64_features(array: Any, what: str) -> np.ndarray:
    """Check that `array` is a 2-D table and return it as C-contiguous int64."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ExamplesError(
            f"{what}: expected a 2-D table (rows, features); got shape {array.shape}"
        )
    return np.ascontiguousarray(as_int64_array(array, what))


def as_class_ids(labels: Any, what: str) -> np.ndarray:
    """Accept class ids (N,) or DeepVariant's one-hot rows (N, 3); return ids (N,) int64."""
    labels = as_int64_array(labels, what)
    if labels.ndim == 2 and labels.shape[1] == NUM_CLASSES:
        labels = one_hot_to_class_ids(labels, what)
    if labels.ndim != 1:
        raise ExamplesError(
            f"{what}: expected class ids (N,) or one-hot rows (N, {NUM_CLASSES}); "
            f"got shape {labels.shape}"
        )
    bad = (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ExamplesError(
            f"{what}: row {row} has class {labels[row]}; classes are 0..{NUM_CLASSES - 1} "
            f"({', '.join(CLASS_NAMES)})"
        )
    return np.ascontiguousarray(labels)


def one_hot_to_class_ids(one_hot: np.ndarray, what: str) -> np.ndarray:
    """Turn one-hot rows into class ids, refusing rows that are not exactly one 1 and 0s."""
    valid = ((one_hot == 0) | (one_hot == 1)).all(axis=1) & (one_hot.sum(axis=1) == 1)
    if not valid.all():
        row = int(np.flatnonzero(~valid)[0])
        raise ExamplesError(
            f"{what}: row {row} is not one-hot: {one_hot[row].tolist()}"
        )
    return np.argmax(one_hot, axis=1).astype(np.int64)


def class_ids_to_one_hot(labels: np.ndarray) -> np.ndarray:
    """The inverse of `one_hot_to_class_ids`: DeepVariant stores labels one-hot."""
    one_hot = np.zeros((labels.shape[0], NUM_CLASSES), dtype=np.int64)
    one_hot[np.arange(labels.shape[0]), labels] = 1
    return one_hot
