"""The state of the background machinery, for pages and administrators: are jobs being taken, and by whom.

A job waits in ``queued`` until a worker takes it (``pipeline.jobs.lifecycle.running_job`` marks it running). When no
worker
runs, or every worker listens to another broker, nothing else says so: the page's background callback keeps
polling, and the Job row stays queued. Two things here make that visible.

- ``waiting_note``: a queued job whose wait exceeds ``INCDB_QUEUE_WARN_S`` (default 60 s) *and* during which no
  job at all was taken (no Job row started since) is "waiting for a background worker". Measured from the Job rows
  only, so it costs one query, works the same for every broker and manager, and does not blame the workers when
  they are merely busy with other jobs (then jobs keep starting).
- ``system_report``: what an administrator checks (the System page, ``GET /api/system``): the Celery workers that
  answer a ping, the lengths of the Redis queues, the oldest queued job, running jobs without a recent heartbeat,
  recent failures and the configuration findings of ``pipeline.check``. Every call to the broker has a short
  timeout and runs in a daemon thread with a deadline, so the report never hangs when the broker is down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.check import production_problems, production_warnings
from pipeline.jobs.heartbeat import beat_interval, stale_after
from store.config import Settings, get_settings
from store.models import Job, JobStatus, utcnow

T = TypeVar("T")

# Celery's default queue, and the lists kombu's Redis transport keeps for its priority steps (3, 6, 9).
CELERY_QUEUES = ("celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169")
BROKER_TIMEOUT_S = 1.5
RECENT_FAILURES = timedelta(days=7)
MAX_LISTED = 20


def _utc(moment: datetime) -> datetime:
    """SQLite returns the stored UTC times without their zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def last_taken(session: Session) -> datetime | None:
    """When a worker last took a job (the latest ``Job.started``), or None when none ever did."""
    latest = session.scalar(select(func.max(Job.started)))
    return _utc(latest) if latest is not None else None


def waiting_text(created: datetime, taken: datetime | None, now: datetime, threshold_s: int) -> str | None:
    """The waiting message of a job queued at ``created``, or None while its wait is ordinary.

    Parameters
    ----------
    created : datetime.datetime
        When the queued job was created.
    taken : datetime.datetime or None
        When any worker last took a job (:func:`last_taken`).
    now : datetime.datetime
        The current time, UTC.
    threshold_s : int
        Seconds of silence (no job taken since the job was queued) before the message shows.

    Returns
    -------
    str or None
        "Waiting for a background worker (none has taken a job for N min)", N in whole minutes (at least 1).
    """
    silent_since = max(_utc(created), taken) if taken is not None else _utc(created)
    silence = (now - silent_since).total_seconds()
    if silence < threshold_s:
        return None
    return f"Waiting for a background worker (none has taken a job for {max(1, int(silence // 60))} min)"


def waiting_note(session: Session, job: Job, now: datetime | None = None) -> str | None:
    """The waiting message of ``job`` when it is queued and no worker has taken a job for too long, else None."""
    if job.status != JobStatus.QUEUED or job.created is None:
        return None
    return waiting_text(job.created, last_taken(session), now or utcnow(), get_settings().queue_warn_s)


def job_view(session: Session, job: Job) -> dict[str, Any]:
    """What a page shows of a job: ``Job.summary()`` plus ``waiting`` (the waiting message or None)."""
    return {**job.summary(), "waiting": waiting_note(session, job)}


# --- the administrators' report --------------------------------------------------------------------------------


def _with_deadline(fn: Callable[[], T], seconds: float) -> T:
    """``fn()``, or TimeoutError when it has not returned after ``seconds`` (it then finishes in the background:
    a client library blocked on a dead broker cannot be interrupted from outside)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="incdb-system-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def ping_workers(broker_url: str, timeout: float = BROKER_TIMEOUT_S) -> list[str]:
    """Names of the Celery workers that answer a broadcast ping on ``broker_url`` within ``timeout`` seconds.

    Raises
    ------
    Exception
        The broker cannot be reached (TimeoutError when it does not answer in time).
    """
    from celery import Celery  # lazy: only a deployment with a broker needs it

    def ping() -> list[str]:
        probe = Celery("incdb-system", broker=broker_url, set_as_current=False)
        probe.conf.update(
            broker_connection_timeout=timeout, broker_connection_retry=False, broker_connection_max_retries=0
        )
        try:
            with probe.connection_for_write() as conn:
                conn.ensure_connection(max_retries=0, timeout=timeout)
                replies = probe.control.ping(timeout=timeout, connection=conn) or []
        finally:
            probe.close()
        return sorted(name for reply in replies for name in reply)

    return _with_deadline(ping, 2 * timeout + 2)


def queue_lengths(broker_url: str, timeout: float = BROKER_TIMEOUT_S) -> dict[str, int]:
    """Messages waiting in the Celery queues of a Redis broker (``queued``) and taken by a worker but not finished
    (``reserved``: kombu's ``unacked`` hash).

    Raises
    ------
    ValueError
        The broker is not Redis.
    Exception
        Redis cannot be reached.
    """
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("queue lengths are read from Redis brokers only")
    import redis

    def lengths() -> dict[str, int]:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            queued = sum(int(client.llen(name)) for name in CELERY_QUEUES)
            return {"queued": queued, "reserved": int(client.hlen("unacked"))}
        finally:
            client.close()

    return _with_deadline(lengths, 2 * timeout + 2)


def _job_row(job: Job, now: datetime, taken: datetime | None, threshold_s: int) -> dict[str, Any]:
    seen = job.heartbeat or job.started
    return {
        "id": job.id,
        "kind": job.kind,
        "status": str(job.status),
        "collection_id": job.collection_id,
        "created": _utc(job.created).isoformat() if job.created else None,
        "last_sign_of_life": _utc(seen).isoformat() if seen else None,
        "waiting": (
            waiting_text(job.created, taken, now, threshold_s)
            if job.status == JobStatus.QUEUED and job.created
            else None
        ),
        "error": (job.error or "").splitlines()[0][:300] if job.error else "",
    }


def jobs_report(session: Session, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The Job rows an administrator looks at: counts of queued and running jobs, the oldest queued job, running
    jobs without a heartbeat for over three beats (a stopped process, settled as failed after
    ``pipeline.jobs.heartbeat.stale_after()``) and the failures of the last seven days (newest first, at most 20)."""
    now = now or utcnow()
    taken = last_taken(session)
    threshold = settings.queue_warn_s
    counts = dict(session.execute(select(Job.status, func.count(Job.id)).group_by(Job.status)).all())
    oldest = session.scalar(select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.created, Job.id).limit(1))
    quiet = now - timedelta(seconds=3 * beat_interval())
    last_sign = func.coalesce(Job.heartbeat, Job.started, Job.created)
    stalled = session.scalars(
        select(Job).where(Job.status == JobStatus.RUNNING, last_sign < quiet).order_by(Job.id).limit(MAX_LISTED)
    )
    failed = session.scalars(
        select(Job)
        .where(Job.status == JobStatus.FAILED, func.coalesce(Job.finished, Job.created) >= now - RECENT_FAILURES)
        .order_by(Job.id.desc())
        .limit(MAX_LISTED)
    )
    return {
        "queued": int(counts.get(JobStatus.QUEUED, 0)),
        "running": int(counts.get(JobStatus.RUNNING, 0)),
        "last_taken": taken.isoformat() if taken else None,
        "oldest_queued": _job_row(oldest, now, taken, threshold) if oldest else None,
        "stalled": [_job_row(j, now, taken, threshold) for j in stalled],
        "stalled_after_s": int(stale_after().total_seconds()),
        "failed": [_job_row(j, now, taken, threshold) for j in failed],
    }


def workers_report(settings: Settings) -> dict[str, Any]:
    """The background mode, the Celery workers that answer and the queue lengths (errors as text, never raised)."""
    if not settings.broker_url:
        return {
            "mode": "embedded",
            "detail": "embedded: jobs run in the web process (no INCDB_BROKER_URL)",
            "workers": None,
            "workers_error": None,
            "queues": None,
            "queues_error": None,
        }
    report: dict[str, Any] = {
        "mode": "celery",
        "detail": "Celery workers take jobs from the broker",
        "workers": None,
        "workers_error": None,
        "queues": None,
        "queues_error": None,
    }
    try:
        report["workers"] = ping_workers(settings.broker_url)
    except Exception as exc:  # noqa: BLE001 - shown to the administrator
        report["workers_error"] = f"the broker did not answer: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    try:
        report["queues"] = queue_lengths(settings.broker_url)
    except Exception as exc:  # noqa: BLE001
        report["queues_error"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
    return report


def system_report(session: Session) -> dict[str, Any]:
    """Everything the System page shows, as plain JSON values (also ``GET /api/system``)."""
    settings = get_settings()
    return {
        "environment": settings.env,
        "background": workers_report(settings),
        "jobs": jobs_report(session, settings),
        "queue_warn_s": settings.queue_warn_s,
        "settings": {
            "refused": production_problems(settings),
            "warnings": production_warnings(settings),
            "mail": settings.smtp.host or None,
        },
    }
