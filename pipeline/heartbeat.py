"""Job heartbeats: how a page tells a running job from one whose process died.

While a job runs, a daemon thread of its process writes ``Job.heartbeat`` every ``HEARTBEAT_S`` seconds. A job
still marked running whose heartbeat (or start) is older than ``STALE_AFTER`` lost its process: a web process
restarted under a diskcache job, a machine went down, or a whole Celery worker was killed (its message only comes
back after the broker's visibility timeout, hours later). ``settle_stalled_jobs`` marks such jobs failed with a
message saying so, which frees the collection to be processed again; pages that show jobs call it before reading.

Queued jobs are never stalled: they wait for a free worker and have no process yet. The limit is generous (five
minutes against a 10-second beat) because workers on other machines write with their own clocks.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from store.db import session_scope
from store.models import Collection, CollectionStatus, Job, JobStatus, utcnow

HEARTBEAT_S = 10.0
STALE_AFTER = timedelta(minutes=5)

log = logging.getLogger(__name__)


def beat(job_id: int) -> None:
    """Record that the job's process is alive (only while the job is running).

    Writes ``Job.heartbeat`` in a session and transaction of its own; a job that is not running (or does not
    exist) is left as it is.

    Parameters
    ----------
    job_id : int
        Id of the ``Job`` row.
    """
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(heartbeat=utcnow()))


@contextmanager
def heartbeat(job_id: int, interval: float | None = None) -> Iterator[None]:
    """Beat for ``job_id`` from a daemon thread for as long as the block runs (every HEARTBEAT_S seconds).

    The first beat comes one interval after the block starts. A beat that fails is logged and skipped. Leaving
    the block (also by an exception) stops the thread and waits for a beat in progress.

    Parameters
    ----------
    job_id : int
        Id of the running ``Job`` row.
    interval : float or None
        Seconds between beats; None (or 0) means :data:`HEARTBEAT_S`.

    Yields
    ------
    None
    """
    interval = interval or HEARTBEAT_S
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                beat(job_id)
            except Exception:  # a missed beat is harmless; the next one tries again
                log.warning("heartbeat of job %s could not be written", job_id, exc_info=True)

    thread = threading.Thread(target=run, name=f"incdb-heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def settle_stalled_jobs(session: Session, now: datetime | None = None) -> list[int]:
    """Mark running jobs without a recent heartbeat failed; returns their ids.

    A job is stalled when its last sign of life (heartbeat, else start, else creation) is older than
    :data:`STALE_AFTER`. Each stalled job gets status failed, a finish time and an error message saying why; a
    collection it was processing goes from processing to failed. The changes are flushed, not committed: the
    caller's transaction decides.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Open session the jobs are read and changed in.
    now : datetime.datetime or None
        The current time, timezone-aware UTC; None means :func:`store.models.utcnow`.

    Returns
    -------
    list of int
        Ids of the jobs marked failed (empty when none).
    """
    now = now or utcnow()
    last_sign = func.coalesce(Job.heartbeat, Job.started, Job.created)
    stalled = list(session.scalars(select(Job).where(Job.status == JobStatus.RUNNING, last_sign < now - STALE_AFTER)))
    for job in stalled:
        seen = job.heartbeat or job.started or job.created
        job.status, job.finished = JobStatus.FAILED, now
        job.error = (f"The process running this job stopped (last sign of life {seen:%Y-%m-%d %H:%M} UTC), for "
                     "example because the server restarted. "
                     + ("The collection keeps the components of its last finished run: process it again."
                        if job.collection_id is not None else "Start it again."))
        if job.collection_id is not None:
            collection = session.get(Collection, job.collection_id)
            if collection is not None and collection.status == CollectionStatus.PROCESSING:
                collection.status = CollectionStatus.FAILED
        log.warning("job %s marked failed: no heartbeat since %s", job.id, seen)
    if stalled:
        session.flush()
    return [job.id for job in stalled]
