"""Inter-subject correlation (pipeline.synchrony.isc) against BrainIAK 0.12 and on designed data."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from brainiak.isc import compute_summary_statistic, phaseshift_isc
from brainiak.isc import isc as brainiak_isc
from brainiak.isc import isfc as brainiak_isfc
from brainiak.utils.utils import phase_randomize

from pipeline.synchrony import isc as sync

ROOT = Path(__file__).resolve().parents[1]
RUNS = [61, 48, 37]  # unequal, one odd and one even


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 2.0) -> np.ndarray:
    """Unit-variance noise smoothed along time (axis 0), like a BOLD time course's autocorrelation."""
    x = scipy.ndimage.gaussian_filter1d(rng.standard_normal(shape), sigma, axis=0)
    return x / x.std(axis=0)


def designed(fractions: np.ndarray, n_subjects: int, n_volumes: int, seed: int = 0, scales: bool = True) -> np.ndarray:
    """``(T, V, S)``: component v of every subject is ``sqrt(f_v)`` shared + ``sqrt(1 - f_v)`` own signal,
    with a per-subject scale and offset (ISC must not care)."""
    rng = np.random.default_rng(seed)
    f = np.asarray(fractions, dtype=np.float64)[np.newaxis, :, np.newaxis]
    shared = smooth_noise(rng, (n_volumes, f.shape[1]))[:, :, np.newaxis]
    own = smooth_noise(rng, (n_volumes, f.shape[1], n_subjects))
    x = np.sqrt(f) * shared + np.sqrt(1 - f) * own
    if scales:
        x = x * rng.uniform(0.3, 3.0, (1, f.shape[1], n_subjects)) + rng.uniform(-50, 50, (1, f.shape[1], n_subjects))
    return x


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return designed(np.linspace(0.0, 0.8, 6), n_subjects=7, n_volumes=sum(RUNS), seed=1)


# --- equality with BrainIAK -----------------------------------------------------------------------------------


def test_leave_one_out_and_pairwise_isc_equal_brainiak(data):
    np.testing.assert_allclose(sync.isc(data), brainiak_isc(data), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sync.isc(data, pairwise=True), brainiak_isc(data, pairwise=True), rtol=0, atol=1e-6)
    both = data[..., :2]  # BrainIAK returns the single pair's r as one row
    np.testing.assert_allclose(sync.isc(both), np.vstack([brainiak_isc(both)] * 2), rtol=0, atol=1e-6)
    np.testing.assert_allclose(sync.isc(both, pairwise=True)[0], brainiak_isc(both, pairwise=True), atol=1e-6)


def test_fisher_mean_equals_brainiak_summary_with_nans(data):
    r = sync.isc(data)
    r[2, 1] = np.nan
    for axis in (0, 1, None):
        np.testing.assert_allclose(
            sync.fisher_mean(r, axis=axis), compute_summary_statistic(r, "mean", axis=axis), rtol=0, atol=1e-12
        )
    assert sync.fisher_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert sync.fisher_mean([0.9, 0.1]) > np.mean([0.9, 0.1])  # z-space, not r-space


def test_isfc_equals_brainiak(data):
    ours = sync.isfc(data)
    theirs = brainiak_isfc(data, pairwise=False, summary_statistic="mean", vectorize_isfcs=False)
    assert ours.shape == (6, 6)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours, ours.T, atol=1e-15)
    np.testing.assert_allclose(np.diag(ours), sync.fisher_mean(sync.isc(data)), atol=1e-12)
    both = data[..., :2]
    np.testing.assert_allclose(sync.isfc(both), brainiak_isfc(both, vectorize_isfcs=False), rtol=0, atol=1e-6)


def brainiak_resamples(x: np.ndarray, n_shifts: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """The phases ``phaseshift_isc`` draws (its seeding scheme) and BrainIAK's leave-one-out ISC of
    ``phase_randomize`` on each: ``(B, K, S)`` and ``(B, S, V)``."""
    prng = np.random.RandomState(random_state)
    phases, loo = [], []
    for _ in range(n_shifts):
        state = prng.get_state()
        loo.append(brainiak_isc(phase_randomize(x, random_state=prng)))
        prng.set_state(state)
        phases.append(prng.rand((x.shape[0] - 1) // 2, 1, x.shape[2])[:, 0, :] * 2 * np.pi)
        prng = np.random.RandomState(prng.randint(0, 2**32 - 1, dtype=np.int64))
    return np.stack(phases), np.stack(loo)


@pytest.mark.parametrize("n_volumes", [146, 145])
def test_phase_null_equals_brainiak_phase_randomisation_on_the_same_phases(data, n_volumes):
    x = data[:n_volumes]
    observed, _, distribution = phaseshift_isc(x, pairwise=True, summary_statistic="mean", n_shifts=6, random_state=5)
    phases, brainiak_loo = brainiak_resamples(x, 6, 5)
    loo, pairwise = sync.phase_null(x, [n_volumes], phases)
    np.testing.assert_allclose(sync.fisher_mean(pairwise, axis=1), distribution, rtol=0, atol=1e-6)
    np.testing.assert_allclose(loo, brainiak_loo, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sync.component_isc(x, [n_volumes], 10).isc_pairwise, observed, rtol=0, atol=1e-6)


def test_phase_randomisation_is_per_run_and_keeps_each_runs_spectrum(data):
    x = data[:, :2, :3]
    shifted = sync.phase_randomise(x, RUNS, np.random.default_rng(0))
    start = 0
    for n in RUNS:
        before, after = x[start : start + n], shifted[start : start + n]
        np.testing.assert_allclose(np.abs(np.fft.rfft(after, axis=0)), np.abs(np.fft.rfft(before, axis=0)), atol=1e-9)
        assert not np.allclose(after, before)
        start += n
    # one shift per subject and run, the same for every component: the cross-spectrum phase of two components
    # of one subject is kept
    a, b = np.fft.rfft(x[: RUNS[0], 0, 0]), np.fft.rfft(x[: RUNS[0], 1, 0])
    a2, b2 = np.fft.rfft(shifted[: RUNS[0], 0, 0]), np.fft.rfft(shifted[: RUNS[0], 1, 0])
    np.testing.assert_allclose(a2 * np.conj(b2), a * np.conj(b), atol=1e-8)


def test_component_isc_matches_brainiak_and_counts_the_null(data):
    result = sync.component_isc(data, RUNS, n_resamples=300, seed=2)
    np.testing.assert_allclose(result.isc, compute_summary_statistic(brainiak_isc(data), "mean", axis=0), atol=1e-6)
    np.testing.assert_allclose(
        result.isc_pairwise, compute_summary_statistic(brainiak_isc(data, pairwise=True), "mean", axis=0), atol=1e-6
    )
    np.testing.assert_allclose(result.subjects, brainiak_isc(data), atol=1e-6)
    assert result.n_resamples == 300 and result.note is None
    grid = result.p * 301
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-9)  # (count + 1) / (n + 1)
    assert result.p[-1] == pytest.approx(1 / 301)  # 80 % shared: nothing in the null reaches it
    np.testing.assert_allclose(result.q, scipy.stats.false_discovery_control(result.p, method="bh"))
    again = sync.component_isc(data, RUNS, n_resamples=300, seed=2)
    np.testing.assert_array_equal(again.p, result.p)


def test_the_null_is_cut_to_its_work_budget_and_says_so(data, monkeypatch):
    pairs_x_frequencies_x_components = 21 * sync.randomised_frequencies(RUNS) * 6
    monkeypatch.setattr(sync, "MAX_NULL_WORK", pairs_x_frequencies_x_components * 40.5)
    result = sync.component_isc(data, RUNS, n_resamples=1000)
    assert result.n_resamples == 40
    assert "p from 40 phase randomisations, not 1,000: with 7 subjects" in result.note
    np.testing.assert_allclose(result.p * 41, np.round(result.p * 41), atol=1e-9)


def test_subjects_array_reads_the_subject_major_stored_matrix(data):
    t, v, s = data.shape
    stored = np.concatenate([data[:, :, k] for k in range(s)], axis=0).astype(np.float32)  # (S * T, V)
    back = sync.subjects_array(stored, s)
    assert back.shape == (t, v, s) and back.dtype == np.float64
    np.testing.assert_array_equal(back, data.astype(np.float32))
    with pytest.raises(ValueError, match="do not split into 4 equal subject blocks"):
        sync.subjects_array(stored[:-1], 4)


# --- edge cases: constant series, few subjects, bad input ----------------------------------------------------------


def test_a_constant_subject_is_left_out_with_a_note_and_no_nan(data):
    x = data.copy()
    x[:, :, 3] = 7.0  # a subject whose time courses never move
    result = sync.component_isc(x, RUNS, n_resamples=50)
    assert "Subject 4" in result.note and "every component" in result.note
    for values in (result.isc, result.isc_pairwise, result.p, result.q):
        assert np.isfinite(values).all()
    rest = np.delete(data, 3, axis=2)  # the same as computing without that subject
    np.testing.assert_allclose(result.isc, sync.fisher_mean(brainiak_isc(rest)), atol=1e-6)
    np.testing.assert_allclose(result.isc_pairwise, sync.fisher_mean(brainiak_isc(rest, pairwise=True)), atol=1e-6)
    assert np.isnan(result.subjects[3]).all() and np.isfinite(np.delete(result.subjects, 3, axis=0)).all()
    matrix = sync.isfc(x)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(matrix, brainiak_isfc(rest, summary_statistic="mean", vectorize_isfcs=False), atol=1e-6)


def test_constant_columns_leave_out_one_subject_or_the_whole_component(data):
    x = data.copy()
    x[:, 1, 0] = 0.0  # component 2 of subject 1 is flat
    x[:, 4, 1:] = -3.0  # component 5 varies in subject 1 only
    result = sync.component_isc(x, RUNS, n_resamples=50)
    assert "Component 2: subject 1 constant" in result.note
    assert "Component 5: fewer than two subjects vary, so no ISC" in result.note
    usable = np.arange(6) != 4
    for values in (result.isc, result.isc_pairwise, result.p, result.q):
        assert np.isfinite(values[usable]).all() and np.isnan(values[4])
    np.testing.assert_allclose(result.isc[1], sync.fisher_mean(brainiak_isc(data[:, 1, 1:])), atol=1e-6)
    np.testing.assert_allclose(result.isc[0], sync.fisher_mean(brainiak_isc(data[:, 0])), atol=1e-6)
    np.testing.assert_allclose(result.q[usable], scipy.stats.false_discovery_control(result.p[usable]), atol=1e-12)
    _, windowed = sync.windowed_isc(x, RUNS, 9)
    assert np.isfinite(windowed[:, usable]).all() and np.isnan(windowed[:, 4]).all()


def test_two_subjects_give_the_pair_only_and_one_subject_says_so(data):
    two = sync.component_isc(data[..., :2], RUNS, n_resamples=20)
    np.testing.assert_allclose(two.isc, brainiak_isc(data[..., :2]), atol=1e-6)
    np.testing.assert_array_equal(two.isc, two.isc_pairwise)
    assert two.subjects is None and two.note is None
    one = sync.component_isc(data[..., :1], RUNS, n_resamples=20)
    assert one.note == sync.ONE_SUBJECT_NOTE and "One subject: no ISC" in one.note
    assert one.n_resamples == 0 and one.isc_pairwise is None and one.subjects is None
    assert one.isc.shape == one.p.shape == one.q.shape == (6,) and np.isnan(one.isc).all()
    with pytest.raises(ValueError, match="at least 2 subjects"):
        sync.isc(data[..., :1])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: sync.component_isc(np.where(np.arange(146)[:, None, None] == 9, np.nan, x), RUNS), "volume 10"),
        (lambda x: sync.component_isc(x, [100, 40]), "the runs add up to 140 volumes but the time courses have 146"),
        (lambda x: sync.component_isc(x, RUNS, n_resamples=0), "n_resamples must be at least 1"),
        (lambda x: sync.component_isc(x.astype(str), RUNS), None),
        (lambda x: sync.windowed_isc(x, RUNS, 62), "longer than the longest run"),
        (lambda x: sync.windowed_isc(x, RUNS, 2), "at least 3 volumes"),
        (lambda x: sync.isfc(x[:2]), "at least 3 volumes"),
        (lambda x: sync.phase_null(x, RUNS, np.zeros((2, 5, 7))), r"phases must be \(resamples, 71, 7\)"),
    ],
)
def test_bad_input_gets_a_clear_message(data, call, message):
    x = data.copy()
    if message is None:  # numbers as text are converted; text that is not a number is refused
        x = x.astype(object)
        x[0, 0, 0] = "many"
        message = "must be numbers"
    with pytest.raises(ValueError, match=message):
        call(x)
    np.testing.assert_array_equal(x[1:, 1:], data[1:, 1:].astype(x.dtype))  # nothing changed in place


# --- designed data -------------------------------------------------------------------------------------------------


def test_designed_shared_fractions_are_recovered_in_order():
    fractions = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    x = designed(fractions, n_subjects=8, n_volumes=sum(RUNS) * 2, seed=3)
    result = sync.component_isc(x, RUNS + RUNS, n_resamples=200)
    assert scipy.stats.spearmanr(result.isc, fractions).statistic >= 0.9
    assert scipy.stats.spearmanr(result.isc_pairwise, fractions).statistic >= 0.9
    assert (result.q[fractions >= 0.3] < 0.05).all()


def test_null_components_have_uniform_p():
    x = designed(np.zeros(400), n_subjects=5, n_volumes=sum(RUNS), seed=4)
    p = sync.component_isc(x, RUNS, n_resamples=200, seed=1).p
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    assert 0.44 <= p.mean() <= 0.56
    assert scipy.stats.kstest(p, "uniform").pvalue > 0.01
    assert (sync.component_isc(x, RUNS, n_resamples=200, seed=1).q > 0.5).all()


def synchrony_stretch(seed: int = 5) -> tuple[np.ndarray, slice]:
    """Six subjects, eight components sharing 80 % of their signal inside rows 70-99 of the second run only."""
    x = designed(np.zeros(8), n_subjects=6, n_volumes=sum(RUNS) * 2, seed=seed, scales=False)
    stretch = slice(RUNS[0] + 20, RUNS[0] + 44)
    shared = smooth_noise(np.random.default_rng(seed + 1), (stretch.stop - stretch.start, 8))[:, :, np.newaxis]
    x[stretch] = np.sqrt(0.8) * shared + np.sqrt(0.2) * x[stretch]
    return x, stretch


def test_windowed_isc_peaks_inside_a_designed_synchrony_window():
    x, stretch = synchrony_stretch()
    runs = RUNS + RUNS
    centres, values = sync.windowed_isc(x, runs, 12)
    assert len(centres) == sum(n - 11 for n in runs)  # windows never cross a run boundary
    mean = values.mean(axis=1)
    assert stretch.start <= centres[np.argmax(mean)] < stretch.stop
    null = sync.windowed_null(x, runs, 12, n_resamples=30)
    assert null.shape == (30, len(centres))
    moments = sync.synchrony_moments(values, null)
    assert moments and all(stretch.start <= centres[i] < stretch.stop for i, _ in moments)
    assert max(moments, key=lambda m: m[1])[1] == pytest.approx(mean.max())


def test_moments_are_the_separated_peaks_above_the_null_peak_percentile():
    windows = np.arange(200)
    curve = 0.05 * np.sin(windows / 3.0)  # wiggles below the null
    for centre, height in ((30, 0.5), (80, 0.3), (88, 0.45), (199, 0.3)):
        curve = curve + height * np.exp(-0.5 * ((windows - centre) / 2.0) ** 2)
    values = np.column_stack([curve, curve + 0.02, curve - 0.02])
    values[150, :] = np.nan  # a window without a value is never a moment
    null = np.random.default_rng(0).uniform(-0.1, 0.2, (50, 200))
    moments = sync.synchrony_moments(values, null, separation=15)
    assert [i for i, _ in moments] == [30, 88, 199]  # 80 and 88 are one moment, the higher one
    assert moments[0][1] == pytest.approx(values[30].mean())
    assert [i for i, _ in sync.synchrony_moments(values, null, separation=5)] == [30, 80, 88, 199]
    assert sync.synchrony_moments(values, null + 1.0) == []  # nothing above a higher null


def test_windowed_isc_equals_brainiak_on_each_window(data):
    for window in (9, 10):
        centres, values = sync.windowed_isc(data, RUNS, window)
        half = (window - 1) / 2
        assert len(centres) == sum(n - window + 1 for n in RUNS)
        for k in range(0, len(centres), 7):
            rows = data[int(centres[k] - half) : int(centres[k] + half) + 1]
            expected = compute_summary_statistic(brainiak_isc(rows), "mean", axis=0)
            np.testing.assert_allclose(values[k], expected, rtol=0, atol=1e-6)


def test_label_synchrony_finds_the_label_that_synchronises():
    rng = np.random.default_rng(7)
    n_volumes, tr = 600, 2.0
    onsets = 20.0 + np.cumsum(rng.uniform(60.0, 200.0, 12))  # 30 s events at irregular times
    onsets = onsets[onsets < n_volumes * tr - 40]
    during = np.zeros(n_volumes, dtype=bool)
    for onset in onsets:
        during[int(onset / tr) : int((onset + 30) / tr)] = True
    x = designed(np.zeros(3), n_subjects=6, n_volumes=n_volumes, seed=8, scales=False)
    shared = smooth_noise(rng, (n_volumes, 1))
    x[during, 0, :] = np.sqrt(0.7) * shared[during] + np.sqrt(0.3) * x[during, 0, :]  # component 1 only
    centres, values = sync.windowed_isc(x, [n_volumes], 8)
    times = centres * tr
    inside, outside, p = sync.label_synchrony(values, times, [(o, 30.0) for o in onsets], n_shifts=500)
    assert inside[0] > outside[0] + 0.3 and p[0] < 0.01
    assert p[1] > 0.05 and p[2] > 0.05
    again = sync.label_synchrony(values, times, [(o, 30.0) for o in onsets], n_shifts=500)
    np.testing.assert_array_equal(again[2], p)
    nowhere = sync.label_synchrony(values, times, [(99_999.0, 5.0)])
    assert all(np.isnan(a).all() for a in nowhere)  # nothing to compare: no value, not a made-up one


def test_the_app_never_imports_brainiak():
    found = []
    for package in ("app.py", "callbacks", "dashboard", "web", "pipeline", "accounts", "store"):
        paths = [ROOT / package] if package.endswith(".py") else sorted((ROOT / package).rglob("*.py"))
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "brainiak"]
    assert not found
