"""The ``synchrony`` job: inter-subject correlation of a collection's components, stored for pages and the API.

A collection whose timing stacks two or more subjects and whose components have time courses gets, per component,
leave-one-out and pairwise ISC with p and q (a ``ComponentISC`` row), and for the whole collection the windowed
leave-one-out ISC placed at movie time and the ISFC matrix (float32 artifacts named by a ``CollectionSynchrony``
row), the moments of synchrony (``SynchronyMoment``) and the ISC during each annotation label against outside it
(``SynchronyLabel``). The arithmetic is ``pipeline.synchrony.isc``; this module reads the inputs, turns values the
data cannot give (one subject, a constant series) into NULL with a plain note, and replaces the rows in one
transaction.

The job runs after every ingest of such a collection (:func:`run_after_ingest`), and on demand
(``python -m pipeline isc [--collection SLUG]``); after a movie's annotation sets change, :func:`refresh_movie_labels`
recomputes the rows by label from the stored windowed ISC without computing ISC again. Nothing here imports Dash
or Flask.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from pipeline.jobs.lifecycle import claim_job, create_job, running_job, update_job
from pipeline.temporal.timing import TimeCourseError, Timing
from store.artifacts import load_vector, save_vector
from store.db import session_scope
from store.models import (
    AnnotationEvent,
    AnnotationSet,
    Collection,
    CollectionSynchrony,
    Component,
    ComponentISC,
    Job,
    SynchronyLabel,
    SynchronyMoment,
    TimeCourse,
)

log = logging.getLogger("incdb.synchrony")

DEFAULT_WINDOW_S = 30.0
DEFAULT_RESAMPLES = 1000
MIN_SUBJECTS = 2
MAX_MOMENT_LABELS = 20

ONE_SUBJECT_NOTE = (
    "No ISC: the collection's time courses come from one subject, and inter-subject correlation compares two or more."
)
TWO_SUBJECTS_NOTE = "Two subjects: pairwise ISC only (leaving one out leaves a single subject to compare with)."


class SynchronyError(ValueError):
    """A collection whose synchrony cannot be computed; the message says why."""


SYNCHRONY_LOCK_ID = 5_310_427  # any constant: with a collection's id, names the advisory lock of its synchrony rows


def isfc_key(collection_id: int, run: str = "run") -> str:
    """Key of a collection's ISFC matrix (float32, components x components, in ``CollectionSynchrony.components``
    order) written by the run ``run`` (the job passes a new name each time, :func:`_new_run`). Every run writes its
    own files and the rows name them in the transaction that replaces the rows, so rows never name another run's
    files; a replaced run's files (or those of a run that failed before its rows) are left to
    ``pipeline.jobs.sweep``."""
    return f"synchrony/collections/{collection_id}/{run}/isfc.npy"


def windowed_key(collection_id: int, run: str = "run") -> str:
    """Key of a collection's windowed ISC (float32, windows x (1 + components); column 0 the centre's movie time)
    written by the run ``run`` (see :func:`isfc_key`)."""
    return f"synchrony/collections/{collection_id}/{run}/windowed.npy"


def _new_run() -> str:
    return uuid.uuid4().hex


def _lock_collection(session: Session, collection_id: int) -> None:
    """Serialise, until this transaction ends, the writers of a collection's synchrony rows (the job, the refresh
    by label, a change of the collection's movie or timing) across processes.

    PostgreSQL: a transaction-scoped advisory lock on (constant, collection id). SQLite: take the database write
    lock now (a no-op UPDATE), so the reads that follow see every committed change.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": SYNCHRONY_LOCK_ID, "b": collection_id})
    else:
        session.execute(text("UPDATE collections SET id = id WHERE 1 = 0"))


def _finite(value: Any) -> float | None:
    """A plain float, or None for NaN, infinity or None (JSON and the pages never see NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _isc_module():
    # Imported where it is used, so that the job kinds import without the arithmetic's dependencies loaded.
    from pipeline.synchrony import isc

    return isc


def _one_blas_thread():
    """A context in which BLAS (OpenBLAS) uses one thread.

    The null's many small FFT and matrix products gain nothing from OpenBLAS's threads, and on a loaded machine
    the threads wait for each other at every product. Measured on 2 cores under a load average of about 9, the
    whole computation of 10 components x 15 subjects x 3,599 volumes (8 runs, 1,000 resamples, windowed ISC and
    its null, ISFC): 26.9 s and 11.2 s wall (7.4 s and 5.6 s CPU) with OpenBLAS's 2 threads, 9.1 s and 10.0 s
    wall (3.8 s and 4.1 s CPU) with one; 20 components x 8 subjects: median 12.1 s (7.4 to 16.1) against 10.1 s
    (9.7 to 11.1) over five runs each. Worker processes are one per core, so one thread each loses nothing.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


# --- inputs -----------------------------------------------------------------------------------------------------


def _inputs(session: Session, collection_id: int) -> tuple[Collection, Timing | None, list, dict[int, str]]:
    collection = session.get(Collection, collection_id)
    if collection is None:
        raise SynchronyError(f"collection {collection_id} does not exist")
    comps = session.execute(
        select(Component.id, Component.uuid, Component.timecourse_id, Component.volume_index)
        .where(Component.collection_id == collection_id, Component.timecourse_id.is_not(None))
        .order_by(Component.id)
    ).all()
    keys = dict(
        session.execute(
            select(TimeCourse.id, TimeCourse.storage_key).where(TimeCourse.collection_id == collection_id)
        ).all()
    )
    timing = Timing.from_dict(collection.timing) if collection.timing else None
    return collection, timing, list(comps), keys


def _courses(comps: Sequence, keys: dict[int, str]) -> np.ndarray:
    """(rows, components) float64: each component's column of its map's time-course matrix."""
    matrices: dict[int, np.ndarray] = {}
    columns = []
    for _, _, course_id, column in comps:
        if course_id not in matrices:
            matrices[course_id] = load_vector(keys[course_id])
        columns.append(matrices[course_id][:, column])
    return np.stack(columns, axis=1).astype(np.float64)


def eligible(session: Session, collection_id: int) -> bool:
    """Whether a collection has what ISC needs: a timing with two or more subjects and components with time
    courses."""
    collection = session.get(Collection, collection_id)
    if collection is None or not collection.timing:
        return False
    try:
        subjects = Timing.from_dict(collection.timing).subjects
    except TimeCourseError:
        return False
    if subjects < MIN_SUBJECTS:
        return False
    found = session.scalar(
        select(Component.id)
        .where(Component.collection_id == collection_id, Component.timecourse_id.is_not(None))
        .limit(1)
    )
    return found is not None


# --- events ---------------------------------------------------------------------------------------------------


def _movie_events(session: Session, movie_id: int) -> dict[tuple[int, str], list[tuple[float, float]]]:
    """(set id, label) -> [(onset_s, duration_s)] for every annotation set of the movie."""
    found: dict[tuple[int, str], list[tuple[float, float]]] = {}
    rows = session.execute(
        select(AnnotationEvent.set_id, AnnotationEvent.label, AnnotationEvent.onset, AnnotationEvent.duration)
        .join(AnnotationSet)
        .where(AnnotationSet.movie_id == movie_id)
        .order_by(AnnotationEvent.set_id, AnnotationEvent.id)
    )
    for set_id, label, onset, duration in rows:
        found.setdefault((set_id, label), []).append((float(onset), float(duration)))
    return found


def _window_step(times: np.ndarray) -> float:
    """The step between window centres (the median, as ``pipeline.synchrony.isc.label_synchrony`` takes it)."""
    ordered = np.sort(np.asarray(times, dtype=np.float64))
    return float(np.median(np.diff(ordered))) if ordered.size > 1 else 1.0


def _active_labels(events: dict[tuple[int, str], list[tuple[float, float]]], time_s: float, step: float) -> list[str]:
    """The labels whose events hold a window centred at ``time_s``: ``[onset, onset + max(duration, step))``, a
    zero-length event covering one window step, as in the rows by label."""
    labels = {
        label
        for (_, label), spans in events.items()
        if any(onset <= time_s < onset + max(duration, step) for onset, duration in spans)
    }
    return sorted(labels)[:MAX_MOMENT_LABELS]


def _label_rows(
    values: np.ndarray,
    times: np.ndarray,
    events: dict[tuple[int, str], list[tuple[float, float]]],
    comp_ids: Sequence[int],
    collection_id: int,
    seed: int,
) -> list[dict]:
    """SynchronyLabel rows: windowed ISC during each label against outside it, per component."""
    isc = _isc_module()
    rows = []
    if values.size == 0:
        return rows
    for (set_id, label), spans in events.items():
        inside, outside, p = (
            np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in isc.label_synchrony(values, times, spans, seed=seed)
        )
        for i, comp_id in enumerate(comp_ids):
            cells = (_finite(inside[i]), _finite(outside[i]), _finite(p[i]))
            if None in cells:  # no window inside (or outside) the label's events
                continue
            rows.append(
                dict(
                    component_id=comp_id,
                    collection_id=collection_id,
                    set_id=set_id,
                    label=label,
                    inside=cells[0],
                    outside=cells[1],
                    p=cells[2],
                )
            )
    return rows


def _moment_points(
    values: np.ndarray, null: np.ndarray | None, times: np.ndarray, separation: int
) -> list[tuple[float, float]]:
    """(movie time, across-component mean) of each moment of synchrony; moments at least ``separation`` windows
    apart (the window's volumes: one window from the next)."""
    if values.size == 0 or values.shape[1] == 0:
        return []
    points = []
    for index, value in _isc_module().synchrony_moments(values, null, separation=max(1, int(separation))):
        mean = _finite(value)
        if mean is not None:
            points.append((float(times[int(index)]), mean))
    return points


# --- computation ----------------------------------------------------------------------------------------------


def _component_notes(data: np.ndarray) -> list[str]:
    """Per component, the subjects whose series is constant (they have no correlation), said plainly."""
    constant = np.ptp(data, axis=0) <= 1e-12 * np.maximum(1.0, np.abs(data).max(axis=0))  # (V, S)
    notes = []
    for row in constant:
        which = [str(s + 1) for s in np.flatnonzero(row)]
        if not which:
            notes.append("")
        elif len(which) == 1:
            notes.append(
                f"Subject {which[0]}'s time course is constant here, so it has no correlation and is left out."
            )
        else:
            notes.append(
                f"Subjects {', '.join(which)} have constant time courses here, so they have no correlation and are "
                "left out."
            )
    return notes


def _window_times(timing: Timing, centres: np.ndarray) -> np.ndarray:
    """Movie time of each window centre (a row index of one subject's block, possibly half-way between rows)."""
    per_subject = timing.movie_times()[: timing.rows_per_subject]
    return np.interp(np.asarray(centres, dtype=np.float64), np.arange(per_subject.size), per_subject)


def _windowed(data: np.ndarray, timing: Timing, window_s: float) -> tuple[np.ndarray, np.ndarray, str, int]:
    """(centre movie times (W,), values (W, V), note, volumes per window) of the windowed leave-one-out ISC."""
    volumes = _isc_module().window_volumes(window_s, timing.tr)
    n_components = data.shape[1]
    if volumes > max(timing.run_lengths):
        note = (
            f"No windowed ISC: a {window_s:g} s window is {volumes} volumes, longer than the longest run "
            f"({max(timing.run_lengths)} volumes)."
        )
        return np.zeros(0), np.zeros((0, n_components)), note, volumes
    centres, values = _isc_module().windowed_isc(data, list(timing.run_lengths), volumes)
    values = np.asarray(values, dtype=np.float64).reshape(-1, n_components)
    return _window_times(timing, np.asarray(centres)), values, "", volumes


def compute_collection_synchrony(
    collection_id: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    window_s: float = DEFAULT_WINDOW_S,
    seed: int = 0,
) -> int:
    """Compute and store the synchrony of one collection; returns the number of components with a row.

    Rows from an earlier run are replaced in one transaction. A collection without timing or time courses keeps
    no rows; with one subject every component gets a row whose values are NULL and whose note says why.

    Raises
    ------
    SynchronyError
        The collection does not exist, or its time courses do not have the rows its timing gives.
    """
    with session_scope() as session:
        _, timing, comps, keys = _inputs(session, collection_id)
    if timing is None or not comps:
        _replace(collection_id, None, [])
        return 0
    courses = _courses(comps, keys)
    if courses.shape[0] != timing.rows:
        raise SynchronyError(
            f"The time courses have {courses.shape[0]:,} rows but the collection's timing gives {timing.rows:,} "
            f"({timing.rows_per_subject:,} volumes x {timing.subjects} subjects); set the timing again."
        )
    uuids = [c[1] for c in comps]
    if timing.subjects < MIN_SUBJECTS:
        summary = dict(n_subjects=1, n_resamples=0, window_s=None, components=uuids, note=ONE_SUBJECT_NOTE)
        rows = [dict(component_id=c[0], n_subjects=1, note=ONE_SUBJECT_NOTE) for c in comps]
        _replace(collection_id, summary, rows)
        return len(rows)
    with _one_blas_thread():
        return _compute(collection_id, timing, comps, courses, n_resamples, window_s, seed)


def _compute(
    collection_id: int,
    timing: Timing,
    comps: Sequence,
    courses: np.ndarray,
    n_resamples: int,
    window_s: float,
    seed: int,
) -> int:
    """The arithmetic of :func:`compute_collection_synchrony` for two or more subjects, and the rows it stores."""
    uuids = [c[1] for c in comps]
    isc = _isc_module()
    data = np.asarray(isc.subjects_array(courses, timing.subjects), dtype=np.float64)
    result = isc.component_isc(data, list(timing.run_lengths), n_resamples=n_resamples, seed=seed)
    notes = _component_notes(data)
    times, values, window_note, volumes = _windowed(data, timing, window_s)
    matrix = np.asarray(isc.isfc(data), dtype=np.float64)
    run = _new_run()  # this run's own files: the rows of the run before keep naming theirs until replaced
    save_vector(isfc_key(collection_id, run), np.where(np.isfinite(matrix), matrix, np.nan))
    has_windows = values.shape[0] > 0
    if has_windows:
        save_vector(windowed_key(collection_id, run), np.column_stack([times, values]))
    rows = _isc_rows(comps, result, notes, timing.subjects, has_windows)
    shared_note = " ".join(n for n in (str(result.note or ""), window_note) if n)
    finite = [r["isc"] if r["isc"] is not None else r["isc_pairwise"] for r in rows]
    finite = [v for v in finite if v is not None]
    summary = dict(
        n_subjects=timing.subjects,
        n_resamples=int(result.n_resamples),
        window_s=float(window_s) if has_windows else None,
        components=uuids,
        isfc_key=isfc_key(collection_id, run),
        windowed_key=windowed_key(collection_id, run) if has_windows else None,
        median_isc=float(np.median(finite)) if finite else None,
        note=shared_note,
    )
    windows = None
    if has_windows:  # the threshold: the 95th percentile of the film's peak on phase-randomised data
        null = isc.windowed_null(data, list(timing.run_lengths), volumes, seed=seed)
        points = _moment_points(values, null, times, volumes)
        windows = _Windows(times, values, [c[0] for c in comps], points, seed)
    _replace(collection_id, summary, rows, windows)
    return len(rows)


def _isc_rows(comps: Sequence, result: Any, notes: list[str], n_subjects: int, has_windows: bool) -> list[dict]:
    def at(array: Any, i: int) -> float | None:
        return None if array is None else _finite(np.asarray(array)[i])

    subjects = None if result.subjects is None else np.asarray(result.subjects, dtype=np.float64)
    rows = []
    for i, comp in enumerate(comps):
        loo = at(result.isc, i) if n_subjects > MIN_SUBJECTS else None
        pairwise = at(result.isc_pairwise, i)
        note = " ".join(n for n in (TWO_SUBJECTS_NOTE if n_subjects == MIN_SUBJECTS else "", notes[i]) if n)
        if loo is None and pairwise is None and not note:
            note = "No ISC: the subjects' time courses of this component have no correlation to measure."
        rows.append(
            dict(
                component_id=comp[0],
                isc=loo,
                isc_pairwise=pairwise,
                p=at(result.p, i),
                q=at(result.q, i),
                n_subjects=n_subjects,
                n_resamples=int(result.n_resamples),
                note=note,
                subjects=[] if subjects is None else [_finite(v) for v in subjects[:, i]],
                column=i if has_windows else None,
            )
        )
    return rows


@dataclass
class _Windows:
    """A run's windowed ISC and moments, labelled with the movie's annotations when the rows are written."""

    times: np.ndarray
    values: np.ndarray
    comp_ids: list[int]
    points: list[tuple[float, float]]  # (movie time, value) of each moment of synchrony
    seed: int


def _replace(collection_id: int, summary: dict | None, rows: list[dict], windows: _Windows | None = None) -> None:
    """Replace every synchrony row of the collection in one transaction, under the collection's lock.

    The collection's movie and its annotation events are read in that transaction, so the rows by label and the
    moments belong to the movie the collection has now and to its events as they are now, whatever changed while
    the ISC was computed.

    Raises
    ------
    SynchronyError
        The collection was deleted, or its components changed (a new processing), while the ISC was computed:
        nothing is changed.
    """
    with session_scope() as session:
        _lock_collection(session, collection_id)
        movie_id = session.scalar(select(Collection.movie_id).where(Collection.id == collection_id))
        if movie_id is None:
            raise SynchronyError(f"collection {collection_id} was deleted while its ISC was computed")
        present = set(session.scalars(select(Component.id).where(Component.collection_id == collection_id)))
        if any(row["component_id"] not in present for row in rows):
            raise SynchronyError(
                "The collection's components changed while its ISC was computed; its processing computes it again."
            )
        _delete_rows(session, collection_id)
        if summary is not None:
            session.add(CollectionSynchrony(collection_id=collection_id, **summary))
        defaults = dict(isc=None, isc_pairwise=None, p=None, q=None, n_resamples=0, subjects=[], column=None)
        if rows:
            session.execute(insert(ComponentISC), [{**defaults, **row, "collection_id": collection_id} for row in rows])
        if windows is not None:
            events = _movie_events(session, movie_id)
            label_rows = _label_rows(
                windows.values, windows.times, events, windows.comp_ids, collection_id, windows.seed
            )
            if label_rows:
                session.execute(insert(SynchronyLabel), label_rows)
            step = _window_step(windows.times)
            moments = [
                dict(
                    collection_id=collection_id,
                    movie_id=movie_id,
                    time_s=time_s,
                    value=value,
                    labels=_active_labels(events, time_s, step),
                )
                for time_s, value in windows.points
            ]
            if moments:
                session.execute(insert(SynchronyMoment), moments)


def _delete_rows(session: Session, collection_id: int) -> None:
    for model in (ComponentISC, SynchronyLabel, SynchronyMoment, CollectionSynchrony):
        session.execute(delete(model).where(model.collection_id == collection_id))


def clear_collection_synchrony(session: Session, collection_id: int) -> None:
    """Remove every synchrony row of a collection in the caller's transaction (its inputs changed: a new timing,
    or a processing after which it has no ISC to compute); the files are left to ``pipeline.jobs.sweep``."""
    _lock_collection(session, collection_id)
    _delete_rows(session, collection_id)


# --- jobs -----------------------------------------------------------------------------------------------------


def synchrony_job(job_id: int, n_resamples: int = DEFAULT_RESAMPLES, window_s: float = DEFAULT_WINDOW_S) -> int:
    """Run a ``synchrony`` job on its collection; returns the components with a row."""
    with session_scope() as session:
        collection_id = session.get(Job, job_id).collection_id
    with running_job(job_id) as run:
        update_job(job_id, progress_total=1, progress_done=0)
        done = compute_collection_synchrony(collection_id, n_resamples=n_resamples, window_s=window_s)
        update_job(job_id, progress_done=1)
        run.message = f"ISC of {done} component(s)"
    return done


def start_synchrony_job(session: Session, collection_id: int, user_id: int | None = None) -> Job:
    """A queued ``synchrony`` job for the collection (a queued one is reused)."""
    current = session.scalar(
        select(Job).where(Job.kind == "synchrony", Job.collection_id == collection_id, Job.status == "queued")
    )
    return current if current is not None else create_job(session, "synchrony", collection_id, user_id)


def run_after_ingest(ingest_job_id: int) -> int | None:
    """After an ingest, bring the collection's synchrony up to date with what the ingest left.

    A collection with two or more subjects with time courses gets a ``synchrony`` job, claimed
    (:func:`pipeline.jobs.lifecycle.claim_job`) and run by the process that ran the ingest; returns its id. Any
    other collection (no timing, one subject, no time courses any more) has its synchrony rows of an earlier run
    removed; returns None. A failure is the synchrony job's, recorded on its row; the ingest stays done.
    """
    with session_scope() as session:
        ingest_job = session.get(Job, ingest_job_id)
        if ingest_job is None or ingest_job.collection_id is None or ingest_job.status != "succeeded":
            return None
        if not eligible(session, ingest_job.collection_id):
            clear_collection_synchrony(session, ingest_job.collection_id)
            return None
        job_id = start_synchrony_job(session, ingest_job.collection_id, ingest_job.created_by_id).id
    if not claim_job(job_id):  # another process took it meanwhile
        return job_id
    try:
        synchrony_job(job_id)
    except Exception:  # recorded on the synchrony job's row by running_job
        log.exception("synchrony job %s failed", job_id)
    return job_id


def refresh_movie_labels(movie_id: int, seed: int = 0) -> int:
    """Recompute the rows by label and the labels of the moments of every collection of a movie from the stored
    windowed ISC (after its annotation sets changed); returns the collections refreshed."""
    with session_scope() as session:
        collection_ids = list(
            session.scalars(
                select(CollectionSynchrony.collection_id)
                .join(Collection, Collection.id == CollectionSynchrony.collection_id)
                .where(Collection.movie_id == movie_id)
                .order_by(CollectionSynchrony.collection_id)
            )
        )
    refreshed = 0
    for collection_id in collection_ids:
        with session_scope() as session:
            refreshed += relabel_collection(session, collection_id, seed)
    return refreshed


def relabel_collection(session: Session, collection_id: int, seed: int = 0) -> bool:
    """Rewrite a collection's rows by label and its moments' movie and labels from its stored windowed ISC and the
    annotation events its movie has now, in the caller's transaction and under the collection's lock (so a
    synchrony run that read other events cannot write over them, nor this over a newer run). True when there was
    a windowed ISC to label."""
    with _one_blas_thread():
        return _relabel(session, collection_id, seed)


def _relabel(session: Session, collection_id: int, seed: int) -> bool:
    _lock_collection(session, collection_id)
    stored = session.execute(
        select(Collection.movie_id, CollectionSynchrony.windowed_key, CollectionSynchrony.components)
        .join(CollectionSynchrony, CollectionSynchrony.collection_id == Collection.id)
        .where(Collection.id == collection_id)
    ).first()
    session.execute(delete(SynchronyLabel).where(SynchronyLabel.collection_id == collection_id))
    if stored is None:
        return False
    movie_id, key, uuids = stored
    events = _movie_events(session, movie_id)
    moments = list(session.scalars(select(SynchronyMoment).where(SynchronyMoment.collection_id == collection_id)))
    if key is None:
        for moment in moments:
            moment.movie_id = movie_id
        return False
    table = np.asarray(load_vector(key), dtype=np.float64)
    times, values = table[:, 0], table[:, 1:]
    by_uuid = dict(
        session.execute(
            select(Component.uuid, Component.id).where(
                Component.collection_id == collection_id, Component.uuid.in_(list(uuids))
            )
        ).all()
    )
    keep = [i for i, u in enumerate(uuids) if u in by_uuid]
    comp_ids = [by_uuid[uuids[i]] for i in keep]
    label_rows = _label_rows(values[:, keep], times, events, comp_ids, collection_id, seed)
    if label_rows:
        session.execute(insert(SynchronyLabel), label_rows)
    step = _window_step(times)
    for moment in moments:
        moment.movie_id = movie_id
        moment.labels = _active_labels(events, moment.time_s, step)
    return True


def collections_to_compute(session: Session, slug: str | None = None) -> list[tuple[int, str]]:
    """(id, slug) of the collections ``python -m pipeline isc`` recomputes: the one named, or every collection
    with components that have time courses.

    Raises
    ------
    SynchronyError
        No collection has the slug given.
    """
    query = select(Collection.id, Collection.slug).order_by(Collection.id)
    if slug is not None:
        found = session.execute(query.where(Collection.slug == slug)).all()
        if not found:
            raise SynchronyError(f'No collection has the slug "{slug}".')
        return [tuple(r) for r in found]
    with_courses = select(func.distinct(Component.collection_id)).where(Component.timecourse_id.is_not(None))
    return [tuple(r) for r in session.execute(query.where(Collection.id.in_(with_courses))).all()]


def refresh_labels_after(temporal_job_id: int) -> int:
    """After a ``temporal`` job (a movie's annotation sets changed), refresh the movie's synchrony by label,
    whether the temporal decoding succeeded or not (the rows by label read only the stored windowed ISC and the
    events); returns the collections refreshed (0 when there is nothing stored). A failure is logged and leaves
    the rows of the previous annotations."""
    with session_scope() as session:
        job = session.get(Job, temporal_job_id)
        if job is None or job.movie_id is None:
            return 0
        movie_id = job.movie_id
    try:
        return refresh_movie_labels(movie_id)
    except Exception:
        log.exception("synchrony by label of movie %s was not refreshed", movie_id)
        return 0
