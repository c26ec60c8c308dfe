"""The cohort workflow's configuration: the model, the bundle, the shards, the options.

`kerasport workflow verify` builds it from the command line (examples files or globs, or a
sample sheet of reads and regions) and writes it as `config.json` in the run directory; the
Snakefile reads it back through `WorkflowConfig.from_json`, so a config written by hand for
`snakemake` is checked by the same code, and a mistake is named before any job starts.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
import reprlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerasport.errors import InputError
from kerasport.featurize.regions import Region, parse_region
from kerasport.jsonfile import decode_utf8
from kerasport.plainfile import read_bounded
from kerasport.workflow import layout

SHEET_COLUMNS = ("sample", "reads", "region")
SHEET_OPTIONAL = ("truth", "confident")
SHARED_FILES = ("model", "bundle", "ref")  # the config's files that every shard's jobs read
SHARD_FILES = ("examples", "reads", "truth", "confident")  # a shard's own
_SHARD_ID = re.compile(rf"^{layout.SHARD_ID}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DIGEST_CHARS = 8  # of a shard id's sha256 suffix
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every C0 control but tab, and DEL
# A sheet is a line of some 200 bytes per sample: 16 MiB is some 80,000 samples.
MAX_SHEET_BYTES = 16 << 20


class WorkflowConfigError(InputError):
    """The workflow's inputs or its config.json are unusable; the message says which."""


@dataclass(frozen=True)
class Shard:
    """One verify job: an examples file, or reads and a region to featurize first."""

    id: str
    examples: str | None = None
    reads: str | None = None
    region: str | None = None
    truth: str | None = None
    confident: str | None = None

    def to_json(self) -> dict[str, str]:
        return {key: value for key, value in vars(self).items() if value is not None}

    def describe(self) -> str:
        return self.examples or f"{self.reads} {self.region}"

    def files(self) -> dict[str, str]:
        """The files given for the shard, by role: its examples, or its reads (and labels)."""
        return {role: path for role in SHARD_FILES if (path := getattr(self, role)) is not None}


@dataclass(frozen=True)
class WorkflowConfig:
    """What the Snakefile runs: one verify per shard (featurized first when from reads),
    then one merge. `verify_args` / `featurize_args` are passed to every such job."""

    model: str
    bundle: str
    shards: tuple[Shard, ...]
    ref: str | None = None
    verify_args: tuple[str, ...] = ()
    featurize_args: tuple[str, ...] = ()

    def shard(self, shard_id: str) -> Shard:
        for shard in self.shards:
            if shard.id == shard_id:
                return shard
        raise WorkflowConfigError(f"no shard {shard_id!r} in the workflow config")

    def examples_of(self, shard_id: str) -> str:
        """The examples file the shard's verify reads: given, or featurize's output."""
        shard = self.shard(shard_id)
        return shard.examples or layout.EXAMPLES.format(shard=shard_id)

    def files(self) -> dict[str, str]:
        """Every file the config names, by the run directory's link to it (layout.INPUT,
        layout.SHARD_INPUT): what Snakemake is shown instead of the path (see links.py)."""
        files = {layout.INPUT.format(role=role): path
                 for role in SHARED_FILES if (path := getattr(self, role)) is not None}
        for shard in self.shards:
            files.update({layout.SHARD_INPUT.format(role=role, shard=shard.id): path
                          for role, path in shard.files().items()})
        return files

    def examples_input(self, shard_id: str) -> str:
        """What Snakemake is shown as the shard's examples: the link to the given file, or
        featurize's output."""
        if self.shard(shard_id).examples is None:
            return layout.EXAMPLES.format(shard=shard_id)
        return layout.SHARD_INPUT.format(role="examples", shard=shard_id)

    def featurize_inputs(self, shard_id: str) -> dict[str, str]:
        """The links to the files a shard's featurize job reads, by role (Snakemake reruns
        the job when one of those files changes)."""
        shard = self.shard(shard_id)
        if shard.reads is None or self.ref is None:
            raise WorkflowConfigError(f"shard {shard_id} has no reads to featurize")
        links = {role: layout.SHARD_INPUT.format(role=role, shard=shard_id)
                 for role in shard.files()}
        return {**links, "ref": layout.INPUT.format(role="ref")}

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "bundle": self.bundle,
            "ref": self.ref,
            "shards": [shard.to_json() for shard in self.shards],
            "verify_args": list(self.verify_args),
            "featurize_args": list(self.featurize_args),
        }

    @classmethod
    def from_json(cls, data: Any) -> WorkflowConfig:
        """Check a config (as Snakemake parsed it) and build it; errors name the field."""
        if not isinstance(data, dict):
            raise WorkflowConfigError("the workflow config is not a mapping")
        unknown = sorted(set(data) - {"model", "bundle", "ref", "shards", "verify_args",
                                      "featurize_args"})
        if unknown:
            raise WorkflowConfigError(f"workflow config: unknown key(s) {', '.join(unknown)}")
        shards = data.get("shards")
        if not isinstance(shards, list) or not shards:
            raise WorkflowConfigError("workflow config: 'shards' must be a non-empty list")
        config = cls(
            model=_text(data, "model"),
            bundle=_text(data, "bundle"),
            shards=tuple(
                _shard(item, f"workflow config: shards[{i}]") for i, item in enumerate(shards)
            ),
            ref=_optional_text(data, "ref"),
            verify_args=_words(data, "verify_args"),
            featurize_args=_words(data, "featurize_args"),
        )
        config.check()
        return config

    def check(self) -> None:
        """Shard ids unique, in any case (each names files, and a filesystem may not tell
        `A` from `a`); shards of reads have a reference; every path can be given to a job."""
        seen: dict[str, Shard] = {}
        for shard in self.shards:
            other = seen.get(shard.id.lower())
            if other is not None:
                raise WorkflowConfigError(
                    f"{other.describe()} and {shard.describe()} would both be shard "
                    f"{shard.id!r} (shard ids name files); rename one"
                )
            seen[shard.id.lower()] = shard
        if self.ref is None and any(shard.reads for shard in self.shards):
            raise WorkflowConfigError("workflow config: shards with reads need 'ref' (a FASTA)")
        for role in SHARED_FILES:
            if (path := getattr(self, role)) is not None:
                usable_path(path, role)
        for shard in self.shards:
            for role, path in shard.files().items():
                usable_path(path, f"{role} file")


def _text(data: dict[str, Any], key: str, where: str = "workflow config") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WorkflowConfigError(
            f"{where}: {key!r} must be a non-empty string; got {reprlib.repr(value)}"
        )
    return value


def _optional_text(data: dict[str, Any], key: str, where: str = "workflow config") -> str | None:
    return None if data.get(key) is None else _text(data, key, where)


def _words(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        raise WorkflowConfigError(f"workflow config: {key!r} must be a list of strings")
    return tuple(value)


def _shard(item: Any, where: str) -> Shard:
    """A checked Shard from a mapping; `where` names it in errors."""
    if not isinstance(item, dict):
        raise WorkflowConfigError(f"{where} is not a mapping")
    fields = {"id", "examples", "reads", "region", "truth", "confident"}
    unknown = sorted(set(item) - fields)
    if unknown:
        raise WorkflowConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    shard = Shard(
        _text(item, "id", where),
        **{key: _optional_text(item, key, where) for key in sorted(fields - {"id"})},
    )
    if not _SHARD_ID.match(shard.id):
        raise WorkflowConfigError(
            f"{where}: id {shard.id!r} must match {layout.SHARD_ID} (it names files)"
        )
    if (shard.examples is None) == (shard.reads is None):
        raise WorkflowConfigError(f"{where} ({shard.id}): give one of 'examples' and 'reads'")
    if shard.reads is not None:
        if shard.region is None:
            raise WorkflowConfigError(f"{where} ({shard.id}): 'reads' needs a 'region'")
        _region(shard.region, where)
    elif shard.region or shard.truth or shard.confident:
        raise WorkflowConfigError(
            f"{where} ({shard.id}): region, truth and confident go with 'reads'"
        )
    if shard.confident is not None and shard.truth is None:
        raise WorkflowConfigError(f"{where} ({shard.id}): 'confident' needs 'truth'")
    return shard


def _region(text: str, where: str) -> Region:
    try:
        return parse_region(text)
    except ValueError as exc:
        raise WorkflowConfigError(f"{where}: {exc}") from exc


# -- building a config from the command line ---------------------------------------------


def shard_ids(names: Sequence[str]) -> list[str]:
    """A shard id for each name (a file's path below the cohort's directory, or a sample
    sheet's SAMPLE.CONTIG_START-END): readable, and the same on every run of the cohort.

    The id is the name with each '/' as '--' when that is a valid id which gives the name
    back. Otherwise (a space, a quote, a leading '-', an accent, a '--' of its own) it is the
    name made valid (accents dropped, other runs of characters as '_', leading and trailing
    punctuation cut) plus a hash of the name, so names made alike stay apart: `a b.npz` is
    `a_b.npz-` and 8 hex digits, never `a_b.npz`'s `a_b.npz`, and `-rf.npz` is `rf.npz-...`,
    which no parser takes for an option. Ids that differ only in case get the hash too, since
    a filesystem may not tell their files apart. A clash left to chance (two 8-digit hashes
    alike) is refused by WorkflowConfig.check, not let overwrite a shard.
    """
    readable = [_readable(name) for name in names]
    spellings: dict[str, set[str]] = {}
    for text in readable:
        spellings.setdefault(text.lower(), set()).add(text)
    return [
        text
        if text.split("--") == name.split(os.sep) and len(spellings[text.lower()]) == 1
        else f"{text}-{_digest(name)}"
        for name, text in zip(names, readable, strict=True)
    ]


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:_DIGEST_CHARS]


def _readable(name: str) -> str:
    """The name as a valid shard id, '/' as '--' (what a reader recognizes it by)."""
    parts = []
    for part in name.split(os.sep):
        letters = "".join(c for c in unicodedata.normalize("NFKD", part)
                          if not unicodedata.combining(c))
        parts.append(_UNSAFE.sub("_", letters).strip("._-"))
    return "--".join(part for part in parts if part) or "shard"


def usable_path(path: str, what: str) -> str:
    """`path`, if every job can be given it; otherwise WorkflowConfigError naming it.

    Snakemake is never shown the cohort's paths (links.py) and jobs get them shell-quoted, so
    braces, spaces, quotes, '$' or a leading '-' are all fine. A control character (a
    newline) is not: a job's command line, its log and every message naming the file would
    be cut at it. Nor is a name that is not UTF-8, which config.json and the reports cannot
    hold as text.
    """
    junk = _CONTROL.search(path)
    problem = f"control character 0x{ord(junk.group()):02x} in its name" if junk else None
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        problem = "its name is not UTF-8"
    if problem:
        raise WorkflowConfigError(f"{what} {path!r}: {problem}, which the workflow cannot pass "
                                  "to its jobs; rename it")
    return path


def _existing_file(path: str | Path, what: str) -> str:
    file = Path(path)
    try:
        found = file.is_file()
    except OSError as exc:  # a name too long for the filesystem, or an I/O error
        shown = str(path) if len(str(path)) <= 200 else f"{str(path)[:197]}..."
        raise WorkflowConfigError(f"{what} {shown}: {exc.strerror or exc}") from None
    if not found:
        raise WorkflowConfigError(f"{what} {path}: no such file")
    return str(file.absolute())


def shards_from_examples(patterns: Sequence[str]) -> list[Shard]:
    """One shard per examples file, in the order given (a glob's matches sorted).

    A shard is named by its file's path below the files' common directory, so files of the
    same name in per-sample directories stay apart.
    """
    from kerasport.examples import detect_format

    files: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern) and not os.path.exists(pattern):  # `a[1].npz` is a name
            matches = sorted(glob.glob(pattern, recursive=True))
        else:
            matches = [pattern]
        if not matches:
            raise WorkflowConfigError(f"--examples {pattern!r} matches no file")
        for match in matches:
            detect_format(match)
            files.append(_existing_file(match, "examples file"))
    repeated = sorted({f for f in files if files.count(f) > 1})
    if repeated:
        raise WorkflowConfigError(f"examples file(s) given more than once: {', '.join(repeated)}")
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    ids = shard_ids([os.path.relpath(f, root) for f in files])
    return [Shard(shard_id, examples=f) for shard_id, f in zip(ids, files, strict=True)]


def shards_from_sheet(sheet: str | Path) -> list[Shard]:
    """One shard per line of a tab-separated sample sheet with a header line.

    Columns: sample, reads (BAM, SAM or CRAM), region (CONTIG:START-END); optional truth
    (VCF) and confident (BED). Relative paths are taken from the sheet's directory; lines
    starting with '#' and blank lines are skipped.
    """
    path = Path(sheet)
    rows = _sheet_rows(path)
    if not rows:
        raise WorkflowConfigError(f"sample sheet {sheet} is empty")
    header = [name.strip() for name in rows[0][1]]
    missing = [name for name in SHEET_COLUMNS if name not in header]
    unknown = [name for name in header if name not in (*SHEET_COLUMNS, *SHEET_OPTIONAL)]
    if missing or unknown:
        problems = [f"missing column(s) {', '.join(missing)}"] if missing else []
        problems += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise WorkflowConfigError(
            f"sample sheet {sheet}: {'; '.join(problems)} (its header line names the columns: "
            f"{', '.join(SHEET_COLUMNS)}, optionally {', '.join(SHEET_OPTIONAL)}; tab-separated)"
        )
    lines = []
    for number, row in rows[1:]:
        where = f"sample sheet {sheet} line {number}"
        if len(row) != len(header):
            raise WorkflowConfigError(f"{where}: {len(row)} fields for {len(header)} columns")
        cells = {name: value.strip() for name, value in zip(header, row, strict=True)}
        for name in SHEET_COLUMNS:
            if not cells[name]:
                raise WorkflowConfigError(f"{where}: empty {name}")
        region = _region(cells["region"], where)
        label = f"{cells['sample']}.{region.contig}_{region.start + 1}-{region.end}"
        lines.append((where, cells, label))
    if not lines:
        raise WorkflowConfigError(f"sample sheet {sheet} has a header but no samples")
    ids = shard_ids([label for _, _, label in lines])
    return [_sheet_shard(cells, path.parent, where, shard_id)
            for (where, cells, _), shard_id in zip(lines, ids, strict=True)]


def _sheet_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each line that is not blank or a comment.

    Read within a size bound and as strict UTF-8 (a leading byte-order mark, as spreadsheets
    write, is dropped). Each line is split on its own, with a spreadsheet's quoting ("a,b"
    is the cell a,b): a stray quote or an overlong cell is refused with its line number, not
    let swallow the lines after it. Line numbers count every line, as an editor shows them;
    a control character (a NUL, a vertical tab) is refused, since in a sample name or a path
    it can only be junk.
    """
    raw = read_bounded(path, WorkflowConfigError, "sample sheet", MAX_SHEET_BYTES)
    text = decode_utf8(raw, WorkflowConfigError, f"sample sheet {path}").removeprefix("\ufeff")
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        where = f"sample sheet {path} line {number}"
        junk = _CONTROL.search(line)
        if junk:
            raise WorkflowConfigError(
                f"{where}: control character 0x{ord(junk.group()):02x} at column {junk.start() + 1}"
            )
        try:
            rows.append((number, next(csv.reader([line], delimiter="\t", strict=True))))
        except csv.Error as exc:
            raise WorkflowConfigError(f"{where}: cannot be split into cells: {exc}") from None
    return rows


def _sheet_shard(cells: dict[str, str], base: Path, where: str, shard_id: str) -> Shard:
    """The shard of one sample sheet line (its id made of `SAMPLE.CONTIG_START-END`)."""
    item = {"id": shard_id, "region": cells["region"]}
    for name in ("reads", *SHEET_OPTIONAL):
        if cells.get(name):
            item[name] = _existing_file(base / cells[name], f"{where}: {name}")
    return _shard(item, where)


def build_config(
    model: str | Path,
    bundle: str | Path,
    *,
    examples: Sequence[str] | None = None,
    samples: str | Path | None = None,
    ref: str | Path | None = None,
    verify_args: tuple[str, ...] = (),
    featurize_args: tuple[str, ...] = (),
) -> WorkflowConfig:
    """The config of a cohort run: examples files (or globs), or a sample sheet of reads
    with a reference FASTA. Paths become absolute, so jobs find them from any directory
    of a shared filesystem; the bundle's manifest is read now, so a wrong one fails here."""
    from kerasport.manifest import read_manifest

    read_manifest(Path(bundle))
    if examples is not None and samples is None:
        if ref is not None:
            raise WorkflowConfigError("--ref goes with --samples; examples need no reference")
        shards = shards_from_examples(examples)
    elif samples is not None and examples is None:
        if ref is None:
            raise WorkflowConfigError("--samples needs --ref FASTA, the reads' reference")
        shards = shards_from_sheet(samples)
    else:
        raise WorkflowConfigError("give --examples FILE_OR_GLOB ... or --samples SHEET.tsv")
    config = WorkflowConfig(
        model=_existing_file(model, "model"),
        bundle=str(Path(bundle).absolute()),
        shards=tuple(shards),
        ref=None if ref is None else _existing_file(ref, "reference"),
        verify_args=verify_args,
        featurize_args=featurize_args,
    )
    config.check()
    return config
