"""`kerasport verify` of classifiers that are not DeepVariant's: exported with `kerasport
export`, verified with no DeepVariant option, under each gate policy; and the default
gate of DeepVariant models (the embedded one, a DeepVariant-shaped one) kept.

The generic models are tiny Dense nets on 40 float features (2, 3 and 10 softmax classes,
a sigmoid and a linear head), left untrained: verify compares a bundle with its model,
whatever the weights. Examples are kept clear of decision edges (top two outputs, and the
confidence threshold, more than 1e-3 apart), so a rounding-sized difference between
Keras and ONNX Runtime cannot move a decision on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.cli import main
from kerasport.testing import clear_of_decision_edges, synthetic_examples, train_small_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FEATURES = 40
ROWS = 600
MARGIN = 1e-3
# name: (classes, head activation)
MODELS = {
    "softmax2": (2, "softmax"),
    "softmax3": (3, "softmax"),
    "softmax10": (10, "softmax"),
    "sigmoid4": (4, "sigmoid"),
    "linear3": (3, "linear"),
}


def build_model(path: Path, classes: int, head: str, seed: int) -> Path:
    from kerasport.quiet import quiet_import

    keras = quiet_import("keras")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(classes, activation=head),
        ]
    )
    model.save(path)
    return path


def keras_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model

    return keras_predict(load_keras_model(model), x)


def clear_rows(p: np.ndarray, head: str, thresholds: tuple[float, ...] = ()) -> np.ndarray:
    """Rows whose decisions (and confidence-gate answers) no rounding can move."""
    if head == "sigmoid":
        keep = (np.abs(p - 0.5) > MARGIN).all(axis=1)
    else:
        top2 = np.sort(p, axis=1)[:, -2:]
        keep = top2[:, 1] - top2[:, 0] > MARGIN
    for t in thresholds:
        keep &= np.abs(p.max(axis=1) - t) > MARGIN
    return keep


def cli(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Each generic model, exported through the CLI, with float examples clear of edges."""
    root = tmp_path_factory.mktemp("generic")
    rng = np.random.default_rng(TRAINING_SEED)
    out: dict[str, dict[str, Path]] = {}
    for i, (name, (classes, head)) in enumerate(MODELS.items()):
        model = build_model(root / f"{name}.keras", classes, head, TRAINING_SEED + i)
        bundle = root / f"{name}_bundle"
        assert main(["export", str(model), "-o", str(bundle)]) == 0
        x = (rng.normal(size=(4 * ROWS, FEATURES)) * 2).astype(np.float32)
        p = keras_outputs(model, x)
        thresholds = (0.9,) if name == "softmax3" else ()
        keep = clear_rows(p, head, thresholds)
        assert keep.sum() >= ROWS, name
        np.save(root / f"{name}.npy", x[keep][:ROWS])
        out[name] = {"model": model, "bundle": bundle, "x": root / f"{name}.npy"}
    return out


def validate(report: dict[str, object]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from kerasport.verify.schema import REPORT_SCHEMA

    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_a_generic_model_verifies_with_no_deepvariant_option(
    name: str, zoo: dict[str, dict[str, Path]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths, (classes, head) = zoo[name], MODELS[name]
    out = tmp_path / "r.json"
    code, text, err = cli(
        ["verify", paths["model"], paths["bundle"], "--examples", paths["x"], "--json", out],
        capsys,
    )
    assert code == 0, err + text
    report = json.loads(out.read_text())
    validate(report)
    assert report["settings"]["gate"] == "none"
    assert report["gate"]["policy"] == "none" and report["gate"]["parameters"] == {}
    assert report["gate"]["chosen_by"].startswith("default: ")
    assert report["bundle"]["head"] == head and report["bundle"]["output_shape"] == [classes]
    entry = report["backends"]["onnxruntime"]
    assert entry["rows"] == entry["decisions"] == ROWS and entry["positions"] == []
    assert entry["argmax_changes"] == entry["gate_flips"] == 0
    assert entry["gate_groups"] == {} and entry["gate_accepted_candidate"] == ROWS
    assert entry["invalid"]["candidate"]["invalid_rows"] == 0
    assert entry["max_abs_diff"] < 1e-4
    assert "gate: none (default: " in text and f"PASS ({ROWS:,} rows)" in text
    if head == "linear":
        assert entry["gq_rows"] == 0


@pytest.mark.slow
def test_the_issue_s_integer_model_without_is_snp_verifies(
    zoo: dict[str, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case of issue 16: 40 integer features 0-100, 3 classes; column 12 holds 50, so
    it is no is_snp flag and the default gate is none, not an exit 2."""
    paths = zoo["softmax3"]
    x = synthetic_examples(4 * ROWS, FEATURES, seed=5)[0]
    x[:, 12] = 50
    keep = clear_rows(keras_outputs(paths["model"], x), "softmax")
    path = tmp_path / "ints.npy"
    np.save(path, x[keep][:ROWS])
    out = tmp_path / "r.json"
    code, _, err = cli(
        ["verify", paths["model"], paths["bundle"], "--examples", path, "--json", out], capsys
    )
    assert code == 0, err
    gate = json.loads(out.read_text())["gate"]
    assert gate["policy"] == "none" and "holds 50" in gate["chosen_by"]


@pytest.mark.slow
def test_a_confidence_gate_counts_the_calls_it_accepts(
    zoo: dict[str, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = zoo["softmax3"]
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    argv = ["verify", paths["model"], paths["bundle"], "--examples", paths["x"]]
    if importlib.util.find_spec("matplotlib") is not None:
        argv += ["--html", str(html)]
    code, text, err = cli([*argv, "--gate", "confidence:0.9", "--json", out], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    validate(report)
    assert report["settings"]["gate"] == "confidence:0.9"
    assert report["gate"] == {
        "policy": "confidence", "parameters": {"threshold": 0.9},
        "chosen_by": "given (--gate confidence:0.9)", "undecided": False,
    }
    p = keras_outputs(paths["model"], np.load(paths["x"]))
    accepted = int((p.max(axis=1) >= np.float32(0.9)).sum())
    assert 0 < accepted < ROWS  # both sides of the gate are exercised
    entry = report["backends"]["onnxruntime"]
    assert entry["gate_accepted_reference"] == entry["gate_accepted_candidate"] == accepted
    assert entry["gate_flips"] == 0
    line = "gate: confidence:0.9 (given (--gate confidence:0.9)): accept a call when max p >= 0.9"
    assert line in text
    assert f"gate accepts {accepted:,} rows" in text
    if html.exists():  # matplotlib installed
        page = html.read_text()
        assert "confidence:0.9" in page and "max p &gt;= 0.9" in page


@pytest.mark.slow
def test_reports_of_one_gate_merge_and_reports_of_two_are_refused(
    zoo: dict[str, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = zoo["softmax3"]
    x = np.load(paths["x"])
    halves = [tmp_path / "a.npy", tmp_path / "b.npy"]
    np.save(halves[0], x[:256])
    np.save(halves[1], x[256:])
    base = ["verify", paths["model"], paths["bundle"], "--quiet", "--examples"]
    reports = {}
    for gate in ("none", "confidence:0.9"):
        for i, half in enumerate(halves):
            reports[gate, i] = tmp_path / f"{gate}-{i}.json"
            code, _, err = cli([*base, half, "--gate", gate, "--json", reports[gate, i]], capsys)
            assert code == 0, err
    single = tmp_path / "single.json"
    assert cli([*base, *halves, "--gate", "confidence:0.9", "--json", single], capsys)[0] == 0
    merged = tmp_path / "merged.json"
    parts = [reports["confidence:0.9", 0], reports["confidence:0.9", 1]]
    code, _, err = cli(["verify", "--merge", *parts, "--json", merged], capsys)
    assert code == 0, err
    one, two = (json.loads(p.read_text()) for p in (single, merged))
    assert two["gate"]["policy"] == "confidence" and two["settings"]["gate"] == "confidence:0.9"
    for key in ("rows", "decisions", "argmax_changes", "gate_flips", "gate_accepted_reference",
                "bit_identical_rows", "max_ulp", "ulp_histogram"):
        assert one["backends"]["onnxruntime"][key] == two["backends"]["onnxruntime"][key], key
    mixed = [reports["none", 0], reports["confidence:0.9", 1]]
    code, _, err = cli(["verify", "--merge", *mixed], capsys)
    assert code == 2
    assert "different gate policies" in err
    assert f"{mixed[0]}: none" in err and f"{mixed[1]}: confidence:0.9" in err


@pytest.mark.slow
def test_gates_that_do_not_apply_are_exit_2(
    zoo: dict[str, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    linear = zoo["linear3"]
    argv = ["verify", linear["model"], linear["bundle"], "--examples", linear["x"]]
    code, _, err = cli([*argv, "--gate", "confidence:0.5"], capsys)
    assert code == 2 and "head is linear" in err and "--gate none" in err
    # DeepVariant's gate asked for a model without an is_snp flag: today's message.
    soft = zoo["softmax3"]
    argv = ["verify", soft["model"], soft["bundle"], "--examples", soft["x"]]
    code, _, err = cli([*argv, "--gate", "deepvariant"], capsys)
    assert code == 2 and "non-integer value" in err
    code, _, err = cli([*argv, "--gate", "none", "--snp-threshold", "10"], capsys)
    assert code == 2 and "--snp-threshold" in err and "--gate none" in err


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("deep", "'deep' is not a gate policy; choose deepvariant, confidence:T"),
        ("confidence", "'confidence' is not a gate policy"),
        ("confidence:", "threshold T must be a number in [0, 1]"),
        ("confidence:1.5", "threshold T must be a number in [0, 1]"),
        ("confidence:-0.1", "threshold T must be a number in [0, 1]"),
        ("confidence:nan", "threshold T must be a number in [0, 1]"),
        ("confidence:high", "threshold T must be a number in [0, 1]"),
        ("", "is not a gate policy"),
    ],
)
def test_a_bad_gate_is_exit_2_naming_the_choices(
    value: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "m.keras", "b", "--examples", "x.npy", "--gate", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --gate:" in err and problem in err, err


def test_the_workflow_passes_a_gate_to_every_verify_job() -> None:
    from kerasport.workflow.config import WorkflowConfigError
    from kerasport.workflow.options import verify_options

    assert verify_options("--gate confidence:0.9 --backend all") == (
        "--gate", "confidence:0.9", "--backend", "all",
    )
    with pytest.raises(WorkflowConfigError, match=r"--gate.*not a gate policy"):
        verify_options("--gate sometimes")


# -- DeepVariant's gate stays the default for DeepVariant models -----------------------------


@pytest.fixture(scope="module")
def dv_shaped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A DeepVariant-shaped model without small_model_info.json (F=20, 3 softmax classes)."""
    from kerasport.export import export_bundle
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model

    root = tmp_path_factory.mktemp("dv_shaped")
    model = train_small_model(root / "model.keras", 20, (8,), seed=TRAINING_SEED, rows=2048,
                              epochs=2, learning_rate=3e-3)
    candidates = synthetic_examples(2048, 20, seed=3)[0]
    p = keras_predict(load_keras_model(model), candidates)
    good = candidates[clear_of_decision_edges(p, candidates[:, 12] == 1)][:512]
    np.save(root / "good.npy", good)
    return {"root": root, "model": model, "bundle": export_bundle(model, root / "bundle"),
            "good": root / "good.npy"}


@pytest.mark.slow
def test_a_deepvariant_shaped_model_gets_its_gate_decided_from_the_first_chunk(
    dv_shaped: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = dv_shaped["root"] / "r.json"
    argv = ["verify", dv_shaped["model"], dv_shaped["bundle"], "--examples", dv_shaped["good"]]
    code, text, err = cli([*argv, "--json", out], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["gate"]["policy"] == "deepvariant"
    assert report["gate"]["parameters"] == {
        "snp_threshold": 20, "indel_threshold": 28, "is_snp_column": 12,
    }
    assert "decided from the first chunk" in report["gate"]["chosen_by"]
    groups = report["backends"]["onnxruntime"]["gate_groups"]
    flags = np.load(dv_shaped["good"])[:, 12]
    assert groups == {"snp": {"rows": int(flags.sum()), "gate_flips": 0},
                      "indel": {"rows": int((flags == 0).sum()), "gate_flips": 0}}
    from kerasport.verify.report import COLUMNS

    assert text.splitlines()[0] == "| " + " | ".join(COLUMNS) + " |"  # PR 1089's table
    assert "gate: deepvariant (default: a DeepVariant-shaped model" in text


@pytest.mark.slow
def test_a_guessed_deepvariant_gate_says_how_to_leave_it(
    dv_shaped: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Float features with a 0/1 column 12 look like DeepVariant's: the integer check then
    fails with a word on the gate, and --gate none verifies them."""
    x = np.load(dv_shaped["good"]).astype(np.float32)
    x[:, 3] += 0.25
    path = tmp_path / "floats.npy"
    np.save(path, x)
    argv = ["verify", dv_shaped["model"], dv_shaped["bundle"], "--examples", path]
    code, _, err = cli(argv, capsys)
    assert code == 2 and "non-integer value" in err
    assert "verify chose DeepVariant's gate by default" in err and "--gate none" in err
    code, _, err = cli([*argv, "--gate", "none", "--quiet"], capsys)
    assert code in (0, 1), err  # verified (the shifted rows may sit on a decision edge)


@pytest.mark.slow
def test_an_empty_shard_takes_the_cohort_s_gate_when_merged(
    dv_shaped: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 20), dtype=np.int64))
    base = ["verify", dv_shaped["model"], dv_shaped["bundle"], "--quiet", "--examples"]
    full, none = tmp_path / "full.json", tmp_path / "empty.json"
    assert cli([*base, dv_shaped["good"], "--json", full], capsys)[0] == 0
    assert cli([*base, empty, "--allow-empty", "--json", none], capsys)[0] == 0
    shard = json.loads(none.read_text())
    assert shard["gate"]["undecided"] and shard["settings"]["gate"] == "none"
    merged = tmp_path / "merged.json"
    code, _, err = cli(["verify", "--merge", full, none, "--json", merged], capsys)
    assert code == 0, err
    total = json.loads(merged.read_text())
    assert total["settings"]["gate"] == "deepvariant" and not total["gate"]["undecided"]
    assert total["rows"] == 512


@pytest.mark.slow
def test_the_embedded_model_keeps_deepvariant_s_gate_and_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The embedded model records DeepVariant's feature names: its gate by default, and the
    gate's figures are DeepVariant's, recomputed here from Keras' own outputs."""
    from kerasport.assets import DEFAULT_EXAMPLES, DEFAULT_MODEL
    from kerasport.examples import read_examples
    from kerasport.verify.gq import gate_passes, genotype_quality

    bundle = tmp_path / "bundle"
    assert main(["export", str(DEFAULT_MODEL), "-o", str(bundle)]) == 0
    capsys.readouterr()
    out = tmp_path / "r.json"
    code, text, err = cli(
        ["verify", DEFAULT_MODEL, bundle, "--examples", DEFAULT_EXAMPLES, "--json", out], capsys
    )
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["gate"]["policy"] == "deepvariant"
    assert "feature names" in report["gate"]["chosen_by"]
    x = read_examples(DEFAULT_EXAMPLES).features
    p = keras_outputs(Path(DEFAULT_MODEL), x)
    accepted = gate_passes(genotype_quality(p), x[:, 12] == 1, 20, 28)
    entry = report["backends"]["onnxruntime"]
    assert entry["gate_accepted_reference"] == int(accepted.sum())
    assert entry["gate_groups"]["snp"]["rows"] == int((x[:, 12] == 1).sum())
    assert entry["rows"] == len(x) and entry["argmax_changes"] == 0
    header = text.splitlines()[0]
    assert "gate flips (SNP / indel)" in header and "| onnxruntime |" in text
