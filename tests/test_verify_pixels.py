"""`kerasport verify` of a per-pixel classifier (a tiny segmentation net, (8, 8, 2) tiles
-> (8, 8, 3) softmax per pixel): examples as (N, 8, 8, 2) arrays, every pixel's decision
compared, and the pixels that moved listed by row and position.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.cli import main
from kerasport.errors import InputError
from kerasport.examples import ExamplesError
from kerasport.verify.inputs import iter_chunks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TILE = (8, 8, 2)
CLASSES = 3
ROWS = 64


def cli(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- reading (N, ...) examples -------------------------------------------------------------


def test_array_examples_of_any_rank_stream_as_stored(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(300, *TILE)).astype(np.float32)
    np.save(tmp_path / "t.npy", x)
    np.savez(tmp_path / "t.npz", features=x)
    for name in ("t.npy", "t.npz"):
        chunks = list(iter_chunks([tmp_path / name], 128, TILE, integers=False))
        assert [c.first_row for c in chunks] == [0, 128, 256]
        assert all(c.features.dtype == np.float32 for c in chunks)
        assert np.array_equal(np.concatenate([c.features for c in chunks]), x)
    ints = np.arange(2 * 8 * 8 * 2, dtype=np.int32).reshape(2, *TILE)
    np.save(tmp_path / "i.npy", ints)
    (chunk,) = iter_chunks([tmp_path / "i.npy"], 128, TILE, integers=False)
    assert chunk.features.dtype == np.int64 and np.array_equal(chunk.features, ints)


def test_array_examples_of_the_wrong_shape_or_not_finite_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((3, 8, 8, 3), np.float32))
    with pytest.raises(InputError, match=r"wide.npy: expected examples shaped \(rows, 8, 8, 2\)"):
        list(iter_chunks([tmp_path / "wide.npy"], 128, TILE, integers=False))
    bad = np.zeros((5, *TILE), np.float32)
    bad[3, 1, 2, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ExamplesError, match=r"nan.npy rows 0\+: value nan at index \[3, 1, 2, 0\]"):
        list(iter_chunks([tmp_path / "nan.npy"], 128, TILE, integers=False))
    np.savetxt(tmp_path / "t.csv", np.zeros((2, 128)), delimiter=",", fmt="%d")
    with pytest.raises(InputError, match=r"give a \.npy or \.npz"):
        list(iter_chunks([tmp_path / "t.csv"], 128, TILE, integers=False))
    # A table of floats for a (rows, features) model, read DeepVariant's way, is refused.
    np.save(tmp_path / "f.npy", np.full((2, 4), 0.5))
    with pytest.raises(ExamplesError, match=r"non-integer value 0\.5"):
        list(iter_chunks([tmp_path / "f.npy"], 128, (4,), integers=True))
    assert len(list(iter_chunks([tmp_path / "f.npy"], 128, (4,), integers=False))) == 1


# -- a per-pixel model, end to end -----------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model
    from kerasport.quiet import quiet_import

    keras = quiet_import("keras")
    keras.utils.set_random_seed(TRAINING_SEED)
    root = tmp_path_factory.mktemp("pixels")
    model = keras.Sequential(
        [
            keras.Input(TILE),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(CLASSES, 1, activation="softmax"),
        ]
    )
    model.save(root / "seg.keras")
    bundle = root / "bundle"
    assert main(["export", str(root / "seg.keras"), "-o", str(bundle)]) == 0
    x = np.random.default_rng(TRAINING_SEED).normal(size=(4 * ROWS, *TILE)).astype(np.float32)
    p = keras_predict(load_keras_model(root / "seg.keras"), x)
    top2 = np.sort(p, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0] > 1e-3).all(axis=(1, 2))  # every pixel of the tile
    assert clear.sum() >= ROWS
    np.save(root / "tiles.npy", x[clear][:ROWS])
    return {"root": root, "model": root / "seg.keras", "bundle": bundle,
            "tiles": root / "tiles.npy"}


def moved_bundle(src: Path, dst: Path) -> Path:
    """A copy whose last layer (its 1x1 kernel, (classes, channels, 1, 1) in ONNX) favours
    class 0 a little more: some pixels change class."""
    import onnx
    from onnx import numpy_helper

    from kerasport.manifest import sha256_file

    shutil.copytree(src, dst)
    proto = onnx.load(dst / "model.onnx")
    for init in proto.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype == np.float32 and weights.shape[:1] == (CLASSES,):
            weights = weights.copy()
            weights[0] += np.float32(0.3)
            init.CopyFrom(numpy_helper.from_array(weights, init.name))
            break
    else:
        raise AssertionError("no kernel of the last layer")
    onnx.save(proto, dst / "model.onnx")
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["artifacts"]["onnxruntime"]["sha256"] = sha256_file(dst / "model.onnx")
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dst


@pytest.mark.slow
def test_a_faithful_segmentation_bundle_passes_pixel_by_pixel(
    segmenter: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = segmenter["root"] / "r.json"
    argv = ["verify", segmenter["model"], segmenter["bundle"], "--examples", segmenter["tiles"]]
    code, text, err = cli([*argv, "--json", out], capsys)
    assert code == 0, err + text
    report = json.loads(out.read_text())
    assert report["gate"]["policy"] == "none"
    assert report["model"]["input_shape"] == list(TILE)
    assert report["bundle"]["output_shape"] == [8, 8, CLASSES]
    entry = report["backends"]["onnxruntime"]
    assert entry["positions"] == [8, 8] and entry["decisions"] == ROWS * 64
    assert entry["compared_values"] == ROWS * 64 * CLASSES
    assert entry["argmax_changes"] == 0 and entry["invariance"]["rows"] == ROWS
    assert "(8, 8, 2) -> (8, 8, 3) per row" in text


@pytest.mark.slow
def test_pixels_that_move_are_listed_by_row_and_position(
    segmenter: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from kerasport import runtime
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model

    moved = moved_bundle(segmenter["bundle"], segmenter["root"] / "moved")
    out = segmenter["root"] / "moved.json"
    argv = ["verify", segmenter["model"], moved, "--examples", segmenter["tiles"]]
    code, text, err = cli([*argv, "--gate", "confidence:0.5", "--json", out], capsys)
    assert code == 1, err
    entry = json.loads(out.read_text())["backends"]["onnxruntime"]
    x = np.load(segmenter["tiles"])
    expected = keras_predict(load_keras_model(segmenter["model"]), x).argmax(axis=-1)
    served = runtime.load(moved).predict(x).argmax(axis=-1)
    changed = np.argwhere(expected != served)
    assert entry["argmax_changes"] == len(changed) > 0
    listed = [(r["row"], *r["position"]) for r in entry["argmax_change_rows"]]
    assert listed == [tuple(int(i) for i in c) for c in changed][: len(listed)]
    assert all(len(w["position"]) == 2 for w in entry["worst_rows"])
    first = entry["argmax_change_rows"][0]
    assert f"tiles.npy:{first['row']}@{first['position'][0]},{first['position'][1]}" in text
