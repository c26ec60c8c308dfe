"""The comparator and the invariance checks on per-position outputs (N, H, W, C), and on
every head kind, without any model: decisions per pixel, listed with their positions."""

from __future__ import annotations

import numpy as np
import pytest

from kerasport.verify.compare import Comparison
from kerasport.verify.invariance import check_invariance
from kerasport.verify.policies import ConfidenceGate, NoGate
from kerasport.verify.result import BackendResult, judge
from kerasport.verify.rows import RowId
from kerasport.verify.settings import Settings

N, H, W, C = 6, 4, 5, 3


def pixel_softmax(rows: int, seed: int, scale: float = 4.0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(rows, H, W, C)) * scale
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def generic(gate: str = "none", **kw: object) -> Settings:
    return Settings(gate=gate, **kw)  # type: ignore[arg-type]


def test_identical_pixel_outputs_compare_every_element() -> None:
    ref = pixel_softmax(N, 0)
    comp = Comparison(generic())
    comp.update(ref, ref.copy(), None, np.arange(N), "tiles.npy")
    assert (comp.rows, comp.decisions) == (N, N * H * W)
    assert (comp.positions, comp.num_classes) == ((H, W), C)
    assert comp.compared_values == N * H * W * C
    assert comp.bit_identical_rows == N * H * W and comp.bit_identical_fraction == 1.0
    assert comp.argmax_changes == comp.gate_flips == comp.max_ulp == 0
    assert comp.gate_accepted_reference == N * H * W  # no gate: every call is taken
    assert judge(BackendResult("x", comp), comp.settings) == []


def test_a_moved_pixel_is_listed_by_row_and_position() -> None:
    ref = pixel_softmax(N, 1)
    cand = ref.copy()
    moved = [(2, 1, 3), (4, 0, 0), (4, 3, 4)]
    for row, y, x in moved:
        cand[row, y, x] = np.roll(ref[row, y, x], 1)  # the arg-max moves to another class
    cand[5, 2, 2, 0] = np.nextafter(ref[5, 2, 2, 0], np.float32(1))  # 1 ULP, same decision
    comp = Comparison(generic(list_rows=10))
    comp.update(ref, cand, None, np.arange(100, 100 + N), "tiles.npy")
    assert comp.argmax_changes == 3
    assert comp.argmax_change_rows.ids == [RowId("tiles.npy", 100 + r, (y, x)) for r, y, x in moved]
    assert comp.bit_identical_rows == N * H * W - 4
    assert comp.max_ulp > 1 and comp.ulp_histogram.counts[1] >= 1
    worst = {w.id for w in comp.worst}
    assert {RowId("tiles.npy", 100 + r, (y, x)) for r, y, x in moved} <= worst
    data = comp.to_json()
    assert data["argmax_change_rows"][0] == {"input": "tiles.npy", "row": 102, "position": [1, 3]}
    assert data["positions"] == [H, W] and data["decisions"] == N * H * W
    assert any("3 arg-max change" in r for r in judge(BackendResult("x", comp), comp.settings))


def test_positions_compare_as_their_flattened_units() -> None:
    """(N, H, W, C) is compared as (N*H*W, C) units: every count agrees with the flat pass."""
    rng = np.random.default_rng(2)
    ref = pixel_softmax(N, 2)
    cand = ref.copy()
    noisy = rng.random(ref.shape) < 0.3
    cand[noisy] = np.nextafter(ref[noisy], np.float32(1))
    cand[0, 0, 0] = cand[0, 0, 0, ::-1]
    settings = generic(gate="confidence:0.6", worst_rows=5)
    shaped, flat = Comparison(settings), Comparison(settings)
    shaped.update(ref, cand, None, np.arange(N), "f")
    flat.update(ref.reshape(-1, C), cand.reshape(-1, C), None, np.arange(N * H * W), "f")
    a, b = shaped.to_json(), flat.to_json()
    for entry in (a, b):
        for key in ("rows", "positions", "argmax_change_rows", "gate_flip_rows", "worst_rows",
                    "invalid"):
            entry.pop(key)
    assert a == b


def test_chunks_of_pixel_rows_merge_into_the_single_pass() -> None:
    rng = np.random.default_rng(3)
    ref = pixel_softmax(40, 3)
    cand = ref.copy()
    noisy = rng.random(ref.shape) < 0.2
    cand[noisy] = np.nextafter(ref[noisy], np.float32(1))
    flip = rng.random(ref.shape[:-1]) < 0.02
    cand[flip] = cand[flip][:, ::-1]
    settings = generic(gate="confidence:0.8", list_rows=7, worst_rows=9)
    whole = Comparison(settings)
    whole.update(ref, cand, None, np.arange(40), "f")
    merged = Comparison(settings)
    for start, stop in ((0, 13), (13, 14), (14, 40)):
        part = Comparison(settings)
        part.update(ref[start:stop], cand[start:stop], None, np.arange(start, stop), "f")
        merged.merge(part)
    one, two = whole.to_json(), merged.to_json()
    for key in ("sum_abs_diff", "mean_abs_diff", "sum_gq_diff", "mean_gq_diff"):
        assert one.pop(key) == pytest.approx(two.pop(key), rel=1e-12)
    assert one == two
    again = Comparison.from_json(whole.to_json(), settings)
    assert again.to_json() == whole.to_json()


def test_a_sigmoid_head_decides_each_class_at_one_half_and_need_not_sum_to_1() -> None:
    ref = np.array([[0.9, 0.8, 0.1], [0.2, 0.6, 0.7], [0.49, 0.51, 0.3]], dtype=np.float32)
    cand = ref.copy()
    cand[2] = [0.51, 0.51, 0.3]  # class 0 crosses 0.5; the arg-max (class 1 / 0 tie) aside
    comp = Comparison(generic(), head="sigmoid")
    comp.update(ref, cand, None, np.arange(3), "s")
    assert comp.argmax_changes == 1 and comp.argmax_change_rows.ids == [RowId("s", 2)]
    assert comp.candidate_validity.invalid_rows == 0  # sums of 1.8 are fine for a sigmoid
    bad = ref.copy()
    bad[0, 0] = 1.5
    comp = Comparison(generic(), head="sigmoid")
    comp.update(ref, bad, None, np.arange(3), "s")
    assert comp.candidate_validity.out_of_range_rows == 1
    reasons = judge(BackendResult("x", comp), comp.settings, "sigmoid")
    assert any("outside [0, 1])" in r for r in reasons)
    assert not any("summing" in r for r in reasons)


def test_a_linear_head_takes_any_finite_score_and_has_no_gq() -> None:
    ref = np.array([[3.5, -2.0, 10.0], [-1.0, -7.0, 0.5]], dtype=np.float32)
    cand = ref.copy()
    comp = Comparison(generic(), head="linear")
    comp.update(ref, cand, None, np.arange(2), "l")
    assert comp.reference_validity.invalid_rows == comp.candidate_validity.invalid_rows == 0
    assert comp.gq_rows == 0 and comp.argmax_changes == 0
    cand[1, 0] = np.inf
    comp = Comparison(generic(), head="linear")
    comp.update(ref, cand, None, np.arange(2), "l")
    assert comp.candidate_validity.out_of_range_rows == 1
    assert any("infinite" in r for r in judge(BackendResult("x", comp), comp.settings, "linear"))


def test_the_softmax_sum_check_applies_to_softmax_heads_only() -> None:
    ref = np.array([[0.5, 0.4, 0.3]], dtype=np.float32)  # sums to 1.2
    for head, invalid in (("softmax", 1), ("sigmoid", 0), ("linear", 0)):
        comp = Comparison(generic(), head=head)
        comp.update(ref, ref.copy(), None, np.arange(1), "x")
        assert comp.reference_validity.not_normalized_rows == invalid, head


def test_a_confidence_gate_flips_per_pixel() -> None:
    ref = pixel_softmax(N, 5)
    cand = ref.copy()
    top = ref.max(axis=-1)
    # the first pixel clearly above 0.9 on the reference side drops below on the candidate's
    row, y, x = (int(i) for i in np.argwhere(top > 0.95)[0])
    cand[row, y, x] = ref[row, y, x] * 0.5 + 0.5 / C  # same arg-max, max p now below 0.9
    comp = Comparison(generic(gate="confidence:0.9"))
    comp.update(ref, cand, None, np.arange(N), "t")
    assert comp.gate_flips == 1 and comp.argmax_changes == 0
    assert comp.gate_flip_rows.ids == [RowId("t", row, (y, x))]
    assert comp.gate_accepted_reference == int((top >= np.float32(0.9)).sum())
    assert comp.groups == {}
    assert "1 gate flip(s) at max p >= 0.9" in judge(BackendResult("x", comp), comp.settings)


def test_the_policies_answer_per_unit() -> None:
    units = np.array([[0.95, 0.05], [0.6, 0.4], [np.nan, 0.5]], dtype=np.float32)
    assert ConfidenceGate(0.9).accepts(units, None).tolist() == [True, False, False]
    assert ConfidenceGate(0.0).accepts(units[:2], None).tolist() == [True, True]
    assert NoGate().accepts(units, None).tolist() == [True, True, True]
    assert ConfidenceGate(0.9).accepts(units[:0], None).shape == (0,)


def test_invariance_counts_pixel_decisions_that_move_with_batch_size() -> None:
    x = np.zeros((N, 8, 8, 2), dtype=np.float32)
    base = pixel_softmax(N, 6)

    def steady(examples: np.ndarray, batch_size: int) -> np.ndarray:
        return base

    inv = check_invariance(steady, x, None, generic())
    assert (inv.rows, inv.batch_argmax_changes, inv.batch_gate_flips) == (N, 0, 0)
    assert inv.repeat_bit_identical

    def two_pixels_move(examples: np.ndarray, batch_size: int) -> np.ndarray:
        out = base.copy()
        if batch_size == 7:
            out[1, 0, 0] = out[1, 0, 0, ::-1]
            out[3, 2, 1] = np.roll(out[3, 2, 1], 1)
        return out

    inv = check_invariance(two_pixels_move, x, None, generic(gate="confidence:0.99"))
    assert inv.batch_argmax_changes == 2  # two units, each counted once
    assert inv.max_batch_ulp > 0

    def sigmoid_moves(examples: np.ndarray, batch_size: int) -> np.ndarray:
        out = np.full((len(examples), 2, 2, 4), 0.2, dtype=np.float32)
        if batch_size == 1:
            out[0, 1, 1, :2] = 0.7  # two classes of one unit cross 0.5: one unit moved
        return out

    inv = check_invariance(sigmoid_moves, x, None, generic(), head="sigmoid")
    assert inv.batch_argmax_changes == 1


def test_update_refuses_outputs_that_change_shape_between_chunks() -> None:
    comp = Comparison(generic())
    comp.update(pixel_softmax(2, 7), pixel_softmax(2, 7), None, np.arange(2))
    with pytest.raises(ValueError, match="per row"):
        comp.update(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), None, np.arange(2))
    with pytest.raises(ValueError, match="must be"):
        comp.update(np.zeros((2, 4, 3)), np.zeros((2, 4, 2)), None, np.arange(2))
