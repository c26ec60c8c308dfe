"""`kerasport workflow verify`: the shipped Snakefile run by Snakemake's local executor.

The embedded real examples, split into shard files, go through verify -> merge, and the
cohort report must equal one `kerasport verify` over all the rows, field by field (row ids
mapped back to the whole file; timings, paths of inputs and float64 sums aside). Reruns
must redo exactly the jobs whose outputs are gone or older than their inputs, and a shard
whose examples changed behind Snakemake's back must be refused by the merge. On the shared
NA12878 reads, four regions go featurize -> verify -> merge and are compared the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasport.assets import DEFAULT_EXAMPLES, DEFAULT_MODEL
from kerasport.cli import main
from kerasport.examples import read_examples
from kerasport.manifest import sha256_file
from kerasport.verify.schema import report_digest
from kerasport.workflow import SNAKEFILE, layout
from kerasport.workflow.config import WorkflowConfig, WorkflowConfigError

pytest.importorskip("snakemake")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deepvariant-testdata"
BAM = DATA / "NA12878_S1.chr20.10_10p1mb.bam"
REF = DATA / "ucsc.hg19.chr20.unittest.fasta.gz"
TRUTH = DATA / "test_nist.b37_chr20_100kbp_at_10mb.vcf.gz"
BED = DATA / "test_nist.b37_chr20_100kbp_at_10mb.bed"
# Four 25 kb regions of the shared 100 kb; the first is labelled (and so cut to the truth
# set's confident intervals), the others are not.
REGIONS = [f"chr20:{s + 1:,}-{s + 25_000:,}" for s in range(10_000_000, 10_100_000, 25_000)]

# Shards cut at multiples of the reference's predict batch (128) see the same batches as
# one verify over the whole file, so even the reference's bits must agree.
SHARD_ROWS = 128
# float64 sums (and the means drawn from them): their last bits follow the grouping.
SUMS = {"sum_abs_diff", "mean_abs_diff", "sum_gq_diff", "mean_gq_diff"}
TIMINGS = {"seconds", "created"}


def run_workflow(*args: str) -> int:
    return main(["workflow", "verify", str(DEFAULT_MODEL), *args, "--cores", "2"])


def single_verify(bundle: Path, examples: Path, out: Path) -> dict[str, Any]:
    code = main(["verify", str(DEFAULT_MODEL), str(bundle), "--examples", str(examples),
                 "--json", str(out), "--quiet"])
    assert code == 0
    return json.loads(out.read_text())


def comparable(report: dict[str, Any], offsets: dict[str, int] | None = None) -> dict[str, Any]:
    """The report without what one run and a merge may differ in (timings, inputs,
    merged_from, float64 sums, and so the digest of them all); with `offsets`, each row id
    made a row of the concatenation of the inputs (input -> its first row there)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if offsets is not None and "input" in value and "row" in value:
                value = {**value, "input": "ALL", "row": offsets[value["input"]] + value["row"]}
            return {key: walk(item) for key, item in value.items()
                    if key not in TIMINGS | SUMS | {"inputs", "merged_from", "digest"}}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(report)


def assert_merged_equals_single(merged: dict[str, Any], single: dict[str, Any]) -> None:
    """Field by field: counts, maxima, histograms, percentiles, row lists, verdict."""
    offsets, start = {single["inputs"][0]["input"]: 0}, 0
    for item in merged["inputs"]:
        offsets[item["input"]] = start
        start += item["rows"]
    assert merged["rows"] == single["rows"] == start
    assert comparable(merged, offsets) == comparable(single, offsets)
    for name, backend in single["backends"].items():
        for key in SUMS:
            assert merged["backends"][name][key] == pytest.approx(backend[key], rel=1e-12)
    # What was compared is not trivial: the rows differ from the reference, so histograms,
    # percentiles and worst rows carry content that a lossy merge would change.
    onnx = merged["backends"]["onnxruntime"]
    assert len(onnx["ulp_histogram"]["bins"]) > 10 and onnx["ulp_p99"] > onnx["ulp_p50"] > 0
    assert len(onnx["worst_rows"]) == merged["settings"]["worst_rows"]
    assert len(merged["merged_from"]) == len(merged["inputs"]) >= 4


def stamps(paths: list[Path]) -> list[tuple[int, int]]:
    """(inode, mtime) of each file: reports are written by rename, so a rewrite shows."""
    return [(os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kerasport.export import export_bundle

    return export_bundle(DEFAULT_MODEL, tmp_path_factory.mktemp("workflow") / "bundle")


@pytest.fixture(scope="module")
def embedded(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The embedded examples in shard files of 128 rows and one empty shard (a region
    without candidates), run through the workflow once; the cohort report as written."""
    root = tmp_path_factory.mktemp("embedded")
    features = read_examples(DEFAULT_EXAMPLES).features
    shards = root / "shards"
    shards.mkdir()
    files = []
    for index, start in enumerate(range(0, len(features), SHARD_ROWS)):
        files.append(shards / f"part{index}.npy")
        np.save(files[-1], features[start : start + SHARD_ROWS])
    files.append(shards / "part9-empty.npy")
    np.save(files[-1], features[:0])
    np.save(root / "all.npy", features)
    run = root / "run"
    code = run_workflow(str(bundle), "--examples", str(shards / "*.npy"), "--out", str(run))
    assert code == 0
    return {
        "root": root,
        "run": run,
        "files": files,
        "reports": [run / layout.SHARD_REPORT.format(shard=f.name) for f in files],
        "cohort": json.loads((run / layout.COHORT_JSON).read_text()),
    }


# ------------------------------------------------------------ the embedded examples


def test_the_merged_cohort_equals_one_verify_over_all_rows(
    embedded: dict[str, Any], bundle: Path
) -> None:
    merged = embedded["cohort"]
    single = single_verify(bundle, embedded["root"] / "all.npy", embedded["root"] / "one.json")
    assert_merged_equals_single(merged, single)
    assert merged["verdict"] == {"passed": True, "exit_code": 0, "reasons": []}
    # Each shard's report records the sha256 of the file it read; the empty shard merged
    # as nothing.
    recorded = {item["input"]: item for item in merged["inputs"]}
    for file in embedded["files"]:
        assert recorded[str(file)]["sha256"] == sha256_file(file)
    assert recorded[str(embedded["files"][-1])]["rows"] == 0
    assert (embedded["run"] / layout.COHORT_HTML).read_text().startswith("<!DOCTYPE html>")


def test_reruns_redo_only_what_is_missing_and_the_merge_refuses_a_stale_shard(
    embedded: dict[str, Any], bundle: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run, reports = embedded["run"], embedded["reports"]
    cohort = run / layout.COHORT_JSON
    args = (str(bundle), "--examples", *map(str, embedded["files"]), "--out", str(run))
    before = stamps([*reports, cohort])

    # Done: nothing runs again, not even the merge.
    assert run_workflow(*args) == 0
    assert stamps([*reports, cohort]) == before

    # One shard report gone: that shard, and the merge, run again; the others do not.
    reports[1].unlink()
    assert run_workflow(*args) == 0
    after = stamps([*reports, cohort])
    assert after[0] == before[0] and after[2:-1] == before[2:-1]
    assert after[1] != before[1] and after[-1] != before[-1]
    rerun = json.loads(cohort.read_text())
    assert comparable(rerun) == comparable(embedded["cohort"])

    # A shard's examples changed but kept their time (a copy that preserves times): Snakemake
    # sees nothing, so when the merge runs again (another shard redone) it must refuse.
    tampered = embedded["files"][2]
    original = tampered.read_bytes()
    times = os.stat(tampered)
    rows = np.load(tampered)
    np.save(tampered, rows[::-1])
    os.utime(tampered, ns=(times.st_atime_ns, times.st_mtime_ns))
    reports[0].unlink()
    capfd.readouterr()
    assert run_workflow(*args) == 2
    err = capfd.readouterr().err
    assert f"{reports[2].relative_to(run)}: stale report: examples file {tampered}" in err
    assert "verify it again" in err
    assert not cohort.exists(), "a refused merge leaves no cohort report"
    assert reports[0].exists() and stamps([reports[2]]) == [after[2]]

    # The original bytes back, under a newer time: Snakemake's own checksum of the input
    # says nothing changed, so no shard is redone, and the merge, checking sha256, accepts.
    tampered.write_bytes(original)
    kept = stamps(reports)
    assert run_workflow(*args) == 0
    assert stamps(reports) == kept
    assert comparable(json.loads(cohort.read_text())) == comparable(embedded["cohort"])


def test_a_failing_verdict_is_the_exit_status_with_the_cohort_report_written(
    embedded: dict[str, Any], bundle: Path, tmp_path: Path
) -> None:
    run = tmp_path / "strict"
    code = run_workflow(str(bundle), "--examples", str(embedded["files"][0]), "--out", str(run),
                        "--verify-args", "--max-ulp 1")
    assert code == 1
    cohort = json.loads((run / layout.COHORT_JSON).read_text())
    assert cohort["verdict"]["exit_code"] == 1 and cohort["settings"]["max_ulp"] == 1
    assert any("exceeds --max-ulp 1" in reason for reason in cohort["verdict"]["reasons"])
    # Run with snakemake itself, the default target judges the cohort: a FAIL fails the run.
    direct = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory",
         str(run), "--configfile", str(run / layout.CONFIG), "--cores", "1", "--quiet"],
        capture_output=True, text=True,
    )
    assert direct.returncode != 0 and "verdict: FAIL" in direct.stdout + direct.stderr
    assert not (run / layout.VERDICT).exists()


def test_merge_check_inputs_refuses_reports_of_another_model_or_bundle(
    embedded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = json.loads(embedded["reports"][0].read_text())

    def refused(edit: Any) -> str:
        data = json.loads(json.dumps(source))
        edit(data)
        data["digest"] = report_digest(data)  # a consistent report, of other files
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(data))
        assert main(["verify", "--merge", str(path), "--quiet"]) == 0  # without the check
        assert main(["verify", "--merge", str(path), "--check-inputs", "--quiet"]) == 2
        return capsys.readouterr().err

    def model(data: dict[str, Any]) -> None:
        data["model"]["sha256"] = "0" * 64

    def artifact(data: dict[str, Any]) -> None:
        data["backends"]["onnxruntime"]["artifact_sha256"] = "0" * 64

    assert f"edited.json: stale report: model {DEFAULT_MODEL} now has sha256" in refused(model)
    assert "no longer has the onnxruntime artifact" in refused(artifact)
    assert main(["verify", "--merge", str(embedded["reports"][0]), "--check-inputs",
                 "--quiet"]) == 0


# ------------------------------------------------------------ inputs refused up front


def test_help_and_the_snakefile_path_need_no_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "snakefile"]) == 0
    assert capsys.readouterr().out.strip() == str(SNAKEFILE) and SNAKEFILE.is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["workflow", "verify", "--help"])
    assert exit_info.value.code == 0
    assert "--profile" in capsys.readouterr().out


def test_a_missing_snakemake_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "snakemake", None)  # importing it now fails
    code = main(["workflow", "verify", "m.keras", "b", "--examples", "x.npy", "--out",
                 str(tmp_path)])
    assert code == 2
    assert "pip install 'kerasport[workflow]'" in capsys.readouterr().err


def test_bad_inputs_are_refused_before_any_job(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    examples = str(DEFAULT_EXAMPLES)

    def refused(*args: str) -> str:
        assert run_workflow(*args, "--out", str(run)) == 2
        return capsys.readouterr().err

    assert "'/nowhere/*.npz' matches no file" in refused(str(bundle), "--examples",
                                                         "/nowhere/*.npz")
    assert "--json is the workflow's to set" in refused(
        str(bundle), "--examples", examples, "--verify-args", "--json x.json")
    assert "argument --max-ulp" in refused(
        str(bundle), "--examples", examples, "--verify-args", "--max-ulp many")
    assert "--samples needs --ref" in refused(str(bundle), "--samples", examples)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample\treads\n")
    assert "missing column(s) region" in refused(str(bundle), "--samples", str(sheet),
                                                 "--ref", examples)
    assert "has no manifest.json" in refused(str(tmp_path), "--examples", examples)
    assert not run.exists(), "nothing is written for a refused run"


def test_two_files_of_one_name_in_sample_directories_stay_apart(tmp_path: Path) -> None:
    from kerasport.workflow.config import shards_from_examples

    for sample in ("NA12878", "NA24385"):
        (tmp_path / sample).mkdir()
        shutil.copy(DEFAULT_EXAMPLES, tmp_path / sample / "examples.npz")
    shards = shards_from_examples([str(tmp_path / "*" / "examples.npz")])
    assert [s.id for s in shards] == ["NA12878--examples.npz", "NA24385--examples.npz"]


def test_a_hand_written_config_is_checked(bundle: Path) -> None:
    good = {"model": str(DEFAULT_MODEL), "bundle": str(bundle),
            "shards": [{"id": "a", "examples": "a.npz"}]}
    assert WorkflowConfig.from_json(good).examples_of("a") == "a.npz"
    cases = [
        ({"shards": [{"id": "a", "examples": "a.npz"}, {"id": "a", "examples": "b.npz"}]},
         "a.npz and b.npz would both be shard 'a'"),
        ({"shards": [{"id": "a b", "examples": "a.npz"}]}, "id 'a b' must match"),
        ({"shards": [{"id": "a", "reads": "r.bam", "region": "chr1"}]}, "is not CONTIG"),
        ({"shards": [{"id": "a", "reads": "r.bam", "region": "chr1:1-9"}]}, "need 'ref'"),
        ({"shards": [{"id": "a", "examples": "a.npz", "reads": "r.bam"}]},
         "give one of 'examples' and 'reads'"),
        ({"shard": []}, "unknown key(s) shard"),
    ]
    for change, message in cases:
        with pytest.raises(WorkflowConfigError, match=re.escape(message)):
            WorkflowConfig.from_json({**good, **change})


# ------------------------------------------------------------ the shared NA12878 reads


@pytest.mark.shared_data
@pytest.mark.skipif(not BAM.exists(), reason=f"no shared test data at {DATA}")
def test_featurize_verify_merge_on_four_regions_of_the_real_reads(
    bundle: Path, tmp_path: Path
) -> None:
    (tmp_path / "data").symlink_to(DATA)  # the sheet's relative paths start at its directory
    lines = ["sample\treads\tregion\ttruth\tconfident"]
    for index, region in enumerate(REGIONS):
        labels = f"data/{TRUTH.name}\tdata/{BED.name}" if index == 0 else "\t"
        lines.append(f"NA12878\tdata/{BAM.name}\t{region}\t{labels}")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    code = run_workflow(str(bundle), "--samples", str(sheet), "--ref", str(REF),
                        "--out", str(run))
    assert code == 0

    config = WorkflowConfig.from_json(json.loads((run / layout.CONFIG).read_text()))
    shard_files = [run / config.examples_of(shard.id) for shard in config.shards]
    assert len(shard_files) == 4
    labelled = read_examples(shard_files[0])
    assert labelled.labels is not None and len(labelled) > 0
    parts = [read_examples(f).features for f in shard_files]
    assert all(len(p) > 0 and len(p) % SHARD_ROWS != 1 for p in parts)
    np.save(tmp_path / "all.npy", np.concatenate(parts))

    merged = json.loads((run / layout.COHORT_JSON).read_text())
    single = single_verify(bundle, tmp_path / "all.npy", tmp_path / "one.json")
    assert_merged_equals_single(merged, single)
    assert [item["input"] for item in merged["inputs"]] == [
        config.examples_of(shard.id) for shard in config.shards
    ]
