"""Writers for featurized examples.

The formats are those `kerasport.examples` reads, so whatever featurize writes, every
other command can read: `.npz` (features, labels, positions, feature_names), `.tfrecord` /
`.tfrecord.gz` (DeepVariant training records), and `.npy`, `.csv`, `.tsv`.
"""

from __future__ import annotations

from kerasport.examples import write_examples

__all__ = ["write_examples"]
