"""Read queries of the movie's timeline: time courses, annotation sets, temporal decodings and labels.

Same visibility rules as ``store.queries`` (``store.access.visible_collections``): a component's time course and
temporal decodings are shown only where the component is. Time courses are read from their storage artifacts;
the movie time of every row is computed from the collection's timing (``Collection.timing``: TR, runs as
``[movie start s, volumes]`` and the number of subjects concatenated), exactly as ``pipeline.timecourses.Timing``
does, without importing the pipeline.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
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
from store.queries import get_visible_component, lookup_key

MAX_DISPLAY_POINTS = 2000  # per trace sent to a browser; downloads keep every row
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
    return {"tr": float(timing["tr"]), "subjects": subjects, "movie_time_s": times[: blocks.shape[1]].tolist(),
            "values": blocks.mean(axis=0).tolist(), "sd": blocks.std(axis=0).tolist() if subjects > 1 else None,
            "runs": [[float(s), int(n)] for s, n in timing["runs"]],
            "spectrum": {"frequency_hz": np.fft.rfftfreq(2 * (len(spectrum) - 1) or 1, float(timing["tr"]))
                         [: len(spectrum)].tolist(), "power": spectrum.tolist()},
            "all_rows": {"movie_time_s": times.tolist(), "values": values.tolist()}}


def component_temporal(session: Session, user: Any, uuid: str) -> list[dict[str, Any]] | None:
    """The component's temporal decodings, best first (None when the component is not visible)."""
    comp = get_visible_component(session, user, uuid)
    if comp is None:
        return None
    rows = session.execute(select(AnnotationSet.name, AnnotationSet.id, TemporalDecoding.label, TemporalDecoding.r,
                                  TemporalDecoding.p, TemporalDecoding.q, TemporalDecoding.rank)
                           .join(AnnotationSet, TemporalDecoding.set_id == AnnotationSet.id)
                           .where(TemporalDecoding.component_id == comp.id).order_by(TemporalDecoding.rank)).all()
    return [{"annotation": name, "annotation_id": set_id, "label": label, "r": float(r), "p": float(p),
             "q": float(q), "rank": int(rank)} for name, set_id, label, r, p, q, rank in rows]


def movie_annotations(session: Session, movie: Movie, with_events: bool = True) -> list[dict[str, Any]]:
    """The movie's annotation sets, each with its labels and counts (and its events when asked)."""
    sets = session.scalars(select(AnnotationSet).where(AnnotationSet.movie_id == movie.id)
                           .order_by(AnnotationSet.name)).all()
    out = []
    for a in sets:
        counts = session.execute(select(AnnotationEvent.label, func.count(AnnotationEvent.id))
                                 .where(AnnotationEvent.set_id == a.id).group_by(AnnotationEvent.label)
                                 .order_by(AnnotationEvent.label)).all()
        item = {"id": a.id, "name": a.name, "description": a.description, "source_url": a.source_url,
                "owner_id": a.owner_id, "is_demo": a.is_demo, "created": a.created.isoformat(),
                "labels": [{"label": label, "events": int(n)} for label, n in counts]}
        if with_events:
            item["events"] = [{"onset": e.onset, "duration": e.duration, "label": e.label, "amplitude": e.amplitude}
                              for e in a.events]
        out.append(item)
    return out


def movie_courses(session: Session, user: Any, movie: Movie) -> list[dict[str, Any]]:
    """The visible components of a movie that have time courses: uuid, best term and the z-scored mean course
    over subjects on the movie-time axis (at most ``MAX_DISPLAY_POINTS`` points), grouped by best term."""
    comps = session.execute(select(Component.uuid, Component.volume_index, Component.timecourse_id, Term.name,
                                   Collection.timing, Collection.name)
                            .join(Collection).outerjoin(Term, Component.best_term_id == Term.id)
                            .where(Collection.movie_id == movie.id, visible_collections(user),
                                   Component.timecourse_id.is_not(None))
                            .order_by(Term.name, Component.id)).all()
    keys = dict(session.execute(select(TimeCourse.id, TimeCourse.storage_key)
                                .where(TimeCourse.id.in_({c[2] for c in comps}))).all()) if comps else {}
    matrices: dict[int, np.ndarray] = {}
    out = []
    for uuid, column, course_id, term, timing, collection_name in comps:
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
        times, z = downsample(times[order], z[order])
        out.append({"uuid": uuid, "term": term or "undecoded", "collection": collection_name,
                    "movie_time_s": times.tolist(), "z": z.tolist()})
    return out


def downsample(x: np.ndarray, y: np.ndarray, n: int = MAX_DISPLAY_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` points of a trace for display: means of consecutive bins (downloads keep every row)."""
    if len(x) <= n:
        return x, y
    edges = np.linspace(0, len(x), n + 1).astype(int)
    return (np.add.reduceat(x, edges[:-1]) / np.diff(edges), np.add.reduceat(y, edges[:-1]) / np.diff(edges))


MAX_LABEL_COMPONENTS = 100


def label_components(session: Session, user: Any, label: str,
                     limit: int = MAX_LABEL_COMPONENTS) -> list[dict[str, Any]]:
    """The visible components of every movie that follow ``label`` (q < 0.05 in an annotation set of their
    movie whose label has this name), best first: at most ``limit``, read through the (label, q) index."""
    if lookup_key(label) is None:  # NUL or an absurd length names no label (and PostgreSQL refuses it)
        return []
    rows = session.execute(select(Component.uuid, Component.storage_key, Movie.title, Movie.slug, Collection.name,
                                  AnnotationSet.name, TemporalDecoding.r, TemporalDecoding.p, TemporalDecoding.q)
                           .join(Component, TemporalDecoding.component_id == Component.id)
                           .join(Collection, Component.collection_id == Collection.id)
                           .join(Movie, Collection.movie_id == Movie.id)
                           .join(AnnotationSet, TemporalDecoding.set_id == AnnotationSet.id)
                           .where(TemporalDecoding.label == label, TemporalDecoding.q < SIGNIFICANT_Q,
                                  visible_collections(user))
                           .order_by(TemporalDecoding.q, TemporalDecoding.p, TemporalDecoding.r.desc())
                           .limit(limit)).all()
    return [{"uuid": uuid, "storage_key": key, "movie": title, "movie_slug": slug, "collection": collection,
             "annotation": annotation, "r": float(r), "p": float(p), "q": float(q)}
            for uuid, key, title, slug, collection, annotation, r, p, q in rows]
