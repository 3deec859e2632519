"""Annotation sets of movies, and the temporal decoding of components against them (DESIGN section 14).

An annotation set is a BIDS-style events file (onset, duration in seconds of movie time, label, amplitude)
attached to a movie. Every component with a time course is decoded against every label of every set of its
movie (``pipeline.temporal.decoding``: HRF-convolved regressors, Pearson r, a circular-shift null, Benjamini-Hochberg q
over the component's labels); the ranked list is stored as TemporalDecoding rows. A collection is decoded when
its ingest stores time courses; a whole movie again when one of its sets is added or removed (a ``temporal``
job, on the shared job lifecycle of ``pipeline.jobs.lifecycle``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from pipeline.jobs.lifecycle import JobRefused, create_job, running_job, update_job
from pipeline.temporal.decoding import label_regressors, temporal_decode
from pipeline.temporal.events import Event, events_by_label, read_events
from pipeline.temporal.timing import TimeCourseError, Timing
from store.artifacts import load_vector
from store.config import get_settings
from store.db import session_scope
from store.models import (
    ACTIVE_JOB_STATUSES,
    AnnotationEvent,
    AnnotationSet,
    Collection,
    Component,
    Job,
    JobStatus,
    Movie,
    TemporalDecoding,
    TimeCourse,
    User,
)
from store.units import human_bytes
from store.validation import has_control_characters

MIN_SHIFTS, MAX_SHIFTS = 1000, 10000


def shifts_for(n_labels: int) -> int:
    """Circular shifts of the null: at least 1,000, and enough that Benjamini-Hochberg over ``n_labels`` labels
    can reach q < 0.05 (the smallest p is 1/(shifts + 1), so q >= n_labels/(shifts + 1) for a single hit)."""
    return int(min(MAX_SHIFTS, max(MIN_SHIFTS, 25 * n_labels)))


NAME_MAX = 255
DESCRIPTION_MAX = 5000
SOURCE_URL_MAX = 1000


class AnnotationError(ValueError):
    """A refused annotation set, with the message for the person who sent it."""


# --- annotation sets ------------------------------------------------------------------------------------------


def add_annotation_set(
    session: Session,
    user: User | None,
    movie: Movie,
    name: str,
    data: bytes | str,
    filename: str,
    description: str = "",
    source_url: str = "",
    is_demo: bool = False,
) -> AnnotationSet:
    """Check an events file and keep it as a new annotation set of ``movie``.

    Parameters
    ----------
    user : User or None
        The owner (any signed-in curator; None only for the demo loader and the command line).
    data : bytes or str
        The events TSV (``onset``, ``duration``, ``trial_type`` or ``label``, optional ``amplitude``/``value``).
    filename : str
        The file's name, for messages.

    Raises
    ------
    AnnotationError
        A missing or taken name, a malformed source URL, an events file that cannot be read (the message
        names the line), or one over the caps (``INCDB_ANNOTATION_*``: file size, events and labels per set,
        sets per movie and per curator), which are checked before the file is parsed or stored.
    """
    name = " ".join(str(name or "").split())
    problems = []
    if not name:
        problems.append("Give the annotation set a name.")
    elif len(name) > NAME_MAX or has_control_characters(name):
        problems.append(f"The name may have at most {NAME_MAX} plain characters.")
    description = str(description or "").strip()
    if len(description) > DESCRIPTION_MAX or has_control_characters(description, allow_newlines=True):
        problems.append(f"The description may have at most {DESCRIPTION_MAX} plain characters.")
    source_url = str(source_url or "").strip()
    if source_url and (len(source_url) > SOURCE_URL_MAX or not re.match(r"^https?://[^\s/]+\.[^\s]+$", source_url)):
        problems.append("The source URL must be a web address starting with https:// (or http://).")
    if (
        name
        and session.scalar(
            select(AnnotationSet.id).where(AnnotationSet.movie_id == movie.id, AnnotationSet.name == name)
        )
        is not None
    ):
        problems.append(f"{movie.title} has an annotation set named “{name}” already; choose another name.")
    problems += _quota_problems(session, user, movie)
    filename = filename or "events.tsv"
    too_large = _size_problems(data, filename)
    events: list[Event] = []
    if not too_large:  # only a file within the caps is parsed
        try:
            events = read_events(data, filename)
        except TimeCourseError as exc:
            problems.append(str(exc))
    problems += too_large + _label_problems(events, filename)
    if problems:
        raise AnnotationError("; ".join(problems))
    annotation = AnnotationSet(
        movie_id=movie.id,
        owner_id=user.id if user is not None else None,
        name=name,
        description=description,
        source_url=source_url,
        is_demo=is_demo,
    )
    session.add(annotation)
    session.flush()
    session.execute(
        insert(AnnotationEvent),
        [
            dict(set_id=annotation.id, onset=e.onset, duration=e.duration, label=e.label, amplitude=e.amplitude)
            for e in events
        ],
    )
    return annotation


def _quota_problems(session: Session, user: User | None, movie: Movie) -> list[str]:
    """Whether the movie, and the curator (administrators aside), may have one more annotation set."""
    settings = get_settings()
    problems = []
    per_movie = settings.annotation_sets_per_movie
    if (
        per_movie
        and session.scalar(select(func.count(AnnotationSet.id)).where(AnnotationSet.movie_id == movie.id)) >= per_movie
    ):
        problems.append(
            f"{movie.title} has {per_movie} annotation sets, the most a movie may have; ask its curators "
            "or an administrator to remove one first."
        )
    per_user = settings.annotation_sets_per_user
    if (
        per_user
        and user is not None
        and not user.is_admin
        and session.scalar(select(func.count(AnnotationSet.id)).where(AnnotationSet.owner_id == user.id)) >= per_user
    ):
        problems.append(
            f"You have {per_user} annotation sets, the most one curator may have; delete one you no longer need first."
        )
    return problems


def _size_problems(data: bytes | str, filename: str) -> list[str]:
    """The file's size and number of event lines against the caps, counted before the file is parsed."""
    settings = get_settings()
    size = len(data.encode("utf-8", "replace")) if isinstance(data, str) else len(data)
    cap = settings.annotation_max_bytes
    if cap and size > cap:
        return [
            f"{filename}: the file is {human_bytes(size)}, more than the {human_bytes(cap)} an annotation set "
            "may have; split it into several sets."
        ]
    events = sum(1 for line in data.splitlines() if line.strip()) - 1  # the first line is the header
    if settings.annotation_max_events and events > settings.annotation_max_events:
        return [
            f"{filename}: {events:,} events, more than the {settings.annotation_max_events:,} an annotation set "
            "may have; split it into several sets."
        ]
    return []


def _label_problems(events: list[Event], filename: str) -> list[str]:
    """The number of distinct labels against the cap (each label is a regressor of every component's decoding)."""
    cap = get_settings().annotation_max_labels
    labels = len({e.label for e in events})
    if cap and labels > cap:
        return [
            f"{filename}: {labels:,} different labels, more than the {cap:,} an annotation set may have; merge "
            "rare labels or split the file into several sets."
        ]
    return []


def delete_annotation_set(session: Session, user: Any, set_id: int) -> Movie:
    """Delete an annotation set (its owner or an administrator); returns its movie, whose components need
    decoding again.

    Raises
    ------
    AnnotationError
        No such set, or the user may not delete it.
    """
    valid = isinstance(set_id, int) and not isinstance(set_id, bool) and 1 <= set_id <= 2**31 - 1
    annotation = session.get(AnnotationSet, set_id) if valid else None
    if annotation is None:
        raise AnnotationError("This annotation set does not exist (any more).")
    if not may_change(user, annotation):
        raise AnnotationError("Only the owner of an annotation set, or an administrator, deletes it.")
    movie = annotation.movie
    session.delete(annotation)
    session.flush()
    return movie


def may_change(user: Any, annotation: AnnotationSet) -> bool:
    """Whether ``user`` may delete ``annotation``: its owner or an administrator."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(getattr(user, "is_admin", False)) or annotation.owner_id == getattr(user, "id", None)


def start_temporal_job(session: Session, user: Any, movie: Movie) -> Job | None:
    """The job that decodes the movie's components in time again (a queued one is reused); None when the movie
    has no component with a time course, so there is nothing to do.

    Raises
    ------
    JobRefused
        The user is not signed in.
    """
    if not getattr(user, "is_authenticated", False):
        raise JobRefused("Sign in to change annotations.")
    if not _has_timecourses(session, movie.id):
        return None
    current = session.scalar(
        select(Job).where(Job.kind == "temporal", Job.movie_id == movie.id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    if current is not None and current.status == JobStatus.QUEUED:
        return current
    job = create_job(session, "temporal", None, user.id)
    job.movie_id = movie.id
    return job


def _has_timecourses(session: Session, movie_id: int) -> bool:
    return (
        session.scalar(
            select(Component.id)
            .join(Collection)
            .where(Collection.movie_id == movie_id, Component.timecourse_id.is_not(None))
            .limit(1)
        )
        is not None
    )


# --- temporal decoding ----------------------------------------------------------------------------------------


def temporal_job(job_id: int) -> int:
    """Run a ``temporal`` job: decode every collection of the job's movie again; returns the components done."""
    with session_scope() as session:
        movie_id = session.get(Job, job_id).movie_id
        collections = list(
            session.scalars(select(Collection.id).where(Collection.movie_id == movie_id).order_by(Collection.id))
        )
    with running_job(job_id) as run:
        done = 0
        update_job(job_id, progress_total=len(collections), progress_done=0)
        for n, collection_id in enumerate(collections, start=1):
            done += decode_collection_in_time(collection_id)
            update_job(job_id, progress_done=n)
        run.message = f"{done} component(s) decoded against the movie's annotations"
    return done


def decode_collection_in_time(collection_id: int, n_shifts: int | None = None) -> int:
    """Decode the components of one collection against every annotation label of its movie and replace their
    TemporalDecoding rows; returns how many components were decoded (0 without timing, time courses or
    annotations, after removing any rows left from before)."""
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        if collection is None:
            return 0
        comps = session.execute(
            select(Component.id, Component.timecourse_id, Component.volume_index)
            .where(Component.collection_id == collection_id, Component.timecourse_id.is_not(None))
            .order_by(Component.id)
        ).all()
        session.execute(
            delete(TemporalDecoding).where(
                TemporalDecoding.component_id.in_(select(Component.id).where(Component.collection_id == collection_id))
            )
        )
        labels = _movie_labels(session, collection.movie_id)
        if not comps or not labels or not collection.timing:
            return 0
        timing = Timing.from_dict(collection.timing)
        keys = dict(
            session.execute(
                select(TimeCourse.id, TimeCourse.storage_key).where(TimeCourse.collection_id == collection_id)
            ).all()
        )
    courses = _component_courses(comps, keys)
    regressors, label_keys = _regressors(labels, timing)
    result = temporal_decode(
        courses, regressors, timing.run_lengths, timing.subjects, n_shifts=n_shifts or shifts_for(len(label_keys))
    )
    rows = []
    for i, (comp_id, _, _) in enumerate(comps):
        order = np.lexsort((-np.abs(result.r[i]), result.p[i], result.q[i]))
        rows += [
            dict(
                component_id=comp_id,
                set_id=label_keys[j][0],
                label=label_keys[j][1],
                r=float(result.r[i, j]),
                p=float(result.p[i, j]),
                q=float(result.q[i, j]),
                rank=rank + 1,
            )
            for rank, j in enumerate(order)
        ]
    with session_scope() as session:
        session.execute(delete(TemporalDecoding).where(TemporalDecoding.component_id.in_([c[0] for c in comps])))
        session.execute(insert(TemporalDecoding), rows)
    return len(comps)


def _movie_labels(session: Session, movie_id: int) -> dict[tuple[int, str], list[Event]]:
    """(set id, label) -> events, for every annotation set of the movie."""
    found: dict[tuple[int, str], list[Event]] = {}
    for set_id, onset, duration, label, amplitude in session.execute(
        select(
            AnnotationEvent.set_id,
            AnnotationEvent.onset,
            AnnotationEvent.duration,
            AnnotationEvent.label,
            AnnotationEvent.amplitude,
        )
        .join(AnnotationSet)
        .where(AnnotationSet.movie_id == movie_id)
        .order_by(AnnotationEvent.set_id, AnnotationEvent.id)
    ):
        found.setdefault((set_id, label), []).append(Event(onset, duration, label, amplitude))
    return found


def _component_courses(comps: list, keys: dict[int, str]) -> np.ndarray:
    """(rows, components) float64: each component's column of its map's time-course matrix."""
    matrices: dict[int, np.ndarray] = {}
    columns = []
    for _, course_id, column in comps:
        if course_id not in matrices:
            matrices[course_id] = load_vector(keys[course_id])
        columns.append(matrices[course_id][:, column])
    return np.stack(columns, axis=1).astype(np.float64)


def _regressors(labels: dict[tuple[int, str], list[Event]], timing: Timing) -> tuple[np.ndarray, list]:
    """The regressors of all labels, (volumes per subject, labels), in the order of the returned keys."""
    runs = [(run.start_s, run.volumes) for run in timing.runs]
    blocks, keys = [], []
    by_set: dict[int, list[Event]] = {}
    for (set_id, _label), events in labels.items():
        by_set.setdefault(set_id, []).extend(events)
    for set_id, events in by_set.items():
        names, matrix = label_regressors(events_by_label(events), timing.tr, runs)
        blocks.append(matrix)
        keys += [(set_id, name) for name in names]
    return np.concatenate(blocks, axis=1), keys
