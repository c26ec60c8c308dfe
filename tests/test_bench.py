"""kerasport bench: the trace parser, its errors, and a --quick smoke run of every section.

Speed is never asserted: the smoke run checks the report's structure and that every figure
is a positive number, on a small model so that it stays well under a minute.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasport.bench import BenchError
from kerasport.bench import command as bench_command
from kerasport.bench.trace import (
    SUMMARY_PATH,
    calls_by_rows,
    default_trace,
    default_trace_paths,
    describe_source,
    load_summary,
    read_trace,
    seeded_sample,
    summary_trace,
)

HEADER = (
    "region\tget reads\tfind candidates\tmake pileup images\twrite outputs\t"
    "num reads\tnum candidates\tnum examples\n"
)
SECTIONS = (
    "## Goals",
    "## 1. Trace replay",
    "## 2. Latency by batch size",
    "## 3. Cost of a process",
    "## 4. Memory under large regions",
    "## 5. Processes",
)


def write_trace(path: Path, counts: list[int]) -> Path:
    lines = [
        f"chr1:{i * 1000 + 1}-{i * 1000 + 1000}\t0.1\t0.1\t0.1\t0.0\t30\t{n}\t{n}\n"
        for i, n in enumerate(counts)
    ]
    path.write_text(HEADER + "".join(lines))
    return path


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kerasport")
    bench_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_trace_keeps_regions_with_examples_in_order(tmp_path: Path) -> None:
    first = write_trace(tmp_path / "a.tsv", [0, 3, 1, 0])
    second = write_trace(tmp_path / "b.tsv", [7, 0])
    trace = read_trace([first, second])
    assert trace.regions == 6
    assert trace.counts.tolist() == [3, 1, 7]
    assert (trace.calls, trace.rows) == (3, 11)


def test_trace_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no workload trace: pass --trace"):
        read_trace([])
    bad = tmp_path / "bad.tsv"
    bad.write_text(HEADER + "chr1:1-1000\t0\t0\t0\t0\t1\t1\tmany\n")
    with pytest.raises(BenchError, match=r"bad.tsv:2: 'num examples' is 'many'"):
        read_trace([bad])
    other = tmp_path / "other.tsv"
    other.write_text("a\tb\n1\t2\n")
    with pytest.raises(BenchError, match="no 'num examples' column"):
        read_trace([other])
    with pytest.raises(BenchError, match="has no region with examples"):
        read_trace([write_trace(tmp_path / "empty.tsv", [0, 0])])


def test_default_trace_is_the_full_one_else_the_packaged_summary(tmp_path: Path) -> None:
    full = [write_trace(tmp_path / "a.tsv", [1])]
    assert default_trace(lambda: full) == full
    assert default_trace(lambda: []) == [SUMMARY_PATH]
    assert describe_source(full)["text"] == "full trace a.tsv, replayed call by call in file order"
    source = describe_source([SUMMARY_PATH])
    assert source["kind"] == "packaged summary"
    assert source["text"].startswith("packaged summary kerasport/assets/trace-summary.json of "
                                     "make_examples_runtime-00000-of-00002.tsv (sha256 ")


def test_packaged_summary_adds_up() -> None:
    """The packaged summary is the README's trace: its totals agree with its histogram, and
    its calls are exactly that multiset, in the same seeded order every time."""
    summary = load_summary()
    histogram = {int(rows): calls for rows, calls in summary["calls_by_rows"].items()}
    assert (summary["regions"], summary["calls"], summary["rows"]) == (96_510, 65_727, 230_957)
    assert sum(histogram.values()) == summary["calls"]
    assert sum(rows * calls for rows, calls in histogram.items()) == summary["rows"]
    assert min(histogram) == 1 and max(histogram) == 453
    trace = read_trace([SUMMARY_PATH])
    assert (trace.regions, trace.calls, trace.rows) == (96_510, 65_727, 230_957)
    assert calls_by_rows(trace.counts) == summary["calls_by_rows"]
    np.testing.assert_array_equal(trace.counts, summary_trace().counts)
    assert trace.counts.dtype == np.int64 and not np.all(np.diff(trace.counts) >= 0)  # shuffled
    sources = summary["provenance"]["sources"]
    assert [s["file"] for s in sources] == ["make_examples_runtime-00000-of-00002.tsv",
                                            "make_examples_runtime-00001-of-00002.tsv"]
    assert all(len(s["sha256"]) == 64 for s in sources)
    assert summary["provenance"]["made_by"] == "scripts/build_trace_summary.py"


@pytest.mark.shared_data
def test_packaged_summary_is_exactly_the_shared_trace() -> None:
    from kerasport.manifest import sha256_file

    files = default_trace_paths()
    if not files:
        pytest.skip("no ../shared")
    full, summary = read_trace(files), load_summary()
    rows, calls = np.unique(full.counts, return_counts=True)
    assert {str(r): int(c) for r, c in zip(rows, calls, strict=True)} == summary["calls_by_rows"]
    assert (full.regions, full.calls, full.rows) == (
        summary["regions"], summary["calls"], summary["rows"])
    assert [{"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in files] == summary["provenance"]["sources"]


def test_bad_summaries_are_refused(tmp_path: Path) -> None:
    summary = load_summary()
    summary["calls"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(summary))
    with pytest.raises(BenchError, match=r"bad.json is inconsistent: its histogram has 65727 "
                                         r"calls and 230957 rows, its totals say 65728"):
        read_trace([bad])
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(BenchError, match="not a trace summary"):
        read_trace([tmp_path / "other.json"])
    with pytest.raises(BenchError, match="a trace summary stands alone"):
        read_trace([SUMMARY_PATH, write_trace(tmp_path / "a.tsv", [1])])


def test_default_trace_is_found_from_the_checkout() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "make-examples-runtime"
    if not shared.is_dir():
        pytest.skip("no ../shared")
    assert [p.parent for p in default_trace_paths()] == [shared, shared]


def test_seeded_sample_is_fixed_and_ordered() -> None:
    one, two = seeded_sample(1000, 50, 7), seeded_sample(1000, 50, 7)
    np.testing.assert_array_equal(one, two)
    assert np.all(np.diff(one) > 0) and one.size == 50
    assert seeded_sample(10, 50, 7).tolist() == list(range(10))


def _numbers(tree: Any) -> list[float]:
    if isinstance(tree, dict):
        return [n for value in tree.values() for n in _numbers(value)]
    if isinstance(tree, list):
        return [n for value in tree for n in _numbers(value)]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return [float(tree)]
    return []


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small model and its bundle, so the smoke runs stay well under a minute."""
    from kerasport.export import export_bundle
    from kerasport.testing import train_small_model

    root = tmp_path_factory.mktemp("small")
    model = train_small_model(root / "model.keras", 70, (64, 64))
    return model, export_bundle(model, root / "bundle")


@pytest.mark.slow
def test_quick_bench_writes_every_section(
    small_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, bundle = small_bundle
    trace = write_trace(tmp_path / "trace.tsv", [0, 1, 2, 0, 5, 1, 3, 17, 2, 1] * 6)
    out = tmp_path / "out"
    args = parse(
        [
            "bench",
            str(bundle),
            "--model",
            str(model),
            "--trace",
            str(trace),
            "--out",
            str(out),
            "--quick",
            "--baselines",
            "tf",  # JAX's import and compiles would double the run; its code is the same path
        ]
    )
    assert args.func(args) == 0

    text = (out / "RESULTS.md").read_text()
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert (out / "bench.png").stat().st_size > 0
    results = json.loads((out / "results.json").read_text())

    engines = results["engines"]
    assert {
        "kerasport-onnxruntime",
        "keras-tf-predict",
        "keras-tf-call",
        "floor-ort",
        "floor-gemm",
    } <= set(engines)
    for key, r in results["trace"].items():
        assert r["whole_trace_s"] > 0 and r["mean_us"] > 0 and r["rows_per_s"] > 0, key
        assert r["calls_total"] == 48 and r["mode"] in ("measured", "extrapolated")
    for key, per in results["latency"].items():
        assert set(per) == {"1", "2", "5", "8", "32", "128", "1024"}, key
        assert all(v["p50_us"] > 0 and v["reps"] >= 2 for v in per.values()), key
    assert all(v["gflops"] > 0 for v in results["latency"]["floor-gemm"].values())
    assert not any("jax" in key for key in engines)
    process = results["process"]
    assert {"python", "kerasport-onnxruntime", "keras-tf"} <= set(process)
    assert "tensorflow" not in process["kerasport-onnxruntime"]["imported"]
    assert "tensorflow" in process["keras-tf"]["imported"]
    for key, p in process.items():
        assert p["cold_start_s"] > 0 and p["rss_mb"]["load"] > 0, key
    assert {"kerasport-onnxruntime", "keras-tf-call"} <= set(results["large"])
    for key, r in results["large"].items():
        assert r["rows"] == 20_000 and r["peak_rss_mb"] > r["input_mb"] > 0, key
    runs = results["processes"]["kerasport-onnxruntime"]
    assert [r["processes"] for r in runs] == [1, 2]
    assert all(r["rows_per_s"] > 0 for r in runs)
    numbers = [
        n for key in ("trace", "latency", "process", "processes") for n in _numbers(results[key])
    ]
    assert all(math.isfinite(n) and n >= 0 for n in numbers)

    printed = capsys.readouterr().out
    for column in (
        "Keras TensorFlow predict()",
        "Keras TensorFlow model(x)",
        "kerasport (onnxruntime)",
        "RSS after load",
        "1,024 rows",
    ):
        assert column in printed


@pytest.mark.slow
def test_quick_bench_without_shared_replays_the_packaged_summary(
    small_bundle: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, bundle = small_bundle
    out = tmp_path / "out"
    args = parse(["bench", str(bundle), "--model", str(model), "--out", str(out), "--quick",
                  "--baselines", "", "--sections", "trace,processes"])
    assert bench_command.run(args, find_full_trace=lambda: []) == 0  # as if no ../shared

    assert "trace: packaged summary kerasport/assets/trace-summary.json" in capsys.readouterr().err
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["trace_source"]["kind"] == "packaged summary"
    assert meta["trace_source"]["provenance"] == load_summary()["provenance"]
    assert (meta["trace_regions"], meta["trace_calls"], meta["trace_rows"]) == (
        96_510, 65_727, 230_957)
    results = json.loads((out / "results.json").read_text())
    assert results["trace"] and all(r["calls_total"] == 65_727 for r in results["trace"].values())
    assert all(r["rows_per_s"] > 0 for r in results["processes"]["kerasport-onnxruntime"])
    text = (out / "RESULTS.md").read_text()
    assert ("- Trace: packaged summary kerasport/assets/trace-summary.json of "
            "make_examples_runtime-00000-of-00002.tsv (sha256 ") in text
    assert "its exact calls in a seeded shuffle (seed 1089): 96,510 regions, 65,727 with" in text


@pytest.mark.parametrize("fmt", ["npy", "npz", "csv", "tsv", "tfrecord", "tfrecord.gz"])
def test_examples_of_every_format_feed_the_pool(tmp_path: Path, fmt: str) -> None:
    from kerasport.bench.workload import load_pool
    from kerasport.examples import Examples, write_examples

    rows = np.random.default_rng(3).integers(0, 101, size=(9, 5), dtype=np.int64)
    path = write_examples(Examples(rows, labels=np.arange(9) % 3), tmp_path / f"x.{fmt}")
    pool, source = load_pool(path, 5)
    np.testing.assert_array_equal(pool, rows)
    assert pool.dtype == np.int64 and pool.flags.c_contiguous
    assert source == f"real: x.{fmt} (9 rows)"


def test_explicit_examples_that_do_not_fit_are_clear_errors(tmp_path: Path) -> None:
    from kerasport.bench.workload import load_pool
    from kerasport.examples import Examples, ExamplesError, write_examples

    with pytest.raises(ExamplesError, match=r"nope\.npz.*no such file"):
        load_pool(tmp_path / "nope.npz", 5)
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(ExamplesError, match=r"ragged\.csv") as info:
        load_pool(tmp_path / "ragged.csv", 2)
    assert "cannot read" not in str(info.value)  # the reader's message, not wrapped again
    path = write_examples(Examples(np.zeros((4, 3))), tmp_path / "x.npy")
    with pytest.raises(BenchError, match=r"shape \(4, 3\); the model takes 5"):
        load_pool(path, 5)
    # Without --examples, bundled rows of another width give way to synthetic ones.
    pool, source = load_pool(None, 5)
    assert pool.shape == (65_536, 5) and source.startswith("synthetic (")


# ---------------------------------------------------------------- any model: its own spec

GENERIC_SIZES = {"1", "2", "5", "8", "32", "128", "1024"}


def _save_cnn(path: Path) -> Path:
    """A small image classifier: (8, 8, 1) -> conv -> pool -> 3-way softmax."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(path)
    return path


def _save_embedding(path: Path) -> Path:
    """Token indices in: (6,) int32 over a 20-word vocabulary -> Embedding -> 2-way softmax."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Flatten()(keras.layers.Embedding(20, 4)(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    return path


@pytest.fixture(scope="module")
def generic_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """A tiny CNN and a tiny Embedding model, each with its bundle."""
    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("generic")
    out = {}
    for name, save in (("cnn", _save_cnn), ("embedding", _save_embedding)):
        model = save(root / f"{name}.keras")
        out[name] = (model, export_bundle(model, root / f"{name}-bundle"))
    return out


@pytest.mark.slow
def test_quick_bench_of_a_cnn_feeds_its_input_spec(
    generic_bundles: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, bundle = generic_bundles["cnn"]
    out = tmp_path / "out"
    args = parse(["bench", str(bundle), "--model", str(model), "--out", str(out), "--quick",
                  "--baselines", "tf"])
    assert bench_command.run(args, find_full_trace=lambda: pytest.fail("no trace wanted")) == 0

    captured = capsys.readouterr()
    assert "trace:" not in captured.err
    results = json.loads((out / "results.json").read_text())
    meta = results["meta"]
    assert meta["deepvariant_shaped"] is False
    assert meta["model_spec"] == "(8, 8, 1) float32 -> (3,) softmax"
    assert meta["examples"].startswith("synthetic (65,536 seeded examples of shape (8, 8, 1)")
    assert meta["notes"] == [] and meta["trace_source"] is None
    assert results["trace"] == {} and "processes" not in results
    engines = results["engines"]
    assert {"kerasport-onnxruntime", "keras-tf-predict", "keras-tf-call", "floor-ort"} <= set(
        engines)
    assert "floor-gemm" not in engines  # a conv net is no matrix chain
    for key, per in results["latency"].items():
        assert set(per) == GENERIC_SIZES, key
        assert all(v["p50_us"] > 0 and v["reps"] >= 2 for v in per.values()), key
    process = results["process"]
    assert {"python", "kerasport-onnxruntime", "keras-tf"} <= set(process)
    assert "tensorflow" not in process["kerasport-onnxruntime"]["imported"]
    assert all(p["cold_start_s"] > 0 and p["rss_mb"]["load"] > 0 for p in process.values())
    assert {r["rows"] for r in results["large"].values()} == {20_000}
    assert all(math.isfinite(n) and n >= 0 for n in _numbers(results["latency"]))

    text = (out / "RESULTS.md").read_text()
    assert "## Goals" not in text and "## 1. Trace replay" not in text
    positions = [text.index(s) for s in ("## 2. Latency by batch size", "## 3. Cost of a process",
                                         "## 4. Memory under a large batch")]
    assert positions == sorted(positions)
    assert "- Model: (8, 8, 1) float32 -> (3,) softmax (235 parameters)" in text
    for column in ("Keras TensorFlow predict()", "Keras TensorFlow model(x)",
                   "kerasport (onnxruntime)", "RSS after load", "1,024 rows", "32 rows"):
        assert column in captured.out


@pytest.mark.slow
def test_quick_bench_of_an_embedding_model_reads_its_examples_and_caps_rows_by_memory(
    generic_bundles: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kerasport.bench.run import jax_available
    from kerasport.bench.spec import row_cap
    from kerasport.manifest import read_manifest

    model, bundle = generic_bundles["embedding"]
    tokens = np.random.default_rng(5).integers(0, 20, size=(50, 6)).astype(np.int32)
    np.save(tmp_path / "tokens.npy", tokens)
    per_row = row_cap(read_manifest(bundle), tokens.itemsize, 1 << 30).row_bytes
    budget_mb = per_row * 100.5 / (1 << 20)  # room for exactly 100 rows in one call
    out = tmp_path / "out"
    args = parse(["bench", str(bundle), "--model", str(model), "--out", str(out), "--quick",
                  "--examples", str(tmp_path / "tokens.npy"), "--memory-budget-mb",
                  str(budget_mb), "--sections", "latency,process", "--baselines", "jax"])
    assert args.func(args) == 0

    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    meta = results["meta"]
    assert meta["examples"] == "real: tokens.npy (50 examples of shape (6,))"
    assert meta["model_spec"] == "(6,) int32, indices in [0, 20) -> (2,) softmax"
    assert meta["row_cap"]["rows"] == 100
    assert len(meta["notes"]) == 1
    assert meta["notes"][0].startswith("batch sizes 128, 1,024 capped to 100 rows: one row")
    assert f"capped by memory: {meta['notes'][0]}" in printed
    assert "- Capped by memory: batch sizes 128, 1,024" in (out / "RESULTS.md").read_text()
    for key, per in results["latency"].items():
        assert set(per) == {"1", "2", "5", "8", "32", "100"}, key
    assert "large" not in results and results["trace"] == {}
    expected = {"kerasport-onnxruntime", "floor-ort"} | (
        {"keras-jax-predict", "keras-jax-call"} if jax_available() else set())
    assert expected <= set(results["engines"])
    assert "100 rows" in printed


@pytest.mark.slow
def test_deepvariant_sections_are_refused_for_other_models(
    generic_bundles: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    model, bundle = generic_bundles["cnn"]
    args = parse(["bench", str(bundle), "--model", str(model), "--sections", "latency,trace"])
    with pytest.raises(BenchError, match=r"the trace section replays DeepVariant's per-region "
                                         r"calls .* this model maps \(8, 8, 1\) float32 -> "
                                         r"\(3,\) softmax"):
        args.func(args)
    trace = write_trace(tmp_path / "trace.tsv", [1, 2])
    args = parse(["bench", str(bundle), "--model", str(model), "--trace", str(trace)])
    with pytest.raises(BenchError, match=r"--trace replays DeepVariant's"):
        args.func(args)


@pytest.mark.slow
def test_cold_start_and_measure_run_on_the_spec_and_on_threads(
    generic_bundles: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """What benchmarks/bench_segmentation.py builds on: a cold start whose first call is a
    .npy of the model's examples, and a measuring process on 2 threads, without floors."""
    from kerasport.bench.process_cost import cold_start, run_worker
    from kerasport.bench.worker import WORKLOAD_FILE
    from kerasport.bench.workload import write_workload

    model, bundle = generic_bundles["cnn"]
    examples = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "first.npy", examples[:1])
    cold = cold_start("kerasport-onnxruntime", bundle, model, tmp_path / "first.npy", runs=1,
                      discard=0, threads=2)
    assert cold["cold_start_s"] > 0 and cold["rss_mb"]["first_call"] > 0
    assert cold["imported"] == ["onnxruntime"]
    write_workload(tmp_path / WORKLOAD_FILE, examples, np.ones(1, np.int64), np.zeros(1, np.int64))
    job = {"task": "measure", "group": "kerasport", "bundle": str(bundle), "model": str(model),
           "trace": False, "batch_sizes": [1, 3], "min_time": 0.0, "min_reps": 2, "warmup": 1,
           "threads": 2, "floors": False, "engines": ["kerasport-onnxruntime"]}
    measured = run_worker(job, tmp_path)
    assert list(measured["latency"]) == ["kerasport-onnxruntime"]
    assert set(measured["latency"]["kerasport-onnxruntime"]) == {"1", "3"}
    assert measured["memory"]["peak_rss_mb"] >= measured["memory"]["rss_mb"] > 0


def test_pools_of_other_inputs_are_drawn_for_the_spec_or_read_from_npy(tmp_path: Path) -> None:
    from kerasport.bench.workload import load_pool
    from kerasport.manifest import InputSpec

    image = InputSpec((8, 8, 1))
    pool, source = load_pool(None, image)
    assert pool.shape == (65_536, 8, 8, 1) and pool.dtype == np.float32
    assert source == ("synthetic (65,536 seeded examples of shape (8, 8, 1), float32: standard "
                      "normal values)")
    tile = InputSpec((256, 256, 2))
    pool, source = load_pool(None, tile)
    assert pool.shape == (128, 256, 256, 2)  # 64 MB of distinct tiles
    tokens = InputSpec((6,), "int32", (3, 20))
    pool, source = load_pool(None, tokens)
    assert pool.dtype == np.int32 and pool.min() >= 3 and pool.max() < 20
    assert source.endswith("int32: indices drawn over [3, 20))")

    np.save(tmp_path / "images.npy", np.ones((4, 8, 8, 1)))  # float64 is cast, as Keras does
    pool, source = load_pool(tmp_path / "images.npy", image)
    assert pool.dtype == np.float32 and pool.shape == (4, 8, 8, 1)
    assert source == "real: images.npy (4 examples of shape (8, 8, 1))"
    with pytest.raises(BenchError, match=r"images.npy holds examples of shape \(4, 8, 8, 1\); "
                                         r"the model takes \(N, 256, 256, 2\)"):
        load_pool(tmp_path / "images.npy", tile)
    with pytest.raises(BenchError, match=r"reads --examples from a \.npy of shape \(N, 8, 8, 1\)"):
        load_pool(tmp_path / "images.csv", image)
    with pytest.raises(BenchError, match=r"holds float64 values; the model takes integers"):
        load_pool(tmp_path / "images.npy", InputSpec((8, 8, 1), "int32"))
    bad = np.full((3, 6), 5, dtype=np.int64)
    bad[2, 4] = 20
    np.save(tmp_path / "tokens.npy", bad)
    with pytest.raises(BenchError, match=r"row 2 position \(4,\) holds 20, outside the "
                                         r"Embedding's indices \[3, 20\)"):
        load_pool(tmp_path / "tokens.npy", tokens)
    with pytest.raises(BenchError, match="cannot read examples"):
        load_pool(tmp_path / "missing.npy", image)


@pytest.mark.parametrize("budget", ["0", "-5", "nan", "inf", "lots"])
def test_memory_budget_must_be_a_positive_number(
    budget: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(["bench", "b", "--model", "m.keras", "--memory-budget-mb", budget])
    assert "--memory-budget-mb: expected a" in capsys.readouterr().err
    assert parse(["bench", "b", "--model", "m.keras", "--memory-budget-mb", "0.5"]
                 ).memory_budget_mb == 0.5


def test_row_caps_keep_deepvariant_sizes_and_cap_tiles() -> None:
    from kerasport.bench.spec import DEFAULT_BUDGET, RowCap, deepvariant_shaped, row_cap
    from kerasport.manifest import InputSpec, Manifest, OutputSpec

    def manifest(inputs: InputSpec, outputs: OutputSpec, row_bytes: int) -> Manifest:
        return Manifest("x", "y", math.prod(inputs.shape), outputs.shape[-1], {}, "m.keras",
                        "0" * 64, {}, "", input_spec=inputs, output_spec=outputs,
                        row_bytes=row_bytes)

    wgs = manifest(InputSpec((70,)), OutputSpec((3,)), 4 * (750 + 750))
    assert deepvariant_shaped(wgs)
    sizes = (1, 2, 5, 8, 32, 128, 1024, 100_000)
    assert row_cap(wgs, 8, DEFAULT_BUDGET).cap(sizes) == (sizes, [])  # today's sizes, all run
    tiles = manifest(InputSpec((256, 256, 2)), OutputSpec((256, 256, 3)), 4 << 20)
    assert not deepvariant_shaped(tiles)
    cap = row_cap(tiles, 4, 256 << 20)
    assert cap == RowCap(27, 256 << 20, 4 * 256 * 256 * 5 + 2 * (4 << 20))
    assert cap.cap((1, 8, 32, 1024)) == ((1, 8, 27), [32, 1024])
    assert cap.note([32, 1024]) == (
        "batch sizes 32, 1,024 capped to 27 rows: one row of a call may hold 9.2 MB (input, "
        "output and 2x the engine's working memory), and one call is held to 256.0 MB")
    assert not deepvariant_shaped(manifest(InputSpec((6,), "int32", (0, 9)), OutputSpec((2,)), 8))


# ---------------------------------------------------------------- the DeepCell-like benchmark

REPO = Path(__file__).resolve().parents[1]
SEGMENTATION = REPO / "benchmarks" / "segmentation"


def _segmentation_script() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_segmentation", REPO / "benchmarks" / "bench_segmentation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_segmentation_model_is_deepcell_sized_and_the_same_every_build() -> None:
    bench = _segmentation_script()
    model = bench.build_model()
    assert model.count_params() == 5_376_387
    assert tuple(model.input.shape) == (None, 256, 256, 2)
    assert tuple(model.output.shape) == (None, 256, 256, 3)
    assert 5.0 < bench.conv_gflops(model) < 5.2
    recorded = json.loads((SEGMENTATION / "results.json").read_text())["model"]
    assert bench.weights_sha256(model) == recorded["weights_sha256"]  # the benchmarked model
    tiles = bench.make_tiles(2)
    np.testing.assert_array_equal(tiles, bench.make_tiles(2))
    assert tiles.shape == (2, 256, 256, 2) and tiles.dtype == np.float32
    np.testing.assert_allclose(tiles.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(tiles.std(axis=(1, 2)), 1.0, atol=1e-3)


def test_segmentation_table_in_the_readme_is_the_one_the_benchmark_printed() -> None:
    bench = _segmentation_script()
    results = json.loads((SEGMENTATION / "results.json").read_text())
    assert bench.markdown(results) == (SEGMENTATION / "SEGMENTATION.md").read_text()
    assert results["verify"]["exit_code"] == 0 and not results["meta"]["quick"]
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Segmentation (DeepCell-like)"):]
    assert bench.table(results) in section
    assert f"`{results['meta']['command']}`" in section


def test_example_bytes_follow_every_input_dtype_a_bundle_may_record() -> None:
    from kerasport.bench.spec import example_bytes
    from kerasport.manifest import INPUT_DTYPES, InputSpec

    sizes = {dtype: example_bytes(InputSpec((8, 8, 3), dtype)) for dtype in INPUT_DTYPES}
    assert sizes["uint8"] == 192 and sizes["float16"] == 384 and sizes["float64"] == 1536
    assert sizes["float32"] == sizes["int32"] == 768
