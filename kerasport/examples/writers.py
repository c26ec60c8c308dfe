"""Write examples in any format the readers take, so every format round-trips."""

from __future__ import annotations

from pathlib import Path

from kerasport.atomic import atomic_path
from kerasport.examples import arrays, formats, text, tfrecord
from kerasport.examples.model import Examples, ExamplesError


def write_examples(examples: Examples, out_path: str | Path) -> Path:
    """Write `examples` to `out_path`, the format chosen by its name; return the path.

    The file appears whole or not at all: it is written beside `out_path` and renamed.

    `.npz` keeps everything (features, labels, positions, feature names); `.tfrecord` and
    `.tfrecord.gz` write DeepVariant training records (`features/encoded`, `label/encoded`);
    `.csv`/`.tsv` keep names and labels; `.npy` keeps the features only.
    """
    fmt = formats.detect_format(out_path)
    path = Path(out_path)
    if path.parent and not path.parent.is_dir():
        raise ExamplesError(f"{path}: directory {path.parent} does not exist")
    with atomic_path(path) as tmp:  # a failed or interrupted write leaves no file
        if fmt == formats.NPY:
            arrays.write_npy(examples, tmp)
        elif fmt == formats.NPZ:
            arrays.write_npz(examples, tmp)
        elif fmt in (formats.CSV, formats.TSV):
            text.write_text(examples, tmp, fmt)
        else:
            tfrecord.write_tfrecord(examples, tmp, compressed=fmt == formats.TFRECORD_GZ)
    return path
