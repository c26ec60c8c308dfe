"""Run every benchmark section in order and gather one JSON-able result.

This process only orchestrates: it never imports TensorFlow, JAX or ONNX Runtime, so it
cannot disturb what it measures. Sections run one after another (never two measuring
processes at once, except in the multi-process section, where that is the point).

DeepVariant's model (float rows in, classes out) gets every section, on its real trace and
rows. Any other model gets the sections that do not need DeepVariant's workload (latency,
process, large) on examples of its own input spec, with row counts capped by memory.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.bench import BenchError
from kerasport.bench.process_cost import cold_start, large_region, run_worker, throughput
from kerasport.bench.spec import QUICK_BUDGET, RowCap, deepvariant_shaped, describe, row_cap
from kerasport.bench.trace import Trace, describe_source, read_trace, seeded_sample
from kerasport.bench.worker import WORKLOAD_FILE
from kerasport.bench.workload import load_pool, write_workload
from kerasport.export.keras_model import check_model_file
from kerasport.manifest import Manifest, read_manifest, sha256_file
from kerasport.runtime import servable_artifacts
from kerasport.versions import installed_versions

BATCH_SIZES = (1, 2, 5, 8, 32, 128, 1024, 100_000)
QUICK_BATCH_SIZES = (1, 2, 5, 8, 32, 128, 1024)
SECTIONS = ("trace", "latency", "process", "large", "processes")
TRACE_SECTIONS = ("trace", "processes")  # replay DeepVariant's calls: its model only
GENERIC_SECTIONS = ("latency", "process", "large")
FIRST_CALL_FILE = "first_call.npy"  # a generic model's cold-start input: 2 pool examples
SAMPLE_SEED = 1089  # the PR that started this: the slow baselines' fixed sample of calls
_VERSIONED = (
    "kerasport",
    "numpy",
    "onnxruntime",
    "keras",
    "tensorflow-cpu",
    "tensorflow",
    "jax",
    "jaxlib",
)


@dataclass
class Settings:
    """Everything a run depends on; `quick()` shrinks it for smoke tests, keeping structure."""

    bundle: Path
    model: Path
    trace: list[Path]
    examples: Path | None = None
    examples_header: str = "auto"  # whether a .csv/.tsv `examples` starts with names
    baselines: tuple[str, ...] = ("tf", "jax")
    batch_sizes: tuple[int, ...] | None = None  # BATCH_SIZES for DeepVariant's model, else 1-1,024
    sample_calls: int = 3000
    pilot_calls: int = 200
    full_budget_s: float = 300.0
    min_time: float = 1.0
    min_reps: int = 5
    warmup: int = 2
    cold_runs: int = 5
    cold_discard: int = 1
    large_rows: int = 1_000_000
    large_engines: tuple[str, ...] = ("keras-tf-call", "keras-tf-predict")
    processes: tuple[int, ...] = field(default_factory=lambda: default_processes())
    throughput_full: bool = True
    sections: tuple[str, ...] | None = None  # all that apply to the model
    memory_budget_mb: float | None = None  # one call's memory; default spec.row_cap's
    quick: bool = False

    def make_quick(self) -> None:
        self.quick = True
        self.batch_sizes = QUICK_BATCH_SIZES
        self.memory_budget_mb = QUICK_BUDGET / (1 << 20)
        self.sample_calls, self.pilot_calls, self.full_budget_s = 24, 4, 0.0
        self.min_time, self.min_reps, self.warmup = 0.01, 2, 1
        self.cold_runs, self.cold_discard = 1, 0
        self.large_rows = 20_000
        self.large_engines = ("keras-tf-call",)
        self.processes = (1, 2)
        self.throughput_full = False


def default_processes() -> tuple[int, ...]:
    """1 and 2 processes, and one per core where there are more than two cores."""
    cores = os.cpu_count() or 1
    return tuple(sorted({1, 2, cores})) if cores > 2 else (1, 2)


def jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None


def run(settings: Settings, log: Any = None) -> dict[str, Any]:
    """The chosen sections; returns what `report.write_report` turns into RESULTS.md."""
    started = time.perf_counter()

    def say(message: str) -> None:
        stamped = f"[bench {time.perf_counter() - started:5.0f} s] {message}"
        if log is not None:
            log(stamped)
        else:
            print(stamped, file=sys.stderr, flush=True)

    manifest = read_manifest(settings.bundle)
    dv = deepvariant_shaped(manifest)
    _resolve(settings, manifest, dv)
    assert settings.sections is not None and settings.batch_sizes is not None
    if settings.trace or {"trace", "processes"} & set(settings.sections):
        trace = read_trace(settings.trace)
    else:  # latency, process and large need rows, not the workload's shape
        trace = Trace((), 0, np.ones(1, dtype=np.int64))
    check_model_file(settings.model)  # the cold-start probe hands it to Keras unchecked
    warnings = []
    if sha256_file(settings.model) != manifest.source_sha256:
        warnings.append(
            f"{settings.model} is not the file the bundle was exported from (sha256 differs "
            f"from the manifest's {manifest.source_file}): the comparison may be of two models"
        )
        say(f"warning: {warnings[-1]}")
    pool, pool_source = load_pool(settings.examples, manifest.inputs, settings.examples_header)
    mb = settings.memory_budget_mb
    budget = None if mb is None else int(mb * (1 << 20))
    cap = row_cap(manifest, pool.dtype.itemsize, budget)
    settings.batch_sizes, capped = cap.cap(settings.batch_sizes)
    notes = [cap.note(capped)] if capped else []
    if not dv and "large" in settings.sections and settings.large_rows > cap.rows:
        notes.append(cap.note([settings.large_rows], "large-batch rows"))
        settings.large_rows = cap.rows
    for note in notes:
        say(note)
    baselines = [b for b in settings.baselines if b != "jax" or jax_available()]
    skipped = [b for b in settings.baselines if b not in baselines]
    backends = [f"kerasport-{name}" for name in servable_artifacts(settings.bundle)]
    workdir = Path(tempfile.mkdtemp(prefix="kerasport-bench-"))
    results: dict[str, Any] = {"engines": {}, "trace": {}, "latency": {}, "info": {}}
    try:
        sample = seeded_sample(trace.calls, settings.sample_calls, SAMPLE_SEED)
        write_workload(workdir / WORKLOAD_FILE, pool, trace.counts, sample)
        first: int | Path = manifest.num_features  # DeepVariant's: 2 rows of ones, as always
        if not dv:
            first = workdir / FIRST_CALL_FILE
            np.save(first, pool[:2])
        context = _Context(settings, workdir, first, baselines, backends, say)
        if {"trace", "latency"} & set(settings.sections):
            _measure(context, results)
        if "process" in settings.sections:
            results["process"] = _process(context)
        if "large" in settings.sections:
            results["large"] = _large(context)
        if "processes" in settings.sections:
            results["processes"] = _processes(context)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"] = _meta(settings, manifest.num_features, trace, pool_source, skipped)
    results["meta"].update(_model_meta(manifest, dv, cap))
    results["meta"]["notes"] = notes
    results["meta"]["warnings"] = warnings
    results["meta"]["bench_s"] = time.perf_counter() - started
    return results


def _resolve(settings: Settings, manifest: Manifest, dv: bool) -> None:
    """Fill the settings left to the model's shape; refuse DeepVariant's sections for any
    other model, since they replay DeepVariant's per-region calls of float rows."""
    if settings.sections is None:
        settings.sections = SECTIONS if dv else GENERIC_SECTIONS
    unknown = sorted(set(settings.sections) - set(SECTIONS))
    if unknown:
        raise BenchError(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    trace_parts = [name for name in TRACE_SECTIONS if name in settings.sections]
    if not dv and (trace_parts or settings.trace):
        what = f"the {' and '.join(trace_parts)} section" if trace_parts else "--trace"
        raise BenchError(
            f"{what} replays DeepVariant's per-region calls of (batch, features) float rows; "
            f"this model maps {describe(manifest)}: bench it with --sections "
            f"{','.join(GENERIC_SECTIONS)} (the default for it) and no --trace"
        )
    if settings.batch_sizes is None:
        settings.batch_sizes = BATCH_SIZES if dv else QUICK_BATCH_SIZES


def _model_meta(manifest: Manifest, dv: bool, cap: RowCap) -> dict[str, Any]:
    return {
        "deepvariant_shaped": dv,
        "model_spec": describe(manifest),
        "input_shape": list(manifest.inputs.shape),
        "input_dtype": manifest.inputs.dtype,
        "output_shape": list(manifest.outputs.shape),
        "head": manifest.outputs.head,
        "row_cap": {"rows": cap.rows, "budget_mb": cap.budget_bytes / (1 << 20),
                    "row_mb": cap.row_bytes / (1 << 20)},
    }


@dataclass
class _Context:
    settings: Settings
    workdir: Path
    first: int | Path  # the cold-start probe's first input (process_cost.cold_start)
    baselines: list[str]
    backends: list[str]
    say: Any

    @property
    def common(self) -> dict[str, Any]:
        return {
            "bundle": str(self.settings.bundle.resolve()),
            "model": str(self.settings.model.resolve()),
        }


def _measure(context: _Context, results: dict[str, Any]) -> None:
    """Sections 1 and 2, one process per engine group; keras-tf first, as it leaves the
    model's kernels for the GEMM floor measured in the runtime's process."""
    settings = context.settings
    assert settings.sections is not None and settings.batch_sizes is not None
    for group in [f"keras-{b}" for b in context.baselines] + ["kerasport"]:
        parts = [name for name in ("trace", "latency") if name in settings.sections]
        context.say(f"{group}: {' and '.join(parts)}")
        job = {
            **context.common,
            "task": "measure",
            "group": group,
            "trace": "trace" in settings.sections,
            "batch_sizes": list(settings.batch_sizes) if "latency" in settings.sections else [],
            "min_time": settings.min_time,
            "min_reps": settings.min_reps,
            "warmup": settings.warmup,
            "replay": {
                "pilot_calls": settings.pilot_calls,
                "full_budget_s": settings.full_budget_s,
            },
        }
        measured = run_worker(job, context.workdir)
        for key in ("engines", "trace", "latency"):
            results[key].update(measured[key])
        results["info"][group] = measured["info"]


def _process(context: _Context) -> dict[str, Any]:
    context.say("cold start and resident memory")
    probes = ["python", *context.backends, *(f"keras-{b}" for b in context.baselines)]
    return {
        name: cold_start(
            name,
            context.settings.bundle.resolve(),
            context.settings.model.resolve(),
            context.first,
            context.settings.cold_runs,
            context.settings.cold_discard,
        )
        for name in probes
    }


def _large(context: _Context) -> dict[str, Any]:
    rows = context.settings.large_rows
    context.say(f"peak memory of one call on {rows:,} rows")
    keras = [e for e in context.settings.large_engines if e.split("-")[1] in context.baselines]
    return {
        name: large_region(name, rows, context.workdir, context.common)
        for name in context.backends + keras
    }


def _processes(context: _Context) -> dict[str, Any]:
    context.say("throughput of several processes")
    return {
        name: [
            throughput(name, n, context.settings.throughput_full, context.workdir, context.common)
            for n in context.settings.processes
        ]
        for name in context.backends
    }


def _meta(
    settings: Settings, num_features: int, trace: Any, pool_source: str, skipped: list[str]
) -> dict[str, Any]:
    versions = installed_versions(_VERSIONED)
    settings_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    settings_dict["trace"] = [str(p) for p in settings.trace]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "num_features": num_features,
        "examples": pool_source,
        "trace_files": [p.name for p in trace.files],
        "trace_source": describe_source(trace.files) if trace.files else None,
        "trace_regions": trace.regions,
        "trace_calls": trace.calls,
        "trace_rows": trace.rows,
        "skipped_baselines": skipped,
        "settings": settings_dict,
    }


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
