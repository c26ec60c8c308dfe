"""DeepCell-like segmentation: what a short DeepCell job pays, kerasport against Keras.

    python benchmarks/bench_segmentation.py [--out benchmarks/segmentation] [--quick]
                                            [--keep DIR]

DeepCell (Van Valen lab) segments microscope images with a TensorFlow PanopticNet: the image
is cut into 256x256 tiles of 2 channels (nuclear, membrane) and each tile gets a per-pixel
prediction. Its short jobs (a 512x512 image is 4 tiles, "less than 30 seconds" of work) pay
more for setup than for the work: importing TensorFlow, loading the model, a slow first
predict (../shared/background/deepcell-batch-node-pools.txt). DeepCell's trained weights
come from a hub this machine cannot reach, so this builds a model of the same kind with
Keras, weights random-initialized with a fixed seed: a ResNet-like encoder, a feature
pyramid (top-down path, 1x1 lateral convolutions), a semantic head upsampled to full
resolution, and a per-pixel 3-class softmax (background, cell interior, cell boundary).

It saves model.keras, exports it, runs `kerasport verify MODEL BUNDLE --examples tiles.npy`
on seeded tiles, then measures, every figure in fresh processes started by kerasport.bench's
helpers (`process_cost.cold_start`, and `worker.py`'s measure task through `run_worker`):

- cold start: import, load, first tile (median of fresh processes after one discarded run
  that warms the page cache), resident memory after load and after the first tile;
- tiles per second at batches of 1 and of 8 tiles (from the median of the timed calls after
  warm-up calls), and the measuring process' peak resident memory;
- for kerasport (ONNX Runtime on 1 and 2 threads) and Keras `predict` on TensorFlow and on
  JAX (1 and 2 threads; 2 is every core of the machine the README's table came from).

It prints a markdown table and writes SEGMENTATION.md and results.json under --out. About
10 minutes on two cores; --quick is a smoke run of a minute or two with short timings.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "segmentation"
TILE = (256, 256, 2)
CLASSES = 3
SEED = 2024  # weights and tiles
POOL_TILES = 16  # distinct tiles every measuring process draws its batches from
VERIFY_TILES = 4
EXPORT_PROBE_TILES = 16  # export's own Keras-vs-ONNX check (its default, 256 tiles, takes minutes)
BATCHES = (1, 8)
JOB_TILES = 4  # a 512x512 image, DeepCell's benchmark size
VERSIONED = ("kerasport", "numpy", "onnxruntime", "keras", "tensorflow-cpu", "tensorflow", "jax")
# (key, engine group, engine measured, label); each runs on every count of THREADS.
ENGINES = (
    ("kerasport", "kerasport", "kerasport-onnxruntime", "kerasport (ONNX Runtime)"),
    ("keras-tf", "keras-tf", "keras-tf-predict", "Keras TensorFlow predict()"),
    ("keras-jax", "keras-jax", "keras-jax-predict", "Keras JAX predict()"),
)
THREADS = (1, 2)


# ---------------------------------------------------------------- the model and its tiles


def build_model(seed: int = SEED) -> Any:
    """A PanopticNet-style segmentation network, about 5.4 million parameters."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def down(x: Any, channels: int, name: str) -> Any:
        """Encoder stage: a strided 3x3 convolution, then a 3x3 one, each BN + ReLU."""
        for i, stride in enumerate((2, 1)):
            x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False,
                              name=f"{name}_conv{i}")(x)
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
            x = layers.ReLU(name=f"{name}_relu{i}")(x)
        return x

    tiles = keras.Input(TILE, name="tiles")
    c1 = down(tiles, 32, "c1")  # 128 x 128
    c2 = down(c1, 64, "c2")  # 64 x 64
    c3 = down(c2, 128, "c3")  # 32 x 32
    c4 = down(c3, 256, "c4")  # 16 x 16
    c5 = down(c4, 512, "c5")  # 8 x 8
    p = layers.Conv2D(128, 1, name="p5_lateral")(c5)
    for level, skip in ((4, c4), (3, c3), (2, c2)):  # top-down path of the feature pyramid
        up = layers.UpSampling2D(2, name=f"p{level}_up")(p)
        lateral = layers.Conv2D(128, 1, name=f"p{level}_lateral")(skip)
        p = layers.Add(name=f"p{level}_add")([up, lateral])
        p = layers.Conv2D(128, 3, padding="same", name=f"p{level}_smooth")(p)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="semantic_conv0")(p)
    x = layers.UpSampling2D(2, name="semantic_up0")(x)  # 128 x 128
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="semantic_conv1")(x)
    x = layers.UpSampling2D(2, name="semantic_up1")(x)  # 256 x 256
    scores = layers.Conv2D(CLASSES, 1, activation="softmax", name="semantic_pixelwise")(x)
    return keras.Model(tiles, scores, name="panoptic_like")


def conv_gflops(model: Any) -> float:
    """Multiply-adds x 2 of the convolutions for one tile: the arithmetic a tile costs."""
    total = 0
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D":
            _, height, width, channels_out = layer.output.shape
            k_h, k_w, channels_in, _ = layer.kernel.shape
            total += 2 * height * width * k_h * k_w * channels_in * channels_out
    return total / 1e9


def weights_sha256(model: Any) -> str:
    """sha256 of every weight in order: the same seed gives the same model, wherever built."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()


def make_tiles(count: int, seed: int = SEED) -> np.ndarray:
    """Seeded microscope-like tiles: round nuclei (channel 0) inside membrane rings (channel
    1), blurred, with noise, each channel scaled to mean 0 and variance 1, as DeepCell's
    normalization leaves an image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: TILE[0], : TILE[1]].astype(np.float32)
    tiles = np.empty((count, *TILE), dtype=np.float32)
    for t in range(count):
        nuclear = np.zeros(TILE[:2], np.float32)
        membrane = np.zeros(TILE[:2], np.float32)
        for _ in range(int(rng.integers(25, 45))):
            cy, cx = rng.uniform(0, TILE[0], 2)
            radius = rng.uniform(6, 14)
            distance = np.hypot(yy - cy, xx - cx)
            nuclear += np.exp(-((distance / (0.6 * radius)) ** 2))
            membrane += np.exp(-(((distance - radius) / 1.5) ** 2))
        for channel, image in enumerate((nuclear, membrane)):
            image = image + rng.normal(0, 0.05, image.shape).astype(np.float32)
            tiles[t, :, :, channel] = (image - image.mean()) / (image.std() + 1e-6)
    return tiles


# ---------------------------------------------------------------- measuring


def verify(model: Path, bundle: Path, tiles: Path) -> dict[str, Any]:
    """`kerasport verify MODEL BUNDLE --examples tiles.npy`, as a user runs it."""
    command = [sys.executable, "-m", "kerasport", "verify", str(model), str(bundle),
               "--examples", str(tiles)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    verdict = next((line for line in reversed(lines) if line.startswith("verdict:")), None)
    return {
        "command": "kerasport verify model.keras bundle --examples tiles.npy",
        "exit_code": proc.returncode,
        "verdict": verdict or (lines[-1] if lines else ""),
        "seconds": time.perf_counter() - start,
        "output_tail": lines[-12:],
    }


def measure_engine(
    key: str,
    group: str,
    engine: str,
    threads: int,
    paths: dict[str, Path],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Cold start (fresh processes), then tiles/s at each batch in one measuring process."""
    from kerasport.bench.process_cost import cold_start, run_worker

    before = os.getloadavg()[0]
    probe = "kerasport-onnxruntime" if key == "kerasport" else key
    cold = cold_start(probe, paths["bundle"], paths["model"], paths["first_tile"],
                      settings["cold_runs"], settings["cold_discard"], threads=threads)
    job = {
        "task": "measure",
        "group": group,
        "bundle": str(paths["bundle"]),
        "model": str(paths["model"]),
        "trace": False,
        "batch_sizes": list(BATCHES),
        "min_time": settings["min_time"],
        "min_reps": settings["min_reps"],
        "warmup": settings["warmup"],
        "threads": threads,
        "floors": False,
        "engines": [engine],
    }
    measured = run_worker(job, paths["workdir"])
    latency = measured["latency"][engine]
    return {
        "cold_start": cold,
        # tiles/s from the median call: the machine is shared, and a burst of other work
        # lands on a few calls; the mean (mean_tiles_per_s) keeps them
        "batches": {str(n): {"tiles_per_s": n * 1e6 / latency[str(n)]["p50_us"],
                        "mean_tiles_per_s": latency[str(n)]["rows_per_s"],
                        "p50_s": latency[str(n)]["p50_us"] / 1e6,
                        "calls": latency[str(n)]["reps"]} for n in BATCHES},
        "memory": measured["memory"],
        "load_average": [before, os.getloadavg()[0]],
    }


# ---------------------------------------------------------------- the table


def job_seconds(result: dict[str, Any]) -> float:
    """A 512x512 image's job, estimated: cold start (its first tile included) and the other
    tiles at the batch-1 rate."""
    rate = float(result["batches"]["1"]["tiles_per_s"])
    return float(result["cold_start"]["cold_start_s"]) + (JOB_TILES - 1) / rate


def table(results: dict[str, Any]) -> str:
    header = ["engine", "threads", "cold start (import + load + first tile)", "import",
              "load", "first tile", "RSS after first tile", "peak RSS (batches of 8)",
              "tiles/s, batch 1", "tiles/s, batch 8", f"{JOB_TILES}-tile job (512x512), est.",
              "load average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    python = results["python"]
    lines.append(f"| Python + numpy | - | {python['cold_start_s']:.2f} s | "
                 f"{python['stages_s']['import']:.2f} s | - | - | "
                 f"{python['rss_mb']['first_call']:.0f} MB | - | - | - | - | - |")
    for row in results["engines"]:
        cold, stages = row["cold_start"], row["cold_start"]["stages_s"]
        rates = " | ".join(f"{row['batches'][str(n)]['tiles_per_s']:.2f}" for n in BATCHES)
        lines.append(
            f"| {row['label']} | {row['threads']} | {cold['cold_start_s']:.2f} s | "
            f"{stages['import']:.2f} s | {stages['load']:.2f} s | {stages['first_call']:.2f} s | "
            f"{cold['rss_mb']['first_call']:.0f} MB | {row['memory']['peak_rss_mb']:.0f} MB | "
            f"{rates} | {job_seconds(row):.2f} s | {max(row['load_average']):.1f} |"
        )
    return "\n".join(lines)


def ratios(results: dict[str, Any]) -> list[str]:
    """kerasport against Keras TensorFlow at each thread count, in words."""
    rows = {(r["key"], r["threads"]): r for r in results["engines"]}
    out = []
    for threads in THREADS:
        ours, theirs = rows.get(("kerasport", threads)), rows.get(("keras-tf", threads))
        if not ours or not theirs:
            continue
        cold = theirs["cold_start"]["cold_start_s"] / ours["cold_start"]["cold_start_s"]
        rss = theirs["cold_start"]["rss_mb"]["first_call"] / ours["cold_start"]["rss_mb"][
            "first_call"]
        rate = [ours["batches"][str(n)]["tiles_per_s"] / theirs["batches"][str(n)]["tiles_per_s"]
                for n in BATCHES]
        out.append(
            f"- {threads} thread{'s' if threads > 1 else ''}: against Keras TensorFlow, "
            f"kerasport's cold start is {cold:.1f}x shorter, its resident memory after the first "
            f"tile {rss:.1f}x smaller, its tiles/s {rate[0]:.2f}x (batch 1) and {rate[1]:.2f}x "
            f"(batch 8), a {JOB_TILES}-tile job {job_seconds(theirs) / job_seconds(ours):.1f}x "
            "shorter"
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    meta, model, check = results["meta"], results["model"], results["verify"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    loads = [load for row in results["engines"] for load in row["load_average"]]
    return "\n".join([
        "# DeepCell-like segmentation: what a short job pays",
        "",
        f"Printed by `{meta['command']}` on {meta['date']}"
        + (" (**--quick**: short timings)" if meta["quick"] else "") + ".",
        "",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores, {meta['platform']}, Python "
        f"{meta['python']}; shared with other work while it ran (1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} around the measurements)",
        f"- Versions: {versions}",
        f"- Model: PanopticNet-style (ResNet-like encoder, feature pyramid, semantic head), "
        f"{model['params']:,} parameters, {model['gflops_per_tile']:.1f} GFLOP per tile; input "
        f"{model['input']}, per-pixel {CLASSES}-class softmax {model['output']}; weights "
        f"random-initialized with seed {SEED} (weights sha256 {model['weights_sha256'][:16]}...)",
        f"- Export: {model['export_s']:.0f} s, checked against Keras on {EXPORT_PROBE_TILES} "
        f"tiles; verify ({VERIFY_TILES} seeded tiles, `{check['command']}`): exit "
        f"{check['exit_code']}, {check['verdict']}",
        f"- Cold start: median of {meta['cold_runs']} fresh processes after "
        f"{meta['cold_discard']} discarded; tiles/s: from the median of at least "
        f"{meta['min_reps']} timed calls and {meta['min_time']:g} s of them after "
        f"{meta['warmup']} warm-up calls, in a fresh process per engine and thread count; "
        "load average: the machine's 1-minute load average (2 cores) before or after that "
        "row's measurements, whichever is higher. Keras runs `predict(x, batch_size=128, "
        "verbose=0)`, kerasport `classify(classifier, x, 128)`; JAX on 2 threads is XLA's "
        "default pool (one thread per core).",
        f"- The {JOB_TILES}-tile job is an estimate: cold start plus {JOB_TILES - 1} tiles at "
        "the batch-1 rate.",
        "",
        table(results),
        "",
        *ratios(results),
        "",
    ])


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--quick", action="store_true", help="short timings (smoke run)")
    parser.add_argument("--keep", type=Path, help="keep model, bundle and tiles in this directory")
    args = parser.parse_args()
    settings = {"cold_runs": 3, "cold_discard": 1, "min_time": 4.0, "min_reps": 3, "warmup": 2}
    if args.quick:
        settings = {"cold_runs": 1, "cold_discard": 0, "min_time": 0.0, "min_reps": 2,
                    "warmup": 1}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kerasport-segmentation-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = run(work, settings, args.quick)
    results["meta"]["bench_s"] = time.perf_counter() - started
    text = markdown(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "SEGMENTATION.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    seconds = results["meta"]["bench_s"]
    print(f"wrote {args.out / 'SEGMENTATION.md'} and results.json ({seconds:.0f} s)")
    return 0


def run(work: Path, settings: dict[str, Any], quick: bool) -> dict[str, Any]:
    from kerasport.bench.process_cost import cold_start
    from kerasport.bench.run import cpu_model
    from kerasport.bench.worker import WORKLOAD_FILE
    from kerasport.bench.workload import write_workload
    from kerasport.export import export_bundle
    from kerasport.versions import installed_versions

    def say(message: str) -> None:
        print(f"[segmentation] {message}", file=sys.stderr, flush=True)

    paths = {"model": work / "model.keras", "bundle": work / "bundle",
             "tiles": work / "tiles.npy", "first_tile": work / "first_tile.npy",
             "workdir": work / "measure"}
    paths["workdir"].mkdir(exist_ok=True)
    say("building the model and tiles")
    model = build_model()
    model.save(paths["model"])
    tiles = make_tiles(max(POOL_TILES, EXPORT_PROBE_TILES))
    np.save(paths["tiles"], tiles[:VERIFY_TILES])
    np.save(paths["first_tile"], tiles[:1])
    write_workload(paths["workdir"] / WORKLOAD_FILE, tiles[:POOL_TILES], np.ones(1, np.int64),
                   np.zeros(1, np.int64))
    say("exporting")
    start = time.perf_counter()
    if paths["bundle"].exists():
        import shutil

        shutil.rmtree(paths["bundle"])
    export_bundle(paths["model"], paths["bundle"], probe=tiles[:EXPORT_PROBE_TILES])
    export_s = time.perf_counter() - start
    say("verifying")
    check = verify(paths["model"], paths["bundle"], paths["tiles"])
    say(f"verify: exit {check['exit_code']}, {check['verdict']}")
    results: dict[str, Any] = {
        "meta": {
            "command": "python benchmarks/bench_segmentation.py" + (" --quick" if quick else ""),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": installed_versions(VERSIONED),
            "quick": quick, **settings,
        },
        "model": {
            "params": int(model.count_params()), "gflops_per_tile": conv_gflops(model),
            "weights_sha256": weights_sha256(model), "input": str(TILE),
            "output": str((*TILE[:2], CLASSES)), "export_s": export_s,
        },
        "verify": check,
        "engines": [],
    }
    del model
    say("cold start of a bare Python")
    results["python"] = cold_start("python", paths["bundle"], paths["model"], paths["first_tile"],
                                   settings["cold_runs"], settings["cold_discard"])
    for key, group, engine, label in ENGINES:
        for threads in THREADS:
            say(f"{label}, {threads} thread(s)")
            row = measure_engine(key, group, engine, threads, paths, settings)
            row.update(key=key, label=label, threads=threads)
            results["engines"].append(row)
    return results


if __name__ == "__main__":
    sys.exit(main())
