"""Inter-subject correlation (ISC): how strongly a film synchronises its viewers, when, and which networks together.

Every function takes the per-subject time courses of a collection's components as one array ``data[t, v, s]``:
``T`` volumes x ``V`` components x ``S`` subjects, each subject's runs concatenated in order (BrainIAK's layout;
:func:`subjects_array` makes it from the stored subject-major matrix). Computation is in float64 (but for the
null's phase products, below).

ISC (Hasson et al. 2004; Nastase et al. 2019). With ``c_s`` a subject's centred series of one component and
``o_s = sum_{j != s} c_j`` the centred sum of the others (the mean of the others, up to a scale r ignores):

    leave-one-out  r_s    = <c_s, o_s> / (||c_s|| ||o_s||)            one (S, V) array for all components at once
    pairwise       r_ij   = <c_i, c_j> / (||c_i|| ||c_j||)            one (S x S) Gram matrix per component
    summary        ISC    = tanh(mean(arctanh(r)))                    the Fisher-z mean over subjects (or pairs)

exactly as BrainIAK's ``isc(..., pairwise=False|True)`` and ``compute_summary_statistic(..., 'mean')``.

Null (phase randomisation per run, Lerner et al. 2011; Simony et al. 2016). In each resample every subject's
series is phase-randomised within every run: random phases on the run's positive frequencies, their negatives on
the negative frequencies, DC and Nyquist kept; the same phases for every component of a subject (BrainIAK's
``phase_randomize``), new ones for every subject, run and resample. The leave-one-out and pairwise ISC of the
randomised data are the null. BrainIAK's leave-one-out ``phaseshift_isc`` randomises only the left-out subject;
its subjects' null r are then nearly independent while the observed ones share the others' mean, so its null mean
is too narrow (about half the variance under no shared signal: some 12 % of null components below p = 0.05).
Randomising every subject keeps that dependence, and p is uniform under the null.

A phase change keeps each run's mean and power, so every ``||c_s||`` is unchanged and only the dot products of
pairs move. By Parseval, with ``X_i = rfft(c_i)`` of one run of ``n`` volumes and ``C = X_i conj(X_j)``,

    <c_i~, c_j~> = (C_0 + C_{n/2}) / n + (2 / n) sum_k Re(C_k exp(i (phi_ik - phi_jk)))

(``C_{n/2}`` only when ``n`` is even), and the leave-one-out statistics follow from these pair dots:
``<c_s, o_s> = sum_{j != s} d_sj``, ``||o_s||^2 = sum_{j != s} ||c_j||^2 + 2 sum_{j < l; j, l != s} d_jl``. The
spectra are taken once; a chunk of resamples is then, for every pair, one ``(resamples x 2K) (2K x components)``
real matrix product (K randomised frequencies over all runs), never an FFT per resample. These products are float32
(a null r moves by under 1e-7 on a 3,599-volume film, far below the Monte Carlo error of p); OpenBLAS runs them
best with one thread per worker process (``OPENBLAS_NUM_THREADS=1``) when the cores are busy.
``p = (1 + #{null >= observed}) / (1 + n)`` (one-sided), Benjamini-Hochberg q over the components that have an ISC.

Over time. Windowed leave-one-out ISC from cumulative sums of the centred series, their squares and their products
with the all-subject sum: every window of every run in O(T x V x S), whatever the window. Windows stay inside a
run and step one volume.

ISFC (Simony et al. 2016). ``M_s[i, j] = r(c_s[:, i], o_s[:, j])`` for every subject, symmetrised
``(M_s + M_s^T) / 2`` and Fisher-z averaged over subjects, as BrainIAK's ``isfc(..., pairwise=False)``.

Undefined values. A series that does not vary (a constant subject or column) has no correlation. It is left out of
every statistic it would enter (it adds nothing to the others' mean either), and the summaries are taken over the
subjects that remain; a value that stays undefined (a component with fewer than two varying subjects) is NaN,
which callers store as "no value", and :class:`ComponentISC` says why in its note. No NaN enters a summary.

Nothing here imports Dash, Flask or the store; BrainIAK is a test-time reference only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.signal
import scipy.stats

NULL_BYTES = 96 * 1024**2  # memory for one chunk of resamples' phases (and their cos and sin) of all subjects
CONSTANT_RTOL = 1e-10  # a series whose standard deviation is below this fraction of its largest |value| is constant
R_LIMIT = 1.0 - 1e-15  # |r| is clipped here before arctanh, so a perfect correlation stays finite
DEFAULT_WINDOWED_RESAMPLES = 100
# The null's phase products and their sums over frequencies: float32 halves the time of the one matrix product
# that dominates, and moves a null r by under 1e-7, far below the Monte Carlo error of p (about 0.007 at p = 0.05
# with 1,000 resamples). Everything observed is float64.
NULL_COMPLEX = np.complex64
# Subject pairs x randomised frequencies x components x resamples of the null, at most: 1,000 resamples of 15
# subjects, 70 components and 3,599 volumes take 1.3e10 (seconds); 100 subjects would take 6.2e11, and get fewer
# resamples (said in the note) rather than hold a worker for many minutes.
MAX_NULL_WORK = 2e11
DEFAULT_WINDOW_S = 30.0  # seconds of a sliding window, unless the page asks for another


# --- checks -----------------------------------------------------------------------------------------------------


def _as_data(data: object, min_subjects: int = 2) -> np.ndarray:
    """``data`` as float64 ``(T, V, S)``; a 2-D ``(T, S)`` array is one component. Raises ValueError plainly."""
    try:
        x = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"time courses must be numbers: {exc}") from None
    if x.ndim == 2:
        x = x[:, np.newaxis, :]
    if x.ndim != 3:
        raise ValueError(f"time courses must be volumes x components x subjects, got {x.ndim} axes")
    n_volumes, n_components, n_subjects = x.shape
    if n_volumes < 3:
        raise ValueError(f"time courses need at least 3 volumes, got {n_volumes}")
    if n_components < 1:
        raise ValueError("time courses have no component")
    if n_subjects < min_subjects:
        raise ValueError(f"ISC needs at least {min_subjects} subjects, got {n_subjects}")
    finite = np.isfinite(x)
    if not finite.all():
        t, v, s = np.argwhere(~finite)[0]
        raise ValueError(
            f"time courses must be finite: volume {t + 1} of component {v + 1} of subject {s + 1} is {x[t, v, s]}"
        )
    return x


def _as_runs(run_lengths: Sequence[int], n_volumes: int) -> list[int]:
    """Run lengths as positive ints that add up to ``n_volumes``."""
    try:
        lengths = [int(n) for n in run_lengths]
    except (TypeError, ValueError):
        raise ValueError("run lengths must be whole numbers of volumes") from None
    if not lengths or min(lengths) < 1:
        raise ValueError("run lengths must be a non-empty list of positive volume counts")
    if sum(lengths) != n_volumes:
        raise ValueError(f"the runs add up to {sum(lengths):,} volumes but the time courses have {n_volumes:,}")
    return lengths


def _run_starts(lengths: Sequence[int]) -> list[int]:
    return [int(a) for a in np.concatenate([[0], np.cumsum(lengths)[:-1]])]


# --- shared pieces ----------------------------------------------------------------------------------------------


def _centred(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centred series with constant ones set to exactly 0, constant mask ``(V, S)``)."""
    c = x - x.mean(axis=0)
    constant = c.std(axis=0) <= CONSTANT_RTOL * np.abs(x).max(axis=0)
    c[:, constant] = 0.0
    return c, constant


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _loo_parts(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(others' centred sums ``(T, V, S)``, ``||c_s||`` and ``||o_s||`` ``(V, S)``)."""
    others = c.sum(axis=2, keepdims=True) - c
    return others, np.sqrt(np.einsum("tvs,tvs->vs", c, c)), np.sqrt(np.einsum("tvs,tvs->vs", others, others))


def _clip(r: np.ndarray) -> np.ndarray:
    return np.clip(r, -R_LIMIT, R_LIMIT)


def fisher_mean(values: np.ndarray, axis: int | tuple[int, ...] | None = 0) -> np.ndarray:
    """Fisher-z mean of correlations, ignoring NaN: ``tanh(nanmean(arctanh(values), axis))``.

    BrainIAK's ``compute_summary_statistic(values, 'mean', axis)``. An all-NaN slice gives NaN (without a warning);
    a value of exactly +-1 gives an infinite z and a mean of +-1.

    Parameters
    ----------
    values : array_like
        Correlations in ``[-1, 1]`` (NaN for "no value").
    axis : int, tuple of int or None
        Axis (axes) to average over; None for all.

    Returns
    -------
    numpy.ndarray
        float64, ``values`` without ``axis``.
    """
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.tanh(np.nanmean(np.arctanh(v), axis=axis))


def subjects_array(matrix: np.ndarray, n_subjects: int) -> np.ndarray:
    """Stored time courses -> BrainIAK's ``(T, V, S)`` layout.

    Parameters
    ----------
    matrix : array_like
        ``(S * T, V)``: one row per volume, subject blocks one after another (MELODIC's temporal concatenation),
        one column per component; a 1-D array is one component.
    n_subjects : int
        ``S``.

    Returns
    -------
    numpy.ndarray
        float64 ``(T, V, S)`` with ``out[t, v, s] = matrix[s * T + t, v]``.

    Raises
    ------
    ValueError
        If ``n_subjects`` is below 1 or does not divide the rows.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, np.newaxis]
    if m.ndim != 2:
        raise ValueError(f"time courses must be rows x components, got {m.ndim} axes")
    n_subjects = int(n_subjects)
    if n_subjects < 1 or m.shape[0] % n_subjects or m.shape[0] == 0:
        raise ValueError(f"{m.shape[0]:,} rows do not split into {n_subjects} equal subject blocks")
    n_volumes = m.shape[0] // n_subjects
    return np.ascontiguousarray(m.reshape(n_subjects, n_volumes, m.shape[1]).transpose(1, 2, 0))


# --- ISC --------------------------------------------------------------------------------------------------------


def _loo_r(c: np.ndarray) -> np.ndarray:
    """Leave-one-out r ``(S, V)``, NaN where a series or the others' mean is constant."""
    others, norm_c, norm_o = _loo_parts(c)
    return _ratio(np.einsum("tvs,tvs->vs", c, others), norm_c * norm_o).T


def _pairwise_r(c: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """Pairwise r ``(S (S - 1) / 2, V)`` in ``scipy.spatial.distance.squareform`` order, NaN for a constant one."""
    norms = np.sqrt(np.einsum("tvs,tvs->vs", c, c))
    u = np.ascontiguousarray((c / np.where(norms > 0, norms, 1.0)).transpose(1, 2, 0))  # (V, S, T)
    gram = np.matmul(u, u.transpose(0, 2, 1))  # (V, S, S)
    i, j = np.triu_indices(c.shape[2], k=1)
    r = gram[:, i, j].T
    r[constant[:, i].T | constant[:, j].T] = np.nan
    return np.clip(r, -1.0, 1.0)


def isc(data: np.ndarray, pairwise: bool = False) -> np.ndarray:
    """Inter-subject correlation of every component, per subject (leave-one-out) or per pair of subjects.

    BrainIAK's ``isc(data, pairwise, summary_statistic=None)``, but always 2-D: with two subjects the leave-one-out
    rows are both the pair's r (BrainIAK returns that single row).

    Parameters
    ----------
    data : array_like
        ``(T, V, S)`` finite time courses, ``S >= 2`` (a 2-D ``(T, S)`` array is one component).
    pairwise : bool
        False: each subject against the mean of the others; True: every pair of subjects.

    Returns
    -------
    numpy.ndarray
        float64 ``(S, V)``, or ``(S (S - 1) / 2, V)`` with pairs in the order of
        ``scipy.spatial.distance.squareform`` ((0, 1), (0, 2), ..., (1, 2), ...). NaN where a series is constant
        (BrainIAK gives NaN there too). Summarise with :func:`fisher_mean`.

    Raises
    ------
    ValueError
        Fewer than 2 subjects or 3 volumes, non-finite values, or not 2-D/3-D.
    """
    c, constant = _centred(_as_data(data))
    return _pairwise_r(c, constant) if pairwise else _loo_r(c)


@dataclass(frozen=True)
class ComponentISC:
    """ISC of every component of a collection, with its phase-randomisation p and BH q.

    Attributes
    ----------
    isc : numpy.ndarray
        ``(V,)`` Fisher-z mean over subjects of the leave-one-out r (with two subjects: the pair's r).
    isc_pairwise : numpy.ndarray or None
        ``(V,)`` Fisher-z mean over pairs of the pairwise r; None with one subject.
    subjects : numpy.ndarray or None
        ``(S, V)`` leave-one-out r of every subject; None with fewer than three subjects (two subjects have only
        the pair's r).
    p : numpy.ndarray
        ``(V,)`` one-sided p of ``isc`` against its phase-randomised null.
    q : numpy.ndarray
        ``(V,)`` Benjamini-Hochberg q over the components that have an ISC.
    n_resamples : int
        Resamples of the null (0 when there is no ISC).
    note : str or None
        What was left out and why, in plain words; None when nothing was.
    p_pairwise : numpy.ndarray or None
        ``(V,)`` one-sided p of ``isc_pairwise`` against the same resamples; None with one subject.

    Values that do not exist (one subject, a component with fewer than two varying subjects, a constant
    subject in ``subjects``) are NaN, and ``note`` says so.
    """

    isc: np.ndarray
    isc_pairwise: np.ndarray | None
    subjects: np.ndarray | None
    p: np.ndarray
    q: np.ndarray
    n_resamples: int
    note: str | None = None
    p_pairwise: np.ndarray | None = None


ONE_SUBJECT_NOTE = "One subject: no ISC (it compares two or more viewers' time courses)."


def _numbers(indices: np.ndarray) -> str:
    names = [str(int(i) + 1) for i in indices]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _constant_note(constant: np.ndarray, usable: np.ndarray) -> str | None:
    """Plain words for the constant series ``(V, S)`` and the components left without ISC (``usable`` False)."""
    n_components, n_subjects = constant.shape
    lines = []
    whole = constant.all(axis=0)
    if whole.any():
        one = whole.sum() == 1
        lines.append(
            f"{'Subject' if one else 'Subjects'} {_numbers(np.flatnonzero(whole))} {'has' if one else 'have'} a "
            f"constant time course in every component and {'is' if one else 'are'} left out of every ISC."
        )
    partial = constant & ~whole[np.newaxis, :]
    for v in np.flatnonzero(partial.any(axis=1) & usable):
        which = np.flatnonzero(partial[v])
        lines.append(
            f"Component {v + 1}: {'subject' if len(which) == 1 else 'subjects'} {_numbers(which)} constant, left "
            "out of its ISC."
        )
    if (~usable).any():
        which = np.flatnonzero(~usable)
        lines.append(
            f"{'Component' if len(which) == 1 else 'Components'} {_numbers(which)}: fewer than two subjects vary, "
            "so no ISC."
        )
    return " ".join(lines) or None


@dataclass(frozen=True)
class _Spectra:
    """What the null needs of the centred series: their randomised frequencies and the parts phases keep."""

    bins: np.ndarray  # (S, V, K) sqrt(2 / n) X at each run's frequencies 1 .. (n - 1) // 2, runs one after another
    conj: np.ndarray  # (S, V, K) their conjugates (2 / n: Parseval, a bin stands for itself and its conjugate)
    fixed: np.ndarray  # (V, S, S) dot products of the DC and Nyquist bins, which phases do not turn
    norms: np.ndarray  # (V, S) ||c_s||, which phases do not change

    @classmethod
    def of(cls, c: np.ndarray, lengths: Sequence[int]) -> _Spectra:
        n_volumes, n_components, n_subjects = c.shape
        bins, fixed = [], np.zeros((n_components, n_subjects, n_subjects))
        for start, n in zip(_run_starts(lengths), lengths):
            spectrum = scipy.fft.rfft(c[start : start + n], axis=0)  # (n // 2 + 1, V, S)
            for k in [0, n // 2] if n % 2 == 0 else [0]:
                fixed += np.einsum("vs,vt->vst", spectrum[k].real, spectrum[k].real) / n
            bins.append(spectrum[1 : (n - 1) // 2 + 1] * math.sqrt(2.0 / n))
        turned = np.ascontiguousarray(np.concatenate(bins, axis=0).transpose(2, 1, 0), dtype=NULL_COMPLEX)
        return cls(bins=turned, conj=turned.conj(), fixed=fixed, norms=np.sqrt(np.einsum("tvs,tvs->vs", c, c)))

    def pair_dots(self, turns: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """``<c_i~, c_j~>`` ``(P, B, V)`` for phases given as ``turns = exp(i phi)`` ``(S, B, K)``.

        With ``C = X_i conj(X_j)`` and ``theta = phi_i - phi_j`` a bin adds ``Re(C e^{i theta})
        = Re C cos theta - Im C sin theta``. ``conj(turn_i) turn_j = cos theta - i sin theta`` and ``C``, read as
        interleaved real pairs, make that sum one real ``(B, 2K) x (2K, V)`` product per pair.
        """
        n_subjects, n_resamples, k = turns.shape
        back = turns.conj()
        out = np.empty((len(pairs), n_resamples, self.bins.shape[1]))
        rotation = np.empty((n_resamples, k), dtype=NULL_COMPLEX)
        cross = np.empty(self.bins.shape[1:], dtype=NULL_COMPLEX)
        real = np.finfo(NULL_COMPLEX).dtype  # float32 for complex64
        for p, (i, j) in enumerate(pairs):
            np.multiply(back[i], turns[j], out=rotation)
            np.multiply(self.bins[i], self.conj[j], out=cross)
            out[p] = rotation.view(real) @ cross.view(real).T
            out[p] += self.fixed[:, i, j]
        return out


def _pairs(n_subjects: int) -> np.ndarray:
    return np.column_stack(np.triu_indices(n_subjects, k=1))


def _null_from_dots(dots: np.ndarray, norms: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(leave-one-out r ``(B, S, V)``, pairwise r ``(B, P, V)``) of phase-randomised data from its pair dots.

    The others' sum of subject ``s`` has ``<c_s, o_s> = sum_{j != s} d_sj`` and
    ``||o_s||^2 = sum_{j != s} ||c_j||^2 + 2 (sum of all d - sum_{j != s} d_sj)``.
    """
    n_subjects = norms.shape[1]
    incidence = np.zeros((n_subjects, len(pairs)))
    incidence[pairs[:, 0], np.arange(len(pairs))] = 1.0
    incidence[pairs[:, 1], np.arange(len(pairs))] = 1.0
    own = np.tensordot(incidence, dots, axes=(1, 0))  # (S, B, V)
    squares = norms.T**2  # (S, V)
    others = np.maximum(squares.sum(axis=0) - squares, 0.0)[:, np.newaxis, :] + 2.0 * (dots.sum(axis=0) - own)
    loo = _ratio(own, norms.T[:, np.newaxis, :] * np.sqrt(np.maximum(others, 0.0)))
    pair_norms = (norms[:, pairs[:, 0]] * norms[:, pairs[:, 1]]).T[:, np.newaxis, :]  # (P, 1, V)
    pairwise = _ratio(dots, pair_norms)
    return loo.transpose(1, 0, 2), pairwise.transpose(1, 0, 2)


def _turns(phases: np.ndarray) -> np.ndarray:
    """``exp(i phases)``, phases ``(S, B, K)``."""
    turns = np.empty(phases.shape, dtype=NULL_COMPLEX)
    np.cos(phases, out=turns.real)
    np.sin(phases, out=turns.imag)
    return turns


def randomised_frequencies(run_lengths: Sequence[int]) -> int:
    """``K``: how many frequencies the per-run phase randomisation turns (``(n - 1) // 2`` per run of ``n``)."""
    return int(sum((int(n) - 1) // 2 for n in run_lengths))


def phase_null(data: np.ndarray, run_lengths: Sequence[int], phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out and pairwise r of phase-randomised data, for given phases.

    In resample ``b`` every run of subject ``s`` (all its components alike) has its positive frequencies
    ``1 .. (n - 1) // 2`` turned by ``phases[b, k, s]`` (runs one after another along ``k``) and the negative ones by
    ``-phases[b, k, s]``; DC and Nyquist stay. With one run this is BrainIAK's ``phase_randomize(data)`` followed by
    ``isc(..., pairwise=False|True)``.

    Parameters
    ----------
    data : array_like
        ``(T, V, S)`` time courses, ``S >= 2``.
    run_lengths : sequence of int
        Volumes of each run, adding up to ``T``.
    phases : array_like
        ``(B, K, S)`` radians, ``K = randomised_frequencies(run_lengths)``.

    Returns
    -------
    loo, pairwise : numpy.ndarray
        float64 ``(B, S, V)`` and ``(B, S (S - 1) / 2, V)``; NaN where a series is constant.
    """
    x = _as_data(data)
    lengths = _as_runs(run_lengths, x.shape[0])
    phases = np.asarray(phases, dtype=np.float64)
    want = (randomised_frequencies(lengths), x.shape[2])
    if phases.ndim != 3 or phases.shape[1:] != want:
        raise ValueError(f"phases must be (resamples, {want[0]}, {want[1]}), got {phases.shape}")
    c, _ = _centred(x)
    spectra, pairs = _Spectra.of(c, lengths), _pairs(x.shape[2])
    turns = _turns(np.ascontiguousarray(phases.transpose(2, 0, 1)))
    return _null_from_dots(spectra.pair_dots(turns, pairs), spectra.norms, pairs)


def _null_exceedances(
    c: np.ndarray, lengths: Sequence[int], observed: np.ndarray, n_resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """How many of ``n_resamples`` phase-randomised Fisher-mean ISCs reach ``observed`` ``(2, V)`` (leave-one-out,
    pairwise), per component."""
    n_volumes, n_components, n_subjects = c.shape
    spectra, pairs = _Spectra.of(c, lengths), _pairs(n_subjects)
    k = randomised_frequencies(lengths)
    rng = np.random.default_rng(seed)
    # per resample: the phases, their turns and the conjugates (20 bytes per subject and frequency), and the pair
    # dots with the pairwise r and their z (24 bytes per pair and component)
    per_resample = 20 * max(k, 1) * n_subjects + 24 * len(pairs) * n_components
    chunk = max(1, NULL_BYTES // per_resample)
    count = np.zeros((2, n_components), dtype=np.int64)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        phases = rng.random((n_subjects, b, k), dtype=np.float32)
        phases *= np.float32(2 * math.pi)
        loo, pairwise = _null_from_dots(spectra.pair_dots(_turns(phases), pairs), spectra.norms, pairs)
        count[0] += (fisher_mean(_clip(loo), axis=1) >= observed[0]).sum(axis=0)
        count[1] += (fisher_mean(_clip(pairwise), axis=1) >= observed[1]).sum(axis=0)
    return count


def component_isc(data: np.ndarray, run_lengths: Sequence[int], n_resamples: int = 1000, seed: int = 0) -> ComponentISC:
    """ISC of every component with a per-run phase-randomisation p and BH q.

    Parameters
    ----------
    data : array_like
        ``(T, V, S)`` finite time courses (``S`` may be 1: the result then says there is no ISC).
    run_lengths : sequence of int
        Volumes of each run in concatenation order, adding up to ``T``.
    n_resamples : int
        Resamples of the null (at least 1; 1,000 or more for p values that BH can use). Fewer are made when they
        would exceed :data:`MAX_NULL_WORK` (many subjects); ``n_resamples`` and ``note`` of the result say so.
    seed : int
        Seed of the phases; the same seed gives the same p.

    Returns
    -------
    ComponentISC

    Raises
    ------
    ValueError
        Non-finite values, fewer than 3 volumes, runs that do not add up to ``T``, ``n_resamples < 1``.
    """
    x = _as_data(data, min_subjects=1)
    lengths = _as_runs(run_lengths, x.shape[0])
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    n_resamples = int(n_resamples)
    n_volumes, n_components, n_subjects = x.shape
    missing = np.full(n_components, np.nan)
    if n_subjects == 1:
        return ComponentISC(missing, None, None, missing.copy(), missing.copy(), 0, ONE_SUBJECT_NOTE)
    c, constant = _centred(x)
    usable = (~constant).sum(axis=1) >= 2  # (V,)
    loo = _loo_r(c)  # (S, V)
    observed = np.where(usable, fisher_mean(_clip(loo)), np.nan)
    pairwise = np.where(usable, fisher_mean(_clip(_pairwise_r(c, constant))), np.nan)
    if n_subjects == 2:  # the pair's r; leave-one-out says the same with rounding of its own
        observed = pairwise.copy()
    notes = [_constant_note(constant, usable)]
    work = n_subjects * (n_subjects - 1) // 2 * max(randomised_frequencies(lengths), 1) * n_components
    affordable = max(1, int(MAX_NULL_WORK // work))
    if affordable < n_resamples:
        notes.append(
            f"p from {affordable:,} phase randomisations, not {n_resamples:,}: with {n_subjects} subjects each one "
            "compares every pair of them."
        )
        n_resamples = affordable
    targets = np.where(usable, np.stack([observed, pairwise]), np.inf)
    count = _null_exceedances(c, lengths, targets, n_resamples, seed)
    p, p_pairwise = np.where(usable, count + 1.0, np.nan) / (n_resamples + 1.0)
    q = np.full(n_components, np.nan)
    if usable.any():
        q[usable] = scipy.stats.false_discovery_control(p[usable], method="bh")
    return ComponentISC(
        isc=observed,
        isc_pairwise=pairwise,
        subjects=loo if n_subjects > 2 else None,
        p=p,
        q=q,
        n_resamples=n_resamples,
        note=" ".join(n for n in notes if n) or None,
        p_pairwise=p_pairwise,
    )


# --- over time --------------------------------------------------------------------------------------------------


def _window_sums(z: np.ndarray, w: int) -> np.ndarray:
    """Sums of every ``w`` consecutive rows of ``z`` (axis 0)."""
    cs = np.cumsum(z, axis=0)
    out = cs[w - 1 :].copy()
    out[1:] -= cs[:-w]
    return out


def _windowed_run(c: np.ndarray, w: int, floor: np.ndarray) -> np.ndarray:
    """Windowed leave-one-out Fisher-mean ISC ``(n - w + 1, V)`` of one run ``c`` ``(n, V, S)``."""
    total = c.sum(axis=2)
    sx, sxx = _window_sums(c, w), _window_sums(c * c, w)
    st, stt = _window_sums(total, w)[..., np.newaxis], _window_sums(total * total, w)[..., np.newaxis]
    sxt = _window_sums(c * total[..., np.newaxis], w)
    sy, syy, sxy = st - sx, stt - 2.0 * sxt + sxx, sxt - sxx  # others = total - self
    var_x = sxx - sx * sx / w
    var_y = syy - sy * sy / w
    ok = (var_x > w * floor) & (var_y > w * floor)
    r = _ratio(sxy - sx * sy / w, np.sqrt(np.where(ok, var_x * var_y, 0.0)))
    return fisher_mean(_clip(r), axis=2)


def windowed_isc(data: np.ndarray, run_lengths: Sequence[int], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding-window leave-one-out ISC of every component, windows inside runs stepping one volume.

    Parameters
    ----------
    data : array_like
        ``(T, V, S)`` finite time courses, ``S >= 2``.
    run_lengths : sequence of int
        Volumes of each run, adding up to ``T``; no window crosses from one run to the next.
    window : int
        Volumes per window (at least 3); :func:`window_volumes` turns seconds into volumes.

    Returns
    -------
    centres : numpy.ndarray
        float64 ``(W,)``: the row of ``T`` at each window's centre, ``start + (window - 1) / 2`` (a half row for an
        even window); the movie time is the timing's time of that row (interpolated for a half row).
    values : numpy.ndarray
        float64 ``(W, V)``: Fisher-z mean over subjects of each subject's r with the others' mean inside the window;
        a subject whose series does not vary inside a window is left out of it, and a window where fewer than
        two subjects vary is NaN. Runs shorter than the window give no rows.

    Raises
    ------
    ValueError
        Bad data or runs, ``window < 3``, or a window longer than every run.
    """
    x = _as_data(data)
    lengths = _as_runs(run_lengths, x.shape[0])
    w = _checked_window(window, lengths)
    c, floor = _window_ready(x)
    centres, values = [], []
    for start, n in zip(_run_starts(lengths), lengths):
        if n < w:
            continue
        values.append(_windowed_run(c[start : start + n], w, floor))
        centres.append(start + np.arange(n - w + 1) + (w - 1) / 2.0)
    return np.concatenate(centres), np.concatenate(values, axis=0)


def _window_ready(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centred series scaled to unit size per component, the variance below which a window counts as constant).

    One factor per component keeps the subjects' weights in the others' mean; unit size keeps the cumulative sums'
    rounding small against a window's variance.
    """
    c, _ = _centred(x)
    scale = np.sqrt(np.mean(c * c, axis=(0, 2)))
    c /= np.where(scale > 0, scale, 1.0)[np.newaxis, :, np.newaxis]
    return c, 1e-9 * np.mean(c * c, axis=0)


def _checked_window(window: int, lengths: Sequence[int]) -> int:
    w = int(window)
    if w != window or w < 3:
        raise ValueError(f"the window must be a whole number of at least 3 volumes, got {window}")
    if w > max(lengths):
        raise ValueError(f"a window of {w} volumes is longer than the longest run ({max(lengths)} volumes)")
    return w


def window_volumes(window_s: float, tr: float) -> int:
    """The number of volumes (at least 3) closest to a window of ``window_s`` seconds at repetition time ``tr``."""
    if not (math.isfinite(window_s) and math.isfinite(tr) and window_s > 0 and tr > 0):
        raise ValueError(f"window and TR must be positive seconds, got {window_s} and {tr}")
    return max(3, int(round(window_s / tr)))


def _turn_run(spectrum: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """One run back in time after random phases on its frequencies ``1 .. (n - 1) // 2``, one per subject."""
    k = (n - 1) // 2
    turned = spectrum.copy()
    turned[1 : k + 1] *= np.exp(1j * rng.random((k, 1, spectrum.shape[2])) * (2 * math.pi))
    return scipy.fft.irfft(turned, n=n, axis=0)


def phase_randomise(data: np.ndarray, run_lengths: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Every subject's series phase-randomised within every run (same phases for all components of a subject).

    Each run keeps its mean and power spectrum (so its autocorrelation); the timing shared across subjects is
    destroyed. Returns float64 ``(T, V, S)``.
    """
    x = _as_data(data, min_subjects=1)
    lengths = _as_runs(run_lengths, x.shape[0])
    out = np.empty_like(x)
    for start, n in zip(_run_starts(lengths), lengths):
        out[start : start + n] = _turn_run(scipy.fft.rfft(x[start : start + n], axis=0), n, rng)
    return out


def windowed_null(
    data: np.ndarray,
    run_lengths: Sequence[int],
    window: int,
    n_resamples: int = DEFAULT_WINDOWED_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Across-component mean of the windowed ISC of phase-randomised data, for :func:`synchrony_moments`.

    Every subject is phase-randomised per run (as :func:`phase_randomise`), then :func:`windowed_isc` is taken and
    averaged over components. The runs' spectra are taken once.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_resamples, W)``, windows as :func:`windowed_isc` gives them.
    """
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    x = _as_data(data)
    lengths = _as_runs(run_lengths, x.shape[0])
    w = _checked_window(window, lengths)
    c, floor = _window_ready(x)
    runs = [(scipy.fft.rfft(c[a : a + n], axis=0), n) for a, n in zip(_run_starts(lengths), lengths) if n >= w]
    del c
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            np.concatenate([_component_mean(_windowed_run(_turn_run(s, n, rng), w, floor)) for s, n in runs])
            for _ in range(int(n_resamples))
        ]
    )


def _component_mean(values: np.ndarray) -> np.ndarray:
    """Mean over components (axis -1) of windowed ISC, ignoring NaN; NaN where a window has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=-1)


def synchrony_moments(
    values: np.ndarray, null_values: np.ndarray | None = None, percentile: float = 95.0, separation: int = 15
) -> list[tuple[int, float]]:
    """Moments of synchrony: peaks of the across-component mean of windowed ISC above a null percentile.

    Parameters
    ----------
    values : array_like
        ``(W, V)`` windowed ISC (:func:`windowed_isc`), windows in time order.
    null_values : array_like, optional
        The same statistic on phase-randomised data: ``(B, W)`` across-component means (:func:`windowed_null`) or
        ``(B, W, V)`` windowed ISC. The threshold is the ``percentile`` of the resamples' highest window (the null
        of the film's peak), so a film without shared response has no moment in 95 % of resamples. Without it
        the threshold is the ``percentile`` of the observed mean itself (the film's own top windows, not a test).
    percentile : float
        In ``(0, 100)``.
    separation : int
        Fewest windows between two moments (15: 30 s at TR 2 s; pass the window's volumes); of two peaks closer
        than that, the higher is kept.

    Returns
    -------
    list of (int, float)
        The peaks (local maxima) of the across-component mean above the threshold: window index and mean, in
        window order.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"windowed ISC must be windows x components, got {v.ndim} axes")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be between 0 and 100, got {percentile}")
    mean = _component_mean(v) if v.shape[1] else np.full(v.shape[0], np.nan)
    finite = np.isfinite(mean)
    if not finite.any():
        return []
    if null_values is None:
        threshold = float(np.percentile(mean[finite], percentile))
    else:
        null = np.asarray(null_values, dtype=np.float64)
        null = _component_mean(null) if null.ndim == 3 else null
        if null.ndim != 2:
            raise ValueError(f"the null must be resamples x windows, got {null.ndim} axes")
        peaks = np.nanmax(np.where(np.isfinite(null), null, -np.inf), axis=1)
        peaks = peaks[np.isfinite(peaks)]
        if peaks.size == 0:
            return []
        threshold = float(np.percentile(peaks, percentile))
    curve = np.where(finite, mean, -2.0)  # below any correlation: a window without value is never a peak
    peaks, _ = scipy.signal.find_peaks(np.concatenate([[-2.0], curve, [-2.0]]), distance=max(1, int(separation)))
    peaks = peaks - 1  # the padding lets a peak sit on the first or last window
    return [(int(i), float(mean[i])) for i in peaks if mean[i] > threshold]


def _event_mask(times: np.ndarray, events: Sequence[tuple[float, float]]) -> np.ndarray:
    """Which window centres (sorted ``times``) fall in an event ``[onset, onset + max(duration, step))``."""
    ev = np.asarray(events, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(ev).all() or (ev[:, 1] < 0).any():
        raise ValueError("events must be finite (onset_s, duration_s) pairs with durations >= 0")
    step = float(np.median(np.diff(times))) if times.size > 1 else 1.0
    starts = np.searchsorted(times, ev[:, 0], side="left")
    ends = np.searchsorted(times, ev[:, 0] + np.maximum(ev[:, 1], step), side="left")
    marks = np.zeros(times.size + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, ends, -1)
    return np.cumsum(marks[:-1]) > 0


def _shift_range(
    times: np.ndarray, events: Sequence[tuple[float, float]], min_shift_s: float | None
) -> tuple[int, int]:
    """``(low, high)`` for ``integers``: shifts ``m .. W - m`` windows, or ``1 .. W - 1`` if that leaves none."""
    n_windows = times.size
    if min_shift_s is None:
        longest = float(np.asarray(events, dtype=np.float64).reshape(-1, 2)[:, 1].max(initial=0.0))
        min_shift_s = longest + DEFAULT_WINDOW_S
    step = float(np.median(np.diff(times)))
    m = int(math.ceil(min_shift_s / step)) if step > 0 and math.isfinite(min_shift_s) else 1
    return (m, n_windows - m + 1) if 1 <= m <= n_windows - m else (1, n_windows)


def label_synchrony(
    values: np.ndarray,
    centre_times_s: np.ndarray,
    events: Sequence[tuple[float, float]],
    n_shifts: int = 1000,
    seed: int = 0,
    min_shift_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed ISC of every component during a label's events against outside them, with a circular-shift p.

    A window is inside when its centre lies in an event ``[onset, onset + duration)`` (a zero-length event covers
    one window step). Null: the windows' inside/outside pattern, in movie-time order, is circularly shifted by
    ``d`` windows, ``d`` uniform in ``m .. W - m``, where ``m`` windows span ``min_shift_s`` (a smaller shift would
    leave the pattern over windows it already covers, and so reproduce the effect it tests); all shifts come from
    one FFT cross-correlation. Two-sided: ``p = (1 + #{|null difference| >= |difference|}) / (1 + n_shifts)``.

    Parameters
    ----------
    values : array_like
        ``(W, V)`` windowed ISC (NaN windows count as outside and add nothing).
    centre_times_s : array_like
        ``(W,)`` movie time of each window's centre.
    events : sequence of (onset_s, duration_s)
        The label's events.
    n_shifts : int
        Null draws.
    seed : int
        Seed of the draws.
    min_shift_s : float, optional
        The smallest shift in seconds; by default the longest event plus :data:`DEFAULT_WINDOW_S` (a window
        centred next to an event still sees it). Ignored when it leaves no shift.

    Returns
    -------
    inside, outside, p : numpy.ndarray
        float64 ``(V,)`` each: mean windowed ISC inside and outside the events, and p. All NaN when no window
        centre (or every one) falls inside the events: there is nothing to compare.
    """
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(centre_times_s, dtype=np.float64)
    if v.ndim != 2 or t.shape != (v.shape[0],):
        raise ValueError("windowed ISC must be (windows, components) with one centre time per window")
    if not np.isfinite(t).all():
        raise ValueError("window centre times must be finite")
    if int(n_shifts) < 1:
        raise ValueError(f"n_shifts must be at least 1, got {n_shifts}")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    known = np.isfinite(v)
    v = np.where(known, v, 0.0)
    inside = _event_mask(t, events)
    nothing = np.full(v.shape[1], np.nan)
    n_windows = t.size
    if n_windows < 2 or not inside.any() or inside.all():
        return nothing, nothing.copy(), nothing.copy()
    # For every shift d: sums of values and of "has a value" over the shifted inside pattern.
    spectrum = np.conj(scipy.fft.rfft(inside.astype(np.float64)))[:, np.newaxis]
    sums = scipy.fft.irfft(spectrum * scipy.fft.rfft(v, axis=0), n=n_windows, axis=0)
    counts = scipy.fft.irfft(spectrum * scipy.fft.rfft(known.astype(np.float64), axis=0), n=n_windows, axis=0)
    total, total_n = v.sum(axis=0), known.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = sums / counts - (total - sums) / (total_n - counts)  # (W shifts, V)
    shifts = np.random.default_rng(seed).integers(*_shift_range(t, events, min_shift_s), size=int(n_shifts))
    observed = diff[0]
    null = np.abs(diff[shifts])
    exceed = (np.where(np.isfinite(null), null, np.inf) >= np.abs(observed) - 1e-12).sum(axis=0)
    p = (exceed + 1.0) / (int(n_shifts) + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside_mean = v[inside].sum(axis=0) / known[inside].sum(axis=0)
        outside_mean = v[~inside].sum(axis=0) / known[~inside].sum(axis=0)
    defined = np.isfinite(observed)
    return (
        np.where(defined, inside_mean, np.nan),
        np.where(defined, outside_mean, np.nan),
        np.where(defined, p, np.nan),
    )


# --- ISFC -------------------------------------------------------------------------------------------------------


def isfc(data: np.ndarray) -> np.ndarray:
    """Leave-one-out inter-subject functional correlation between every pair of components.

    BrainIAK's ``isfc(data, pairwise=False, summary_statistic='mean', vectorize_isfcs=False)``: for every subject
    ``M_s[i, j] = r(component i of s, component j of the others' mean)``, symmetrised ``(M_s + M_s^T) / 2``, then
    the Fisher-z mean over subjects. The diagonal is the leave-one-out ISC.

    Parameters
    ----------
    data : array_like
        ``(T, V, S)`` finite time courses, ``S >= 2``.

    Returns
    -------
    numpy.ndarray
        float64 ``(V, V)``, symmetric; NaN only for a component with no varying subject.
    """
    c, _ = _centred(_as_data(data))
    others, norm_c, norm_o = _loo_parts(c)
    u = c / np.where(norm_c > 0, norm_c, 1.0)
    o = others / np.where(norm_o > 0, norm_o, 1.0)
    m = np.matmul(u.transpose(2, 1, 0), o.transpose(2, 0, 1))  # (S, V, V)
    undefined = (norm_c.T == 0)[:, :, np.newaxis] | (norm_o.T == 0)[:, np.newaxis, :]
    m[undefined] = np.nan
    m = (m + m.transpose(0, 2, 1)) / 2.0
    return fisher_mean(np.clip(m, -1.0, 1.0), axis=0)
