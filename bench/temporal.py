"""Temporal decoding time: pipeline.temporal.decoding.temporal_decode vs one full matrix product per null shift.

A 2-hour movie at TR 2 s: 3,600 volumes per subject in studyforrest's 8 runs (each starting 4 volumes before the
previous one ended), 20 concatenated subjects (72,000 rows), 70 components (float32, as MELODIC writes them) and
200 labels with HRF-convolved regressors from random events. Ours does 1,000 circular-shift draws. The naive
method builds the shifted, subject-repeated regressor matrix for every draw and multiplies it with the centred time
courses over all 72,000 rows (float64, as ours); it is timed on 20 draws and scaled to 1,000, and its p values for
those 20 draws must equal ours before any time is reported. Everything stays in memory: no scratch files.
Run by hand: ``python bench/temporal.py [--components 70] [--labels 200] [--subjects 20] [--shifts 1000]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.temporal.decoding import circular_shifts, label_regressors, temporal_decode  # noqa: E402

TR = 2.0
RUN_VOLUMES = (451, 441, 438, 488, 462, 439, 542, 339)  # studyforrest's segments, 3,600 volumes in all
OVERLAP_VOLUMES = 4


def movie_runs() -> list[tuple[float, int]]:
    """The runs as (movie time of the first volume, volumes), each overlapping the previous one slightly."""
    runs, start = [], 0.0
    for volumes in RUN_VOLUMES:
        runs.append((start, volumes))
        start += TR * (volumes - OVERLAP_VOLUMES)
    return runs


def synthetic_events(n_labels: int, movie_s: float, seed: int = 0) -> dict[str, tuple[np.ndarray, ...]]:
    """Labels with 20-120 events each over the movie, 0.5-10 s long, amplitude 1."""
    rng = np.random.default_rng(seed)
    events = {}
    for j in range(n_labels):
        n = int(rng.integers(20, 120))
        onsets = np.sort(rng.uniform(0.0, movie_s, n))
        events[f"label{j:03d}"] = (onsets, rng.uniform(0.5, 10.0, n), np.ones(n))
    return events


def naive_counts(
    x: np.ndarray, y: np.ndarray, lengths: list[int], subjects: int, shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The direct method: r and, per draw, one (rows x components)^T (rows x labels) product over all rows.

    Returns r, the exceedance counts, the seconds spent before the draws and the seconds of the draws.
    """
    t = time.perf_counter()
    xc = x.astype(np.float64)
    xc -= xc.mean(axis=0)
    yc = y - y.mean(axis=0)
    denominator = np.outer(np.linalg.norm(xc, axis=0), np.sqrt(subjects) * np.linalg.norm(yc, axis=0))
    observed = xc.T @ np.tile(yc, (subjects, 1))
    r = observed / denominator
    setup = time.perf_counter() - t

    t = time.perf_counter()
    starts = np.cumsum([0, *lengths[:-1]])
    count = np.zeros(r.shape, dtype=np.int64)
    for draw in shifts:
        shifted = np.concatenate([np.roll(yc[s : s + n], d, axis=0) for s, n, d in zip(starts, lengths, draw)])
        null = xc.T @ np.tile(shifted, (subjects, 1))
        count += np.abs(null) >= np.abs(observed) * (1 - 1e-12)
    return r, count, setup, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--components", type=int, default=70)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--shifts", type=int, default=1000)
    parser.add_argument("--naive-shifts", type=int, default=20)
    args = parser.parse_args()
    runs = movie_runs()
    lengths = [n for _, n in runs]
    movie_s = runs[-1][0] + TR * runs[-1][1]

    t = time.perf_counter()
    labels, y = label_regressors(synthetic_events(args.labels, movie_s), TR, runs)
    t_regressors = time.perf_counter() - t
    rng = np.random.default_rng(1)
    rows = sum(lengths) * args.subjects
    x = rng.standard_normal((rows, args.components), dtype=np.float32)
    # A few components follow a label, so the decoder has something to find.
    for c in range(min(5, args.components)):
        x[:, c] += np.tile(y[:, c] / y[:, c].std(), args.subjects).astype(np.float32)

    temporal_decode(x[: 2 * sum(lengths), :4], y[:, :4], lengths, 2, n_shifts=10)  # warm FFT plans and BLAS
    t = time.perf_counter()
    ours = temporal_decode(x, y, lengths, args.subjects, n_shifts=args.shifts)
    t_ours = time.perf_counter() - t

    shifts = circular_shifts(lengths, args.naive_shifts, seed=0)
    r_naive, count, setup, t_draws = naive_counts(x, y, lengths, args.subjects, shifts)
    t_naive = setup + t_draws * args.shifts / args.naive_shifts
    # Same statistic and same null before comparing speed: r, and p over the naive method's draws.
    check = temporal_decode(x, y, lengths, args.subjects, n_shifts=args.naive_shifts, seed=0)
    assert np.allclose(ours.r, r_naive, rtol=0, atol=1e-9), float(np.abs(ours.r - r_naive).max())
    assert np.array_equal(check.p, (1 + count) / (1 + args.naive_shifts))

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{len(runs)} runs, {sum(lengths)} volumes x {args.subjects} subjects = {rows} rows; "
        f"{args.components} components x {len(labels)} labels; {args.shifts} shifts"
    )
    print(f"  regressors (nilearn, not timed below) {t_regressors:8.2f} s")
    print(f"  incdb  temporal_decode               {t_ours:8.2f} s")
    print(
        f"  naive  {args.naive_shifts} shifts {t_draws:.2f} s -> {args.shifts} shifts "
        f"{t_naive:8.2f} s (incl. {setup:.2f} s for r)"
    )
    floor = len(labels) / (args.shifts + 1)  # BH's smallest q when one label of a component has the smallest p
    print(
        f"  planted labels at the smallest p, 1/{args.shifts + 1}: "
        f"{int((ours.p[:5].diagonal() == 1 / (args.shifts + 1)).sum())}/5, their q "
        f"{ours.q[:5].diagonal().min():.3f}-{ours.q[:5].diagonal().max():.3f} (BH floor {floor:.3f}); "
        f"peak RSS {peak_mb:.0f} MB"
    )
    print(f"seconds={t_ours:.2f} ratio_vs_naive={t_naive / t_ours:.1f}")


if __name__ == "__main__":
    main()
