"""`kerasport verify` on real (tiny) models and bundles: it passes a faithful bundle, and it
fails, with exit 1 or a clear exit-2 message, the bundles it must catch.

The models are DeepVariant-shaped MLPs, F=20, hidden (16, 16), 3-way softmax, trained for
a second so that their calls are confident and the GQ gate accepts some of them. Bundles
are "nudged" by editing model.onnx weights a given number of ULPs and re-signing the
artifact's sha256 in the manifest, as an attacker or a buggy compiler would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAINING_SEED

from kerasport.cli import main as verify_main
from kerasport.errors import BundleError, InputError
from kerasport.manifest import sha256_file
from kerasport.testing import clear_of_decision_edges, synthetic_examples, train_small_model
from kerasport.verify import Comparison, Settings, verify_bundle
from kerasport.verify.report import report_json_text
from kerasport.verify.result import Report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

F = 20
ROWS = 4096  # per examples file; a multiple of 128, so splitting never changes batches


def examples(rows: int, seed: int, features: int = F) -> np.ndarray:
    return synthetic_examples(rows, features, seed)[0]


def make_model(path: Path, features: int = F, seed: int = 0, train: bool = True) -> Path:
    return train_small_model(
        path, features, (16, 16), seed=TRAINING_SEED + seed, rows=8192,
        epochs=6 if train else 0, learning_rate=3e-3,
    )


def examples_with_margins(model: Path, rows: int, seed: int) -> np.ndarray:
    """`rows` synthetic rows on which no rounding-sized change can move a decision.

    Where a freshly trained model puts its rows depends on the CPU it trained on; keeping
    only rows clear of every decision edge makes "a few ULPs move no decision" hold on any
    machine and for any training seed.
    """
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model

    candidates = examples(4 * rows, seed)
    p = keras_predict(load_keras_model(model), candidates)
    keep = clear_of_decision_edges(p, candidates[:, 12] == 1)
    assert keep.sum() >= rows, "too few rows clear of the decision edges"
    return candidates[keep][:rows]


def nudge_bundle(
    src: Path, dst: Path, ulps: int, select: Callable[[np.ndarray], np.ndarray | None]
) -> Path:
    """Copy a bundle, move selected float32 weights `ulps` steps away from zero, re-sign."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(src, dst)
    proto = onnx.load(dst / "model.onnx")
    changed = 0
    for init in proto.graph.initializer:
        weights = numpy_helper.to_array(init)
        mask = select(weights) if weights.dtype == np.float32 else None
        if mask is None:
            continue
        bits = weights.view(np.int32).copy()
        bits[mask] += ulps  # sign-magnitude: +k moves |w| up by k ULPs
        init.CopyFrom(numpy_helper.from_array(bits.view(np.float32), init.name))
        changed += int(mask.sum())
    assert changed, "nothing was nudged"
    onnx.save(proto, dst / "model.onnx")
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["artifacts"]["onnxruntime"]["sha256"] = sha256_file(dst / "model.onnx")
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return dst


def every_weight(weights: np.ndarray) -> np.ndarray:
    return np.ones(weights.shape, dtype=bool)


def last_layer_class0(weights: np.ndarray) -> np.ndarray | None:
    """The output layer's kernel column of class REF: its logit alone grows."""
    if weights.ndim != 2 or weights.shape[1] != 3:
        return None
    mask = np.zeros(weights.shape, dtype=bool)
    mask[:, 0] = True
    return mask


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from kerasport.export import export_bundle

    root = tmp_path_factory.mktemp("verify")
    paths = {"root": root, "model": make_model(root / "model.keras")}
    paths["bundle"] = export_bundle(paths["model"], root / "bundle")
    for name, seed in (("a", 10), ("b", 11)):
        paths[name] = root / f"{name}.npy"
        np.save(paths[name], examples_with_margins(paths["model"], ROWS, seed))
    paths["few_ulp"] = nudge_bundle(paths["bundle"], root / "few_ulp", 4, every_weight)
    paths["hard"] = nudge_bundle(paths["bundle"], root / "hard", 1 << 21, last_layer_class0)
    return paths


@pytest.fixture(scope="module")
def faithful(tiny: dict[str, Path]) -> Report:
    return verify_bundle(tiny["model"], tiny["bundle"], [tiny["a"], tiny["b"]])


def test_a_faithful_bundle_passes(faithful: Report) -> None:
    comp = faithful.backends["onnxruntime"].comparison
    assert faithful.rows == comp.rows == 2 * ROWS
    assert comp.argmax_changes == 0 and comp.gate_flips == 0
    assert comp.gate_accepted_reference > 50  # the gate is exercised, not vacuous
    assert comp.max_abs_diff < 1e-5
    inv = faithful.backends["onnxruntime"].invariance
    assert inv.rows == 4096 and inv.repeat_bit_identical
    assert faithful.reference.process == "in-process"
    assert faithful.passed and faithful.exit_code == 0


def test_a_few_ulp_nudge_shows_in_ulps_but_keeps_every_decision(
    tiny: dict[str, Path], faithful: Report
) -> None:
    from kerasport import runtime

    x = np.load(tiny["a"])
    before = runtime.load(tiny["bundle"]).predict(x)
    after = runtime.load(tiny["few_ulp"]).predict(x)
    direct = Comparison()
    direct.update(before, after, x[:, 12], np.arange(len(x)))
    assert direct.max_ulp > 0 and direct.bit_identical_fraction < 1
    assert direct.argmax_changes == 0

    report = verify_bundle(tiny["model"], tiny["few_ulp"], [tiny["a"], tiny["b"]])
    comp = report.backends["onnxruntime"].comparison
    base = faithful.backends["onnxruntime"].comparison
    assert comp.max_ulp > 0
    assert (comp.ulp_histogram.counts != base.ulp_histogram.counts).any()
    assert comp.argmax_changes == 0 and comp.gate_flips == 0 and report.passed
    # The same bundle fails once a ULP budget is asked for.
    strict = verify_bundle(
        tiny["model"], tiny["few_ulp"], [tiny["a"]], settings=Settings(max_ulp=0)
    )
    assert strict.exit_code == 1
    assert any("--max-ulp 0" in r for r in strict.reasons()["onnxruntime"])


def test_a_hard_nudge_changes_genotypes_and_gate_and_exits_1(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from kerasport.verify.schema import REPORT_SCHEMA

    out = tiny["root"] / "hard.json"
    html = tiny["root"] / "hard.html"
    argv = ["verify", str(tiny["model"]), str(tiny["hard"]), "--examples", str(tiny["a"])]
    status = verify_main([*argv, str(tiny["b"]), "--json", str(out), "--html", str(html)])
    assert status == 1
    text = capsys.readouterr().out
    assert "verdict: FAIL" in text and "arg-max (genotype) change" in text

    data = json.loads(out.read_text())
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(data)
    entry = data["backends"]["onnxruntime"]
    assert entry["argmax_changes"] > 0 and entry["gate_flips"] > 0
    assert entry["max_ulp"] > 0 and entry["bit_identical_fraction"] < 1
    assert len(entry["argmax_change_rows"]) == min(entry["argmax_changes"], 1000)
    first = entry["argmax_change_rows"][0]
    assert first["input"] == str(tiny["a"])
    # The listed row really changes: recompute it from the files.
    from kerasport import runtime
    from kerasport.export.check import keras_predict
    from kerasport.export.keras_model import load_keras_model

    row = np.load(tiny["a"])[first["row"] : first["row"] + 1]
    keras_p = keras_predict(load_keras_model(tiny["model"]), row)
    bundle_p = runtime.load(tiny["hard"]).predict(row)
    assert keras_p.argmax() != bundle_p.argmax()
    assert data["verdict"] == {
        "passed": False,
        "exit_code": 1,
        "reasons": data["verdict"]["reasons"],
    }

    page = html.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3
    assert f"{tiny['a']}:{first['row']}" in page  # worst rows listed with their ids


def test_a_bundle_of_another_width_is_refused_clearly(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from kerasport.export import export_bundle

    wide = make_model(tiny["root"] / "wide.keras", features=24, train=False)
    wide_bundle = export_bundle(wide, tiny["root"] / "wide_bundle")
    with pytest.raises(BundleError, match=r"takes 20 features .* but bundle .* takes 24"):
        verify_bundle(tiny["model"], wide_bundle, [tiny["a"]])
    argv = ["verify", str(tiny["model"]), str(wide_bundle), "--examples", str(tiny["a"])]
    assert verify_main(argv) == 2
    assert "does not match the model" in capsys.readouterr().err
    # Examples of the wrong width are an input error too.
    wide_x = tiny["root"] / "wide.npy"
    np.save(wide_x, examples(256, 3, features=24))
    with pytest.raises(InputError, match="24 features per row"):
        verify_bundle(tiny["model"], tiny["bundle"], [wide_x])


def test_a_bundle_of_other_weights_is_refused_unless_allowed(tiny: dict[str, Path]) -> None:
    from kerasport.export import export_bundle

    other = make_model(tiny["root"] / "other.keras", seed=5, train=False)
    other_bundle = export_bundle(other, tiny["root"] / "other_bundle")
    with pytest.raises(BundleError, match=r"is not the model bundle .* was exported from"):
        verify_bundle(tiny["model"], other_bundle, [tiny["a"]])
    report = verify_bundle(tiny["model"], other_bundle, [tiny["a"]], allow_source_mismatch=True)
    assert not report.bundle.source_matches and report.warnings
    assert report.backends["onnxruntime"].comparison.argmax_changes > 0
    assert report.exit_code == 1


def test_is_snp_column_and_inputs_are_checked(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", str(tiny["model"]), str(tiny["bundle"]), "--examples", str(tiny["a"])]
    assert verify_main([*argv, "--is-snp-column", "4"]) == 2
    assert "feature column 4 holds" in capsys.readouterr().err
    assert verify_main([*argv, "--is-snp-column", "20"]) == 2
    assert "outside the 20 features" in capsys.readouterr().err
    assert verify_main([*argv, "--backend", "tvm"]) == 2
    assert "cannot be served on tvm" in capsys.readouterr().err
    missing = ["verify", str(tiny["model"]), str(tiny["bundle"]), "--examples", "nope.npy"]
    assert verify_main(missing) == 2
    assert "nope.npy" in capsys.readouterr().err


def test_verify_without_progress_needs_no_tqdm(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    report = verify_bundle(
        tiny["model"], tiny["bundle"], [tiny["a"]], settings=Settings(invariance_rows=0)
    )
    assert report.passed


def test_disabling_a_variant_type_removes_its_gate_flips(tiny: dict[str, Path]) -> None:
    both = verify_bundle(tiny["model"], tiny["hard"], [tiny["a"]])
    snp_only = verify_bundle(
        tiny["model"], tiny["hard"], [tiny["a"]], settings=Settings(indel_threshold=-1)
    )
    a, b = both.backends["onnxruntime"].comparison, snp_only.backends["onnxruntime"].comparison
    assert b.gate_flips_indel == 0 and b.gate_flips_snp == a.gate_flips_snp


def test_cohort_reports_merge_into_the_single_pass_report(
    tiny: dict[str, Path], faithful: Report
) -> None:
    from kerasport.verify import merge_reports

    parts = [verify_bundle(tiny["model"], tiny["bundle"], [tiny[n]]) for n in ("a", "b")]
    merged = merge_reports(parts)
    one, two = (
        json.loads(report_json_text(r))["backends"]["onnxruntime"] for r in (faithful, merged)
    )
    for entry in (one, two):
        entry.pop("seconds")
        entry.pop("invariance")  # the single pass checks only the first file's rows
        for key in ("sum_abs_diff", "mean_abs_diff", "sum_gq_diff", "mean_gq_diff"):
            entry[key] = pytest.approx(entry[key], rel=1e-9)
    assert one == two
    assert merged.rows == faithful.rows and merged.passed == faithful.passed


def test_the_reference_runs_the_same_in_a_subprocess(tiny: dict[str, Path]) -> None:
    inside = verify_bundle(
        tiny["model"], tiny["bundle"], [tiny["a"]], settings=Settings(invariance_rows=0)
    )
    child = verify_bundle(
        tiny["model"],
        tiny["bundle"],
        [tiny["a"]],
        reference_process="subprocess",
        settings=Settings(invariance_rows=0),
    )
    assert child.reference.process == "subprocess"
    a, b = (json.loads(report_json_text(r))["backends"]["onnxruntime"] for r in (inside, child))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_a_missing_jax_is_a_clear_error(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from kerasport.verify.reference import ReferenceModelError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "jax" else real_find_spec(name, *args),
    )
    with pytest.raises(ReferenceModelError, match=r"needs the jax package.*pip install"):
        verify_bundle(tiny["model"], tiny["bundle"], [tiny["a"]], reference_backend="jax")


def test_the_reference_runs_on_jax_as_deepvariant_r1_10_does(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("jax")
    argv = ["verify", str(tiny["model"]), str(tiny["bundle"]), "--examples", str(tiny["a"])]
    assert verify_main([*argv, "--reference-backend", "jax", "--backend", "all"]) == 0
    assert "on Keras" in capsys.readouterr().out
    report = verify_bundle(
        tiny["model"], tiny["bundle"], [tiny["a"]], reference_backend="jax", progress=True
    )
    assert (report.reference.backend, report.reference.process) == ("jax", "subprocess")
    assert report.passed
    assert "rows" in capsys.readouterr().err  # the progress bar
