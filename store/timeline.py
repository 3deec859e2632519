"""Read queries of the movie's timeline: time courses, annotation sets, temporal decodings and labels.

Same visibility rules as ``store.queries`` (``store.access.visible_collections``): a component's time course and
temporal decodings are shown only where the component is. Time courses are read from their storage artifacts;
the movie time of every row is computed from the collection's timing (``Collection.timing``: TR, runs as
``[movie start s, volumes]`` and the number of subjects concatenated), exactly as
``pipeline.temporal.timing.Timing``
does, without importing the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from store.access import visible_collections
from store.artifacts import load_vector
from store.models import (
    AnnotationEvent,
    AnnotationSet,
    Collection,
    Component,
    Movie,
    TemporalDecoding,
    Term,
    TimeCourse,
)
from store.queries import Page, clamp_page, get_visible_component, lookup_key

MAX_DISPLAY_POINTS = 2000  # per trace sent to a browser; downloads keep every row
MAX_COLUMNS = 2000  # time columns of a heatmap sent to a browser (a screen shows no more)
# The timeline of a page draws at most MAX_TRACKS (set, label) tracks, DEFAULT_TRACKS of them until the visitor
# chooses, each as merged intervals; an annotation set may hold tens of thousands of events, which a page must not
# send whole (the API pages through them, the CSV has every one).
MAX_TRACKS = 40
DEFAULT_TRACKS = 12
MAX_TIMELINE_EVENTS = 20_000
DEFAULT_EVENTS_PER_PAGE = 1000
MAX_EVENTS_PER_PAGE = 5000
SIGNIFICANT_Q = 0.05


def movie_times(timing: dict[str, Any]) -> np.ndarray:
    """The movie time (s) of every row of a time course with this timing: each subject block repeats the runs."""
    tr = float(timing["tr"])
    one = np.concatenate([float(start) + tr * np.arange(int(n)) for start, n in timing["runs"]])
    return np.tile(one, int(timing.get("subjects", 1)))


def run_starts(timing: dict[str, Any]) -> list[float]:
    """Movie time (s) at which each run starts, in concatenation order."""
    return [float(start) for start, _ in timing["runs"]]


def component_course(session: Session, user: Any, uuid: str) -> dict[str, Any] | None:
    """The component's time course: per row of one subject, the mean over concatenated subjects and their SD.

    Returns
    -------
    dict or None
        ``{"tr", "subjects", "movie_time_s", "values", "sd", "runs", "spectrum", "all_rows"}`` (``sd`` None for
        one subject; ``all_rows`` every row, for downloads); None when the component is not visible or has no
        time course.
    """
    comp = get_visible_component(session, user, uuid)
    if comp is None or comp.timecourse_id is None or not comp.collection.timing:
        return None
    course = session.get(TimeCourse, comp.timecourse_id)
    timing = comp.collection.timing
    values = load_vector(course.storage_key)[:, comp.volume_index].astype(np.float64)
    subjects = int(timing.get("subjects", 1))
    blocks = values.reshape(subjects, -1)
    spectrum = None
    if course.spectra_key:
        spectrum = load_vector(course.spectra_key)[:, comp.volume_index].astype(np.float64)
    else:  # the power spectrum of the mean course, as MELODIC's FTmix would give
        mean = blocks.mean(axis=0)
        spectrum = np.abs(np.fft.rfft(mean - mean.mean())) ** 2
    times = movie_times(timing)
    return {
        "tr": float(timing["tr"]),
        "subjects": subjects,
        "movie_time_s": times[: blocks.shape[1]].tolist(),
        "values": blocks.mean(axis=0).tolist(),
        "sd": blocks.std(axis=0).tolist() if subjects > 1 else None,
        "runs": [[float(s), int(n)] for s, n in timing["runs"]],
        "spectrum": {
            "frequency_hz": np.fft.rfftfreq(2 * (len(spectrum) - 1) or 1, float(timing["tr"]))[
                : len(spectrum)
            ].tolist(),
            "power": spectrum.tolist(),
        },
        "all_rows": {"movie_time_s": times.tolist(), "values": values.tolist()},
    }


def component_temporal(session: Session, user: Any, uuid: str) -> list[dict[str, Any]] | None:
    """The component's temporal decodings, best first (None when the component is not visible)."""
    comp = get_visible_component(session, user, uuid)
    if comp is None:
        return None
    rows = session.execute(
        select(
            AnnotationSet.name,
            AnnotationSet.id,
            TemporalDecoding.label,
            TemporalDecoding.r,
            TemporalDecoding.p,
            TemporalDecoding.q,
            TemporalDecoding.rank,
        )
        .join(AnnotationSet, TemporalDecoding.set_id == AnnotationSet.id)
        .where(TemporalDecoding.component_id == comp.id)
        .order_by(TemporalDecoding.rank)
    ).all()
    return [
        {
            "annotation": name,
            "annotation_id": set_id,
            "label": label,
            "r": float(r),
            "p": float(p),
            "q": float(q),
            "rank": int(rank),
        }
        for name, set_id, label, r, p, q, rank in rows
    ]


def movie_annotations(
    session: Session, movie: Movie, with_events: bool = True, include: Iterable[tuple[int, str]] = ()
) -> list[dict[str, Any]]:
    """The movie's annotation sets, by name, each with its labels and counts (and, when asked, the events the
    timeline draws).

    Parameters
    ----------
    with_events : bool
        Add ``"events"`` to each set: the events of the timeline's tracks only, which are the first
        :data:`MAX_TRACKS` (set, label) pairs in display order (sets by name, labels sorted) and the pairs of
        ``include``, at most :data:`MAX_TIMELINE_EVENTS` events in all (each track keeps an equal share, its
        earliest events). ``"events_complete"`` says whether that is every event of the set. The whole set is
        read page by page (:func:`annotation_events`) or downloaded as CSV.
    include : iterable of (set id, label)
        Further tracks whose events are needed (a component page's best labels, for their regressors).

    Returns
    -------
    list of dict
        ``{"id", "name", "description", "source_url", "owner_id", "is_demo", "created", "n_events",
        "labels": [{"label", "events"}]}`` per set.
    """
    sets = session.scalars(
        select(AnnotationSet).where(AnnotationSet.movie_id == movie.id).order_by(AnnotationSet.name)
    ).all()
    counts: dict[int, dict[str, int]] = {a.id: {} for a in sets}
    for set_id, label, n in session.execute(
        select(AnnotationEvent.set_id, AnnotationEvent.label, func.count(AnnotationEvent.id))
        .join(AnnotationSet)
        .where(AnnotationSet.movie_id == movie.id)
        .group_by(AnnotationEvent.set_id, AnnotationEvent.label)
    ):
        counts[set_id][label] = int(n)
    out = []
    for a in sets:
        labels = [{"label": label, "events": counts[a.id][label]} for label in sorted(counts[a.id])]
        out.append(
            {
                "id": a.id,
                "name": a.name,
                "description": a.description,
                "source_url": a.source_url,
                "owner_id": a.owner_id,
                "is_demo": a.is_demo,
                "created": a.created.isoformat(),
                "n_events": sum(x["events"] for x in labels),
                "labels": labels,
            }
        )
    if with_events:
        _add_track_events(session, out, include)
    return out


def _add_track_events(session: Session, sets: list[dict[str, Any]], include: Iterable[tuple[int, str]]) -> None:
    """Put the events of the timeline's tracks into ``sets`` (see :func:`movie_annotations`)."""
    pairs = [(a["id"], x["label"]) for a in sets for x in a["labels"]][:MAX_TRACKS]
    known = {(a["id"], x["label"]) for a in sets for x in a["labels"]}
    pairs += [p for p in dict.fromkeys((int(s), str(label)) for s, label in include) if p in known and p not in pairs]
    events: dict[int, list[dict[str, Any]]] = {a["id"]: [] for a in sets}
    if pairs:
        share = max(1, MAX_TIMELINE_EVENTS // len(pairs))
        position = (
            func.row_number()
            .over(
                partition_by=(AnnotationEvent.set_id, AnnotationEvent.label),
                order_by=(AnnotationEvent.onset, AnnotationEvent.id),
            )
            .label("position")
        )
        wanted = or_(
            *(
                and_(AnnotationEvent.set_id == set_id, AnnotationEvent.label.in_(labels))
                for set_id, labels in _by_set(pairs).items()
            )
        )
        ranked = (
            select(
                AnnotationEvent.set_id,
                AnnotationEvent.onset,
                AnnotationEvent.duration,
                AnnotationEvent.label,
                AnnotationEvent.amplitude,
                AnnotationEvent.id,
                position,
            )
            .where(wanted)
            .subquery()
        )
        for set_id, onset, duration, label, amplitude in session.execute(
            select(ranked.c.set_id, ranked.c.onset, ranked.c.duration, ranked.c.label, ranked.c.amplitude)
            .where(ranked.c.position <= share)
            .order_by(ranked.c.set_id, ranked.c.onset, ranked.c.id)
        ):
            events[set_id].append({"onset": onset, "duration": duration, "label": label, "amplitude": amplitude})
    for a in sets:
        a["events"] = events[a["id"]]
        a["events_complete"] = len(a["events"]) == a["n_events"]


def _by_set(pairs: list[tuple[int, str]]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for set_id, label in pairs:
        grouped.setdefault(set_id, []).append(label)
    return grouped


def annotation_events(
    session: Session, movie: Movie, set_id: Any, page: Any = 1, per_page: Any = DEFAULT_EVENTS_PER_PAGE
) -> Page | None:
    """One page of an annotation set's events, by onset (``per_page`` 1 to :data:`MAX_EVENTS_PER_PAGE`); None
    when the movie has no such set."""
    valid = isinstance(set_id, int) and not isinstance(set_id, bool) and 1 <= set_id <= 2**31 - 1
    if (
        not valid
        or session.scalar(
            select(AnnotationSet.id).where(AnnotationSet.id == set_id, AnnotationSet.movie_id == movie.id)
        )
        is None
    ):
        return None
    page, _ = clamp_page(page, 1)
    try:
        per_page = min(MAX_EVENTS_PER_PAGE, max(1, int(per_page or DEFAULT_EVENTS_PER_PAGE)))
    except (TypeError, ValueError, OverflowError):
        per_page = DEFAULT_EVENTS_PER_PAGE
    rows = session.execute(
        select(AnnotationEvent.onset, AnnotationEvent.duration, AnnotationEvent.label, AnnotationEvent.amplitude)
        .where(AnnotationEvent.set_id == set_id)
        .order_by(AnnotationEvent.onset, AnnotationEvent.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    total = session.scalar(select(func.count(AnnotationEvent.id)).where(AnnotationEvent.set_id == set_id)) or 0
    return Page(
        [{"onset": o, "duration": d, "label": label, "amplitude": a} for o, d, label, a in rows],
        page,
        per_page,
        int(total),
    )


def annotation_rows(session: Session, movie: Movie, set_id: int) -> list[tuple[float, float, str, float]] | None:
    """Every event of one of the movie's sets as (onset, duration, label, amplitude), by onset (for the CSV
    download); None when the movie has no such set."""
    if (
        session.scalar(select(AnnotationSet.id).where(AnnotationSet.id == set_id, AnnotationSet.movie_id == movie.id))
        is None
    ):
        return None
    return [
        tuple(row)
        for row in session.execute(
            select(AnnotationEvent.onset, AnnotationEvent.duration, AnnotationEvent.label, AnnotationEvent.amplitude)
            .where(AnnotationEvent.set_id == set_id)
            .order_by(AnnotationEvent.onset, AnnotationEvent.id)
        )
    ]


def movie_courses(session: Session, user: Any, movie: Movie) -> list[dict[str, Any]]:
    """The visible components of a movie that have time courses: uuid, best term, number in its file (``ic``:
    1 for the first volume, as MELODIC numbers its components), source file, collection and the z-scored mean
    course over subjects at every row of one subject, ordered by movie time (overlapping runs repeat times),
    grouped by best term. A page draws them through :func:`heatmap_columns`, never whole."""
    comps = session.execute(
        select(
            Component.uuid,
            Component.volume_index,
            Component.timecourse_id,
            Term.name,
            Collection.timing,
            Collection.name,
            Component.source_file,
        )
        .join(Collection)
        .outerjoin(Term, Component.best_term_id == Term.id)
        .where(Collection.movie_id == movie.id, visible_collections(user), Component.timecourse_id.is_not(None))
        .order_by(Term.name, Component.id)
    ).all()
    keys = (
        dict(
            session.execute(
                select(TimeCourse.id, TimeCourse.storage_key).where(TimeCourse.id.in_({c[2] for c in comps}))
            ).all()
        )
        if comps
        else {}
    )
    matrices: dict[int, np.ndarray] = {}
    out = []
    for uuid, column, course_id, term, timing, collection_name, source_file in comps:
        if not timing:
            continue
        if course_id not in matrices:
            matrices[course_id] = load_vector(keys[course_id])
        values = matrices[course_id][:, column].astype(np.float64)
        mean = values.reshape(int(timing.get("subjects", 1)), -1).mean(axis=0)
        sd = mean.std()
        z = (mean - mean.mean()) / sd if sd > 0 else mean * 0
        times = movie_times(timing)[: len(z)]
        order = np.argsort(times, kind="stable")
        out.append(
            {
                "uuid": uuid,
                "term": term or "undecoded",
                "ic": column + 1,
                "source_file": source_file,
                "collection": collection_name,
                "movie_time_s": times[order],
                "z": z[order],
            }
        )
    return out


def courses_span(courses: list[dict[str, Any]]) -> tuple[float, float] | None:
    """First and last movie time of any of ``courses`` (None without courses)."""
    ends = [(float(c["movie_time_s"][0]), float(c["movie_time_s"][-1])) for c in courses if len(c["movie_time_s"])]
    return (min(s for s, _ in ends), max(e for _, e in ends)) if ends else None


def heatmap_columns(
    courses: list[dict[str, Any]], start: float, end: float, columns: int = MAX_COLUMNS
) -> tuple[np.ndarray, np.ndarray]:
    """The courses' samples between ``start`` and ``end`` as a heatmap of at most ``columns`` equal time bins.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The bins' centres (s) and a (courses, bins) matrix: each course's mean over the samples in a bin; a bin
        without a sample takes the value interpolated between its neighbours, NaN before a course's first sample
        and after its last. There are no more bins than samples of the densest course in the range, so a range
        narrower than ``columns`` samples gets one bin per sample.
    """
    if not courses or not end > start:
        return np.zeros(0), np.zeros((len(courses), 0))
    inside = [(c["movie_time_s"] >= start) & (c["movie_time_s"] <= end) for c in courses]
    densest = max(len(np.unique(c["movie_time_s"][m])) for c, m in zip(courses, inside))
    n = int(max(1, min(columns, densest)))
    edges = np.linspace(start, end, n + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    out = np.full((len(courses), n), np.nan)
    for row, (c, m) in enumerate(zip(courses, inside)):
        t, z = c["movie_time_s"][m], c["z"][m]
        if not len(t):
            continue
        index = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n - 1)
        counts = np.bincount(index, minlength=n)
        sums = np.bincount(index, weights=z, minlength=n)
        full = counts > 0
        means = sums[full] / counts[full]
        out[row] = np.interp(centres, centres[full], means, left=np.nan, right=np.nan)
        # The bins before the first sample and after the last stay empty only where the course has no data there.
        first, last = np.flatnonzero(full)[[0, -1]]
        if float(c["movie_time_s"][0]) < start:
            out[row, :first] = means[0]
        if float(c["movie_time_s"][-1]) > end:
            out[row, last + 1 :] = means[-1]
    return centres, out


def decimate(x: np.ndarray, y: np.ndarray, n: int = MAX_DISPLAY_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` points of a trace for display, keeping its shape: the points are split into ``n // 2`` bins
    of consecutive points and each bin keeps its minimum and its maximum, in their order (so every peak and trough
    of the trace is drawn; downloads keep every row)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) <= n:
        return x, y
    bins = max(1, n // 2)
    edges = np.linspace(0, len(x), bins + 1).astype(int)
    keep = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        segment = y[lo:hi]
        pair = sorted({lo + int(np.argmin(segment)), lo + int(np.argmax(segment))})
        keep += pair
    index = np.asarray(keep)
    return x[index], y[index]


def envelope(
    x: np.ndarray, low: np.ndarray, high: np.ndarray, n: int = MAX_DISPLAY_POINTS // 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A band between ``low`` and ``high`` at most ``n`` points wide: per bin of consecutive points, its mean
    time, the lowest ``low`` and the highest ``high`` (the band drawn covers every point's band)."""
    x, low, high = (np.asarray(a, dtype=float) for a in (x, low, high))
    if len(x) <= n:
        return x, low, high
    edges = np.linspace(0, len(x), n + 1).astype(int)[:-1]
    counts = np.diff(np.append(edges, len(x)))
    return (np.add.reduceat(x, edges) / counts, np.minimum.reduceat(low, edges), np.maximum.reduceat(high, edges))


# --- labels and tracks -------------------------------------------------------------------------------------------


def label_choices(session: Session, user: Any, movie: Movie) -> list[dict[str, Any]]:
    """Every label of the movie's annotation sets, by set name then label: ``{"set_id", "set", "label", "events",
    "following"}`` (``following``: how many of the components the user may see follow it, q < 0.05)."""
    counts = session.execute(
        select(AnnotationSet.id, AnnotationSet.name, AnnotationEvent.label, func.count(AnnotationEvent.id))
        .join(AnnotationSet, AnnotationEvent.set_id == AnnotationSet.id)
        .where(AnnotationSet.movie_id == movie.id)
        .group_by(AnnotationSet.id, AnnotationSet.name, AnnotationEvent.label)
    ).all()
    following = {
        (set_id, label): int(n)
        for set_id, label, n in session.execute(
            select(TemporalDecoding.set_id, TemporalDecoding.label, func.count(TemporalDecoding.id))
            .join(Component, TemporalDecoding.component_id == Component.id)
            .join(Collection, Component.collection_id == Collection.id)
            .where(Collection.movie_id == movie.id, TemporalDecoding.q < SIGNIFICANT_Q, visible_collections(user))
            .group_by(TemporalDecoding.set_id, TemporalDecoding.label)
        )
    }
    rows = [
        {
            "set_id": set_id,
            "set": name,
            "label": label,
            "events": int(n),
            "following": following.get((set_id, label), 0),
        }
        for set_id, name, label, n in counts
    ]
    return sorted(rows, key=lambda r: (r["set"], r["set_id"], r["label"]))


def movie_default_tracks(choices: list[dict[str, Any]], n: int = DEFAULT_TRACKS) -> list[tuple[int, str]]:
    """The movie timeline's tracks until the visitor chooses: the labels most components follow, then the
    busiest (most events)."""
    ranked = sorted(choices, key=lambda r: (-r["following"], -r["events"], r["set"], r["label"]))
    return [(r["set_id"], r["label"]) for r in ranked[:n]]


def component_default_tracks(rows: list[dict[str, Any]], n: int = DEFAULT_TRACKS) -> list[tuple[int, str]]:
    """A component's tracks until the visitor chooses: its best temporal-decoding labels, lowest q first (rows of
    :func:`component_temporal`)."""
    ranked = sorted(rows, key=lambda r: (r["q"], r["p"], -abs(r["r"]), r["rank"]))
    return [(r["annotation_id"], r["label"]) for r in ranked[:n]]


def track_intervals(
    session: Session, movie: Movie, pairs: Iterable[tuple[int, str]], gap: float = 0.0
) -> list[dict[str, Any]]:
    """The tracks of ``pairs`` ((set id, label), drawn in this order; pairs the movie does not have are left out,
    at most :data:`MAX_TRACKS`) as merged intervals: events that overlap, or lie less than ``gap`` seconds apart,
    become one ``[start, end]``. Events are read in order and merged as they come, so memory holds the intervals,
    not the events.

    Returns
    -------
    list of dict
        ``{"set_id", "set", "label", "events", "intervals"}`` per track (``events``: how many were merged).
    """
    wanted = list(dict.fromkeys((int(s), str(label)) for s, label in pairs))
    names = dict(
        session.execute(select(AnnotationSet.id, AnnotationSet.name).where(AnnotationSet.movie_id == movie.id)).all()
    )
    wanted = [p for p in wanted if p[0] in names][:MAX_TRACKS]
    if not wanted:
        return []
    merged: dict[tuple[int, str], list[list[float]]] = {p: [] for p in wanted}
    counts: dict[tuple[int, str], int] = dict.fromkeys(wanted, 0)
    condition = or_(
        *(
            and_(AnnotationEvent.set_id == set_id, AnnotationEvent.label.in_(labels))
            for set_id, labels in _by_set(wanted).items()
        )
    )
    rows = session.execute(
        select(AnnotationEvent.set_id, AnnotationEvent.label, AnnotationEvent.onset, AnnotationEvent.duration)
        .where(condition)
        .order_by(AnnotationEvent.set_id, AnnotationEvent.label, AnnotationEvent.onset)
        .execution_options(yield_per=5000)
    )
    for set_id, label, onset, duration in rows:
        key = (set_id, label)
        if key not in merged:
            continue
        counts[key] += 1
        start, end = float(onset), float(onset) + max(float(duration), 0.0)
        track = merged[key]
        if track and start <= track[-1][1] + gap:
            track[-1][1] = max(track[-1][1], end)
        else:
            track.append([start, end])
    return [
        {"set_id": s, "set": names[s], "label": label, "events": counts[(s, label)], "intervals": merged[(s, label)]}
        for s, label in wanted
    ]


def label_events(session: Session, movie: Movie, set_id: int, label: str) -> list[dict[str, Any]]:
    """Every event of one label of one of the movie's sets, by onset (for its regressor); [] when there is none."""
    rows = session.execute(
        select(AnnotationEvent.onset, AnnotationEvent.duration, AnnotationEvent.amplitude)
        .join(AnnotationSet, AnnotationEvent.set_id == AnnotationSet.id)
        .where(AnnotationSet.movie_id == movie.id, AnnotationSet.id == set_id, AnnotationEvent.label == label)
        .order_by(AnnotationEvent.onset, AnnotationEvent.id)
    ).all()
    return [{"onset": o, "duration": d, "amplitude": a, "label": label} for o, d, a in rows]


MAX_LABEL_COMPONENTS = 100


def label_components(
    session: Session, user: Any, label: str, limit: int = MAX_LABEL_COMPONENTS
) -> list[dict[str, Any]]:
    """The visible components of every movie that follow ``label`` (q < 0.05 in an annotation set of their
    movie whose label has this name), best first: at most ``limit``, read through the (label, q) index."""
    if lookup_key(label) is None:  # NUL or an absurd length names no label (and PostgreSQL refuses it)
        return []
    rows = session.execute(
        select(
            Component.uuid,
            Component.storage_key,
            Movie.title,
            Movie.slug,
            Collection.name,
            AnnotationSet.name,
            TemporalDecoding.r,
            TemporalDecoding.p,
            TemporalDecoding.q,
        )
        .join(Component, TemporalDecoding.component_id == Component.id)
        .join(Collection, Component.collection_id == Collection.id)
        .join(Movie, Collection.movie_id == Movie.id)
        .join(AnnotationSet, TemporalDecoding.set_id == AnnotationSet.id)
        .where(TemporalDecoding.label == label, TemporalDecoding.q < SIGNIFICANT_Q, visible_collections(user))
        .order_by(TemporalDecoding.q, TemporalDecoding.p, TemporalDecoding.r.desc())
        .limit(limit)
    ).all()
    return [
        {
            "uuid": uuid,
            "storage_key": key,
            "movie": title,
            "movie_slug": slug,
            "collection": collection,
            "annotation": annotation,
            "r": float(r),
            "p": float(p),
            "q": float(q),
        }
        for uuid, key, title, slug, collection, annotation, r, p, q in rows
    ]
