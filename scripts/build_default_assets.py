"""Regenerate the embedded default model and examples from DeepVariant's public test reads.

    python scripts/build_default_assets.py [--shared ../shared]

Featurizes NA12878 chr20:10,000,000-10,100,000 and labels every candidate against the GIAB
truth VCF (a candidate the truth lacks is REF). The confident BED shipped with this data covers
only 9.7 kb of the 100 kb (10,000,846-10,010,531, 56 examples), too little to train or hold out
on, so it is not applied here; `kerasport featurize --confident` applies it. Then it trains
a DeepVariant-shaped small model (Dense 750 relu, Dense 750 relu, Dense 3 softmax, Adam) on
the first half of the region, evaluates it on the second half, and writes
`kerasport/assets/model.keras` and `kerasport/assets/examples.npz`. Seeded: the same inputs
give the same model on the same machine and library versions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
REGION = "chr20:10,000,000-10,100,000"
SPLIT = 10_050_000  # train below, evaluate at or above
HIDDEN = (750, 750)
EPOCHS = 60
SEED = 2026
SNP_THRESHOLD, INDEL_THRESHOLD = 20, 28  # DeepVariant's WGS gate


def featurize_shared(shared: Path):  # type: ignore[no-untyped-def]
    from kerasport.featurize import featurize

    data = shared / "data" / "deepvariant-testdata"
    return featurize(
        data / "NA12878_S1.chr20.10_10p1mb.bam",
        data / "ucsc.hg19.chr20.unittest.fasta.gz",
        REGION,
        truth_vcf=data / "test_nist.b37_chr20_100kbp_at_10mb.vcf.gz",
    )


def train(features: np.ndarray, labels: np.ndarray):  # type: ignore[no-untyped-def]
    """Adam on raw integer features, as DeepVariant's small model is trained."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    def build() -> keras.Model:
        layers = [keras.Input((features.shape[1],), name="features")]
        layers += [keras.layers.Dense(units, activation="relu") for units in HIDDEN]
        layers.append(keras.layers.Dense(3, activation="softmax"))
        return keras.Sequential(layers, name="small_model")

    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(features.astype(np.float32), labels, epochs=EPOCHS, batch_size=32, verbose=0)
    # A fresh copy without optimizer state or compile config: a third of the size on disk.
    saved = build()
    saved.set_weights(model.get_weights())
    return saved


def report(model, features: np.ndarray, labels: np.ndarray, is_snp: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    from kerasport.verify.gq import gate_passes, genotype_quality

    p = np.asarray(model.predict(features, batch_size=128, verbose=0))
    called = p.argmax(axis=1)
    passes = gate_passes(genotype_quality(p), is_snp, SNP_THRESHOLD, INDEL_THRESHOLD)
    print(f"held-out examples: {len(labels)}")
    print(f"genotype concordance with truth: {(called == labels).mean():.4f}")
    print(f"pass the WGS GQ gate (SNP {SNP_THRESHOLD}, indel {INDEL_THRESHOLD}): "
          f"{passes.mean():.4f} ({int(passes.sum())} examples)")
    if passes.any():
        print(f"concordance of gated calls: {(called[passes] == labels[passes]).mean():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "kerasport" / "assets")
    args = parser.parse_args()

    import kerasport
    from kerasport.examples import write_examples
    from kerasport.export.model_info import write_model_info

    examples = featurize_shared(args.shared)
    assert examples.labels is not None and examples.positions is not None
    train_rows = examples.positions < SPLIT
    labels = examples.labels
    print(f"examples: {len(labels)} ({int(train_rows.sum())} train, {int((~train_rows).sum())} "
          f"held out); class counts REF/HET/HOM_ALT: {np.bincount(labels, minlength=3).tolist()}")
    model = train(examples.features[train_rows], labels[train_rows])
    is_snp = examples.features[:, examples.feature_names.index("is_snp")] == 1
    report(model, examples.features[~train_rows], labels[~train_rows], is_snp[~train_rows])
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model.keras")
    write_examples(examples, args.out / "examples.npz")
    write_model_info(args.out, examples.feature_names, f"kerasport-{kerasport.__version__}")
    for name in ("model.keras", "examples.npz", "small_model_info.json"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
