"""The far tail of temporal decoding's p values (pipeline.temporal.decoding.tail_p): with hundreds of labels, a single
strong link reaches a small q; unlinked components keep uniform p; the tail joins the empirical p without a jump
and falls monotonically beyond it; the empirical count stays where the null has enough draws beyond the statistic.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from pipeline.temporal.annotations import shifts_for
from pipeline.temporal.decoding import (
    TAIL_EXCEEDANCES,
    label_regressors,
    tail_p,
    temporal_decode,
)

TR = 2.0


def _events(rng: np.random.Generator, n_labels: int, movie_s: float) -> dict[str, tuple[np.ndarray, ...]]:
    events = {}
    for j in range(n_labels):
        n = int(rng.integers(3, 9))
        onsets = np.sort(rng.uniform(0.0, movie_s, n))
        events[f"label {j:03d}"] = (onsets, rng.uniform(2.0, 12.0, n), np.ones(n))
    return events


def _smooth_noise(rng: np.random.Generator, rows: int, columns: int, rho: float = 0.7) -> np.ndarray:
    """AR(1) noise: autocorrelated like an ICA time course."""
    white = rng.standard_normal((rows, columns))
    out = np.empty_like(white)
    out[0] = white[0]
    for t in range(1, rows):
        out[t] = rho * out[t - 1] + white[t]
    return out


def test_a_single_link_among_600_labels_reaches_q_below_001():
    rng = np.random.default_rng(600)
    runs, subjects = [(0.0, 160), (330.0, 160)], 2
    labels, y = label_regressors(_events(rng, 600, 650.0), TR, runs)
    target = 417
    signal = np.tile(y[:, target] / y[:, target].std(), subjects)
    x = np.column_stack([signal + 1.2 * _smooth_noise(rng, signal.size, 1)[:, 0]])
    result = temporal_decode(x, y, [n for _, n in runs], subjects, n_shifts=shifts_for(len(labels)))

    assert int(np.argmin(result.q[0])) == target, labels[int(np.argmin(result.q[0]))]
    assert result.q[0, target] < 0.01, result.q[0, target]
    assert result.p[0, target] > 0  # tiny, not zero


def test_p_of_unlinked_components_is_uniform():
    rng = np.random.default_rng(31)
    runs, subjects = [(0.0, 110), (240.0, 90)], 2
    _, y = label_regressors(_events(rng, 4, 420.0), TR, runs)
    x = _smooth_noise(rng, 200 * subjects, 300)
    p = temporal_decode(x, y, [110, 90], subjects, n_shifts=1000).p
    for column in p.T:
        assert scipy.stats.kstest(column, "uniform").pvalue > 0.01
    # The far tail (p below the switch at 11/1001) is not inflated: about 0.5% of 1,200 pairs below 0.005.
    assert (p < 0.005).sum() <= 16, np.sort(p.ravel())[:20]


def test_the_tail_joins_the_empirical_p_and_falls_monotonically():
    rng = np.random.default_rng(4)
    n_shifts = 2000
    null_z = 0.01 + 0.08 * rng.standard_normal(n_shifts)
    null_r = np.abs(np.tanh(null_z))
    switch = np.sort(null_r)[-TAIL_EXCEEDANCES]
    just_below = np.nextafter(switch, 0.0)
    grid = np.concatenate([np.linspace(0.0, just_below, 400), [switch], np.linspace(switch, 0.95, 400)[1:]])
    count = (null_r[:, None] >= grid[None, :]).sum(axis=0)
    empirical = (1.0 + count) / (1.0 + n_shifts)
    mean, sd = null_z.mean(), null_z.std(ddof=1)
    p = tail_p(empirical, grid, np.full(grid.shape, switch), mean, sd, n_shifts)

    below = grid < switch
    np.testing.assert_array_equal(p[below], empirical[below])  # the empirical p where the null reaches it
    assert (np.diff(p) <= 0).all()  # monotone over the whole range
    at = int(np.flatnonzero(grid == switch)[0])
    assert p[at] == (1.0 + TAIL_EXCEEDANCES) / (1.0 + n_shifts)
    assert p[at - 1] == p[at]  # no jump at the switch: the last empirical value equals the tail's first
    assert p[-1] < 1e-20 and p[-1] > 0
    assert (np.diff(p[at:]) < 0).all()  # strictly falling beyond


def test_the_empirical_p_stays_where_enough_draws_reach_the_statistic():
    rng = np.random.default_rng(12)
    lengths, subjects = [80, 70], 2
    y = _smooth_noise(rng, 150, 6)
    x = np.tile(y, (subjects, 1)) * [2.0, 0.5, 0.2, 0.1, 0.0, 0.0] + _smooth_noise(rng, 300, 6)
    tailed = temporal_decode(x, y, lengths, subjects, n_shifts=1500).p
    counted = temporal_decode(x, y, lengths, subjects, n_shifts=1500, tail=False).p
    switch = (1.0 + TAIL_EXCEEDANCES) / 1501
    coarse = counted > switch
    assert coarse.any() and (~coarse).any()
    np.testing.assert_array_equal(tailed[coarse], counted[coarse])
    assert (tailed[~coarse] <= switch).all()
    assert tailed[0, 0] < counted[0, 0] == 1 / 1501  # the strong link is resolved below the count's floor
