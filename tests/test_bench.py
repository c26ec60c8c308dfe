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
