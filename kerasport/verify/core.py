"""`verify_bundle`: stream examples through the Keras reference and the bundle, compare.

The flow is one pass over the examples in chunks: each chunk goes to the reference (which
computes in the background) and to every backend under test, then into one `Comparison`
per backend. Afterwards each backend's invariance checks run on a small sample of rows.
Memory holds one chunk, its outputs, and the sample, whatever the number of rows; for
large examples (image tiles) chunks and the sample are bounded by bytes too.

Before the pass the decision policy is fixed (`policies`): the one `settings.gate` names,
or the default for this bundle, which may need a look at the first chunk of examples.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasport.errors import BundleError, InputError, KerasportError
from kerasport.examples.formats import check_readable, detect_format
from kerasport.examples.text import check_header
from kerasport.export.keras_model import check_model_file
from kerasport.manifest import Manifest, read_manifest, sha256_file
from kerasport.verify.compare import Comparison
from kerasport.verify.inputs import count_rows, first_rows, iter_chunks
from kerasport.verify.invariance import PredictFn, check_invariance
from kerasport.verify.policies import DEEPVARIANT, DecisionPolicy, GateChoice, choose_default
from kerasport.verify.reference import (
    DEFAULT_REFERENCE_TIMEOUT,
    REFERENCE_BATCH_SIZE,
    Reference,
    open_reference,
)
from kerasport.verify.result import (
    BackendResult,
    BundleInfo,
    GateInfo,
    InputInfo,
    ModelInfo,
    ReferenceInfo,
    Report,
)
from kerasport.verify.settings import Settings
from kerasport.verify.spec import BundleSpec, bundle_spec

DEFAULT_CHUNK_ROWS = 65536  # a multiple of 128, so chunking never changes predict's batches
CANDIDATE_BATCH_SIZE = 128  # the candidates are called as DeepVariant calls its classifier
# Bytes a chunk (its examples and every side's outputs) and the invariance sample (its
# examples and the six outputs the checks hold) may take: far above what (rows, features)
# tables need at the default rows, so only large examples (image tiles) are cut by them.
CHUNK_BYTES = 512 << 20
SAMPLE_BYTES = 256 << 20


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


def _batch_shape(shape: tuple[int, ...]) -> str:
    return str((None, *shape))


def check_model_matches(
    model_path: Path, model_sha: str, reference: Reference, bundle: Path, manifest: Manifest
) -> str | None:
    """Refuse a bundle whose shape differs from the model's; describe a source mismatch.

    Returns the message when the model file is not the bundle's recorded source (the
    caller decides whether that is fatal), None when it is.
    """
    spec = bundle_spec(manifest)
    model_io = (reference.input_shape, reference.output_shape)
    bundle_io = (spec.input.shape, spec.output.shape)
    origin = (
        f"(it was exported from {manifest.source_file}, sha256 {manifest.source_sha256[:12]})"
    )
    if model_io != bundle_io and all(len(s) == 1 for s in (*model_io, *bundle_io)):
        raise BundleError(
            f"the bundle does not match the model: {model_path} takes {model_io[0][0]} "
            f"features and gives {model_io[1][0]} classes, but bundle {bundle} takes "
            f"{bundle_io[0][0]} and gives {bundle_io[1][0]} {origin}"
        )
    if model_io != bundle_io:
        table = all(len(s) == 1 for s in bundle_io)
        raise BundleError(
            f"the bundle does not match the model: {model_path} maps "
            f"{_batch_shape(model_io[0])} -> {_batch_shape(model_io[1])}, but bundle {bundle} "
            f"maps {_batch_shape(bundle_io[0])} -> {_batch_shape(bundle_io[1])} {origin}"
            + ("; expected a (batch, features) -> (batch, classes) classifier" if table else "")
        )
    if model_sha == manifest.source_sha256:
        return None
    return (
        f"{model_path} (sha256 {model_sha[:12]}) is not the model bundle {bundle} was exported "
        f"from ({manifest.source_file}, sha256 {manifest.source_sha256[:12]})"
    )


def choose_gate(
    settings: Settings,
    spec: BundleSpec,
    manifest: Manifest,
    files: Sequence[str],
    rows: int,
    header: str = "auto",
) -> GateChoice:
    """The gate `settings` names, or this bundle's default (see `policies.choose_default`),
    looking at the first chunk of examples (read with `header`) only when the bundle
    leaves it open."""
    if settings.gate is not None:
        return GateChoice(settings.gate, f"given (--gate {settings.gate})")
    return choose_default(
        spec,
        manifest.feature_names,
        settings.is_snp_column,
        lambda: first_rows(files, rows, header),
    )


def chunk_rows_for(spec: BundleSpec, chunk_rows: int, sides: int) -> int:
    """`chunk_rows`, cut to CHUNK_BYTES of examples (as float64, the widest stored) and
    outputs of `sides` models, in multiples of the reference's batch (so chunking never
    changes its batches)."""
    fitting = CHUNK_BYTES // _held_bytes(spec, sides) // REFERENCE_BATCH_SIZE
    return min(chunk_rows, max(REFERENCE_BATCH_SIZE, fitting * REFERENCE_BATCH_SIZE))


def sample_rows_for(spec: BundleSpec, rows: int) -> int:
    """The invariance sample's rows: `rows`, cut to SAMPLE_BYTES of examples and outputs."""
    return min(rows, max(1, SAMPLE_BYTES // _held_bytes(spec, 6)))


def _held_bytes(spec: BundleSpec, outputs: int) -> int:
    """What one example holds in memory: itself as float64 (the widest stored) and
    `outputs` float32 outputs of it."""
    return 8 * math.prod(spec.input.shape) + 4 * outputs * math.prod(spec.output.shape)


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
    header: str = "auto",
) -> Report:
    """Compare a bundle's backends with the Keras model it came from, over example files.

    Raises a KerasportError (BundleError, InputError, ...) for unusable inputs; a failed
    comparison is not an exception but a Report whose `passed` is False. Examples with no
    rows at all are an error unless `allow_empty` (a cohort shard, such as a region with no
    candidates, whose 0-row report merges as nothing). `header` says whether the first
    row of a .csv/.tsv names its columns ("yes", "no", "auto"; `read_examples` says how).
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
    check_header(header)
    if progress and not progress_available():
        raise InputError(
            "the progress bar needs tqdm (pip install 'kerasport[report]'); "
            "or turn progress off (--no-progress)"
        )
    manifest = read_manifest(bundle)
    spec = bundle_spec(manifest)
    names = resolve_backends(bundle, backends)
    check_model_file(model)
    model_sha = sha256_file(model)
    digests = input_digests(files)
    rows_per_chunk = chunk_rows_for(spec, chunk_rows, 1 + len(names))
    choice = choose_gate(settings, spec, manifest, files, rows_per_chunk, header)
    settings = dataclasses.replace(settings, gate=choice.spec)
    policy = settings.policy()
    policy.check(spec)

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
                Comparison(settings, spec.head, policy),
                artifact_sha256=manifest.artifacts[classifiers[name].artifact].sha256,
            )
            for name in names
        }
        sample_rows = sample_rows_for(spec, settings.invariance_rows)
        stream = _Stream(files, rows_per_chunk, spec, policy, sample_rows, header)
        try:
            inputs, sample = stream.run(reference, classifiers, results, progress)
        except KerasportError as exc:
            raise _with_gate_hint(exc, choice) from exc
    finally:
        reference.close()
    if not sum(inputs.values()) and not allow_empty:
        raise InputError(f"no rows to verify in {', '.join(files)}")
    if sample.rows:
        examples, context = sample.arrays()
        for name, classifier in classifiers.items():
            results[name].invariance = check_invariance(
                _batched(classifier), examples, context, settings, spec.head, policy
            )
    return Report(
        settings=settings,
        model=ModelInfo(
            str(model),
            model_sha,
            math.prod(reference.input_shape),
            reference.output_shape[-1],
            reference.input_shape,
            reference.output_shape,
        ),
        bundle=BundleInfo(
            str(bundle),
            manifest.source_file,
            manifest.source_sha256,
            mismatch is None,
            manifest.num_features,
            manifest.num_classes,
            spec.input.shape,
            spec.output.shape,
            spec.head,
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
        gate=GateInfo(choice.chosen_by, choice.undecided),
    )


def _with_gate_hint(exc: KerasportError, choice: GateChoice) -> KerasportError:
    """`exc`, with a word on the gate when DeepVariant's was a guess from the model's shape
    and the examples then broke one of its rules (whole-number features, a 0/1 is_snp)."""
    guessed = choice.spec == DEEPVARIANT and choice.from_examples
    text = str(exc)
    if not guessed or not ("non-integer value" in text or "is_snp" in text):
        return exc
    why = choice.chosen_by.removeprefix("default: ")
    return type(exc)(
        f"{text}; verify chose DeepVariant's gate by default ({why}): give --gate none (or "
        "confidence:T) for a model that is not DeepVariant's"
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
    """The first `limit` rows seen and their gate context: the invariance checks' input."""

    def __init__(self, limit: int) -> None:
        self.limit, self.rows = limit, 0
        self.features: list[np.ndarray] = []
        self.context: list[np.ndarray] | None = []

    def add(self, features: np.ndarray, context: np.ndarray | None) -> None:
        take = self.limit - self.rows
        if take > 0:
            self.features.append(features[:take].copy())
            if context is None or self.context is None:
                self.context = None
            else:
                self.context.append(context[:take])
            self.rows += len(self.features[-1])

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        context = None if self.context is None else np.concatenate(self.context)
        return np.concatenate(self.features), context


class _Stream:
    """The single pass over the examples, read as the policy needs them."""

    def __init__(
        self,
        files: list[str],
        chunk_rows: int,
        spec: BundleSpec,
        policy: DecisionPolicy,
        sample_rows: int,
        header: str,
    ) -> None:
        self.files, self.chunk_rows, self.spec, self.policy = files, chunk_rows, spec, policy
        self.sample_rows, self.header = sample_rows, header

    def run(
        self,
        reference: Reference,
        classifiers: dict[str, Any],
        results: dict[str, BackendResult],
        progress: bool,
    ) -> tuple[dict[str, int], _Sample]:
        """Every chunk to the reference (in the background) and to each backend, then into
        each backend's Comparison. Returns rows per input and the invariance sample."""
        inputs = dict.fromkeys(self.files, 0)
        sample = _Sample(self.sample_rows)
        chunks = iter_chunks(
            self.files,
            self.chunk_rows,
            self.spec.input.shape,
            self.policy.integer_features,
            self.header,
        )
        with _progress(self.files, progress) as bar:
            for chunk in chunks:
                context = self.policy.context(chunk.features, chunk.source, chunk.first_row)
                pending = reference.submit(chunk.features)
                outputs = {}
                for name, classifier in classifiers.items():
                    start = time.perf_counter()
                    outputs[name] = classifier.predict(
                        chunk.features, batch_size=CANDIDATE_BATCH_SIZE
                    )
                    results[name].seconds += time.perf_counter() - start
                expected = pending.result()
                for name, output in outputs.items():
                    results[name].comparison.update(
                        expected, output, context, chunk.row_ids, chunk.source
                    )
                inputs[chunk.source] += len(chunk.features)
                sample.add(chunk.features, context)
                bar.update(len(chunk.features))
        return inputs, sample


def _batched(classifier: Any) -> PredictFn:
    def predict(examples: np.ndarray, batch_size: int) -> np.ndarray:
        result: np.ndarray = classifier.predict(examples, batch_size=batch_size)
        return result

    return predict
