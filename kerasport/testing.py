"""Synthetic examples and small trained models of DeepVariant's small-model family.

For tests and benchmarks. A model trained on these rows is confident like a real small model
(most max probabilities near 1), so tolerance and gate checks on it mean something; an
untrained model's near-uniform outputs would make them vacuous. Needs Keras (the `export`
extra) only to train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VAF_COLUMN = 4  # variant_allele_frequency: the labels follow it, as genotypes roughly do
IS_SNP_COLUMN = 12  # is_snp in DeepVariant's WGS layout: 0/1, so the gate has both types


def synthetic_examples(
    rows: int, num_features: int = 70, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """int64 rows of values 0-100 (is_snp 0/1) and REF/HET/HOM_ALT labels from the VAF column."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 101, size=(rows, num_features), dtype=np.int64)
    if num_features > IS_SNP_COLUMN:
        x[:, IS_SNP_COLUMN] = rng.integers(0, 2, rows)
    vaf = x[:, VAF_COLUMN]
    labels = np.where(vaf < 25, 0, np.where(vaf < 75, 1, 2))
    return x, labels


def clear_of_decision_edges(
    probabilities: np.ndarray,
    is_snp: np.ndarray,
    snp_threshold: float = 20,
    indel_threshold: float = 28,
    gq_margin: float = 0.05,
    p_margin: float = 1e-3,
) -> np.ndarray:
    """Rows whose genotype and gate decisions no rounding-sized change can move (bool mask).

    A freshly trained model puts rows wherever training on this CPU put them; a test that
    says "a few-ULP change moves no decision" must use rows with known margins: top two
    probabilities more than `p_margin` apart and GQ more than `gq_margin` phred from the
    row's threshold.
    """
    from kerasport.verify.gq import genotype_quality

    top2 = np.sort(probabilities, axis=1)[:, -2:]
    threshold = np.where(is_snp, snp_threshold, indel_threshold)
    gq = genotype_quality(probabilities)
    return (top2[:, 1] - top2[:, 0] > p_margin) & (np.abs(gq - threshold) > gq_margin)


def train_small_model(
    path: str | Path,
    num_features: int = 70,
    hidden: tuple[int, ...] = (750, 750),
    *,
    seed: int = 0,
    rows: int = 16384,
    epochs: int = 4,
    learning_rate: float = 1e-3,
) -> Path:
    """Train (`epochs=0`: leave untrained) and save a Dense-relu MLP with a 3-way softmax."""
    from kerasport.quiet import quiet_import

    keras = quiet_import("keras")

    keras.utils.set_random_seed(seed)
    layers: list = [keras.Input((num_features,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    layers.append(keras.layers.Dense(3, activation="softmax"))
    model = keras.Sequential(layers)
    if epochs:
        x, labels = synthetic_examples(rows, num_features, seed)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy"
        )
        model.fit(x.astype(np.float32), labels, epochs=epochs, batch_size=128, verbose=0)
    model.save(path)
    return Path(path)
