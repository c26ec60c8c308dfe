"""Examples readers and writers: round trips, streaming, TensorFlow interop, and errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasport.errors import KerasportError
from kerasport.examples import (
    Examples,
    ExamplesError,
    detect_format,
    iter_example_chunks,
    read_examples,
    write_examples,
)
from kerasport.examples.tfexample import decode_varints, encode_example, encode_varints
from kerasport.examples.tfrecord import masked_crc

FORMATS = ["npy", "npz", "csv", "tsv", "tfrecord", "tfrecord.gz"]
KEEPS_LABELS = {"npz", "csv", "tsv", "tfrecord", "tfrecord.gz"}
KEEPS_NAMES = {"npz", "csv", "tsv"}


@pytest.fixture(scope="module")
def examples() -> Examples:
    rng = np.random.default_rng(7)
    features = rng.integers(0, 101, size=(257, 70), dtype=np.int64)
    features[0, :4] = [-1, -(2**63), 2**63 - 1, 300]  # negative and multi-byte varints
    return Examples(
        features,
        labels=rng.integers(0, 3, size=257),
        feature_names=[f"f{i}" for i in range(70)],
        positions=np.arange(257) + 10_000_000,
    )


def _write_records(path: Path, payloads: list[bytes], compressed: bool = False) -> None:
    """Frame raw record payloads as TFRecord (for hand-made, possibly bad, records)."""
    data = b""
    for payload in payloads:
        length = struct.pack("<Q", len(payload))
        data += length + struct.pack("<I", masked_crc(length))
        data += payload + struct.pack("<I", masked_crc(payload))
    path.write_bytes(gzip.compress(data) if compressed else data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(examples: Examples, tmp_path: Path, fmt: str) -> None:
    path = write_examples(examples, tmp_path / f"x.{fmt}")
    back = read_examples(path)
    assert back.features.dtype == np.int64
    np.testing.assert_array_equal(back.features, examples.features)
    if fmt in KEEPS_LABELS:
        assert back.labels is not None
        np.testing.assert_array_equal(back.labels, examples.labels)
    else:
        assert back.labels is None
    assert (back.feature_names == examples.feature_names) == (fmt in KEEPS_NAMES)
    if fmt == "npz":
        np.testing.assert_array_equal(back.positions, examples.positions)


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_stream_every_row(examples: Examples, tmp_path: Path, fmt: str) -> None:
    path = write_examples(examples, tmp_path / f"x.{fmt}")
    chunks = list(iter_example_chunks(path, rows=100))
    assert [c.shape[0] for c in chunks] == [100, 100, 57]
    assert all(c.dtype == np.int64 and c.shape[1] == 70 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), examples.features)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unlabelled_and_empty_round_trip(tmp_path: Path, fmt: str) -> None:
    table = np.arange(12, dtype=np.int64).reshape(3, 4)
    back = read_examples(write_examples(Examples(table), tmp_path / f"x.{fmt}"))
    np.testing.assert_array_equal(back.features, table)
    assert back.labels is None
    empty = read_examples(write_examples(Examples(table[:0]), tmp_path / f"empty.{fmt}"))
    assert empty.features.shape[0] == 0 and empty.features.dtype == np.int64
    assert list(iter_example_chunks(tmp_path / f"empty.{fmt}", rows=8)) == []


def test_npy_chunks_come_from_a_memory_map_and_convert(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(20, dtype=np.int32).reshape(10, 2))
    chunks = list(iter_example_chunks(tmp_path / "x.npy", rows=4))
    assert [c.dtype for c in chunks] == [np.int64] * 3
    np.testing.assert_array_equal(np.concatenate(chunks), np.arange(20).reshape(10, 2))


def test_whole_floats_are_accepted(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.0]]))
    np.savetxt(tmp_path / "x.csv", np.array([[1.0, 2.0]]), delimiter=",")
    for name in ("x.npy", "x.csv"):
        np.testing.assert_array_equal(read_examples(tmp_path / name).features, [[1, 2]])


def test_csv_header_and_label_column(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,label,b\n1,2,3\n\n4,0,5\n")
    back = read_examples(tmp_path / "x.csv")
    assert back.feature_names == ["a", "b"]
    np.testing.assert_array_equal(back.features, [[1, 3], [4, 5]])
    np.testing.assert_array_equal(back.labels, [2, 0])
    np.testing.assert_array_equal(next(iter_example_chunks(tmp_path / "x.csv", 10)),
                                  [[1, 3], [4, 5]])


def test_npz_one_hot_labels_become_class_ids(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", features=np.zeros((2, 3)), labels=np.array([[0, 0, 1],
                                                                            [1, 0, 0]]))
    np.testing.assert_array_equal(read_examples(tmp_path / "x.npz").labels, [2, 0])


def test_written_files_are_byte_identical(examples: Examples, tmp_path: Path) -> None:
    for fmt in ("npz", "tfrecord.gz"):
        a = write_examples(examples, tmp_path / f"a.{fmt}").read_bytes()
        b = write_examples(examples, tmp_path / f"b.{fmt}").read_bytes()
        assert a == b


def test_varints_round_trip_at_the_edges() -> None:
    values = np.array([0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63)], dtype=np.int64)
    np.testing.assert_array_equal(decode_varints(encode_varints(values)), values)
    assert encode_varints(np.array([1, 150])) == b"\x01\x96\x01"  # protobuf docs' example


def test_sharded_deepvariant_names_are_tfrecords() -> None:
    assert detect_format("examples.tfrecord-00003-of-00016.gz") == "tfrecord.gz"
    assert detect_format("a/b.TFRECORD") == "tfrecord"


# ---------------------------------------------------------------- TensorFlow interop


@pytest.fixture(scope="module")
def tf() -> Any:
    tensorflow = pytest.importorskip("tensorflow")
    return tensorflow


@pytest.mark.parametrize("compressed", [False, True])
def test_tensorflow_reads_our_records(tf: Any, examples: Examples, tmp_path: Path,
                                      compressed: bool) -> None:
    path = write_examples(examples, tmp_path / ("x.tfrecord.gz" if compressed else "x.tfrecord"))
    spec = {
        "features/encoded": tf.io.FixedLenFeature([70], tf.int64),
        "label/encoded": tf.io.FixedLenFeature([3], tf.int64),
    }
    dataset = tf.data.TFRecordDataset(str(path), compression_type="GZIP" if compressed else "")
    parsed = [tf.io.parse_single_example(record, spec) for record in dataset]
    features = np.stack([p["features/encoded"].numpy() for p in parsed])
    one_hot = np.stack([p["label/encoded"].numpy() for p in parsed])
    np.testing.assert_array_equal(features, examples.features)
    np.testing.assert_array_equal(one_hot.argmax(axis=1), examples.labels)
    assert (one_hot.sum(axis=1) == 1).all()


@pytest.mark.parametrize("compressed", [False, True])
def test_we_read_tensorflow_records(tf: Any, examples: Examples, tmp_path: Path,
                                    compressed: bool) -> None:
    path = tmp_path / ("tf.tfrecord.gz" if compressed else "tf.tfrecord")
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compressed else "")
    assert examples.labels is not None
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for row, label in zip(examples.features, examples.labels, strict=True):
            feature = {
                "features/encoded": tf.train.Feature(int64_list=tf.train.Int64List(value=row)),
                "label/encoded": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=np.eye(3, dtype=np.int64)[label])),
                "ids/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    back = read_examples(path)
    np.testing.assert_array_equal(back.features, examples.features)
    np.testing.assert_array_equal(back.labels, examples.labels)


def test_our_encoding_matches_tensorflow_bytes(tf: Any) -> None:
    row = np.array([0, 5, 300, -2], dtype=np.int64)
    ours = encode_example({"features/encoded": row})
    theirs = tf.train.Example(features=tf.train.Features(feature={
        "features/encoded": tf.train.Feature(int64_list=tf.train.Int64List(value=row)),
    })).SerializeToString()
    assert ours == theirs


# ---------------------------------------------------------------- errors


def _error(path: Path, *, stream: bool = False) -> str:
    with pytest.raises(ExamplesError) as info:
        if stream:
            list(iter_example_chunks(path, rows=2))
        else:
            read_examples(path)
    return str(info.value)


def test_errors_are_value_errors() -> None:
    assert issubclass(ExamplesError, ValueError)
    assert issubclass(ExamplesError, KerasportError)


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _error(tmp_path / "nope.npz")
    with pytest.raises(ExamplesError, match="no such file"):
        iter_example_chunks(tmp_path / "nope.tfrecord", rows=10)  # fails at the call


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"")
    assert "unknown examples format '.parquet'" in _error(tmp_path / "x.parquet")
    with pytest.raises(ExamplesError, match="unknown examples format"):
        write_examples(Examples(np.zeros((1, 1))), tmp_path / "x.json")


@pytest.mark.parametrize("stream", [False, True])
def test_ragged_csv(tmp_path: Path, stream: bool) -> None:
    (tmp_path / "x.csv").write_text("1,2,3\n4,5,6\n7,8\n")
    assert "line 3 has 2 values" in _error(tmp_path / "x.csv", stream=stream)


@pytest.mark.parametrize(("cell", "message"), [("1.5", "non-integer value '1.5'"),
                                               ("abc", "non-numeric value 'abc'")])
def test_bad_values_in_tsv(tmp_path: Path, cell: str, message: str) -> None:
    (tmp_path / "x.tsv").write_text(f"a\tb\n1\t2\n3\t{cell}\n")
    assert f"line 3, column 2: {message}" in _error(tmp_path / "x.tsv")


def test_bad_label_in_csv(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,label\n1,3\n")
    assert "label 3 is not a class id" in _error(tmp_path / "x.csv")


def test_non_integer_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([[1.0, 2.5]]))
    assert "non-integer value 2.5" in _error(tmp_path / "x.npy")
    assert "non-integer value 2.5" in _error(tmp_path / "x.npy", stream=True)


def test_non_numeric_and_1d_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    assert "non-numeric" in _error(tmp_path / "s.npy")
    np.save(tmp_path / "v.npy", np.arange(3))
    assert "expected a 2-D table" in _error(tmp_path / "v.npy")


def test_npz_without_features(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros((1, 2)), b=np.zeros(1))
    assert "no 'features' array" in _error(tmp_path / "x.npz")


def test_npz_labels_of_the_wrong_length(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", features=np.zeros((3, 2)), labels=np.zeros(2))
    assert "2 labels for 3 rows" in _error(tmp_path / "x.npz")


@pytest.mark.parametrize("where", ["length", "data"])
def test_bad_tfrecord_crc(examples: Examples, tmp_path: Path, where: str) -> None:
    path = write_examples(examples, tmp_path / "x.tfrecord")
    data = bytearray(path.read_bytes())
    data[2 if where == "length" else 40] ^= 0x01
    path.write_bytes(bytes(data))
    message = _error(path, stream=True)
    assert "record 0: bad TFRecord CRC" in message and where in message


def test_truncated_tfrecord(examples: Examples, tmp_path: Path) -> None:
    path = write_examples(examples, tmp_path / "x.tfrecord")
    path.write_bytes(path.read_bytes()[:-3])
    assert "record 256: truncated record" in _error(path)


def test_tfrecord_without_features_key(tmp_path: Path) -> None:
    _write_records(tmp_path / "x.tfrecord.gz",
                   [encode_example({"other/key": np.array([1, 2])})], compressed=True)
    assert "record 0: no 'features/encoded' key (keys: ['other/key'])" in _error(
        tmp_path / "x.tfrecord.gz")


def test_ragged_tfrecord(tmp_path: Path) -> None:
    rows = [np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([7, 8])]
    _write_records(tmp_path / "x.tfrecord",
                   [encode_example({"features/encoded": r}) for r in rows])
    assert "record 2: features/encoded has 2 values; earlier records have 3" in _error(
        tmp_path / "x.tfrecord")
    # ...also when the short record starts a new chunk of the stream
    assert "record 2" in _error(tmp_path / "x.tfrecord", stream=True)


def test_tfrecord_labels_on_some_records_only(tmp_path: Path) -> None:
    _write_records(tmp_path / "x.tfrecord", [
        encode_example({"features/encoded": np.array([1]), "label/encoded": np.array([1, 0, 0])}),
        encode_example({"features/encoded": np.array([2])}),
    ])
    assert "present in some records only" in _error(tmp_path / "x.tfrecord")


def test_tfrecord_label_not_one_hot(tmp_path: Path) -> None:
    _write_records(tmp_path / "x.tfrecord", [
        encode_example({"features/encoded": np.array([1]), "label/encoded": np.array([1, 1, 0])}),
    ])
    assert "not one-hot" in _error(tmp_path / "x.tfrecord")


def test_garbage_is_not_a_tfrecord(tmp_path: Path) -> None:
    (tmp_path / "x.tfrecord").write_bytes(b"this is not a tfrecord file at all")
    assert "bad TFRecord CRC" in _error(tmp_path / "x.tfrecord")


def test_rows_must_be_positive(examples: Examples, tmp_path: Path) -> None:
    path = write_examples(examples, tmp_path / "x.npy")
    with pytest.raises(ExamplesError, match="rows must be a positive integer"):
        iter_example_chunks(path, rows=0)


def test_npz_loads_only_the_members_it_needs(tmp_path: Path) -> None:
    features = np.arange(6).reshape(3, 2)
    pickled = np.array([{"not": "data"}] * 3, dtype=object)  # unreadable with allow_pickle=False
    extra = tmp_path / "extra.npz"
    np.savez(extra, features=features, notes=pickled)
    np.testing.assert_array_equal(read_examples(extra).features, features)
    np.testing.assert_array_equal(next(iter_example_chunks(extra, rows=10)), features)
    # Streaming needs the features alone; reading whole also loads (and checks) the labels.
    labelled = tmp_path / "labelled.npz"
    np.savez(labelled, features=features, labels=pickled)
    np.testing.assert_array_equal(next(iter_example_chunks(labelled, rows=10)), features)
    assert "not a numeric .npz archive" in _error(labelled)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_write_leaves_no_file(
    examples: Examples, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kerasport.examples.writers as writers

    target = tmp_path / f"x.{fmt}"

    # The format's own writer has written part of the file when the disk fills.
    def partial(ex: Examples, path: Path, *args: Any, **kwargs: Any) -> None:
        path.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    for module, name in ((writers.arrays, "write_npy"), (writers.arrays, "write_npz"),
                         (writers.text, "write_text"), (writers.tfrecord, "write_tfrecord")):
        monkeypatch.setattr(module, name, partial)
    with pytest.raises(OSError, match="No space"):
        write_examples(examples, target)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="No space"):
        write_examples(examples, target)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    monkeypatch.undo()
    write_examples(examples, target)
    np.testing.assert_array_equal(read_examples(target).features, examples.features)


def test_an_interrupted_tfrecord_write_leaves_no_file(
    examples: Examples, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kerasport.examples.tfrecord as tfrecord

    real_encode = tfrecord.encode_example
    calls = []

    def encode_then_interrupt(fields: Any) -> bytes:
        calls.append(1)
        if len(calls) > 100:
            raise KeyboardInterrupt
        return real_encode(fields)

    monkeypatch.setattr(tfrecord, "encode_example", encode_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_examples(examples, tmp_path / "x.tfrecord.gz")
    assert list(tmp_path.iterdir()) == []
