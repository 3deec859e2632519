"""Temporal decoding (pipeline.temporal.decoding): regressors are nilearn's, r is np.corrcoef's, the circular-shift null
finds a planted label and not a shuffled one, and BH q values match a hand computation.

Inputs are built here with numpy (runs as ``(start_s, volumes)`` pairs), so these tests need no other module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from nilearn.glm.first_level import compute_regressor

from pipeline.temporal import decoding as temporal
from pipeline.temporal.decoding import (
    MIN_ONSET,
    OVERSAMPLING,
    benjamini_hochberg,
    circular_shifts,
    label_regressors,
    run_frame_times,
    temporal_decode,
)

TR = 2.0
GAP_RUNS = [(100.0, 40), (200.0, 30)]  # run 1 ends at 178 s, run 2 starts at 200 s: a 20 s gap
OVERLAP_RUNS = [(0.0, 50), (90.0, 35)]  # run 1 ends at 98 s, run 2 starts at 90 s: 8 s seen twice


def random_events(rng: np.random.Generator, n_labels: int, movie_s: float) -> dict[str, tuple[np.ndarray, ...]]:
    """Labels with a few events each, spread over the movie, with durations and amplitudes that vary."""
    events = {}
    for j in range(n_labels):
        n = int(rng.integers(4, 12))
        onsets = np.sort(rng.uniform(0.0, movie_s, n))
        events[f"label{j:02d}"] = (onsets, rng.uniform(0.5, 8.0, n), rng.uniform(0.5, 2.0, n))
    return events


def nilearn_direct(triple: tuple[np.ndarray, ...], frame_times: np.ndarray) -> np.ndarray:
    """compute_regressor called directly on the events that reach the run's grid (end >= first frame - 24 s)."""
    onsets, durations, amplitudes = triple
    keep = onsets + durations >= frame_times[0] + MIN_ONSET
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # onsets before the grid: nilearn clamps them and says so
        regressor, _ = compute_regressor(
            exp_condition=np.vstack([onsets[keep], durations[keep], amplitudes[keep]]),
            hrf_model="spm",
            frame_times=frame_times,
            oversampling=OVERSAMPLING,
        )
    return regressor[:, 0]


def expected_r(x: np.ndarray, y: np.ndarray, subjects: int) -> np.ndarray:
    """np.corrcoef of every time course column with every regressor column repeated for every subject."""
    n = x.shape[1]
    return np.corrcoef(np.hstack([x, np.tile(y, (subjects, 1))]).T)[:n, n:]


def test_frame_times_for_runs_with_a_gap_and_an_overlap():
    gap = run_frame_times(TR, GAP_RUNS)
    assert [len(t) for t in gap] == [40, 30]
    np.testing.assert_array_equal(gap[0], 100.0 + 2.0 * np.arange(40))
    np.testing.assert_array_equal(gap[1], np.arange(200.0, 260.0, 2.0))
    overlap = run_frame_times(1.5, [(0.0, 4), (3.0, 3)])
    np.testing.assert_array_equal(overlap[0], [0.0, 1.5, 3.0, 4.5])
    np.testing.assert_array_equal(overlap[1], [3.0, 4.5, 6.0])


def test_frame_times_accept_run_objects_and_refuse_bad_runs():
    @dataclass(frozen=True)
    class Run:  # the shape of pipeline.temporal.timing.Run
        start_s: float
        volumes: int

    np.testing.assert_array_equal(run_frame_times(2.0, [Run(10.0, 3)])[0], [10.0, 12.0, 14.0])
    with pytest.raises(ValueError, match="volumes"):
        run_frame_times(2.0, [(0.0, 0)])
    with pytest.raises(ValueError, match="TR"):
        run_frame_times(0.0, [(0.0, 5)])


@pytest.mark.parametrize("runs", [GAP_RUNS, OVERLAP_RUNS], ids=["gap", "overlap"])
def test_regressors_are_nilearn_compute_regressor_run_by_run(runs):
    rng = np.random.default_rng(7)
    movie_s = max(start + TR * n for start, n in runs)
    events = random_events(rng, 4, movie_s)
    # One event straddles the second run's grid start, one ends long before it: both edge cases of the selection.
    grid_start = runs[1][0] + MIN_ONSET
    events["edge"] = (
        np.array([grid_start - 3.0, grid_start - 40.0, runs[1][0] + 6.0]),
        np.array([10.0, 2.0, 4.0]),
        np.array([1.0, 3.0, 1.5]),
    )
    labels, regressors = label_regressors(events, TR, runs)

    assert labels == sorted(events)
    assert regressors.shape == (sum(n for _, n in runs), len(events))
    assert regressors.dtype == np.float64
    frame_times = run_frame_times(TR, runs)
    expected = np.column_stack(
        [np.concatenate([nilearn_direct(events[label], t) for t in frame_times]) for label in labels]
    )
    np.testing.assert_allclose(regressors, expected, rtol=1e-10, atol=1e-12)
    assert np.ptp(regressors, axis=0).min() > 0  # every label reaches the runs: the comparison is not of zeros


def test_events_long_before_a_run_are_left_out_without_a_warning():
    # Many events ending more than 24 s before the run: nilearn would warn and pile them into a spike at the
    # start of its grid; they cannot reach the run through the HRF, so the regressor is that of the later events.
    early = np.arange(0.0, 400.0, 4.0)
    late = np.array([520.0, 560.0])
    onsets, durations = np.r_[early, late], np.r_[np.full(early.size, 2.0), 5.0, 5.0]
    runs = [(500.0, 60)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, regressors = label_regressors({"speech": (onsets, durations, np.ones(onsets.size))}, TR, runs)
    frame_times = run_frame_times(TR, runs)[0]
    only_late, _ = compute_regressor(
        np.vstack([late, [5.0, 5.0], [1.0, 1.0]]), "spm", frame_times, oversampling=OVERSAMPLING
    )
    np.testing.assert_allclose(regressors[:, 0], only_late[:, 0], rtol=1e-10, atol=1e-12)


def test_a_run_no_event_reaches_has_zeros():
    _, regressors = label_regressors(
        {"a": (np.array([10.0]), np.array([2.0]), np.array([1.0]))}, TR, [(0.0, 20), (300.0, 20)]
    )
    assert np.ptp(regressors[:20, 0]) > 0
    np.testing.assert_array_equal(regressors[20:, 0], 0.0)


def test_r_is_pearson_over_all_rows_with_the_regressor_repeated_per_subject():
    rng = np.random.default_rng(11)
    lengths, subjects = [37, 23], 3
    rows = sum(lengths)
    y = rng.standard_normal((rows, 6)) + np.linspace(0.0, 2.0, rows)[:, np.newaxis]
    # Components share some signal with the regressors, have offsets and float32 storage, as MELODIC's do.
    x = np.tile(y[:, :4], (subjects, 1)) + 2.0 * rng.standard_normal((rows * subjects, 4)) + 50.0
    x = x.astype(np.float32)
    result = temporal_decode(x, y, lengths, subjects, n_shifts=50)
    assert result.r.shape == result.p.shape == result.q.shape == (4, 6)
    assert result.r.dtype == np.float64
    np.testing.assert_allclose(result.r, expected_r(x.astype(np.float64), y, subjects), rtol=0, atol=1e-6)


def test_null_draws_are_the_naive_shifted_product():
    # The FFT tables must count exactly what shifting the regressor and multiplying over all rows counts.
    rng = np.random.default_rng(5)
    lengths, subjects, n_shifts = [13, 8, 11], 2, 60
    rows = sum(lengths)
    y = rng.standard_normal((rows, 3))
    x = np.tile(y[:, :2], (subjects, 1)) + rng.standard_normal((rows * subjects, 2))
    result = temporal_decode(x, y, lengths, subjects, n_shifts=n_shifts, seed=9)

    xc = x - x.mean(axis=0)
    observed = np.abs(xc.T @ np.tile(y, (subjects, 1)))
    count = np.zeros((2, 3))
    starts = np.cumsum([0, *lengths[:-1]])
    for draw in circular_shifts(lengths, n_shifts, seed=9):
        shifted = np.concatenate([np.roll(y[s : s + n], d, axis=0) for s, n, d in zip(starts, lengths, draw)])
        count += np.abs(xc.T @ np.tile(shifted, (subjects, 1))) >= observed * (1 - 1e-12)
    np.testing.assert_array_equal(result.p, (1 + count) / (1 + n_shifts))


def test_memory_budgets_do_not_change_the_result(monkeypatch):
    # Budgets of a few values force blocks of labels, chunks of components in the FFTs and chunks of draws.
    rng = np.random.default_rng(6)
    lengths, subjects = [17, 12], 2
    y = rng.standard_normal((29, 7))
    x = np.tile(y[:, :5], (subjects, 1)) + 2.0 * rng.standard_normal((58, 5))
    whole = temporal_decode(x, y, lengths, subjects, n_shifts=90, seed=2)
    monkeypatch.setattr(temporal, "TABLE_BYTES", 8 * 29 * 5 * 3)  # 3 labels per block
    monkeypatch.setattr(temporal, "FFT_BYTES", 16 * 9 * 3 * 2)  # 2 components per product
    monkeypatch.setattr(temporal, "NULL_BYTES", 8 * 5 * 3 * 7)  # 7 draws per chunk
    chunked = temporal_decode(x, y, lengths, subjects, n_shifts=90, seed=2)
    np.testing.assert_array_equal(chunked.r, whole.r)
    np.testing.assert_array_equal(chunked.p, whole.p)
    assert whole.p.min() < 0.05 < whole.p.max()  # the comparison is not between constant arrays


def test_a_planted_label_ranks_first_and_a_shuffled_one_is_not_significant():
    rng = np.random.default_rng(2024)
    runs, subjects = [(0.0, 60), (130.0, 40)], 3  # 100 volumes per subject, 300 rows
    labels, y = label_regressors(random_events(rng, 10, 210.0), TR, runs)
    target = 3
    repeated = np.tile(y[:, target], subjects)
    sd = repeated.std()
    planted = repeated + sd * rng.standard_normal(repeated.size)
    control = rng.permutation(repeated) + sd * rng.standard_normal(repeated.size)
    result = temporal_decode(np.column_stack([planted, control]), y, [n for _, n in runs], subjects)

    assert int(np.argmax(np.abs(result.r[0]))) == target, (labels, result.r[0])
    assert result.p[0, target] < 0.01
    assert result.p[1, target] > 0.05


def test_constant_time_course_or_regressor_gives_r_0_and_p_1():
    rng = np.random.default_rng(3)
    lengths, subjects = [20, 15], 2
    y = rng.standard_normal((35, 3))
    y[:, 1] = 0.1  # not exactly representable: its computed mean differs from it by rounding
    x = rng.standard_normal((70, 3))
    x[:, 0] = 3.7
    result = temporal_decode(x, y, lengths, subjects, n_shifts=100)
    np.testing.assert_array_equal(result.r[0], 0.0)
    np.testing.assert_array_equal(result.r[:, 1], 0.0)
    np.testing.assert_array_equal(result.p[0], 1.0)
    np.testing.assert_array_equal(result.p[:, 1], 1.0)
    varying = np.ix_([1, 2], [0, 2])
    np.testing.assert_allclose(result.r[varying], expected_r(x[:, 1:], y[:, [0, 2]], subjects), atol=1e-6)


def test_p_values_are_counts_over_n_plus_1():
    rng = np.random.default_rng(8)
    lengths, subjects, n_shifts = [30, 25], 2, 200
    y = rng.standard_normal((55, 5))
    x = np.tile(y, (subjects, 1)) * [3.0, 1.0, 0.3, 0.1, 0.0] + rng.standard_normal((110, 5))
    p = temporal_decode(x, y, lengths, subjects, n_shifts=n_shifts).p
    assert p.min() >= 1 / (n_shifts + 1) and p.max() <= 1.0
    assert p[0, 0] == 1 / (n_shifts + 1)  # a strong match: no draw reaches it
    counts = p * (n_shifts + 1)
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)


def test_shift_draws_are_seeded_in_range_and_never_all_zero():
    lengths = [2, 1, 3]  # 6 combinations, one of them the identity: redraws happen
    shifts = circular_shifts(lengths, 500, seed=4)
    assert shifts.shape == (500, 3)
    assert (shifts >= 0).all() and (shifts < lengths).all()
    assert shifts.any(axis=1).all()
    assert len({tuple(s) for s in shifts}) == 5  # every non-identity combination is drawn
    np.testing.assert_array_equal(shifts, circular_shifts(lengths, 500, seed=4))
    assert not np.array_equal(shifts, circular_shifts(lengths, 500, seed=5))
    with pytest.raises(ValueError, match="single volume"):
        circular_shifts([1, 1], 10)


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match="expected 30 volumes x 2 subjects"):
        temporal_decode(np.zeros((59, 2)), np.zeros((30, 1)), [10, 20], 2)
    with pytest.raises(ValueError, match="regressors have 29 rows"):
        temporal_decode(np.zeros((60, 2)), np.zeros((29, 1)), [10, 20], 2)
    x = np.ones((60, 2))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        temporal_decode(x, np.zeros((30, 1)), [10, 20], 2)


def test_benjamini_hochberg_matches_a_hand_computation():
    # Sorted: 0.01, 0.03, 0.04, 0.20 -> x 4/rank: 0.04, 0.06, 0.0533, 0.20 -> running min from the top:
    # 0.04, 0.0533, 0.0533, 0.20, then back in the input order.
    q = benjamini_hochberg(np.array([0.04, 0.01, 0.20, 0.03]))
    np.testing.assert_allclose(q, [0.04 * 4 / 3, 0.04, 0.20, 0.04 * 4 / 3])
    # Along the last axis: each row is its own family; ties share a q value.
    q2 = benjamini_hochberg(np.array([[0.5, 0.5, 1.0], [0.001, 0.9, 0.02]]))
    np.testing.assert_allclose(q2, [[0.75, 0.75, 1.0], [0.003, 0.9, 0.03]])


def test_benjamini_hochberg_is_monotone_and_capped():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(4, 50)) ** 3
    q = benjamini_hochberg(p)
    assert (q >= p).all() and (q <= 1.0).all()
    for p_row, q_row in zip(p, q):
        assert (np.diff(q_row[np.argsort(p_row)]) >= 0).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.2, np.nan]))
