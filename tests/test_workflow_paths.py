"""`kerasport workflow verify` takes any file name a job can be given.

Snakemake reads braces in a path as wildcards (and `<name>` as a path variable), with no
escape, so the workflow shows it only links of its own naming; the jobs get the real paths,
shell-quoted. One real run has a model and bundle under directories with braces and spaces
and examples named `-rf.npz`, `a b.npz` / `a_b.npz` (alike once made ids), `{shard}.npz`
(a wildcard the rules do have), a quote and `$`, and an accent; a rerun does nothing. Shard
ids are checked without Snakemake: readable, never alike, never starting with '-'. What a job
cannot be given (a newline) is refused before any job, exit 2, naming the path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from kerasport.assets import DEFAULT_EXAMPLES, DEFAULT_MODEL
from kerasport.cli import main
from kerasport.examples import Examples, read_examples, write_examples
from kerasport.workflow import layout
from kerasport.workflow.config import WorkflowConfig, WorkflowConfigError, shard_ids
from kerasport.workflow.links import argument, link_inputs

ODD_NAMES = ["-rf.npz", "a b.npz", "a_b.npz", "{shard}.npz", "it's $HOME.npz", "ünïcode.npz"]
ROWS = 48  # per shard (of the 312 embedded): the run checks names, not numbers


def test_shard_ids_are_readable_apart_and_never_an_option() -> None:
    names = [*ODD_NAMES, "part0.npy", "NA12878/examples.npz", "NA24385/examples.npz",
             "a--b.npz", "a/b.npz", "A.npz", "a.npz", "例.npz", "---"]
    ids = shard_ids(names)
    assert ids == shard_ids(names), "the same cohort, the same ids (a rerun resumes)"
    assert len({i.lower() for i in ids}) == len(ids), ids
    assert all(re.fullmatch(layout.SHARD_ID, i) for i in ids), ids
    by_name = dict(zip(names, ids, strict=True))
    # A name that is an id already keeps it; '/' is '--'.
    assert by_name["a_b.npz"] == "a_b.npz" and by_name["part0.npy"] == "part0.npy"
    assert by_name["NA12878/examples.npz"] == "NA12878--examples.npz"
    assert by_name["a/b.npz"] == "a--b.npz"
    # Others get a hash of the name after its readable form.
    hashed = re.compile(r"(.+)-[0-9a-f]{8}")
    expected = {"-rf.npz": "rf.npz", "a b.npz": "a_b.npz", "{shard}.npz": "shard_.npz",
                "it's $HOME.npz": "it_s_HOME.npz", "ünïcode.npz": "unicode.npz",
                "a--b.npz": "a--b.npz", "A.npz": "A.npz", "a.npz": "a.npz", "---": "shard"}
    for name, readable in expected.items():
        match = hashed.fullmatch(by_name[name])
        assert match and match.group(1) == readable, (name, by_name[name])
    # The hash is the name's own: a name's id does not depend on the other names, but for
    # one differing only in case.
    assert shard_ids(["a b.npz"]) == [by_name["a b.npz"]]
    assert shard_ids(["a.npz"]) == ["a.npz"]


def test_a_hand_written_config_refuses_ids_alike_but_for_case_and_unusable_paths() -> None:
    good = {"model": "m.keras", "bundle": "b", "shards": [{"id": "a", "examples": "a.npz"}]}
    with pytest.raises(WorkflowConfigError, match="would both be shard 'A'"):
        WorkflowConfig.from_json(
            {**good, "shards": [{"id": "a", "examples": "a.npz"}, {"id": "A", "examples": "b"}]}
        )
    with pytest.raises(WorkflowConfigError, match=r"model 'm\\n.keras': control character 0x0a"):
        WorkflowConfig.from_json({**good, "model": "m\n.keras"})


def test_a_relative_path_starting_with_a_dash_is_no_option() -> None:
    assert argument("-rf.npz") == "./-rf.npz"
    assert argument("/data/-rf.npz") == "/data/-rf.npz" and argument("a.npz") == "a.npz"


def test_links_are_made_once_from_the_run_directory(tmp_path: Path) -> None:
    """A hand-written config's relative paths are from the run directory; a link already
    right is left as it is (its time is what Snakemake compares); a missing file is named."""
    (tmp_path / "-rf.npz").write_bytes(b"")
    config = WorkflowConfig.from_json({"model": "/m.keras", "bundle": str(tmp_path),
                                       "shards": [{"id": "a", "examples": "-rf.npz"}]})
    with pytest.raises(WorkflowConfigError, match=r"^/m.keras: no such file or directory$"):
        link_inputs(config, tmp_path)
    config = WorkflowConfig.from_json({**config.to_json(), "model": "-rf.npz"})
    link_inputs(config, tmp_path)
    link = tmp_path / layout.SHARD_INPUT.format(role="examples", shard="a")
    assert os.readlink(link) == str(tmp_path / "-rf.npz")
    before = link.lstat().st_mtime_ns, link.lstat().st_ino
    link_inputs(config, tmp_path)
    assert (link.lstat().st_mtime_ns, link.lstat().st_ino) == before


@pytest.fixture(scope="module")
def odd_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The model, and its bundle, under directories with braces, a space and `<results>`."""
    pytest.importorskip("snakemake")
    from kerasport.export import export_bundle

    models = tmp_path_factory.mktemp("paths") / "models{v2} x"
    models.mkdir()
    model = models / "model.keras"
    shutil.copy(DEFAULT_MODEL, model)
    return model, export_bundle(model, models / "bundle <results>")


def test_unusable_options_and_paths_are_refused_before_any_job(
    odd_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, bundle = odd_model
    run = tmp_path / "run"
    code = main(["workflow", "verify", "m.keras", "b", "--examples", str(DEFAULT_EXAMPLES),
                 "--out", str(run), "--verify-args", "--gate 'none"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--verify-args \"--gate 'none\": No closing quotation" in err
    assert "Traceback" not in err

    newline = tmp_path / "two\nlines.npz"
    shutil.copy(DEFAULT_EXAMPLES, newline)
    code = main(["workflow", "verify", str(model), str(bundle), "--examples", str(newline),
                 "--out", str(run)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"examples file {str(newline)!r}: control character 0x0a" in err, err
    assert not run.exists(), "nothing is written for a refused run"


def test_odd_names_run_through_the_workflow(odd_model: tuple[Path, Path], tmp_path: Path) -> None:
    model, bundle = odd_model
    cohort = tmp_path / "cohort {x}"
    cohort.mkdir()
    examples = read_examples(DEFAULT_EXAMPLES)
    files = []
    for index, name in enumerate(ODD_NAMES):
        rows = slice(index * ROWS, (index + 1) * ROWS)
        part = Examples(examples.features[rows], feature_names=examples.feature_names)
        files.append(write_examples(part, cohort / name))
    run = tmp_path / "run {v2}"
    args = ["workflow", "verify", str(model), str(bundle), "--examples", *map(str, files),
            "--out", str(run), "--cores", "4"]
    assert main(args) == 0

    ids = shard_ids(ODD_NAMES)
    merged = json.loads((run / layout.COHORT_JSON).read_text())
    assert [item["input"] for item in merged["inputs"]] == [str(f) for f in files]
    assert merged["rows"] == ROWS * len(files)
    assert merged["model"]["path"] == str(model), merged["model"]
    reports = [run / layout.SHARD_REPORT.format(shard=shard_id) for shard_id in ids]
    assert all(report.is_file() for report in reports)
    links = run / "inputs" / "examples"
    assert {os.readlink(links / shard_id) for shard_id in ids} == {str(f) for f in files}

    # Done: a rerun redoes nothing (the links, left as they were, change no time).
    times = [report.stat().st_mtime_ns for report in reports]
    assert main(args) == 0
    assert [report.stat().st_mtime_ns for report in reports] == times
