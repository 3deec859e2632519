"""Job heartbeats: how a page or a worker tells a running job from one whose process died.

While a job runs, a daemon thread of its process writes ``Job.heartbeat`` every ``INCDB_JOB_HEARTBEAT_S`` seconds
(:func:`beat_interval`). A job still marked running whose heartbeat (or start) is older than
``INCDB_JOB_STALE_AFTER_S`` (:func:`stale_after`) lost its process: a web process restarted under a diskcache job,
a machine went down, or a whole Celery worker was killed (its message only comes back after the broker's
visibility timeout, hours later). ``pipeline.jobs.lifecycle.settle_stalled_jobs`` re-queues such a job when workers
can run
it (up to ``INCDB_JOB_MAX_ATTEMPTS`` starts), and otherwise marks it failed with a message saying so.

Queued jobs are never stalled: they wait for a free worker and have no process yet. The default limit is generous
(five minutes against a 10-second beat) because workers on other machines write with their own clocks.

Every run also records who runs it (:func:`process_identity`: machine, PID namespace, PID and the process's start
time). A message that comes back while the row still names a runner may take the job over only when that runner is
known to be gone (:func:`runner_is_gone`): a process of this machine and namespace that no longer exists, which is
what a pool child killed under a Celery task leaves. A runner elsewhere is judged by its heartbeat alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache

import psutil
from sqlalchemy import update

from store.config import DEFAULT_JOB_HEARTBEAT_S, DEFAULT_JOB_STALE_AFTER_S, get_settings
from store.db import session_scope
from store.models import Job, JobStatus, utcnow

# The defaults; the values in force come from the settings (beat_interval, stale_after).
HEARTBEAT_S = float(DEFAULT_JOB_HEARTBEAT_S)
STALE_AFTER = timedelta(seconds=DEFAULT_JOB_STALE_AFTER_S)

log = logging.getLogger(__name__)


def beat_interval() -> float:
    """Seconds between two beats of a running job (``INCDB_JOB_HEARTBEAT_S``, default 10)."""
    return float(get_settings().job_heartbeat_s)


def stale_after() -> timedelta:
    """How long a running job may go without a beat before it counts as dead (``INCDB_JOB_STALE_AFTER_S``,
    default 300 s, never under three beats)."""
    return timedelta(seconds=get_settings().job_stale_after_s)


def max_attempts() -> int:
    """How many times a job may be started before a stop of its process fails it (``INCDB_JOB_MAX_ATTEMPTS``,
    default 3)."""
    return get_settings().job_max_attempts


def _namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # no /proc (macOS): one namespace
        return "-"


@lru_cache(maxsize=1)
def _identity(pid: int) -> str:
    started = psutil.Process(pid).create_time()
    return f"{socket.gethostname()}/{_namespace()}/{pid}/{started:.2f}"


def process_identity() -> str:
    """This process as a job's runner: ``host/pid-namespace/pid/start-time`` (the start time tells a reused PID
    apart)."""
    return _identity(os.getpid())


def runner_is_gone(runner: str | None) -> bool:
    """Whether the process named by ``runner`` (a :func:`process_identity`) certainly no longer exists.

    Only a runner of this machine and PID namespace can be checked; for any other (or an unreadable value) the
    answer is False, and only its heartbeat tells.
    """
    try:
        host, namespace, pid, started = (runner or "").split("/")
        pid_number = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or namespace != _namespace():
        return False
    try:
        return f"{psutil.Process(pid_number).create_time():.2f}" != started
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # e.g. access denied: it exists
        return False


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
    """Beat for ``job_id`` from a daemon thread for as long as the block runs (every :func:`beat_interval`).

    The first beat comes one interval after the block starts. A beat that fails is logged and skipped. Leaving
    the block (also by an exception) stops the thread and waits for a beat in progress.

    Parameters
    ----------
    job_id : int
        Id of the running ``Job`` row.
    interval : float or None
        Seconds between beats; None (or 0) means :func:`beat_interval`.

    Yields
    ------
    None
    """
    interval = interval or beat_interval()
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
