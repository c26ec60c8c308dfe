"""Hostile files whose headers claim more than they hold: each reader refuses them, naming
the file and the part, before allocating what they claim (issue "Never lose a file").

Every file here is built small in tmp_path: the zip bombs are streamed zeros, deflated as
they are written, so the test itself never holds what they declare.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.errors import ExportError
from kerasport.examples import ExamplesError, iter_example_chunks, read_examples
from kerasport.examples.tfexample import encode_example
from kerasport.examples.tfrecord import masked_crc
from kerasport.export.keras_model import check_model_file, load_keras_model
from kerasport.testing import train_small_model

F = 20
MiB = 1 << 20
BOMB_BYTES = 200 * MiB  # over the 64 MiB floor of kerasport.ziplimits; deflates to ~200 KB
HUGE_SHAPE = (2**40, 70)


def _header(shape: tuple[int, ...], dtype: str = "<i8") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return out.getvalue()


def _zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    for start in range(0, total, chunk):
        yield block[: min(chunk, total - start)]


def _zip_member(path: Path, name: str, parts: Iterator[bytes], zip64: bool = True,
                **others: bytes) -> Path:
    """An archive whose member `name` is `parts`, streamed and deflated, beside `others`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=zip64) as member:
            for part in parts:
                member.write(part)
        for other, data in others.items():
            archive.writestr(other, data)
    return path


def _forged_npz(path: Path) -> Path:
    """A features member whose header claims a (2**40, 70) int64 table: 6 TB of data."""
    return _zip_member(path, "features.npy", iter([_header(HUGE_SHAPE), bytes(560)]))


def _bomb_npz(path: Path) -> Path:
    """An honest header over 200 MiB of zeros: 64-wide rows, deflated ~1,000x."""
    rows = BOMB_BYTES // (8 * 64)
    head = _header((rows, 64))
    return _zip_member(path, "features.npy", iter([head, *_zeros(BOMB_BYTES)]))


def _record(length: int, payload: bytes = b"") -> bytes:
    """A TFRecord frame whose length field says `length`, its length CRC right."""
    field = struct.pack("<Q", length)
    return field + struct.pack("<I", masked_crc(field)) + payload


def _good_record() -> bytes:
    payload = encode_example({"features/encoded": np.arange(F)})
    return _record(len(payload), payload) + struct.pack("<I", masked_crc(payload))


def _keras_archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


_MODEL_MEMBERS = {"metadata.json": b"{}", "config.json": b"{}", "model.weights.h5": b"h5"}


def _keras_bomb(path: Path, config_bytes: int) -> Path:
    """A model archive whose config.json is `config_bytes` of deflated spaces."""
    spaces = (b" " * len(block) for block in _zeros(config_bytes))
    others = {k: v for k, v in _MODEL_MEMBERS.items() if k != "config.json"}
    return _zip_member(path, "config.json", spaces, **others)


# --- .npz and .npy ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bomb_npz(tmp_path_factory.mktemp("bomb") / "bomb.npz")


def _refused(path: Path, pattern: str) -> None:
    """Both access patterns refuse `path` with a message naming it and matching `pattern`."""
    for read in (read_examples, lambda p: next(iter_example_chunks(p, rows=64))):
        with pytest.raises(ExamplesError, match=pattern) as caught:
            read(path)
        assert str(path) in str(caught.value)


def test_a_forged_npz_header_is_refused_before_allocating(tmp_path: Path) -> None:
    _refused(_forged_npz(tmp_path / "forged.npz"),
             r"member 'features.npy': truncated: .*\(1099511627776, 70\) int64.*"
             r"only 560 bytes follow")


def test_a_forged_npy_header_is_refused_by_the_same_check(tmp_path: Path) -> None:
    path = tmp_path / "forged.npy"
    path.write_bytes(_header(HUGE_SHAPE) + bytes(560))
    _refused(path, r"truncated: .*\(1099511627776, 70\) int64.*only 560 bytes follow")


def test_a_header_longer_than_its_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long_header.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{")
    _refused(path, "truncated header .it claims 4,294,967,295 bytes")


def test_a_later_npy_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v3.npy"
    path.write_bytes(b"\x93NUMPY\x03\x00" + _header((2, 2))[8:])
    _refused(path, "format version 3.0")


def test_a_zip_bomb_is_refused_by_its_declared_size(bomb: Path) -> None:
    with zipfile.ZipFile(bomb) as archive:
        declared = archive.getinfo("features.npy").file_size
    assert declared > BOMB_BYTES
    _refused(bomb, rf"member 'features.npy' declares {declared:,} bytes inflated from "
                   r"[\d,]+ \(over 200x.*zip bomb.*np.savez")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_reading_a_zip_bomb_stays_small(bomb: Path) -> None:
    """The refusal is made from the central directory: the reader's peak memory is the
    interpreter's, far under the 200 MiB the bomb declares. The peak is the child's VmHWM:
    its ru_maxrss would count the pytest process it was forked from."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kerasport.examples import ExamplesError, read_examples\n"
        "try:\n"
        "    read_examples(sys.argv[1])\n"
        "except ExamplesError:\n"
        "    status = Path('/proc/self/status').read_text().split('VmHWM:')[1]\n"
        "    print(int(status.split()[0]) * 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(bomb)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < BOMB_BYTES // 2


def test_a_member_inflating_past_its_declared_size_is_cut_at_it(tmp_path: Path) -> None:
    """A member whose stream holds 8 MiB more than its entries declare: zipfile stops at the
    declared size and the CRC, of the whole stream, fails; nothing past it is held."""
    head = _header((10, 8))
    path = _zip_member(tmp_path / "longer.npz", "features.npy",
                       iter([head, bytes(640), *_zeros(8 * MiB)]), zip64=False)
    data = bytearray(path.read_bytes())
    declared = struct.pack("<I", len(head) + 640)
    data[22:26] = declared  # the local header's uncompressed size
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = declared
    path.write_bytes(bytes(data))
    _refused(path, "unreadable .npz file .Bad CRC-32 for file 'features.npy'")


def test_a_bzip2_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bz2.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("features.npy", _header((1, 1)) + bytes(8))
    _refused(path, "member 'features.npy' is compressed with zip method 12")


def test_many_members_under_the_floor_are_refused_together(tmp_path: Path) -> None:
    """Members each under the floor still may not add up to more than it."""
    path = tmp_path / "many.npz"
    rows = 40 * MiB // 8
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("features", "labels"):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(_header((rows,) if name == "labels" else (rows, 1)))
                for part in _zeros(40 * MiB):
                    member.write(part)
    with pytest.raises(ExamplesError, match=r"its members declare [\d,]+ bytes inflated in all"):
        read_examples(path)
    # the stream needs the features alone, which are under the floor, so it reads them
    assert next(iter_example_chunks(path, rows=64)).shape == (64, 1)


def test_compressible_real_tables_still_read(tmp_path: Path) -> None:
    """A table of zeros under the floor (deflated ~500x), and a large uncompressed one."""
    zeros = np.zeros((2000, 70), dtype=np.int64)
    np.savez_compressed(tmp_path / "zeros.npz", features=zeros, labels=np.zeros(2000, int))
    np.testing.assert_array_equal(read_examples(tmp_path / "zeros.npz").features, zeros)
    big = np.arange(100 * MiB // 8, dtype=np.int64).reshape(-1, 64)
    np.savez(tmp_path / "big.npz", features=big)
    np.testing.assert_array_equal(read_examples(tmp_path / "big.npz").features, big)


def test_out_of_memory_names_the_bytes_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    table = np.zeros((3, 4), dtype=np.int64)
    np.savez(tmp_path / "x.npz", features=table)
    np.save(tmp_path / "x.npy", table)
    monkeypatch.setattr(np.lib.format, "read_array", no_memory)
    monkeypatch.setattr(np, "load", no_memory)
    with pytest.raises(ExamplesError, match=r"member 'features\.npy': out of memory: its "
                                            r"array needs 96 bytes"):
        read_examples(tmp_path / "x.npz")
    with pytest.raises(ExamplesError, match=r"x\.npy: out of memory: its array needs 96 bytes"):
        read_examples(tmp_path / "x.npy")


# --- TFRecord ---------------------------------------------------------------------------------


def test_a_tfrecord_length_past_the_end_is_refused_at_its_offset(tmp_path: Path) -> None:
    good = _good_record()
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(good + _record(2**60) + bytes(100))
    _refused(path, rf"record 1: truncated record at byte {len(good)}: its length field says "
                   r"1,152,921,504,606,846,976 bytes of data and a 4-byte CRC, but 100 bytes "
                   "follow its header")


def test_a_gzip_tfrecord_length_over_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.tfrecord.gz"
    path.write_bytes(gzip.compress(_record(2**60) + bytes(100)))
    _refused(path, r"record 0 \(byte 0 of the uncompressed stream\): its length field says "
                   r"1,152,921,504,606,846,976 bytes, over the 64 MiB")


def test_a_tfrecord_length_with_a_bad_crc_is_refused(tmp_path: Path) -> None:
    record = bytearray(_record(2**60) + bytes(100))
    record[8] ^= 0xFF
    path = tmp_path / "bad_crc.tfrecord"
    path.write_bytes(bytes(record))
    _refused(path, "record 0: bad TFRecord CRC of the length field")


# --- .keras -----------------------------------------------------------------------------------


def _refused_model(path: Path, pattern: str) -> None:
    for check in (check_model_file, load_keras_model):
        with pytest.raises(ExportError, match=pattern) as caught:
            check(path)
        assert str(path) in str(caught.value)


def test_a_keras_config_bomb_is_refused(tmp_path: Path) -> None:
    _refused_model(_keras_bomb(tmp_path / "bomb.keras", 100 * MiB),
                   r"member 'config.json' declares 104,857,600 bytes inflated from .*zip bomb")


def test_a_keras_config_over_the_json_limit_is_refused(tmp_path: Path) -> None:
    """Under the ratio floor, but more JSON than any model's config: 20 MiB."""
    _refused_model(_keras_bomb(tmp_path / "large.keras", 20 * MiB),
                   r"member 'config.json' declares 20,971,520 bytes, over the 16 MiB")


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "assets/../../evil", "C:/evil",
                                  "assets\\..\\..\\evil"])
def test_a_keras_member_outside_the_archive_is_refused(tmp_path: Path, name: str) -> None:
    path = _keras_archive(tmp_path / "escape.keras", {**_MODEL_MEMBERS, name: b"x"})
    _refused_model(path, f"member {re.escape(repr(name))} is a path outside the archive")


def test_a_keras_member_twice_is_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        path = _keras_archive(tmp_path / "twice.keras", _MODEL_MEMBERS)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("config.json", b'{"other": 1}')
    _refused_model(path, "member 'config.json' is in the archive twice")


def test_a_keras_archive_without_weights_is_refused(tmp_path: Path) -> None:
    path = _keras_archive(tmp_path / "no_weights.keras", {"config.json": b"{}"})
    _refused_model(path, r"no weights \(model.weights.h5 or model.weights.npz\)")


def test_real_models_pass_the_archive_check(tmp_path: Path) -> None:
    """The bundled model (stored members), and the same model deflated, as `zip -9` would."""
    from kerasport.assets import __file__ as assets

    model = Path(assets).parent / "model.keras"
    assert check_model_file(model) == model
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(model) as source, \
            zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert check_model_file(deflated) == deflated


# --- through the CLI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("bounded_reads")
    model = train_small_model(root / "model.keras", F, (8,), seed=TRAINING_SEED, rows=512,
                              epochs=1)
    return {"root": root, "model": model, "bundle": export_bundle(model, root / "bundle")}


def _write_huge_tfrecord(path: Path) -> Path:
    path.write_bytes(_record(2**60) + bytes(100))
    return path


@pytest.mark.parametrize("case", ["forged.npz", "bomb.npz", "huge.tfrecord", "bomb.keras"])
def test_the_cli_refuses_with_exit_2_and_no_traceback(
    case: str, tiny: dict[str, Path], bomb: Path, tmp_path: Path
) -> None:
    model, examples = tiny["model"], tmp_path / "good.npy"
    np.save(examples, np.zeros((4, F), dtype=np.int64))
    if case == "forged.npz":
        examples = _forged_npz(tmp_path / case)
    elif case == "bomb.npz":
        examples = bomb
    elif case == "huge.tfrecord":
        examples = _write_huge_tfrecord(tmp_path / case)
    else:
        model = _keras_bomb(tmp_path / case, 100 * MiB)
    done = subprocess.run(
        [sys.executable, "-m", "kerasport", "verify", str(model), str(tiny["bundle"]),
         "--examples", str(examples)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    refused = model if case == "bomb.keras" else examples
    assert str(refused) in done.stderr, done.stderr
