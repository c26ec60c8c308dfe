"""The comparator's arithmetic, without any model: ULPs, histograms, GQ, gate, merging."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kerasport.verify.compare import Comparison
from kerasport.verify.gq import GQ_CAP, gate_passes, genotype_quality
from kerasport.verify.histograms import (
    ULP_BINS,
    UlpHistogram,
    nearest_rank,
    ulp_bin_bounds,
    ulp_bin_index,
)
from kerasport.verify.invariance import check_invariance
from kerasport.verify.result import BackendResult, judge
from kerasport.verify.rows import RowId
from kerasport.verify.settings import Settings
from kerasport.verify.ulp import ulp_distance


def softmax_rows(rows: int, seed: int, scale: float = 6.0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(rows, 3)) * scale
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def step(values: np.ndarray, ulps: int) -> np.ndarray:
    """Move float32 values `ulps` steps towards +inf."""
    out = np.asarray(values, dtype=np.float32).copy()
    for _ in range(ulps):
        out = np.nextafter(out, np.float32(np.inf))
    return out


# -- ULP ---------------------------------------------------------------------------------


def test_ulp_distance_counts_float32_steps_across_zero_and_sign() -> None:
    x = np.array([1.0, 0.5, 1e-30, -2.0, 0.0], dtype=np.float32)
    for k in (0, 1, 3, 17):
        assert (ulp_distance(x, step(x, k)) == k).all()
    # -0.0 and +0.0 are 0 apart; the smallest subnormals either side of zero are 2 apart.
    assert ulp_distance(np.float32([-0.0]), np.float32([0.0]))[0] == 0
    tiny = np.float32(1e-45)
    assert ulp_distance(np.float32([-tiny]), np.float32([tiny]))[0] == 2
    # The whole finite range fits below 2**32.
    big = np.finfo(np.float32).max
    assert ulp_distance(np.float32([-big]), np.float32([big]))[0] < 2**32


def test_ulp_bins_are_exact_below_1024_then_powers_of_two() -> None:
    values = np.array([0, 1, 1023, 1024, 2047, 2048, 2**31, 2**32 - 1], dtype=np.int64)
    index = ulp_bin_index(values)
    assert index.tolist() == [0, 1, 1023, 1024, 1024, 1025, ULP_BINS - 1, ULP_BINS - 1]
    assert ulp_bin_bounds(1023) == (1023, 1023)
    assert ulp_bin_bounds(1024) == (1024, 2047)
    assert ulp_bin_bounds(ULP_BINS - 1) == (2**31, 2**32 - 1)
    for i in range(ULP_BINS):  # every bin's bounds map back to it
        low, high = ulp_bin_bounds(i)
        assert ulp_bin_index(np.array([low, high])).tolist() == [i, i]


def test_percentiles_are_nearest_rank_on_the_binning() -> None:
    hist = UlpHistogram()
    hist.add(np.array([0] * 990 + [1] * 9 + [5000], dtype=np.int64))
    assert nearest_rank(99.9, 1000) == 999  # exact arithmetic: not 1000
    assert hist.percentile(50, 5000) == 0
    assert hist.percentile(99, 5000) == 0
    assert hist.percentile(99.9, 5000) == 1
    # Rank 1000 falls in the [4096, 8191] bucket: its upper edge clipped to the max.
    assert hist.percentile(100, 5000) == 5000
    assert hist.percentile(100, 10**9) == 8191
    assert UlpHistogram().percentile(50, 0) == 0


def test_ulp_histogram_json_round_trip_and_refuses_other_schemes() -> None:
    hist = UlpHistogram()
    hist.add(np.array([0, 0, 3, 1500, 2**20], dtype=np.int64))
    data = hist.to_json()
    assert data["bins"] == [[0, 0, 2], [3, 3, 1], [1024, 2047, 1], [2**20, 2**21 - 1, 1]]
    assert (UlpHistogram.from_json(data).counts == hist.counts).all()
    with pytest.raises(ValueError, match="scheme"):
        UlpHistogram.from_json({**data, "scheme": "linear"})
    with pytest.raises(ValueError, match="grid"):
        UlpHistogram.from_json({**data, "bins": [[1024, 1500, 1]]})


# -- GQ and the gate ---------------------------------------------------------------------


def test_genotype_quality_is_deepvariants_bounded_phred() -> None:
    p = np.array([[0.9, 0.05, 0.05], [0.01, 0.99, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    gq = genotype_quality(p.astype(np.float32))
    expected = [-10 * math.log10(1 - float(np.float32(v))) for v in (0.9, 0.99)]
    assert gq[:2] == pytest.approx(expected, rel=1e-12)
    assert gq[2] == pytest.approx(70.0, abs=1e-6)
    assert gq[2] == GQ_CAP  # p = 1 is capped at 1 - 1e-7
    assert gq[3] == pytest.approx(-10 * math.log10(0.5))
    assert np.isnan(genotype_quality(np.float32([[np.nan, 0.5, 0.5]])))[0]


def test_gate_thresholds_per_type_and_minus_one_disables() -> None:
    gq = np.array([19.99, 20.0, 28.0, 27.99, 70.0])
    snp = np.array([True, True, False, False, True])
    assert gate_passes(gq, snp, 20, 28).tolist() == [False, True, True, False, True]
    assert gate_passes(gq, snp, -1, 28).tolist() == [False, False, True, False, False]
    assert gate_passes(gq, snp, 20, -1).tolist() == [False, True, False, False, True]
    assert not gate_passes(np.array([np.nan]), np.array([True]), 0, 0)[0]


# -- the accumulator ---------------------------------------------------------------------


def feed(comp: Comparison, ref: np.ndarray, cand: np.ndarray, snp: np.ndarray, src: str) -> None:
    comp.update(ref, cand, snp, np.arange(len(ref)), src)


def test_identical_streams_pass_with_zero_everything() -> None:
    ref = softmax_rows(1000, 0)
    comp = Comparison()
    feed(comp, ref, ref.copy(), np.zeros(1000, bool), "a")
    assert comp.rows == 1000
    assert comp.bit_identical_fraction == 1.0
    assert (comp.max_ulp, comp.max_abs_diff, comp.max_gq_diff) == (0, 0.0, 0.0)
    assert comp.argmax_changes == comp.gate_flips == 0
    assert comp.worst == []
    assert judge(BackendResult("x", comp), comp.settings) == []


def test_counts_argmax_changes_gate_flips_and_invalid_rows_with_ids() -> None:
    ref = np.array(
        [
            [0.6, 0.3, 0.1],  # 0: arg-max 0 -> 1 below
            [0.995, 0.004, 0.001],  # 1: SNP, GQ 23 -> ~19.6: SNP gate flip
            [0.9995, 0.0004, 0.0001],  # 2: indel, GQ 33 -> ~27.4: indel gate flip
            [0.2, 0.3, 0.5],  # 3: NaN on the candidate side
            [0.2, 0.3, 0.5],  # 4: out of range
            [0.2, 0.3, 0.5],  # 5: does not sum to 1
            [0.2, 0.3, 0.5],  # 6: untouched
        ],
        dtype=np.float32,
    )
    cand = ref.copy()
    cand[0] = [0.3, 0.6, 0.1]
    cand[1] = [0.989, 0.01, 0.001]
    cand[2] = [0.9982, 0.0017, 0.0001]
    cand[3] = [0.2, 0.3, np.nan]
    cand[4] = [-0.1, 0.3, 0.8]
    cand[5] = [0.2, 0.3, 0.6]
    snp = np.array([1, 1, 0, 0, 0, 0, 0], dtype=bool)
    comp = Comparison(Settings(list_rows=10, worst_rows=3))
    comp.update(ref, cand, snp, np.arange(100, 107), "f.npy")
    assert comp.argmax_changes == 1
    assert comp.argmax_change_rows.ids == [RowId("f.npy", 100)]
    assert (comp.gate_flips_snp, comp.gate_flips_indel) == (1, 1)
    assert comp.gate_flip_rows.ids == [RowId("f.npy", 101), RowId("f.npy", 102)]
    v = comp.candidate_validity
    assert (v.nan_rows, v.out_of_range_rows, v.not_normalized_rows) == (1, 1, 1)
    assert [r.row for r in v.rows.ids] == [103, 104, 105]
    assert comp.reference_validity.invalid_rows == 0
    assert comp.bit_identical_rows == 1
    # Row 3's NaN is left out of the numeric statistics, not turned into a huge number.
    assert comp.compared_values == 7 * 3 - 1
    assert comp.max_abs_diff == pytest.approx(0.3)
    # Worst rows: invalid first (4 + dp), then decision changes.
    assert [w.id.row for w in comp.worst] == [104, 105, 103]
    reasons = " ".join(judge(BackendResult("x", comp), comp.settings))
    assert "1 arg-max" in reasons and "2 gate flip" in reasons and "3 candidate row" in reasons


def test_row_lists_keep_the_first_ids_and_the_true_count() -> None:
    ref = softmax_rows(500, 1)
    cand = ref[:, ::-1].copy()  # reverses the class order: most arg-maxes change
    comp = Comparison(Settings(list_rows=5))
    feed(comp, ref, cand, np.ones(500, bool), "a")
    assert comp.argmax_changes > 5
    assert [r.row for r in comp.argmax_change_rows.ids] == sorted(
        r.row for r in comp.argmax_change_rows.ids
    )
    assert len(comp.argmax_change_rows.ids) == 5


def test_few_ulp_noise_shows_in_ulp_statistics_but_not_in_decisions() -> None:
    ref = softmax_rows(20000, 2, scale=2.0)
    rng = np.random.default_rng(3)
    cand = ref.copy()
    moved = rng.random(ref.shape) < 0.1
    cand[moved] = step(ref[moved], 2)
    comp = Comparison()
    feed(comp, ref, cand, rng.random(20000) < 0.5, "a")
    assert comp.max_ulp == 2
    assert 0 < comp.bit_identical_fraction < 1
    assert comp.ulp_histogram.counts[2] == moved.sum()
    assert comp.argmax_changes == 0  # ties this close are vanishingly rare at scale 2
    assert judge(BackendResult("x", comp), comp.settings) == []
    strict = Settings(max_ulp=1)
    assert "exceeds --max-ulp 1" in judge(BackendResult("x", comp), strict)[0]


def _random_pair(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = softmax_rows(rows, seed)
    cand = ref.copy()
    noisy = rng.random(ref.shape) < 0.3
    cand[noisy] = step(ref[noisy], 1)
    big = rng.random(rows) < 0.01
    cand[big] = softmax_rows(int(big.sum()), seed + 100)
    cand[rng.random(rows) < 0.001, 0] = np.nan
    return ref, cand, rng.random(rows) < 0.5


def test_merging_chunks_equals_one_pass_exactly() -> None:
    ref, cand, snp = _random_pair(30000, 4)
    settings = Settings(list_rows=50, worst_rows=25)
    whole = Comparison(settings)
    whole.update(ref, cand, snp, np.arange(30000), "f")
    merged = Comparison(settings)
    for start, stop in ((0, 7000), (7000, 7001), (7001, 30000)):
        part = Comparison(settings)
        part.update(ref[start:stop], cand[start:stop], snp[start:stop], np.arange(start, stop), "f")
        merged.merge(part)
    a, b = whole.to_json(), merged.to_json()
    assert a.pop("sum_abs_diff") == pytest.approx(b.pop("sum_abs_diff"), rel=1e-12)
    assert a.pop("mean_abs_diff") == pytest.approx(b.pop("mean_abs_diff"), rel=1e-12)
    assert a.pop("sum_gq_diff") == pytest.approx(b.pop("sum_gq_diff"), rel=1e-12)
    assert a.pop("mean_gq_diff") == pytest.approx(b.pop("mean_gq_diff"), rel=1e-12)
    assert a == b


def test_json_round_trip_rebuilds_the_accumulator() -> None:
    ref, cand, snp = _random_pair(5000, 5)
    comp = Comparison()
    comp.update(ref, cand, snp, np.arange(5000), "f")
    again = Comparison.from_json(comp.to_json(), comp.settings)
    assert again.to_json() == comp.to_json()


def test_update_refuses_mismatched_shapes() -> None:
    comp = Comparison()
    with pytest.raises(ValueError, match="must be"):
        comp.update(np.zeros((3, 3)), np.zeros((3, 2)), np.zeros(3), np.arange(3))
    with pytest.raises(ValueError, match="must be"):
        comp.update(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros(2), np.arange(3))


# -- invariance ----------------------------------------------------------------------------


def test_invariance_passes_a_batch_independent_deterministic_function() -> None:
    x = np.random.default_rng(6).integers(0, 100, size=(300, 4))

    def predict(examples: np.ndarray, batch_size: int) -> np.ndarray:
        return softmax_rows(len(examples), 7)  # same rows whatever the batch size

    inv = check_invariance(predict, x, np.zeros(300, bool), Settings())
    assert (inv.rows, inv.max_batch_ulp, inv.batch_argmax_changes) == (300, 0, 0)
    assert inv.repeat_bit_identical and inv.batch_sizes == [1, 7, 128]


def test_invariance_catches_batch_dependence_and_nondeterminism() -> None:
    x = np.zeros((300, 4), dtype=np.int64)
    base = softmax_rows(300, 8)
    calls = {"n": 0}

    def batch_dependent(examples: np.ndarray, batch_size: int) -> np.ndarray:
        return step(base, 3) if batch_size == 1 else base

    inv = check_invariance(batch_dependent, x, np.zeros(300, bool), Settings(max_batch_ulp=2))
    assert inv.max_batch_ulp == 3 and inv.repeat_bit_identical
    comp = Comparison()
    reasons = judge(BackendResult("x", comp, inv), Settings(max_batch_ulp=2))
    assert any("--max-batch-ulp 2" in r for r in reasons)

    def flaky(examples: np.ndarray, batch_size: int) -> np.ndarray:
        calls["n"] += 1
        return step(base, calls["n"] % 2)

    inv = check_invariance(flaky, x, np.zeros(300, bool), Settings())
    assert not inv.repeat_bit_identical and inv.repeat_max_ulp == 1
    assert any("not deterministic" in r for r in judge(BackendResult("x", comp, inv), Settings()))

    def flips(examples: np.ndarray, batch_size: int) -> np.ndarray:
        return base[:, ::-1].copy() if batch_size == 7 else base

    inv = check_invariance(flips, x, np.zeros(300, bool), Settings())
    assert inv.batch_argmax_changes > 0
    assert any(
        "batch size changes decisions" in r
        for r in judge(BackendResult("x", comp, inv), Settings())
    )
