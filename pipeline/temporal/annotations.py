"""Annotation sets of movies, and the temporal decoding of components against them (DESIGN section 14).

An annotation set is a BIDS-style events file (onset, duration in seconds of movie time, label, amplitude)
attached to a movie. Every component with a time course is decoded against every label of every set of its
movie (``pipeline.temporal.decoding``: HRF-convolved regressors, Pearson r, a circular-shift null, Benjamini-Hochberg q
over the component's labels); the ranked list is stored as TemporalDecoding rows. A collection is decoded when
its ingest stores time courses; a whole movie again when one of its sets is added or removed (a ``temporal``
job, on the shared job lifecycle of ``pipeline.jobs.lifecycle``). Changes coalesce: a movie has at most one
recompute running and one waiting, and the waiting one starts when the running one ends, in the same process
(:func:`request_recompute`, :func:`temporal_job`). No change is left waiting with nothing to run it: a waiting
recompute that no page started and nothing runs is started by whoever notices it
(``pipeline.jobs.lifecycle.waiting_recomputes``, part of settling jobs: the annotations page, the sweep, a worker's
beat; a Celery message, or a process forked from the noticing one), a change by another curator starts it at
once, the page's "Start now" does (:func:`start_waiting_recompute`), and the command line runs it in its own process
(:func:`recompute_here`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from pipeline.jobs.heartbeat import process_identity, runner_is_gone
from pipeline.jobs.lifecycle import (
    JobRefused,
    claim_job,
    create_job,
    dispatch_after_commit,
    running_job,
    settle_stalled_jobs,
    update_job,
)
from pipeline.temporal.decoding import label_regressors, temporal_decode
from pipeline.temporal.events import BadLine, BadLinesError, Event, events_by_label, read_events
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
    utcnow,
)
from store.units import human_bytes
from store.validation import has_control_characters

log = logging.getLogger("incdb.jobs")

MIN_SHIFTS, MAX_SHIFTS = 1000, 10000


def shifts_for(n_labels: int) -> int:
    """Circular shifts of the null: at least 1,000, and 25 per label up to 10,000. The empirical p stops at
    1/(shifts + 1); below the tenth largest null value p comes from the fitted tail
    (``pipeline.temporal.decoding.tail_p``), so a single strong link among hundreds of labels still reaches a small
    Benjamini-Hochberg q. More shifts place that switch further out."""
    return int(min(MAX_SHIFTS, max(MIN_SHIFTS, 25 * n_labels)))


NAME_MAX = 255
DESCRIPTION_MAX = 5000
SOURCE_URL_MAX = 1000


class AnnotationError(ValueError):
    """A refused annotation set, with the message for the person who sent it (``problems``: each problem on its
    own, the message joins them with "; ").

    ``bad_lines`` (the first bad lines of the events file, :class:`pipeline.temporal.events.BadLine`), ``n_bad``
    and ``n_valid`` are set when the file has bad lines and valid events, so that the set can be added again
    with ``skip_bad_lines=True``; otherwise they are empty and 0.
    """

    def __init__(
        self, problems: list[str] | str, bad_lines: list[BadLine] | None = None, n_bad: int = 0, n_valid: int = 0
    ):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))
        self.bad_lines, self.n_bad, self.n_valid = list(bad_lines or []), n_bad, n_valid


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
    skip_bad_lines: bool = False,
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
    skip_bad_lines : bool
        Keep the valid events of a file some of whose lines cannot be read; the returned set's
        ``skipped_lines`` (a list of :class:`pipeline.temporal.events.BadLine`, the first
        ``MAX_KEPT_BAD_LINES``) and ``n_skipped`` say which were left out. False: such a file is refused.

    Returns
    -------
    AnnotationSet
        The new set (flushed, not committed), with ``skipped_lines`` and ``n_skipped`` (empty and 0 when every line
        was read).

    Raises
    ------
    AnnotationError
        A missing or taken name, a malformed source URL, an events file that cannot be read (the message
        lists every bad line; when valid events remain, the error's ``bad_lines``, ``n_bad`` and ``n_valid`` say
        so), or one over the caps (``INCDB_ANNOTATION_*``: file size, events and labels per set, sets per
        movie and per curator), which are checked before the file is parsed or stored. Nothing is stored.
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
    bad: BadLinesError | None = None
    if not too_large:  # only a file within the caps is parsed
        try:
            events = read_events(data, filename)
        except BadLinesError as exc:
            bad, events = exc, exc.events
        except TimeCourseError as exc:
            problems.append(str(exc))
    problems += too_large + _label_problems(events, filename)
    skippable = bad is not None and bool(events) and not skip_bad_lines
    if bad is not None and not (skip_bad_lines and events):
        problems.append(str(bad))
    if problems:
        if skippable:  # the curator may add the set again with the bad lines skipped
            raise AnnotationError(problems, bad.bad_lines, bad.n_bad, len(events))
        raise AnnotationError(problems)
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
    annotation.skipped_lines = list(bad.bad_lines) if bad is not None else []
    annotation.n_skipped = bad.n_bad if bad is not None else 0
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


@dataclass
class Recompute:
    """A movie's pending recompute after a change of its annotations.

    Attributes
    ----------
    job : Job
        The queued ``temporal`` job that will decode the movie with its annotations as they are when it starts
        (a queued one is reused: changes coalesce).
    start : bool
        Whether the caller should start it: no recompute of the movie is running and nobody else is known to be
        starting this one. False while one runs: the process running it takes the queued job when it ends.
    running : Job or None
        The movie's recompute that runs now, if any.
    """

    job: Job
    start: bool
    running: Job | None


def request_recompute(session: Session, user: Any, movie: Movie, started_token: str | None = None) -> Recompute | None:
    """Ask for the movie's components to be decoded in time again, coalescing with what is queued or running.

    At most one recompute of a movie runs and at most one waits. A change while none waits queues a new job; a
    change while one waits reuses it (it reads the annotations when it starts). While one runs, nothing is
    started: the running job's process takes the waiting one when it ends (:func:`temporal_job`), so recomputes
    of a movie never overlap and no run is interrupted. The decision and the job are made under the movie's lock
    (:func:`_lock_movie`), the same the running process takes to look for a waiting job, so a change is never left
    waiting with no one to run it. Nothing is committed here: the caller's transaction (with the change) decides.

    Parameters
    ----------
    started_token : str or None
        The token of the job the caller last started (a page's runner): a waiting job it started already is not
        started again (starting it again would stop the first start).

    Returns
    -------
    Recompute or None
        None when the movie has no component with a time course, so there is nothing to do.

    Raises
    ------
    JobRefused
        The user is not signed in.
    """
    if not getattr(user, "is_authenticated", False):
        raise JobRefused("Sign in to change annotations.")
    if not _has_timecourses(session, movie.id):
        return None
    _lock_movie(session, movie.id)
    settle_stalled_jobs(session)  # a recompute whose process died no longer counts as running
    active = session.scalars(
        select(Job)
        .where(Job.kind == "temporal", Job.movie_id == movie.id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(Job.id)
    ).all()
    # A runner known to be gone (a process of this machine that no longer exists) runs nothing: it is settled
    # once silent, and the change does not wait for it.
    running = next((j for j in active if j.status == JobStatus.RUNNING and not runner_is_gone(j.runner)), None)
    waiting = next((job for job in active if job.status == JobStatus.QUEUED), None)
    if waiting is None:
        waiting = create_job(session, "temporal", None, user.id)
        waiting.movie_id = movie.id
        return Recompute(waiting, running is None, running)
    mine = waiting.created_by_id in (None, user.id) or bool(getattr(user, "is_admin", False))
    if running is None and not mine:  # another curator's page may be gone: this change makes sure it runs
        _ask_to_run(session, waiting)
    return Recompute(waiting, running is None and mine and waiting.token != started_token, running)


def _ask_to_run(session: Session, job: Job) -> None:
    """Have the waiting ``job`` run once the caller's transaction commits (a worker, or a process forked from this
    one: :func:`pipeline.jobs.lifecycle.dispatch_after_commit`), and note when it was asked."""
    job.heartbeat = utcnow()
    session.flush()
    dispatch_after_commit(session, [job.id])


def start_waiting_recompute(session: Session, user: Any, movie: Movie) -> Recompute | None:
    """The annotations page's "start now": run the movie's waiting recompute now when nothing runs it, or queue and
    run a new one when none waits (after a recompute that failed or was cancelled). Nothing is started while one
    runs (it takes the waiting one when it ends). None when the movie has nothing to decode.

    Raises
    ------
    JobRefused
        The user is not signed in.
    """
    found = request_recompute(session, user, movie)
    if found is not None and found.start:  # (another curator's waiting job was asked to run by request_recompute)
        _ask_to_run(session, found.job)
        found.start = False  # asked here: the page does not start it too
    return found


def recompute_here(movie_id: int, say: Callable[[str], None] = print, poll_s: float = 1.0) -> Job | None:
    """The command line's recompute after it changed the movie's annotations (committed before): the change joins
    the movie's waiting recompute, or queues one, as a page's does (:func:`request_recompute`), and this process runs
    it. While a recompute of the movie runs elsewhere, it says so and waits: the running one takes the waiting one
    when it ends; should that process die, this one runs it. Returns the finished job (None when the movie has no
    component with a time course)."""
    with session_scope() as session:
        movie = session.get(Movie, movie_id)
        if movie is None or not _has_timecourses(session, movie_id):
            return None
        _lock_movie(session, movie_id)
        settle_stalled_jobs(session)
        waiting = session.scalar(_active_recomputes(movie_id).where(Job.status == JobStatus.QUEUED).limit(1))
        if waiting is None:
            waiting = create_job(session, "temporal")
            waiting.movie_id = movie_id
            session.flush()
        job_id = waiting.id
        ahead = _ahead_of(session, movie_id, job_id)
        if ahead is not None:
            say(
                f"A recompute of {movie.title} (job #{ahead}) is running in another process; this change waits in "
                f"job #{job_id}, which starts when it ends. Waiting…"
            )
    while True:
        with session_scope() as session:
            settle_stalled_jobs(session)
            job = session.get(Job, job_id)
            if job is None or job.status not in ACTIVE_JOB_STATUSES:
                return job
            free = job.status == JobStatus.QUEUED and _ahead_of(session, movie_id, job_id) is None
        if free and claim_job(job_id):
            _run_claimed_here(job_id)
            continue
        time.sleep(poll_s)


def _active_recomputes(movie_id: int):
    return (
        select(Job)
        .where(Job.kind == "temporal", Job.movie_id == movie_id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(Job.id)
    )


def _ahead_of(session: Session, movie_id: int, job_id: int) -> int | None:
    """The id of a recompute of the movie that runs (its process not known to be gone) or waits ahead of ``job_id``."""
    for job in session.scalars(_active_recomputes(movie_id).where(Job.id != job_id)):
        if job.status == JobStatus.RUNNING and not runner_is_gone(job.runner):
            return job.id
        if job.status == JobStatus.QUEUED and job.id < job_id:
            return job.id
    return None


def _run_claimed_here(job_id: int) -> None:
    """Run a recompute this process claimed (and the ones its chain takes); a failure is on the job's row."""
    from pipeline.jobs.tasks import run_job  # the job kinds import this module

    try:
        run_job(job_id)
    except Exception:  # recorded on the row by running_job, which the caller reads
        log.exception("temporal job %s failed", job_id)
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None and job.status in ACTIVE_JOB_STATUSES:  # it failed before its body could record it
            job.status, job.finished, job.error = JobStatus.FAILED, utcnow(), job.error or "the recompute stopped"


def start_temporal_job(session: Session, user: Any, movie: Movie) -> Job | None:
    """The job that decodes the movie's components in time again (:func:`request_recompute`: a queued one is
    reused); None when the movie has no component with a time course, so there is nothing to do.

    Raises
    ------
    JobRefused
        The user is not signed in.
    """
    found = request_recompute(session, user, movie)
    return found.job if found is not None else None


TEMPORAL_LOCK_ID = 7_240_118  # any constant: with a movie's id, names the advisory lock of its recomputes


def _lock_movie(session: Session, movie_id: int) -> None:
    """Serialise, until this transaction ends, the decisions about a movie's recomputes across processes.

    PostgreSQL: a transaction-scoped advisory lock on (constant, movie id). SQLite: take the database write lock
    now (a no-op UPDATE), so the reads that follow see every committed job.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": TEMPORAL_LOCK_ID, "b": movie_id})
    else:
        session.execute(text("UPDATE jobs SET id = id WHERE 1 = 0"))


def _take_waiting(movie_id: int) -> int | None:
    """Claim the movie's waiting recompute for this process (running, this process as its runner); its id, or
    None when none waits. Called by a running recompute before it ends, under the movie's lock."""
    with session_scope() as session:
        _lock_movie(session, movie_id)
        job_id = session.scalar(
            select(Job.id)
            .where(Job.kind == "temporal", Job.movie_id == movie_id, Job.status == JobStatus.QUEUED)
            .order_by(Job.id)
            .limit(1)
        )
        if job_id is None:
            return None
        taken = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, runner=process_identity(), heartbeat=utcnow())
        ).rowcount
        return job_id if taken else None


def recompute_state(session: Session, movie_id: int) -> dict[str, dict | None]:
    """The state of a movie's recomputes for its annotations page: ``running`` and ``waiting`` (the active jobs'
    summaries, or None) and ``last`` (the summary of the last one that ended, with its finish time, or None)."""
    settle_stalled_jobs(session)
    active = session.scalars(
        select(Job)
        .where(Job.kind == "temporal", Job.movie_id == movie_id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(Job.id)
    ).all()
    last = session.scalar(
        select(Job)
        .where(Job.kind == "temporal", Job.movie_id == movie_id, Job.status.not_in(ACTIVE_JOB_STATUSES))
        .order_by(Job.id.desc())
        .limit(1)
    )
    running = next((job for job in active if job.status == JobStatus.RUNNING), None)
    waiting = next((job for job in active if job.status == JobStatus.QUEUED), None)
    return {
        "running": running.summary() if running else None,
        "waiting": waiting.summary() if waiting else None,
        "last": {**last.summary(), "finished": last.finished} if last else None,
    }


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
    """Run a ``temporal`` job: decode every collection of the job's movie again; then, in the same process, each
    recompute of the movie that was queued meanwhile (:func:`request_recompute`), one after the other. Returns the
    components decoded by all of them.

    Raises
    ------
    Exception
        What the first job raised (after the waiting recomputes ran); a waiting job's failure is on its own row.
    """
    failure: Exception | None = None
    done, current = 0, job_id
    while current is not None:
        follow: list[int] = []
        try:
            done += _recompute(current, follow)
        except Exception as exc:  # recorded on the job's row by running_job
            if current == job_id:
                failure = exc
            else:
                log.exception("temporal job %s failed", current)
        current = follow[0] if follow else None
    if failure is not None:
        raise failure
    return done


def _recompute(job_id: int, follow: list[int]) -> int:
    """One ``temporal`` job; before it ends (still running), the movie's waiting recompute is claimed into
    ``follow``, so that a change made meanwhile always finds a recompute running or claimed."""
    with session_scope() as session:
        movie_id = session.get(Job, job_id).movie_id
        collections = list(
            session.scalars(select(Collection.id).where(Collection.movie_id == movie_id).order_by(Collection.id))
        )
    with running_job(job_id) as run:
        done = 0
        try:
            update_job(job_id, progress_total=len(collections), progress_done=0)
            for n, collection_id in enumerate(collections, start=1):
                done += decode_collection_in_time(collection_id)
                update_job(job_id, progress_done=n)
            run.message = f"{done} component(s) decoded against the movie's annotations"
        finally:
            waiting = _take_waiting(movie_id)
            if waiting is not None:
                follow.append(waiting)
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
