"""The Job row's lifecycle, and who may start, run or cancel which job.

The Job row is the truth about a run. Every job kind runs its body inside ``running_job``, which marks the row
running (its collection processing), records the process running it, keeps a heartbeat while the body runs, and
ends the row succeeded, or failed with the exception's message; a job a curator cancelled keeps its cancelled
status whatever the run does next. Job bodies open their own sessions (``session_scope``), so a job runs alike in
a web process, a forked diskcache worker or a Celery worker; they receive only the job's id. What each kind does
is in ``pipeline.jobs.tasks``.

A message runs a job only after claiming it (``claim_job``): one conditional UPDATE takes a queued job, or a running
one whose runner is gone, so two deliveries of a job (a message the broker handed out again, a page that started
the same queued job twice) never run it twice.

A running job whose heartbeat stopped (``pipeline.jobs.heartbeat``) is settled here too (``settle_stalled_jobs``),
unless its runner is a process of this machine that still exists (``runner_is_alive``): a job is failed only when its
process really died. With
a broker, workers can run it again: it is put back to queued and a ``RESUME_TASK`` message is sent, until it has
been started ``INCDB_JOB_MAX_ATTEMPTS`` times; then, and always without a broker (nothing would pick it up), it is
marked failed with a message, and its collection is freed. Whoever notices does it: every Celery worker at start
and every beat (``dashboard.background``), the pages that show jobs, ``pipeline sweep``. The re-queue is a
conditional UPDATE on the row (still running, same attempt, still silent), so when two processes notice at once
exactly one re-queues, and its message is sent only after that commit. Settling also starts the waiting
recompute of a movie that nothing runs (``waiting_recomputes``: its page was closed before it started it): a
``RESUME_TASK`` message with a broker, a process forked from the noticing one without (``dispatch_after_commit``).

Jobs started from the web: the web process checks the permission and creates the Job; the worker receives only
the job's token and the user id (from Dash's ``hooks.custom_data``) and checks both again in the database
(``authorize``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import psutil
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from pipeline.jobs.heartbeat import (
    beat_interval,
    heartbeat,
    max_attempts,
    process_identity,
    runner_is_gone,
    stale_after,
)
from store.access import can_edit
from store.config import get_settings
from store.db import session_scope
from store.models import (
    ACTIVE_JOB_STATUSES,
    FINISHED_JOB_STATUSES,
    JOB_KINDS,
    Collection,
    CollectionStatus,
    Component,
    Job,
    JobStatus,
    Upload,
    User,
    utcnow,
)
from store.validation import check_choice

log = logging.getLogger("incdb.jobs")


class JobRefused(RuntimeError):
    """The job may not run for this user (or no longer exists)."""


class JobCancelled(BaseException):
    """Raised from the progress callback to stop a job the curator cancelled. A BaseException, so that the
    pipeline's ``except Exception`` handlers do not record it as a failure."""


# The Celery task that runs a re-queued job (registered by ``dashboard.background`` on the workers).
RESUME_TASK = "incdb.resume_job"

# Job kinds that read a collection without changing its maps: they leave the collection's status as it is (a
# failed synchrony run does not make a processed collection failed).
READING_KINDS = ("synchrony",)


def settle_stalled_jobs(session: Session, now: datetime | None = None) -> list[int]:
    """Re-queue, or mark failed, the running jobs without a recent heartbeat; returns their ids.

    A job is stalled when its last sign of life (heartbeat, else start, else creation) is older than
    :func:`pipeline.jobs.heartbeat.stale_after`. With a broker, a stalled job started fewer than
    :func:`pipeline.jobs.heartbeat.max_attempts` times goes back to queued (its collection stays processing) and a
    :data:`RESUME_TASK` message is sent once the caller's transaction commits; a job that a rollback undoes is
    not sent. Any other stalled job gets status failed, a finish time and an error message saying why; a collection
    it was processing goes from processing to failed. Each change is a conditional UPDATE (the job is still
    running, on the same attempt, still silent), so a job that two processes settle at once is settled by one.
    The changes are flushed, not committed: the caller's transaction decides. Then the waiting recomputes that nothing
    runs (:func:`waiting_recomputes`) are started once that transaction commits (:func:`dispatch_after_commit`).

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session the jobs are read and changed in.
    now : datetime.datetime or None
        The current time, timezone-aware UTC; None means :func:`store.models.utcnow`.

    Returns
    -------
    list of int
        Ids of the jobs re-queued or marked failed by this call (empty when none).
    """
    now = now or utcnow()
    last_sign = func.coalesce(Job.heartbeat, Job.started, Job.created)
    silent = last_sign < now - stale_after()
    stalled = session.execute(
        select(Job.id, Job.attempts, Job.collection_id, last_sign, Job.runner).where(
            Job.status == JobStatus.RUNNING, silent
        )
    ).all()
    requeue = get_settings().broker_url is not None
    settled, resumed = [], []
    for job_id, attempts, collection_id, seen, runner in stalled:
        if runner_is_alive(runner):  # silent (a long lock wait, a busy machine) but not dead: let it finish
            continue
        same_run = (Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempts == attempts, silent)
        if requeue and attempts < max_attempts():
            values: dict[str, Any] = dict(
                status=JobStatus.QUEUED,
                runner=None,
                message=(f"re-queued: the worker running it stopped (last sign of life {seen:%Y-%m-%d %H:%M:%S} UTC)"),
            )
            changed = session.execute(update(Job).where(*same_run).values(**values)).rowcount
            if changed:
                resumed.append(job_id)
                log.warning("job %s re-queued: no heartbeat since %s (started %s time(s))", job_id, seen, attempts)
        else:
            changed = session.execute(
                update(Job)
                .where(*same_run)
                .values(
                    status=JobStatus.FAILED,
                    finished=now,
                    runner=None,
                    error=_stalled_message(seen, attempts, requeue, collection_id),
                )
            ).rowcount
            if changed:
                if collection_id is not None:
                    _free_collection(session, collection_id)
                log.warning("job %s marked failed: no heartbeat since %s", job_id, seen)
        if changed:
            settled.append(job_id)
    if settled:
        session.flush()
        session.expire_all()  # the UPDATEs bypassed the objects this session may hold
    if resumed:
        _send_after_commit(session, resumed)
    dispatch_after_commit(session, waiting_recomputes(session, now))
    return settled


def waiting_recomputes(session: Session, now: datetime | None = None, movie_id: int | None = None) -> list[int]:
    """The waiting ``temporal`` jobs that nothing will run unless asked: queued, of a movie none of whose recomputes
    runs (a running one takes the waiting one when it ends), and not asked to run within :func:`dispatch_grace`
    (the page that was told to start it may be about to, or a message for it is on its way); the first of each
    movie. Each returned job is marked asked now (``heartbeat``, which a queued job otherwise leaves empty); the
    caller makes sure something runs them (:func:`dispatch_after_commit`).

    Parameters
    ----------
    movie_id : int or None
        Only this movie's recompute; None: every movie's.
    """
    now = now or utcnow()
    query = select(Job).where(Job.kind == "temporal", Job.status == JobStatus.QUEUED, Job.movie_id.is_not(None))
    if movie_id is not None:
        query = query.where(Job.movie_id == movie_id)
    chosen: dict[int, Job] = {}
    for job in session.scalars(query.order_by(Job.id)):
        chosen.setdefault(job.movie_id, job)
    if not chosen:
        return []
    busy = {
        movie
        for movie, runner in session.execute(
            select(Job.movie_id, Job.runner).where(
                Job.kind == "temporal", Job.status == JobStatus.RUNNING, Job.movie_id.in_(list(chosen))
            )
        )
        if not runner_is_gone(runner)
    }
    asked_before = now - dispatch_grace()
    found = []
    for movie, job in chosen.items():
        last_asked = _aware(job.heartbeat or job.created)
        if movie in busy or (last_asked is not None and last_asked > asked_before):
            continue
        job.heartbeat = now
        found.append(job.id)
    if found:
        session.flush()
    return found


def dispatch_grace() -> timedelta:
    """How long a queued job that something was asked to run is left to it before it is asked again: three beats."""
    return timedelta(seconds=3 * beat_interval())


def _aware(moment: datetime | None) -> datetime | None:
    """A stored time as timezone-aware UTC (SQLite returns naive datetimes)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def dispatch_after_commit(session: Session, job_ids: list[int]) -> None:
    """Make sure something runs these queued jobs once the caller's transaction commits (nothing when a rollback
    undoes it). With a broker, a :data:`RESUME_TASK` message each, which a worker runs
    (``pipeline.jobs.tasks.resume_job``); without one, a process forked from this one runs them one after the other.
    Either claims the job first (:func:`claim_job`), so a job that a page or another message runs meanwhile is left
    to it. A message that cannot be sent leaves its job queued, and the next process that notices asks again."""
    if not job_ids:
        return
    ids = list(job_ids)

    def send(_session: Session) -> None:
        if get_settings().broker_url is None:
            _run_in_child(ids)
            return
        for job_id in ids:
            try:
                _broker().send_task(RESUME_TASK, args=[job_id])
            except Exception:  # the broker is down: the job stays queued for the next noticer
                log.exception("job %s: the message to run it could not be sent", job_id)

    event.listen(session, "after_commit", send, once=True)


def _run_in_child(job_ids: list[int]) -> None:
    """Run queued jobs in a process forked from this one (as Dash's diskcache manager runs a page's job): it lives
    on when the request that asked for it ends, and its heartbeat tells whether it died."""
    import multiprocessing  # only embedded deployments run jobs this way

    try:
        child = multiprocessing.get_context("fork").Process(
            target=_run_queued, args=(job_ids,), name="incdb-queued-jobs", daemon=False
        )
        child.start()
    except (OSError, ValueError):  # no fork here: the job stays queued for the next noticer
        log.exception("jobs %s: no process could be started to run them", job_ids)


def _run_queued(job_ids: list[int]) -> None:
    from pipeline.jobs.tasks import resume_job  # the job kinds import the whole pipeline: only where a job runs

    for job_id in job_ids:
        try:
            resume_job(job_id)
        except Exception:  # recorded on the job's row; the next job still runs
            log.exception("job %s failed", job_id)


def runner_is_alive(runner: str | None) -> bool:
    """Whether the process named by ``runner`` (a :func:`pipeline.jobs.heartbeat.process_identity`) certainly
    still runs: a process of this machine and PID namespace with the same PID and start time, not a zombie.
    A runner elsewhere (or an unreadable value) is not known to be alive; its heartbeat tells."""
    try:
        host, namespace, pid, started = (runner or "").split("/")
        here_host, here_namespace = process_identity().split("/")[:2]
        if (host, namespace) != (here_host, here_namespace):
            return False
        process = psutil.Process(int(pid))
        return f"{process.create_time():.2f}" == started and process.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return False


def _stalled_message(seen: datetime, attempts: int, requeued: bool, collection_id: int | None) -> str:
    if requeued:
        why = (
            f"The worker running this job stopped {attempts} times (last sign of life {seen:%Y-%m-%d %H:%M} "
            "UTC), so it is not started again. "
        )
    else:
        why = (
            f"The process running this job stopped (last sign of life {seen:%Y-%m-%d %H:%M} UTC), for example "
            "because the server restarted. "
        )
    return why + (
        "The collection keeps the components of its last finished run: process it again."
        if collection_id is not None
        else "Start it again."
    )


def _send_after_commit(session: Session, job_ids: list[int]) -> None:
    """Send a resume message per re-queued job once the re-queue is committed (a worker must find the row
    queued). A message that cannot be sent puts its job back as it was, running and silent, so the next
    process that notices tries again."""

    def send(_session: Session) -> None:
        for job_id in job_ids:
            try:
                _broker().send_task(RESUME_TASK, args=[job_id])
            except Exception:  # the broker is down: leave the job to the next noticer
                log.exception("job %s: the resume message could not be sent", job_id)
                with session_scope() as other:
                    other.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                        .values(status=JobStatus.RUNNING)
                    )

    event.listen(session, "after_commit", send, once=True)


@lru_cache(maxsize=1)
def _broker_for(url: str) -> Any:
    from celery import Celery  # lazy: only a deployment with a broker re-queues

    return Celery("incdb-resume", broker=url)


def _broker() -> Any:
    """A Celery client of the configured broker, only for sending (the web process, the CLI and workers alike)."""
    return _broker_for(get_settings().broker_url)


def claim_job(job_id: int) -> bool:
    """Take a job for this process before a message runs it; False when the job is not this message's to run.

    A queued job is taken; a running one only when its runner is certainly gone
    (:func:`pipeline.jobs.heartbeat.runner_is_gone`: a pool child killed under its task, whose message the broker handed
    back at once). A running job whose runner may be alive, and a finished or cancelled one, are left alone. A job
    taken over after it was already started ``max_attempts`` times is marked failed instead. The claim is one
    conditional UPDATE (status and runner as read), so of two processes claiming at once exactly one gets it.

    Parameters
    ----------
    job_id : int
        Id of the ``Job`` row.

    Returns
    -------
    bool
        True: this process runs the job now (the row says running, with this process as its runner).
    """
    with session_scope() as session:
        row = session.execute(
            select(
                Job.status,
                Job.runner,
                Job.attempts,
                Job.collection_id,
                func.coalesce(Job.heartbeat, Job.started, Job.created),
            ).where(Job.id == job_id)
        ).first()
        if row is None:
            return False
        status, runner, attempts, collection_id, seen = row
        if status == JobStatus.QUEUED:
            same = (Job.status == JobStatus.QUEUED, Job.attempts == attempts)
        elif status == JobStatus.RUNNING and runner_is_gone(runner):
            same = (Job.status == JobStatus.RUNNING, Job.runner == runner)
            if attempts >= max_attempts():
                failed = session.execute(
                    update(Job)
                    .where(Job.id == job_id, *same)
                    .values(
                        status=JobStatus.FAILED,
                        finished=utcnow(),
                        runner=None,
                        error=_stalled_message(seen, attempts, True, collection_id),
                    )
                ).rowcount
                if failed and collection_id is not None:
                    _free_collection(session, collection_id)
                log.warning("job %s marked failed: its runner stopped %s time(s)", job_id, attempts)
                return False
        else:
            return False
        return bool(
            session.execute(
                update(Job)
                .where(Job.id == job_id, *same)
                .values(status=JobStatus.RUNNING, runner=process_identity(), heartbeat=utcnow())
            ).rowcount
        )


def _free_collection(session: Session, collection_id: int) -> None:
    """A collection whose job failed is no longer processing."""
    collection = session.get(Collection, collection_id)
    if collection is not None and collection.status == CollectionStatus.PROCESSING:
        collection.status = CollectionStatus.FAILED


def create_job(session: Session, kind: str, collection_id: int | None = None, user_id: int | None = None) -> Job:
    """A queued Job row of ``kind`` (one of ``store.models.JOB_KINDS``)."""
    check_choice(kind, JOB_KINDS, "job kind")
    job = Job(kind=kind, collection_id=collection_id, created_by_id=user_id, status=JobStatus.QUEUED)
    session.add(job)
    session.flush()
    return job


def active_job(session: Session, collection_id: int) -> Job | None:
    """The queued or running job that changes a collection, if any (a stalled one is settled first). Jobs that
    only read it (:data:`READING_KINDS`) do not count: uploads and processing go on while they run."""
    settle_stalled_jobs(session)
    return session.scalar(
        select(Job)
        .where(
            Job.collection_id == collection_id,
            Job.status.in_(ACTIVE_JOB_STATUSES),
            Job.kind.not_in(READING_KINDS),
        )
        .order_by(Job.id.desc())
    )


def update_job(job_id: int, **values: Any) -> None:
    """Write job fields in their own short transaction (progress must not hold a lock on SQLite)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None:
            if job.status == JobStatus.CANCELLED:
                # A curator cancelled it: a run that is still finishing must not report success or failure.
                values.pop("status", None)
            for name, value in values.items():
                setattr(job, name, value)


@dataclass
class JobRun:
    """What a job's body reports for the row when it ends (``running_job`` writes it)."""

    job_id: int
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False  # ended without an exception but without a usable result
    # This run replaces one that stopped without finishing (re-queued or taken over): the body removes what that
    # run wrote and this one will not write again (``pipeline.curation.ingest``). started: when this run began.
    replaces_stopped_run: bool = False
    started: datetime | None = None


@contextmanager
def running_job(job_id: int) -> Iterator[JobRun]:
    """Run a job's body: mark the row running, beat while the block runs, then record how it ended.

    Raises
    ------
    ValueError
        The job does not exist.
    Exception
        Whatever the body raised, after the row (and its collection) is marked failed with its message.
    """
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"job {job_id} does not exist")
        # Claimed (pipeline.jobs.lifecycle.claim_job) or re-queued after a run that stopped: an earlier start never
        # finished.
        replaces = job.attempts > 0 and job.status in ACTIVE_JOB_STATUSES
        job.status, job.started, job.attempts = JobStatus.RUNNING, utcnow(), job.attempts + 1
        job.error, job.finished, job.runner = "", None, process_identity()
        if job.collection_id is not None and job.kind not in READING_KINDS:
            session.get(Collection, job.collection_id).status = CollectionStatus.PROCESSING
        run = JobRun(job_id, replaces_stopped_run=replaces, started=job.started)
    try:
        with heartbeat(job_id):
            yield run
    except Exception as exc:
        fail_job(job_id, exc, run.warnings)
        raise
    # error is always written: a run that outlived a long lock wait may have been taken for dead meanwhile
    # (pipeline.jobs.heartbeat), and finishing clears that message.
    _finish(
        job_id,
        JobStatus.FAILED if run.failed else JobStatus.SUCCEEDED,
        message=run.message,
        error="\n".join(run.errors),
        warnings=run.warnings,
    )


def fail_job(job_id: int, exc: BaseException, warnings: list[str] | None = None) -> None:
    """Mark a job that is not finished yet failed, with the exception's message, and its collection failed."""
    values: dict[str, Any] = {"error": str(exc) or type(exc).__name__}
    if warnings is not None:
        values["warnings"] = warnings
    _finish(job_id, JobStatus.FAILED, **values)


def finish_job(job_id: int) -> None:
    """Mark a job that is not finished yet succeeded (a body that returned without going through
    ``running_job``)."""
    _finish(job_id, JobStatus.SUCCEEDED)


def _finish(job_id: int, status: JobStatus, **values: Any) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        if job.status != JobStatus.CANCELLED:
            job.status = status
        job.finished = job.finished if job.status in FINISHED_JOB_STATUSES and job.finished else utcnow()
        for name, value in values.items():
            setattr(job, name, value)
        if (
            job.collection_id is not None
            and job.kind not in READING_KINDS
            and (collection := session.get(Collection, job.collection_id))
        ):
            if job.status == JobStatus.CANCELLED:
                settle_cancelled_collection(session, job)
            else:
                collection.status = (
                    CollectionStatus.READY if job.status == JobStatus.SUCCEEDED else CollectionStatus.FAILED
                )


def settle_cancelled_collection(session: Session, job: Job) -> None:
    """A cancelled ingest leaves its collection as its last finished run left it: ready with components, or
    empty."""
    if job.collection_id is None:
        return
    collection = session.get(Collection, job.collection_id)
    if collection is not None and collection.status == CollectionStatus.PROCESSING:
        n = session.scalar(select(func.count(Component.id)).where(Component.collection_id == collection.id))
        collection.status = CollectionStatus.READY if n else CollectionStatus.EMPTY


# --- who may run what ------------------------------------------------------------------------------------------


def start_ingest_job(session: Session, user: Any, collection: Collection) -> Job:
    """Create the ingest job for a collection after checking, in the web process, that ``user`` may run it.
    A queued job that no browser picked up is reused rather than doubled.

    Raises
    ------
    JobRefused
        With a message for the curator: not theirs, license not confirmed, nothing uploaded, already running.
    """
    if not can_edit(user, collection):
        raise JobRefused("You may not process this collection.")
    if collection.license_confirmed_at is None:
        raise JobRefused("Confirm the license first.")
    if not session.scalar(select(func.count(Upload.id)).where(Upload.collection_id == collection.id)):
        raise JobRefused("Upload at least one file first.")
    current = active_job(session, collection.id)
    if current is not None:
        if current.status == JobStatus.QUEUED:
            return current
        raise JobRefused("This collection is being processed already. Wait for it, or cancel it first.")
    return create_job(session, "ingest", collection.id, user.id)


def start_redecode_job(session: Session, user: Any) -> Job:
    """Create the job that re-decodes every component (administrators only; a queued one is reused)."""
    if not (getattr(user, "is_authenticated", False) and getattr(user, "is_admin", False)):
        raise JobRefused("Only administrators re-decode the database.")
    settle_stalled_jobs(session)
    current = session.scalar(
        select(Job).where(Job.kind.in_(("redecode", "merge")), Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    if current is not None:
        if current.status == JobStatus.QUEUED:
            return current
        raise JobRefused("A re-decoding job is running already.")
    return create_job(session, "redecode", None, user.id)


def authorize(session: Session, job: Job | None, user_id: Any) -> User:
    """Check again, where the job runs, that the user who asked may run this job.

    Raises
    ------
    JobRefused
        The job is gone, the user is unknown or deactivated, or may not run it.
    """
    if job is None:
        raise JobRefused("This job does not exist (any more).")
    try:
        user = session.get(User, int(user_id)) if user_id is not None else None
    except (TypeError, ValueError):
        user = None
    if user is None or not user.active:
        raise JobRefused("Sign in to run jobs.")
    if job.collection_id is not None:
        if not can_edit(user, session.get(Collection, job.collection_id)):
            raise JobRefused("You may not process this collection.")
    elif not user.is_admin and job.kind != "temporal":  # temporal: any curator who changed a movie's annotations
        raise JobRefused("Only administrators run this job.")
    if job.created_by_id not in (None, user.id) and not user.is_admin:
        raise JobRefused("This job was started by someone else.")
    return user


def cancel_job(session: Session, user: Any, token: str) -> Job:
    """Mark a job cancelled (the web process kills the task; a run that still reports progress stops)."""
    job = session.scalar(select(Job).where(Job.token == str(token or "")))
    if job is None:
        raise JobRefused("This job does not exist (any more).")
    authorize(session, job, getattr(user, "id", None))
    if job.status in ACTIVE_JOB_STATUSES:
        job.status, job.finished = JobStatus.CANCELLED, utcnow()
        job.message = "cancelled"
        settle_cancelled_collection(session, job)
    return job
