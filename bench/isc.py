"""ISC time: pipeline.synchrony.isc against BrainIAK 0.12 on a full film.

A 2-hour movie at TR 2 s: 3,599 volumes per subject in 8 runs of unequal length, 15 subjects, 70 components
(float32, as MELODIC writes them) whose shared fraction runs from 0 to 0.6. Ours: leave-one-out and pairwise ISC
with 1,000 per-run phase randomisations (p and BH q), the 30 s windowed ISC of every component, and the ISFC
matrix. BrainIAK: ``phaseshift_isc(..., pairwise=False, summary_statistic='mean')`` timed on 20 resamples and
scaled to 1,000 (its observed ISC once, the resamples times 50), and ``isfc(..., summary_statistic='mean')``; it
has no windowed ISC, so ours is timed with a task it does not do. The observed ISC and the ISFC must agree within
1e-6 before any time is reported. Run by hand: ``python bench/isc.py [--subjects 15] [--resamples 1000]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

# One BLAS thread for both sides, as in a worker process per core; on a busy machine OpenBLAS's threads wait for
# each other at every small product. Set OPENBLAS_NUM_THREADS to measure otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.synchrony import isc as sync  # noqa: E402

TR = 2.0
RUN_VOLUMES = (451, 441, 438, 488, 462, 439, 542, 338)  # studyforrest's segments, 3,599 volumes in all
WINDOW_S = 30.0


def film(n_components: int, n_subjects: int, seed: int = 0) -> np.ndarray:
    """``(T, V, S)`` float32: smooth shared and own signals mixed with shared fractions 0 .. 0.6."""
    rng = np.random.default_rng(seed)
    n_volumes = sum(RUN_VOLUMES)

    def smooth(shape: tuple[int, ...]) -> np.ndarray:
        x = scipy.ndimage.gaussian_filter1d(rng.standard_normal(shape, dtype=np.float32), 2.0, axis=0)
        return x / x.std(axis=0)

    f = np.linspace(0.0, 0.6, n_components, dtype=np.float32)[np.newaxis, :, np.newaxis]
    x = np.sqrt(f) * smooth((n_volumes, n_components))[:, :, np.newaxis] + np.sqrt(1 - f) * smooth(
        (n_volumes, n_components, n_subjects)
    )
    return x * rng.uniform(0.5, 2.0, (1, n_components, n_subjects)).astype(np.float32)


def ours(data: np.ndarray, resamples: int) -> tuple[float, dict[str, float], sync.ComponentISC, np.ndarray]:
    times = {}
    t0 = t = time.perf_counter()
    result = sync.component_isc(data, RUN_VOLUMES, n_resamples=resamples, seed=0)
    times["ISC + null"] = time.perf_counter() - t
    t = time.perf_counter()
    sync.windowed_isc(data, RUN_VOLUMES, sync.window_volumes(WINDOW_S, TR))
    times["windowed ISC"] = time.perf_counter() - t
    t = time.perf_counter()
    matrix = sync.isfc(data)
    times["ISFC"] = time.perf_counter() - t
    return time.perf_counter() - t0, times, result, matrix


def brainiak(data: np.ndarray, resamples: int, timed: int) -> tuple[float, dict[str, float], np.ndarray, np.ndarray]:
    from brainiak.isc import isc, isfc, phaseshift_isc

    times = {}
    t = time.perf_counter()
    observed = isc(data, pairwise=False, summary_statistic="mean")
    t_observed = time.perf_counter() - t
    t = time.perf_counter()
    phaseshift_isc(data, pairwise=False, summary_statistic="mean", n_shifts=timed, random_state=0)
    t_shifts = time.perf_counter() - t - t_observed
    times[f"phaseshift_isc ({timed} timed)"] = t_observed + t_shifts * resamples / timed
    t = time.perf_counter()
    matrix = isfc(data, pairwise=False, summary_statistic="mean", vectorize_isfcs=False)
    times["isfc"] = time.perf_counter() - t
    return sum(times.values()), times, observed, matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--components", type=int, default=70)
    parser.add_argument("--subjects", type=int, default=15)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--brainiak-resamples", type=int, default=20)
    args = parser.parse_args()
    data = film(args.components, args.subjects)

    sync.component_isc(data[:200, :3, :3], [200], n_resamples=10)  # warm FFT plans and BLAS
    t_ours, ours_times, result, ours_isfc = ours(data, args.resamples)
    t_theirs, their_times, observed, their_isfc = brainiak(
        data.astype(np.float64), args.resamples, args.brainiak_resamples
    )
    max_isc_diff = float(np.abs(result.isc - observed).max())
    max_isfc_diff = float(np.abs(ours_isfc - their_isfc).max())
    assert max_isc_diff <= 1e-6 and max_isfc_diff <= 1e-6, (max_isc_diff, max_isfc_diff)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{len(RUN_VOLUMES)} runs, {sum(RUN_VOLUMES)} volumes x {args.components} components x {args.subjects} "
        f"subjects; {args.resamples} phase randomisations; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )
    for name, seconds in ours_times.items():
        print(f"  incdb     {name:<32} {seconds:8.2f} s")
    for name, seconds in their_times.items():
        print(f"  brainiak  {name:<32} {seconds:8.2f} s")
    significant = int((result.q < 0.05).sum())
    print(
        f"  components with q < 0.05: {significant}/{args.components}; max |ISFC diff| {max_isfc_diff:.1e}; "
        f"peak RSS {peak_mb:.0f} MB"
    )
    print(f"seconds={t_ours:.2f} ratio_vs_brainiak={t_theirs / t_ours:.1f} max_isc_diff={max_isc_diff:.1e}")


if __name__ == "__main__":
    main()
