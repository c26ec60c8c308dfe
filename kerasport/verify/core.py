"""`verify_bundle`: stream examples through the Keras reference and the bundle, compare.

The flow is one pass over the examples in chunks: each chunk goes to the reference (which
computes in the background) and to every backend under test, then into one `Comparison`
per backend. Afterwards each backend's invariance checks run on a small sample of rows.
Memory holds one chunk, its outputs, and the sample, whatever the number of rows.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.errors import BundleError, InputError
from kerasport.examples.formats import check_readable, detect_format
from kerasport.export.keras_model import check_model_file
from kerasport.manifest import Manifest, read_manifest, sha256_file
from kerasport.verify.compare import Comparison
from kerasport.verify.inputs import count_rows, is_snp_flags, iter_chunks
from kerasport.verify.invariance import PredictFn, check_invariance
from kerasport.verify.reference import (
    DEFAULT_REFERENCE_TIMEOUT,
    REFERENCE_BATCH_SIZE,
    Reference,
    open_reference,
)
from kerasport.verify.result import (
    BackendResult,
    BundleInfo,
    InputInfo,
    ModelInfo,
    ReferenceInfo,
    Report,
)
from kerasport.verify.settings import Settings

DEFAULT_CHUNK_ROWS = 65536  # a multiple of 128, so chunking never changes predict's batches
CANDIDATE_BATCH_SIZE = 128  # the candidates are called as DeepVariant calls its classifier


def resolve_backends(bundle_dir: str | Path, backends: str | Sequence[str]) -> list[str]:
    """What to test: backend names or artifact keys, or "all": every artifact this host
    can serve (ONNX Runtime and each TVM library this CPU runs)."""
    from kerasport import runtime

    available = runtime.servable_artifacts(bundle_dir)
    names = [backends] if isinstance(backends, str) else list(backends)
    if names == ["all"]:
        if not available:
            raise BundleError(f"bundle {bundle_dir} has no artifact this runtime can serve")
        return available
    servable = {*available, *runtime.available_backends(bundle_dir)}
    missing = [name for name in names if name not in servable]
    if missing or not names:
        raise BundleError(
            f"bundle {bundle_dir} cannot be served on {', '.join(missing) or 'no backend'}; "
            f"it has: {', '.join(available) or 'nothing servable'}"
        )
    return names


def check_model_matches(
    model_path: Path, model_sha: str, reference: Reference, bundle: Path, manifest: Manifest
) -> str | None:
    """Refuse a bundle whose shape differs from the model's; describe a source mismatch.

    Returns the message when the model file is not the bundle's recorded source (the
    caller decides whether that is fatal), None when it is.
    """
    if (reference.num_features, reference.num_classes) != (
        manifest.num_features,
        manifest.num_classes,
    ):
        raise BundleError(
            f"the bundle does not match the model: {model_path} takes {reference.num_features} "
            f"features and gives {reference.num_classes} classes, but bundle {bundle} takes "
            f"{manifest.num_features} and gives {manifest.num_classes} (it was exported from "
            f"{manifest.source_file}, sha256 {manifest.source_sha256[:12]})"
        )
    if model_sha == manifest.source_sha256:
        return None
    return (
        f"{model_path} (sha256 {model_sha[:12]}) is not the model bundle {bundle} was exported "
        f"from ({manifest.source_file}, sha256 {manifest.source_sha256[:12]})"
    )


def progress_available() -> bool:
    """Whether tqdm, which draws the progress bar, is installed (it is not in `export`)."""
    return importlib.util.find_spec("tqdm") is not None


class _NoProgress:
    """What `_progress` gives when no bar is wanted: no tqdm import (it is not in `export`)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _progress(files: Sequence[str | Path], enabled: bool) -> Any:
    """A tqdm bar over the rows of `files` when enabled; otherwise a no-op stand-in."""
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(
        total=count_rows(files),
        unit="rows",
        unit_scale=True,
        desc="verify",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def verify_bundle(
    model_path: str | Path,
    bundle_dir: str | Path,
    example_files: Sequence[str | Path],
    *,
    backends: str | Sequence[str] = "onnxruntime",
    reference_backend: str = "tensorflow",
    reference_process: str = "auto",
    reference_timeout: float = DEFAULT_REFERENCE_TIMEOUT,
    settings: Settings | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threads: int = 1,
    progress: bool = False,
    allow_source_mismatch: bool = False,
    allow_empty: bool = False,
) -> Report:
    """Compare a bundle's backends with the Keras model it came from, over example files.

    Raises a KerasportError (BundleError, InputError, ...) for unusable inputs; a failed
    comparison is not an exception but a Report whose `passed` is False. Examples with no
    rows at all are an error unless `allow_empty` (a cohort shard, such as a region with no
    candidates, whose 0-row report merges as nothing).
    """
    from kerasport import runtime

    settings = settings or Settings()
    model, bundle = Path(model_path), Path(bundle_dir)
    files = [str(f) for f in example_files]
    if not files:
        raise InputError("no examples files given")
    if len(set(files)) != len(files):
        raise InputError("an examples file is given more than once; its row ids would clash")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a positive integer; got {chunk_rows!r}")
    if progress and not progress_available():
        raise InputError(
            "the progress bar needs tqdm (pip install 'kerasport[report]'); "
            "or turn progress off (--no-progress)"
        )
    manifest = read_manifest(bundle)
    names = resolve_backends(bundle, backends)
    check_model_file(model)
    model_sha = sha256_file(model)
    digests = input_digests(files)

    warnings: list[str] = []
    reference = open_reference(model, reference_backend, reference_process, reference_timeout)
    try:
        mismatch = check_model_matches(model, model_sha, reference, bundle, manifest)
        if mismatch and not allow_source_mismatch:
            raise BundleError(f"{mismatch}; pass --allow-source-mismatch to compare them anyway")
        if mismatch:
            warnings.append(f"{mismatch}; compared anyway (--allow-source-mismatch)")
        classifiers = {name: runtime.load(bundle, backend=name, threads=threads) for name in names}
        results = {
            name: BackendResult(
                name,
                Comparison(settings),
                artifact_sha256=manifest.artifacts[classifiers[name].artifact].sha256,
            )
            for name in names
        }
        inputs, sample = _stream(
            files, chunk_rows, manifest, reference, classifiers, results, settings, progress
        )
    finally:
        reference.close()
    if not sum(inputs.values()) and not allow_empty:
        raise InputError(f"no rows to verify in {', '.join(files)}")
    if sample.rows:
        examples, flags = np.concatenate(sample.features), np.concatenate(sample.is_snp)
        for name, classifier in classifiers.items():
            results[name].invariance = check_invariance(
                _batched(classifier), examples, flags, settings
            )
    return Report(
        settings=settings,
        model=ModelInfo(str(model), model_sha, reference.num_features, reference.num_classes),
        bundle=BundleInfo(
            str(bundle),
            manifest.source_file,
            manifest.source_sha256,
            mismatch is None,
            manifest.num_features,
            manifest.num_classes,
        ),
        reference=ReferenceInfo(
            reference.backend,
            reference.keras_version,
            REFERENCE_BATCH_SIZE,
            reference.process,
            reference.seconds,
        ),
        inputs=[InputInfo(path, rows, digests[path]) for path, rows in inputs.items()],
        backends=results,
        warnings=warnings,
    )


def input_digests(files: Sequence[str]) -> dict[str, str]:
    """sha256 of each examples file, taken before it is read, for the report's `inputs`.

    A missing file or an unknown format is refused here, with the readers' own message,
    before hours of verifying the files given before it.
    """
    digests = {}
    for path in files:
        detect_format(path)
        digests[path] = sha256_file(check_readable(path))
    return digests


class _Sample:
    """The first `limit` rows seen and their is_snp flags: the invariance checks' input."""

    def __init__(self, limit: int) -> None:
        self.limit, self.rows = limit, 0
        self.features: list[np.ndarray] = []
        self.is_snp: list[np.ndarray] = []

    def add(self, features: np.ndarray, is_snp: np.ndarray) -> None:
        take = self.limit - self.rows
        if take > 0:
            self.features.append(features[:take].copy())
            self.is_snp.append(is_snp[:take])
            self.rows += len(self.features[-1])


def _stream(
    files: list[str],
    chunk_rows: int,
    manifest: Manifest,
    reference: Reference,
    classifiers: dict[str, Any],
    results: dict[str, BackendResult],
    settings: Settings,
    progress: bool,
) -> tuple[dict[str, int], _Sample]:
    """The single pass: every chunk to the reference (in the background) and to each
    backend, then into each backend's Comparison. Returns rows per input and the sample."""
    inputs = dict.fromkeys(files, 0)
    sample = _Sample(settings.invariance_rows)
    with _progress(files, progress) as bar:
        for chunk in iter_chunks(files, chunk_rows, manifest.num_features):
            is_snp = is_snp_flags(chunk, settings.is_snp_column)
            pending = reference.submit(chunk.features)
            outputs = {}
            for name, classifier in classifiers.items():
                start = time.perf_counter()
                outputs[name] = classifier.predict(chunk.features, batch_size=CANDIDATE_BATCH_SIZE)
                results[name].seconds += time.perf_counter() - start
            expected = pending.result()
            for name, output in outputs.items():
                results[name].comparison.update(
                    expected, output, is_snp, chunk.row_ids, chunk.source
                )
            inputs[chunk.source] += len(chunk.features)
            sample.add(chunk.features, is_snp)
            bar.update(len(chunk.features))
    return inputs, sample


def _batched(classifier: Any) -> PredictFn:
    def predict(examples: np.ndarray, batch_size: int) -> np.ndarray:
        result: np.ndarray = classifier.predict(examples, batch_size=batch_size)
        return result

    return predict
