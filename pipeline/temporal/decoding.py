"""Temporal decoding: ICA component time courses against movie-annotation regressors, with a circular-shift null.

FSL MELODIC gives each component a time course. Group temporal-concatenation ICA concatenates the runs of each
subject, so a collection's time course has ``rows = (volumes per subject) x (subjects)``: subject blocks one after
another, each block the runs in concatenation order. A run is known by the movie time (s) of its first kept volume
and its number of volumes; runs may leave gaps or overlap in movie time.

Regressors. For each annotation label, the events' boxcars (times their amplitudes) are convolved with the SPM
canonical HRF by :func:`nilearn.glm.first_level.compute_regressor`, separately for every run on that run's own frame
times, and the runs are stacked in order. The regressor is the same for every subject (they all watched the same
movie).

Statistic. For a component time course ``x`` (all rows) and a label regressor ``y`` repeated for every subject,
``r`` is Pearson's r over all rows. With ``xc`` the centred time course and ``B`` the sum of its subject blocks,
``sum(xc * y_rep) = B . yc``, so one ``(rows per subject)``-long product replaces an ``S``-times-longer one, and
``||y_rep - mean|| = sqrt(S) ||yc||``.

Null. The regressor is circularly shifted within each run, independently per run, the same shift for every
subject (the movie, not the subject, is shifted). A circular shift keeps a run's mean and norm, so only the cross
product changes; for every run and every possible shift it is one FFT cross-correlation of ``B`` with ``yc``,
tabulated once. A null draw picks one shift per run (:func:`circular_shifts`) and adds up the tabulated values, for
all components and labels at once. Two-sided: ``p = (1 + #{|r_null| >= |r|}) / (1 + n_shifts)``. Shifting keeps
the autocorrelation of the HRF-smoothed regressor, which a row permutation would destroy (and so give p values
that are too small).

Far tail. That count cannot go below ``1 / (1 + n_shifts)``, too coarse for Benjamini-Hochberg over hundreds of
labels (a single hit among ``m`` labels needs ``p < 0.05 / m``). Beyond the :data:`TAIL_EXCEEDANCES`-th largest null
value ``t`` (where the count falls below it, as in Knijnenburg et al. 2009), p is the empirical p at ``t`` times the
conditional tail of a normal distribution fitted to the Fisher z (``arctanh r``) of the null draws:
``p = (1 + M) / (1 + n_shifts) * P(|Z| >= |z|) / P(|Z| >= z_t)``, ``Z ~ N(mean, sd)`` of the null z. It equals the
empirical p at ``t``, falls monotonically beyond, and is used from :data:`TAIL_MIN_SHIFTS` draws on; elsewhere p
is the empirical count.

Memory: the cross-correlation tables hold ``rows per subject x components x labels`` float64 values, built for as
many labels at a time as fit in :data:`TABLE_BYTES`; the FFT products are made for a few components at a time
(:data:`FFT_BYTES`) and the null is summed for a chunk of draws at a time (:data:`NULL_BYTES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.stats
from nilearn.glm.first_level import compute_regressor

# nilearn's defaults, named because the event selection below must use the same window nilearn builds: the
# oversampled grid starts MIN_ONSET seconds before a run's first frame.
MIN_ONSET = -24.0
OVERSAMPLING = 50  # TR / 50 = 40 ms at TR 2 s: finer than annotation timing
TABLE_BYTES = 512 * 2**20  # cross-correlation tables for one block of labels
NULL_BYTES = 64 * 2**20  # null cross products for one chunk of draws
FFT_BYTES = 32 * 2**20  # complex products of one run for one chunk of components
# Ties between a null draw and the observed value are equal in exact arithmetic but come from different sums of
# rounded numbers; a relative tolerance (as scipy.stats.permutation_test uses) counts them as ties.
_TIE_TOLERANCE = 100 * np.finfo(np.float64).eps
TAIL_EXCEEDANCES = 10  # M: below this many null values at least as large, p comes from the fitted tail
TAIL_MIN_SHIFTS = 1000  # fewer draws: the empirical p only (the fit needs draws)
_R_LIMIT = 1.0 - 1e-12  # |r| is clipped below 1 so that arctanh stays finite


@dataclass(frozen=True)
class TemporalResult:
    """Temporal decoding of a collection: one row per component, one column per label, all float64.

    Attributes
    ----------
    r : numpy.ndarray
        ``(n_components, n_labels)`` Pearson r over all rows; 0 where the time course or the regressor is constant.
    p : numpy.ndarray
        ``(n_components, n_labels)`` two-sided circular-shift p values in ``(0, 1]``: the empirical count, and
        beyond the null's :data:`TAIL_EXCEEDANCES`-th largest value the fitted tail (module docstring); 1 where r
        is 0 because of a constant input.
    q : numpy.ndarray
        ``(n_components, n_labels)`` Benjamini-Hochberg q values across the labels of each component.
    """

    r: np.ndarray
    p: np.ndarray
    q: np.ndarray


def _start_and_volumes(run: Any) -> tuple[float, int]:
    """A run as ``(start_s, volumes)``, from a ``Run`` (``start_s``, ``volumes`` attributes) or a pair."""
    start, volumes = (run.start_s, run.volumes) if hasattr(run, "start_s") else run
    if not np.isfinite(start):
        raise ValueError(f"run start must be a finite time in seconds, got {start!r}")
    if int(volumes) != volumes or volumes < 1:
        raise ValueError(f"a run needs a whole, positive number of volumes, got {volumes!r}")
    return float(start), int(volumes)


def run_frame_times(tr: float, runs: Sequence[tuple[float, int]]) -> list[np.ndarray]:
    """The movie time of every volume of every run.

    Parameters
    ----------
    tr : float
        Repetition time in seconds, positive.
    runs : sequence of (float, int)
        For each run in concatenation order, the movie time (s) of its first kept volume and its number of
        volumes (``pipeline.temporal.timing.Run`` objects work too).

    Returns
    -------
    list of numpy.ndarray
        One float64 array per run: ``start_s + tr * arange(volumes)``, in seconds of movie time.

    Raises
    ------
    ValueError
        If ``tr`` is not a positive finite number or a run has a non-finite start or no volumes.
    """
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"TR must be a positive number of seconds, got {tr!r}")
    return [start + tr * np.arange(volumes, dtype=np.float64) for start, volumes in map(_start_and_volumes, runs)]


def _run_regressor(
    onsets: np.ndarray, durations: np.ndarray, amplitudes: np.ndarray, frame_times: np.ndarray
) -> np.ndarray:
    """One label's regressor at one run's frame times.

    nilearn builds the run's grid from ``frame_times[0] + MIN_ONSET``. An event that ends before that start still
    leaves a one-sample spike at the grid's first sample (with a warning), which a 2-hour movie's earlier events
    add up into a visible artefact at the start of late runs; such events are left out. One that starts before the
    grid and ends inside it is cut at the grid start, where nilearn would put its onset anyway, without the warning.
    Events after the last frame cannot reach a frame (the HRF is causal) and are left out to save work.
    """
    grid_start = frame_times[0] + MIN_ONSET
    ends = onsets + durations
    keep = (ends >= grid_start) & (onsets <= frame_times[-1])
    if not keep.any():
        return np.zeros(len(frame_times))
    starts = np.maximum(onsets[keep], grid_start)
    condition = np.vstack([starts, ends[keep] - starts, amplitudes[keep]])
    regressor, _ = compute_regressor(
        exp_condition=condition,
        hrf_model="spm",
        frame_times=frame_times,
        oversampling=OVERSAMPLING,
        min_onset=MIN_ONSET,
    )
    return regressor[:, 0]


def _event_arrays(label: str, triple: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """One label's (onsets, durations, amplitudes) as checked, equally long, finite float64 vectors."""
    arrays = tuple(np.asarray(a, dtype=np.float64).ravel() for a in triple)
    if len(arrays) != 3 or len({len(a) for a in arrays}) != 1:
        raise ValueError(f"label {label!r}: events need onsets, durations and amplitudes of one length")
    if not all(np.isfinite(a).all() for a in arrays) or (arrays[1] < 0).any():
        raise ValueError(f"label {label!r}: event times must be finite and durations not negative")
    return arrays


def label_regressors(
    events: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], tr: float, runs: Sequence[tuple[float, int]]
) -> tuple[list[str], np.ndarray]:
    """HRF-convolved regressors of movie annotations, run by run, for one subject's concatenated runs.

    Parameters
    ----------
    events : mapping of str to (array, array, array)
        Label -> ``(onsets, durations, amplitudes)``, BIDS-style events in seconds of movie time.
    tr : float
        Repetition time in seconds.
    runs : sequence of (float, int)
        For each run in concatenation order, the movie time (s) of its first kept volume and its number of
        volumes, at least 2 (nilearn needs two frames to know the sampling). Gaps and overlaps are allowed.

    Returns
    -------
    labels : list of str
        The labels of ``events``, sorted.
    regressors : numpy.ndarray
        ``(sum of volumes, n_labels)`` float64: column ``j`` is ``labels[j]``'s boxcars times amplitudes convolved
        with the SPM canonical HRF (``compute_regressor(..., hrf_model="spm")``), computed for every run at its own
        frame times, runs stacked in order. A run that no event reaches has zeros.

    Raises
    ------
    ValueError
        If the TR or a run is invalid, a run has fewer than 2 volumes, or a label's arrays differ in length, are
        not finite or have a negative duration.
    """
    frame_times = run_frame_times(tr, runs)
    if any(len(times) < 2 for times in frame_times):
        raise ValueError("every run needs at least 2 volumes to be convolved with the HRF")
    labels = sorted(events)
    out = np.zeros((sum(len(times) for times in frame_times), len(labels)))
    for j, label in enumerate(labels):
        onsets, durations, amplitudes = _event_arrays(label, events[label])
        out[:, j] = np.concatenate([_run_regressor(onsets, durations, amplitudes, times) for times in frame_times])
    return labels, out


def circular_shifts(run_lengths: Sequence[int], n_shifts: int, seed: int = 0) -> np.ndarray:
    """The null draws of :func:`temporal_decode`: one circular shift per run for each draw.

    Parameters
    ----------
    run_lengths : sequence of int
        Volumes of each run, in concatenation order.
    n_shifts : int
        Number of draws.
    seed : int
        Seed of the :class:`numpy.random.Generator`; the same seed gives the same draws.

    Returns
    -------
    numpy.ndarray
        ``(n_shifts, n_runs)`` int64; ``[i, k]`` is uniform in ``[0, run_lengths[k])``, independent across runs and
        draws, except that no draw shifts every run by 0 (that would be the observed statistic itself). Shift ``d``
        of run ``k`` moves the regressor later by ``d`` volumes, wrapping round within the run
        (``np.roll(y_k, d)``).

    Raises
    ------
    ValueError
        If ``n_shifts`` is below 1, a run length is below 1, or every run has a single volume (no shift but 0).
    """
    lengths = np.asarray(run_lengths, dtype=np.int64)
    if n_shifts < 1:
        raise ValueError(f"n_shifts must be at least 1, got {n_shifts}")
    if lengths.ndim != 1 or len(lengths) == 0 or (lengths < 1).any():
        raise ValueError("run lengths must be a non-empty list of positive volume counts")
    if (lengths == 1).all():
        raise ValueError("no circular shift exists: every run has a single volume")
    rng = np.random.default_rng(seed)
    shifts = rng.integers(0, lengths, size=(n_shifts, len(lengths)))
    # Redraw the all-zero draws; each redraw is all-zero with probability 1 / prod(lengths) <= 1/2.
    while (identity := ~shifts.any(axis=1)).any():
        shifts[identity] = rng.integers(0, lengths, size=(int(identity.sum()), len(lengths)))
    return shifts


def _checked(
    timecourses: np.ndarray, regressors: np.ndarray, run_lengths: Sequence[int], subjects: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs of :func:`temporal_decode` checked: (time courses as given, regressors float64, run lengths)."""
    x = np.asarray(timecourses)
    y = np.asarray(regressors, dtype=np.float64)
    lengths = np.asarray(run_lengths, dtype=np.int64)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError("time courses and regressors must be 2-D (rows, components) and (rows, labels)")
    if lengths.ndim != 1 or len(lengths) == 0 or (lengths < 1).any():
        raise ValueError("run lengths must be a non-empty list of positive volume counts")
    if int(subjects) != subjects or subjects < 1:
        raise ValueError(f"subjects must be a positive whole number, got {subjects!r}")
    per_subject = int(lengths.sum())
    if len(y) != per_subject:
        raise ValueError(f"regressors have {len(y)} rows, the runs {per_subject} volumes")
    if len(x) != per_subject * subjects:
        raise ValueError(f"time courses have {len(x)} rows, expected {per_subject} volumes x {subjects} subjects")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("time courses and regressors must be finite")
    return x, y, lengths


def _summed_centred_blocks(x: np.ndarray, subjects: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre each component over all rows; return the sum of the subject blocks and each component's norm.

    One subject block at a time in float64, so a float32 input never gets a full float64 copy. A constant
    component gets an exact zero column (its computed mean may differ from the value by rounding).
    """
    per_subject = len(x) // subjects
    mean = x.mean(axis=0, dtype=np.float64)
    constant = x.max(axis=0) == x.min(axis=0)
    summed = np.zeros((per_subject, x.shape[1]))
    squares = np.zeros(x.shape[1])
    for s in range(subjects):
        block = x[s * per_subject : (s + 1) * per_subject].astype(np.float64) - mean
        block[:, constant] = 0.0
        summed += block
        squares += np.einsum("ij,ij->j", block, block)
    return summed, np.sqrt(squares)


def _cross_correlations(summed: np.ndarray, yc: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``table[offset_k + d, c, l] = sum_t summed[t, c] * roll(yc_k, d)[t, l]`` over run ``k``, every shift ``d``.

    Circular cross-correlation by FFT: ``irfft(rfft(b) * conj(rfft(y)))[d] = sum_t b[t] y[t - d]``. The length
    is the run's own (padding would turn the circular shift into a linear one). A few components at a time, so
    the complex products stay within :data:`FFT_BYTES` however long the run.
    """
    table = np.empty((len(summed), summed.shape[1], yc.shape[1]))
    start = 0
    for n in map(int, lengths):
        b = scipy.fft.rfft(summed[start : start + n], axis=0, workers=-1)
        y = np.conj(scipy.fft.rfft(yc[start : start + n], axis=0, workers=-1))
        step = max(1, FFT_BYTES // (16 * y.size))
        for c in range(0, b.shape[1], step):
            product = b[:, c : c + step, np.newaxis] * y[:, np.newaxis, :]
            table[start : start + n, c : c + step] = scipy.fft.irfft(product, n=n, axis=0, workers=-1)
        start += n
    return table


def _null_p(table: np.ndarray, lengths: np.ndarray, shifts: np.ndarray, scale: np.ndarray, tail: bool) -> np.ndarray:
    """Two-sided p of each (component, label) of ``table`` against the draws ``shifts``: the empirical count and,
    when ``tail``, the fitted far tail (:func:`tail_p`) where fewer than :data:`TAIL_EXCEEDANCES` draws reach the
    observed value.

    ``scale`` is ``1 / (||x|| sqrt(S) ||y_c||)`` per pair (0 for a constant input), which turns a cross product into
    r. The count is summed for a chunk of draws at a time; the few pairs in the far tail are then drawn again
    (:func:`_far_tail`).
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = shifts + offsets  # a draw's row of the table, per run
    observed = np.abs(table[offsets].sum(axis=0))
    threshold = observed - _TIE_TOLERANCE * observed
    count = np.zeros(observed.shape, dtype=np.int64)
    chunk = max(1, NULL_BYTES // max(1, 8 * observed.size))
    null = np.empty((min(chunk, len(rows)), *observed.shape))
    part = np.empty_like(null)
    for first in range(0, len(rows), chunk):
        draws = rows[first : first + chunk]
        m = len(draws)
        np.take(table, draws[:, 0], axis=0, out=null[:m], mode="clip")
        for k in range(1, draws.shape[1]):
            np.take(table, draws[:, k], axis=0, out=part[:m], mode="clip")
            null[:m] += part[:m]
        count += (np.abs(null[:m]) >= threshold).sum(axis=0)
    p = (1.0 + count) / (1.0 + len(rows))
    if tail:
        _far_tail(p, table, rows, observed, scale, np.argwhere((count < TAIL_EXCEEDANCES) & (scale > 0)))
    return p


def _far_tail(
    p: np.ndarray, table: np.ndarray, rows: np.ndarray, observed: np.ndarray, scale: np.ndarray, far: np.ndarray
) -> None:
    """Replace in ``p`` the empirical p of the pairs ``far`` (``(n, 2)`` component and label indices) by the
    fitted tail: their null drawn again (the same draws), its :data:`TAIL_EXCEEDANCES`-th largest ``|r|``, and
    the mean and sd of its Fisher z. A few pairs at a time, within :data:`NULL_BYTES`."""
    n = len(rows)
    step = max(1, NULL_BYTES // (8 * n))
    for first in range(0, len(far), step):
        pairs = tuple(far[first : first + step].T)  # (component indices, label indices)
        sub = table[(slice(None), *pairs)]  # (rows per subject, pairs)
        null = sub[rows[:, 0]]
        for k in range(1, rows.shape[1]):
            null += sub[rows[:, k]]
        null *= scale[pairs]  # r of every draw
        z = np.arctanh(np.clip(null, -_R_LIMIT, _R_LIMIT))
        switch = np.partition(np.abs(null), n - TAIL_EXCEEDANCES, axis=0)[n - TAIL_EXCEEDANCES]
        r = observed[pairs] * scale[pairs]
        p[pairs] = tail_p(p[pairs], r, switch, z.mean(axis=0), z.std(axis=0, ddof=1), n)


def _log_two_sided_sf(z: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``log P(|Z| >= z)`` for ``Z ~ N(mean, sd)`` and ``z >= 0``, accurate far into the tail."""
    return np.logaddexp(scipy.stats.norm.logsf((z - mean) / sd), scipy.stats.norm.logsf((z + mean) / sd))


def tail_p(
    p: np.ndarray, r: np.ndarray, r_switch: np.ndarray, mean: np.ndarray, sd: np.ndarray, n_shifts: int
) -> np.ndarray:
    """Empirical p values with the far tail replaced by a normal fit to the Fisher z of the null.

    Parameters
    ----------
    p : numpy.ndarray
        Empirical p values ``(1 + count) / (1 + n_shifts)``.
    r : numpy.ndarray
        ``|r|`` observed, same shape.
    r_switch : numpy.ndarray
        ``|r|`` of the :data:`TAIL_EXCEEDANCES`-th largest null value, same shape: where the tail takes over.
    mean, sd : numpy.ndarray
        Mean and standard deviation of ``arctanh(r_null)`` over the draws, same shape.
    n_shifts : int
        Number of null draws.

    Returns
    -------
    numpy.ndarray
        ``p`` where ``r < r_switch`` (or the fit is degenerate: zero spread, a constant input, too few draws);
        elsewhere ``(1 + M) / (1 + n_shifts) * S(arctanh r) / S(arctanh r_switch)`` with ``S(z) = P(|Z| >= z)``,
        ``Z ~ N(mean, sd)``, at least the smallest positive float64. At ``r = r_switch`` it equals the empirical p
        just below (``M`` null values reach it), and it falls monotonically as ``r`` grows.
    """
    p = np.array(p, dtype=np.float64)
    r, r_switch, mean, sd = np.broadcast_arrays(r, r_switch, mean, sd)
    use = (r >= r_switch) & (r_switch > 0) & (sd > 0) & np.isfinite(r_switch)
    if n_shifts < max(TAIL_MIN_SHIFTS, TAIL_EXCEEDANCES) or not use.any():
        return p
    z = np.arctanh(np.clip(r[use], 0.0, _R_LIMIT))
    z_switch = np.arctanh(np.clip(r_switch[use], 0.0, _R_LIMIT))
    log_ratio = _log_two_sided_sf(z, mean[use], sd[use]) - _log_two_sided_sf(z_switch, mean[use], sd[use])
    at_switch = (1.0 + TAIL_EXCEEDANCES) / (1.0 + n_shifts)
    p[use] = np.maximum(at_switch * np.exp(np.minimum(log_ratio, 0.0)), np.finfo(np.float64).tiny)
    return p


def temporal_decode(
    timecourses: np.ndarray,
    regressors: np.ndarray,
    run_lengths: Sequence[int],
    subjects: int,
    n_shifts: int = 1000,
    seed: int = 0,
    tail: bool = True,
) -> TemporalResult:
    """Correlate every component's time course with every label's regressor; circular-shift p and BH q values.

    Parameters
    ----------
    timecourses : numpy.ndarray
        ``(sum(run_lengths) * subjects, n_components)`` real, finite: subject blocks one after another, each block
        the runs in concatenation order (group temporal-concatenation ICA). float32 is fine; sums are float64.
    regressors : numpy.ndarray
        ``(sum(run_lengths), n_labels)`` real, finite, one subject's rows (:func:`label_regressors`); the same for
        every subject.
    run_lengths : sequence of int
        Volumes of each run, in concatenation order; at least one run longer than 1 volume.
    subjects : int
        Number of concatenated subjects ``S``.
    n_shifts : int
        Null draws (:func:`circular_shifts`).
    seed : int
        Seed of the null draws.
    tail : bool
        Whether p beyond the null's :data:`TAIL_EXCEEDANCES`-th largest value comes from the fitted tail
        (:func:`tail_p`; only from :data:`TAIL_MIN_SHIFTS` draws on). False: the empirical count only.

    Returns
    -------
    TemporalResult
        ``r``, ``p``, ``q``, each ``(n_components, n_labels)`` float64. ``r`` is Pearson r over all rows with the
        regressor repeated for every subject (as ``np.corrcoef``). ``p = (1 + #{|r_null| >= |r|}) / (1 + n_shifts)``
        over the draws of :func:`circular_shifts`, each shifting the regressor within every run and the same for
        every subject, with the far tail from :func:`tail_p` when ``tail``. A constant time course or regressor
        has ``r = 0`` and ``p = 1``. ``q`` is :func:`benjamini_hochberg` of ``p`` across labels.

    Raises
    ------
    ValueError
        If the shapes disagree with ``run_lengths`` and ``subjects``, a value is not finite, or no null shift
        exists (see :func:`circular_shifts`).
    """
    x, y, lengths = _checked(timecourses, regressors, run_lengths, subjects)
    shifts = circular_shifts(lengths, n_shifts, seed)
    summed, x_norm = _summed_centred_blocks(x, int(subjects))
    yc = y - y.mean(axis=0)
    yc[:, y.max(axis=0) == y.min(axis=0)] = 0.0  # exact zeros: a constant regressor correlates with nothing
    y_norm = np.sqrt(subjects) * np.linalg.norm(yc, axis=0)

    denominator = np.outer(x_norm, y_norm)
    r = np.divide(summed.T @ yc, denominator, out=np.zeros(denominator.shape), where=denominator > 0)

    # Zero columns give zero cross products for every draw, which all tie with the observed 0: p = 1 by itself.
    scale = np.divide(1.0, denominator, out=np.zeros(denominator.shape), where=denominator > 0)
    fit_tail = bool(tail) and n_shifts >= max(TAIL_MIN_SHIFTS, TAIL_EXCEEDANCES)
    p = np.empty(r.shape)
    labels_per_block = max(1, TABLE_BYTES // max(1, 8 * len(summed) * summed.shape[1]))
    for first in range(0, yc.shape[1], labels_per_block):
        block = slice(first, first + labels_per_block)
        table = _cross_correlations(summed, yc[:, block], lengths)
        p[:, block] = _null_p(table, lengths, shifts, scale[:, block], fit_tail)
    return TemporalResult(r=r, p=p, q=benjamini_hochberg(p))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values along the last axis.

    Parameters
    ----------
    p : array_like
        p values in ``[0, 1]``, at least 1-D; each slice along the last axis is one family of tests.

    Returns
    -------
    numpy.ndarray
        float64 of ``p``'s shape: ``q_(i) = min over j >= i of p_(j) * m / j`` for the ``m`` p values of a family
        sorted ascending, capped at 1; q is monotone in p within a family and never below p.

    Raises
    ------
    ValueError
        If ``p`` is 0-D or has values outside ``[0, 1]`` (NaN included).
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("p must have at least one axis")
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError("p values must lie in [0, 1]")
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    scaled = np.take_along_axis(p, order, axis=-1) * m / np.arange(1, m + 1)
    # Running minimum from the largest p down: the step-up rule, which also makes q monotone.
    scaled = np.minimum.accumulate(scaled[..., ::-1], axis=-1)[..., ::-1]
    q = np.empty_like(scaled)
    np.put_along_axis(q, order, np.minimum(scaled, 1.0), axis=-1)
    return q
