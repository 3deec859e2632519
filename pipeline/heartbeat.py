"""Job heartbeats: how a page tells a running job from one whose process died.

While a job runs, a daemon thread of its process writes ``Job.heartbeat`` every ``HEARTBEAT_S`` seconds. A job
still marked running whose heartbeat (or start) is older than ``STALE_AFTER`` lost its process: a web process
restarted under a diskcache job, a machine went down, or a whole Celery worker was killed (its message only comes
back after the broker's visibility timeout, hours later). ``pipeline.jobs.settle_stalled_jobs`` marks such jobs
failed with a message saying so, which frees the collection to be processed again; pages that show jobs call it
before reading.

Queued jobs are never stalled: they wait for a free worker and have no process yet. The limit is generous (five
minutes against a 10-second beat) because workers on other machines write with their own clocks.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import update

from store.db import session_scope
from store.models import Job, JobStatus, utcnow

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
