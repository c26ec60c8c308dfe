"""Property-based hardening (hypothesis): hostile bundles and hostile inputs.

Bundles: each drawn case damages a copy of a real bundle (manifest fields replaced, removed or
given absurd values; manifest or artifact bytes truncated, flipped or extended; files replaced
by symlinks, FIFOs, directories or another model's file) and loads every artifact. A case ends
one of two ways: the load serves the exported model bit for bit, or it raises a kerasport
error. A raw exception, a hang or a load that serves other numbers fails.

Inputs: each drawn array or list (any dtype, shape, layout and values) goes through every call
site. A well-formed one (numeric, (N, F), finite in float32, a positive batch size) must give
the bits its canonical float32 form gives; anything else must raise an InputError.

The outcome counts are printed at the end of the module (pytest -s shows them).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_FEATURES, TRAINING_SEED
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kerasport.runtime
from kerasport.errors import InputError, KerasportError
from kerasport.manifest import read_manifest

pytestmark = pytest.mark.slow

# KERASPORT_PROPERTY_CASES=2000 runs a longer search than the default.
CASES = int(os.environ.get("KERASPORT_PROPERTY_CASES", "300"))
HANG_SECONDS = 30
F = TINY_FEATURES
OUTCOMES: collections.Counter[str] = collections.Counter()
# Both searches: seeded (a failure reproduces), no example database, module fixtures allowed.
SEARCH = settings(
    max_examples=CASES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hang(Exception):
    """A load or call that did not answer within HANG_SECONDS."""


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def print_counts() -> Iterator[None]:
    yield
    for name, count in sorted(OUTCOMES.items()):
        print(f"\n{name}: {count}", end="")
    print()


@pytest.fixture(scope="module")
def original(tiny_bundles: tuple[Path, Path]) -> Path:
    return tiny_bundles[0]


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    return np.random.default_rng(TRAINING_SEED).integers(0, 101, size=(37, F), dtype=np.int64)


@pytest.fixture(scope="module")
def expected(original: Path, probe: np.ndarray) -> dict[str, np.ndarray]:
    """What each artifact this host serves answers on the probe before any damage, by the
    artifact's file."""
    artifacts = read_manifest(original).artifacts
    return {
        artifacts[key].file: kerasport.runtime.load(original, backend=key).predict(probe)
        for key in kerasport.runtime.servable_artifacts(original)
    }


# --- bundles -------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["../model.onnx", "/etc/passwd", "model.onnx", "0" * 64, "9" * 5000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)
FILE_DAMAGE = (
    "truncate", "flip", "append", "empty", "remove", "directory", "fifo", "symlink to /dev/zero",
    "symlink inside", "the other model's file", "another shape's file, hash updated",
)


def json_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a JSON document, inner nodes included."""
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from json_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from json_paths(value, (*path, index))


def damage_field(manifest: dict[str, Any], data: st.DataObject) -> str:
    path = data.draw(st.sampled_from(sorted(json_paths(manifest), key=repr)))
    parent = manifest
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
        return f"removed {path}"
    parent[path[-1]] = data.draw(JSON_VALUES)
    return f"replaced {path}"


def damage_bytes(raw: bytes, data: st.DataObject) -> bytes:
    """`raw` truncated, with one byte flipped, or extended (an empty file can only grow)."""
    how = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
    if how == "truncate":
        return raw[:at]
    if how == "flip" and raw:
        return raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
    return raw + data.draw(st.binary(min_size=1, max_size=64))


def damage_file(
    bundle: Path, manifest: dict[str, Any], sources: dict[str, Path], data: st.DataObject
) -> str:
    name = data.draw(st.sampled_from(sorted(p.name for p in bundle.iterdir())))
    path = bundle / name
    how = data.draw(st.sampled_from(FILE_DAMAGE))
    if how in ("truncate", "flip", "append"):
        if path.is_symlink() or not path.is_file():
            return f"nothing to {how} in {name}"  # damaged before: a FIFO or /dev/zero
        path.write_bytes(damage_bytes(path.read_bytes(), data))
        return f"{how} {name}"
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "directory":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif how == "symlink inside":
        path.symlink_to(data.draw(st.sampled_from(sorted(p.name for p in bundle.iterdir()))))
    elif how == "the other model's file" and (sources["twin"] / name).is_file():
        shutil.copyfile(sources["twin"] / name, path)
    elif how == "another shape's file, hash updated":
        from kerasport.manifest import sha256_file

        foreign = sources["foreign"] / "model.onnx"
        shutil.copyfile(foreign, path)
        for artifact in manifest["artifacts"].values():
            refs = [artifact, *artifact.get("extra_files", {}).values()]
            for ref in refs:
                if ref.get("file") == name:
                    ref["sha256"] = sha256_file(foreign)
    return f"{how} {name}"


def serves_the_export_or_refuses(
    bundle: Path, probe: np.ndarray, backend: str, expected: dict[str, np.ndarray]
) -> str:
    """Load by `backend` (an artifact key, a backend name or auto, which choose by reading
    the manifest) and run the probe: the chosen artifact's exported numbers, or a refusal."""
    try:
        with no_hang():
            kerasport.runtime.servable_artifacts(bundle)
            classifier = kerasport.runtime.load(bundle, backend=backend)
            got = classifier.predict(probe)
    except KerasportError:
        return "refused with a kerasport error"
    # Damage may rename an artifact's key; what it serves is the file its entry names.
    served = read_manifest(bundle).artifacts[classifier.artifact].file
    answer = expected.get(served)
    assert answer is not None, f"served {served}, which this host cannot run"
    assert got.dtype == np.float32 and np.array_equal(got, answer), "served a wrong model"
    return "served the exported model"


@seed(TRAINING_SEED)
@SEARCH
@given(data=st.data())
def test_a_damaged_bundle_serves_the_export_or_is_refused(
    data: st.DataObject,
    original: Path,
    tiny_bundles: tuple[Path, Path],
    bundles: dict[str, Path],
    probe: np.ndarray,
    expected: dict[str, np.ndarray],
) -> None:
    sources = {"twin": tiny_bundles[1], "foreign": bundles["somatic"]}
    with tempfile.TemporaryDirectory() as scratch:
        bundle = Path(shutil.copytree(original, Path(scratch) / "bundle"))
        manifest_path = bundle / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        damages = []
        for _ in range(data.draw(st.integers(1, 3))):
            kind = data.draw(st.sampled_from(["field", "manifest bytes", "file"]))
            if not manifest_path.is_file() or manifest_path.is_symlink():
                break  # the manifest itself was replaced: nothing more to edit in it
            if kind == "field":
                damages.append(damage_field(manifest, data))
            elif kind == "file":
                damages.append(damage_file(bundle, manifest, sources, data))
            if manifest_path.is_file() and not manifest_path.is_symlink():
                text = json.dumps(manifest).encode()
                if kind == "manifest bytes":
                    text = damage_bytes(text, data)
                    damages.append("manifest bytes")
                manifest_path.write_bytes(text)
        keys = kerasport.runtime.servable_artifacts(original)
        ways = dict.fromkeys((*keys, *kerasport.runtime.BACKENDS, kerasport.runtime.AUTO))
        for backend in ways:  # each artifact, then the names that choose by the manifest
            OUTCOMES[f"bundle case, {backend}: " + serves_the_export_or_refuses(
                bundle, probe, backend, expected)] += 1


# --- inputs --------------------------------------------------------------------------------

DTYPES = st.sampled_from(
    [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64, np.float16,
     np.float32, np.float64, np.bool_, np.complex64, np.dtype("U3"), np.dtype("S3"),
     np.dtype("M8[s]")]
)
SHAPES = st.one_of(
    st.tuples(st.integers(0, 40), st.just(F)),
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=25),
)
BATCH_SIZES = st.one_of(st.integers(1, 5000), st.sampled_from([0, -3, 1.5, True, "8", None]))
CALLS: dict[str, Callable[[Any, Any, Any], np.ndarray]] = {
    "predict": lambda c, x, b: c.predict(x, batch_size=b),
    "predict_on_batch": lambda c, x, b: c.predict_on_batch(x),
    "__call__": lambda c, x, b: c(x),
    "classify": lambda c, x, b: kerasport.runtime.classify(c, x, batch_size=b),
}


def well_formed(value: Any, call: str, batch_size: Any) -> bool:
    """What the runtime must accept: numeric (N, F) rows, finite in float32, and a positive
    batch size or None (Keras' default)."""
    try:
        array = np.asarray(value)
    except ValueError:
        return False
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, F)
    if array.dtype.kind not in "biuf" or array.ndim != 2 or array.shape[1] != F:
        return False
    with np.errstate(over="ignore"):
        finite = bool(np.isfinite(array.astype(np.float32)).all())
    takes_batch = call in ("predict", "classify")
    good_batch = batch_size is None or (  # None: Keras' default batch size
        isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0
    )
    return finite and (good_batch or not takes_batch)


@pytest.fixture(scope="module", params=["onnxruntime", "tvm"])
def classifier(request: pytest.FixtureRequest, original: Path) -> Any:
    servable = kerasport.runtime.servable_artifacts(original)
    if request.param not in {kerasport.runtime.load(original, backend=k).backend
                             for k in servable}:
        pytest.skip(f"this host serves no {request.param} artifact")
    return kerasport.runtime.load(original, backend=request.param)


@seed(TRAINING_SEED)
@SEARCH
@given(data=st.data())
def test_any_input_is_answered_like_its_float32_form_or_refused(
    data: st.DataObject, classifier: Any
) -> None:
    dtype = np.dtype(data.draw(DTYPES))
    shape = data.draw(SHAPES)
    elements = st.integers(0, 100) if dtype.kind in "iu" and data.draw(st.booleans()) else None
    array = data.draw(hnp.arrays(dtype, shape, elements=elements))
    layout = data.draw(st.sampled_from(["C", "Fortran", "every other row", "read-only", "list"]))
    value: Any = array
    if layout == "Fortran":
        value = np.asfortranarray(array)
    elif layout == "every other row" and array.ndim >= 1:
        value = np.concatenate([array, array])[::2] if array.ndim else array
    elif layout == "read-only":
        value = array.copy()
        value.flags.writeable = False
    elif layout == "list":
        value = array.tolist()
    call = data.draw(st.sampled_from(sorted(CALLS)))
    batch_size = data.draw(BATCH_SIZES)
    must_accept = well_formed(value, call, batch_size)
    with no_hang():
        try:
            got = CALLS[call](classifier, value, batch_size)
        except InputError:
            assert not must_accept, "a well-formed input was refused"
            OUTCOMES[f"input case, {classifier.backend}: refused with an InputError"] += 1
            return
    assert must_accept, "an input that is not well-formed was answered"
    canonical = np.asarray(value).astype(np.float32).reshape(-1, F)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, classifier.predict(canonical, batch_size=1024))
    OUTCOMES[f"input case, {classifier.backend}: answered like its float32 form"] += 1
