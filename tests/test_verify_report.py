"""Reports without models: the JSON schema and its documentation, the table, the HTML
report and its plots, merging, and the command line's usage errors."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from kerasport.verify import command
from kerasport.verify.compare import Comparison
from kerasport.verify.invariance import Invariance
from kerasport.verify.merge import merge_reports
from kerasport.verify.report import percent_identical, render_table, report_json_text
from kerasport.verify.result import (
    BackendResult,
    BundleInfo,
    InputInfo,
    ModelInfo,
    ReferenceInfo,
    Report,
)
from kerasport.verify.schema import REPORT_SCHEMA
from kerasport.verify.settings import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "verify-report-schema.md"


def make_report(seed: int, rows: int = 4000, settings: Settings | None = None, **kw) -> Report:
    """A report over synthetic outputs: 1-ULP noise, a few arg-max changes, one NaN row."""
    settings = settings or Settings()
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(rows, 3)) * 5
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref = (ref / ref.sum(1, keepdims=True)).astype(np.float32)
    cand = ref.copy()
    noisy = rng.random(ref.shape) < 0.2
    cand[noisy] = np.nextafter(ref[noisy], np.float32(1))
    if kw.get("failing", True):
        cand[:3] = np.roll(cand[:3], 1, axis=1)
        cand[5, ref[5].argmax()] = np.nan  # NaN wins np.argmax: no arg-max change
    name = f"cohort{seed}.npy"
    comp = Comparison(settings)
    comp.update(ref, cand, rng.random(rows) < 0.5, np.arange(rows), name)
    inv = Invariance(256, [1, 7, 128], 0, 0, 0, True, 0)
    return Report(
        settings=settings,
        model=ModelInfo("m.keras", "a" * 64, 20, 3),
        bundle=BundleInfo("bundle", "m.keras", "a" * 64, True, 20, 3),
        reference=ReferenceInfo("tensorflow", "3.15.1", 128, "in-process", 1.0),
        inputs=[InputInfo(name, rows, hashlib.sha256(name.encode()).hexdigest())],
        backends={"onnxruntime": BackendResult("onnxruntime", comp, inv, "b" * 64, 0.5)},
    )


def test_report_json_validates_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator
    validator.check_schema(REPORT_SCHEMA)
    for report in (make_report(1), make_report(2, failing=False)):
        data = json.loads(report_json_text(report))
        validator(REPORT_SCHEMA).validate(data)
    broken = json.loads(report_json_text(make_report(1)))
    del broken["backends"]["onnxruntime"]["max_ulp"]
    with pytest.raises(jsonschema.ValidationError, match="max_ulp"):
        validator(REPORT_SCHEMA).validate(broken)


def documented_fields() -> dict[str, set[str]]:
    """Field names of each table in the doc, keyed by its section heading."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = set()
        elif current and (m := re.match(r"\| `([a-z0-9_]+)` \|", line)):
            sections[current].add(m.group(1))
    return {k: v for k, v in sections.items() if v}


def test_the_schema_doc_lists_exactly_the_fields_a_report_has() -> None:
    data = json.loads(report_json_text(make_report(1)))
    backend = data["backends"]["onnxruntime"]
    actual = {
        "Top level": data,
        "`model`": data["model"],
        "`bundle`": data["bundle"],
        "`reference`": data["reference"],
        "`inputs[]`": data["inputs"][0],
        "`settings`": data["settings"],
        "`verdict`": data["verdict"],
        "`backends.<name>`": backend,
        "`invalid.<side>`": backend["invalid"]["candidate"],
        "`ulp_histogram`": backend["ulp_histogram"],
        "`dp_vs_p`, `gq_diff_vs_gq`": backend["dp_vs_p"],
        "`worst_rows[]`": backend["worst_rows"][0],
        "`invariance`": backend["invariance"],
    }
    documented = documented_fields()
    assert set(documented) == set(actual)
    for section, obj in actual.items():
        assert documented[section] == set(obj), section
    # The schema requires the same fields the doc lists for a backend entry.
    backend_schema = REPORT_SCHEMA["properties"]["backends"]["additionalProperties"]
    assert set(backend_schema["required"]) == documented["`backends.<name>`"]
    assert set(REPORT_SCHEMA["required"]) == documented["Top level"]


def test_table_is_shaped_like_pr_1089s_and_names_the_failures() -> None:
    text = render_table(make_report(1))
    header = text.splitlines()[0]
    for column in (
        "examples compared",
        "genotype-call (arg-max) changes",
        "bit-identical probabilities",
        "max prob diff",
        "max GQ (phred) diff",
    ):
        assert column in header
    assert "| onnxruntime | 4,000 | 3 |" in text
    assert "arg-max changes: cohort1.npy:0, cohort1.npy:1, cohort1.npy:2" in text
    assert "verdict: FAIL" in text and "1 candidate row(s) with unusable" in text
    assert "verdict: PASS (4,000 rows)" in render_table(make_report(2, failing=False))


def test_percent_identical_rounds_down_like_the_pr() -> None:
    assert percent_identical(299222, 299227) == "99.9983% (5 rows differ)"
    assert percent_identical(10, 10) == "100.0000%"
    assert percent_identical(999999, 1000000).startswith("99.9999%")


def test_html_report_renders_the_three_plots_and_the_worst_rows() -> None:
    pytest.importorskip("matplotlib")
    from kerasport.verify.html import render_html

    report = make_report(1)
    page = render_html(report)
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    titles = [alt for alt, _ in images]
    assert [t.split(": ")[1].split(" (")[0] for t in titles] == [
        "ULP histogram",
        "|dp| against p",
        "GQ difference",
    ]
    for _, image in images:
        assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
    assert "Worst rows" in page and "cohort1.npy:0" in page
    assert page.count("<tr>") > 10


def test_merge_equals_the_report_of_the_union() -> None:
    a, b = make_report(1), make_report(2)
    merged = merge_reports([a, b], ["a.json", "b.json"])
    ca, cb, cm = (r.backends["onnxruntime"].comparison for r in (a, b, merged))
    assert cm.rows == ca.rows + cb.rows == merged.rows
    assert cm.argmax_changes == ca.argmax_changes + cb.argmax_changes == 6
    assert cm.max_ulp == max(ca.max_ulp, cb.max_ulp)
    assert (cm.ulp_histogram.counts == ca.ulp_histogram.counts + cb.ulp_histogram.counts).all()
    assert [r.input for r in cm.argmax_change_rows.ids] == ["cohort1.npy"] * 3 + ["cohort2.npy"] * 3
    assert merged.merged_from == ["a.json", "b.json"] and not merged.passed
    inv = merged.backends["onnxruntime"].invariance
    assert inv.rows == 512
    # Through JSON and back, the merged report is unchanged.
    again = Report.from_json(json.loads(report_json_text(merged)))
    assert report_json_text(again) == report_json_text(merged)


def test_merge_refuses_reports_that_do_not_add_up() -> None:
    from kerasport.errors import InputError

    a = make_report(1)
    other_gate = make_report(2, settings=Settings(snp_threshold=15))
    with pytest.raises(InputError, match="snp_threshold"):
        merge_reports([a, other_gate])
    strict = make_report(2, settings=Settings(max_ulp=3))
    with pytest.raises(InputError, match="--max-ulp"):
        merge_reports([a, strict])
    assert merge_reports([a, strict], max_ulp=5).settings.max_ulp == 5
    other_model = make_report(2)
    other_model.model = ModelInfo("n.keras", "c" * 64, 20, 3)
    with pytest.raises(InputError, match="models"):
        merge_reports([a, other_model])


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kerasport")
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["verify", *argv])
    return int(args.func(args))


def test_cli_merge_writes_a_total_and_exits_with_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for seed, failing in ((1, False), (2, False)):
        path = tmp_path / f"r{seed}.json"
        path.write_text(report_json_text(make_report(seed, failing=failing)))
        paths.append(str(path))
    total = tmp_path / "total.json"
    assert run_cli(["--merge", *paths, "--json", str(total)]) == 0
    data = json.loads(total.read_text())
    assert data["rows"] == 8000 and data["verdict"]["exit_code"] == 0
    assert "verdict: PASS (8,000 rows)" in capsys.readouterr().out
    # The same cohort judged with a tolerance it breaks fails.
    assert run_cli(["--merge", *paths, "--max-ulp", "0", "--quiet"]) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "kerasport-verify-report", "schema_version": 99}))
    assert run_cli(["--merge", paths[0], str(bad)]) == 2
    assert "schema version 99" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([]) == 2
    assert "give MODEL BUNDLE --examples" in capsys.readouterr().err
    assert run_cli(["m.keras", "--merge", "a.json"]) == 2
    assert run_cli(["m.keras", str(tmp_path), "--examples", "x.npy"]) == 2
    assert "manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--snp-threshold", "x"])
    assert exit_info.value.code == 2


def test_cli_checks_output_directories_before_verifying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        pytest.fail("the verification ran although its report could not be written")

    monkeypatch.setattr(command, "verify_bundle", never)
    monkeypatch.setattr(command, "merge_reports", never)
    for option in ("--json", "--html"):
        target = tmp_path / "missing" / "r.out"
        assert run_cli(["m.keras", "b", "--examples", "x.npy", option, str(target)]) == 2
        err = capsys.readouterr().err
        assert f"{option} {target}" in err and "does not exist" in err
        assert run_cli(["--merge", "a.json", option, str(tmp_path)]) == 2
        assert "is a directory" in capsys.readouterr().err


def test_cli_prints_the_table_before_writing_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r1.json"
    path.write_text(report_json_text(make_report(1, failing=False)))

    def full_disk(report: Report, target: str) -> None:
        raise OSError(28, "No space left on device", target)

    monkeypatch.setattr(command, "write_json", full_disk)
    assert run_cli(["--merge", str(path), "--json", str(tmp_path / "total.json")]) == 2
    out, err = capsys.readouterr()
    assert "verdict: PASS (4,000 rows)" in out and "No space left on device" in err


def test_a_failed_report_write_leaves_the_old_file_and_no_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kerasport.verify.report import write_html, write_json

    report = make_report(1, failing=False)
    target = tmp_path / "r.json"
    target.write_text("old")
    real_write_text = Path.write_text

    def cut_short(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real_write_text(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", cut_short)
    for write in (write_json, write_html):
        with pytest.raises(OSError, match="No space"):
            write(report, target)
        assert target.read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    monkeypatch.undo()
    write_json(report, target)
    assert json.loads(target.read_text())["rows"] == 4000


def test_batch_sizes_must_be_positive_integers(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("1,0", "1,x", ","):
        with pytest.raises(SystemExit):
            run_cli(["--batch-sizes", text])
        assert "--batch-sizes" in capsys.readouterr().err


def test_progress_without_tqdm_is_off_by_default_and_a_clear_error_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kerasport.errors import InputError
    from kerasport.verify import core

    monkeypatch.setattr(core, "progress_available", lambda: False)
    with pytest.raises(InputError, match="progress bar needs tqdm"):
        core.verify_bundle("m.keras", tmp_path, ["x.npy"], progress=True)
    asked: list[bool] = []

    def fake_verify(*args: object, progress: bool, **kwargs: object) -> Report:
        asked.append(progress)
        return make_report(1, failing=False)

    monkeypatch.setattr(command, "verify_bundle", fake_verify)
    monkeypatch.setattr(command, "progress_available", lambda: False)
    monkeypatch.setattr(command.sys.stderr, "isatty", lambda: True)
    assert run_cli(["m.keras", "b", "--examples", "x.npy", "--quiet"]) == 0
    assert asked == [False]  # a terminal, but no tqdm: no bar rather than an ImportError
