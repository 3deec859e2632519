"""The background callback manager: Celery on Redis when INCDB_BROKER_URL is set, diskcache otherwise; and the
identity that background jobs receive from the web request that started them.

One place builds the Celery app and the manager (the web process and ``celery -A app:celery_app worker`` import the
same code, so task names, which Dash derives from the callback source, agree).

How a job survives the death of the worker running it. The Job row's heartbeat (``pipeline.jobs.heartbeat``) decides
whether a job's process is alive; the broker's own redelivery is set so that it never contradicts it:

- ``task_acks_late`` with ``task_reject_on_worker_lost``: a message is acknowledged when its task ends, and a pool
  child killed under a task hands its message back at once. The next run claims the job
  (``pipeline.jobs.lifecycle.claim_job``), which it may because the row's runner, a process of this machine, is gone.
  This
  is the fast path for a child killed by the kernel's OOM killer or by hand.
- A whole worker killed (machine, container, SIGKILL of the main process) leaves its message unacknowledged, and
  Redis hands such a message out again only after ``visibility_timeout``; it cannot extend that for a task still
  running (SQS can, Redis cannot), so a timeout shorter than the longest job would hand a live job's message to a
  second worker. The heartbeat covers this case instead: within ``INCDB_JOB_STALE_AFTER_S`` of the last beat
  the first process that notices re-queues the job, exactly once, with a ``pipeline.jobs.lifecycle.RESUME_TASK``
  message.
  Every worker looks at start and at every beat (``_watch_stalled_jobs``), the web process whenever a page shows
  jobs. The visibility timeout therefore stays above the longest job (:data:`VISIBILITY_TIMEOUT_S`, six hours),
  and the message it finally hands out finds its job finished or claimed by another run, and does nothing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import diskcache
import flask
from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from dash import CeleryManager, DiskcacheManager, hooks

from pipeline.jobs.heartbeat import beat_interval
from pipeline.jobs.lifecycle import RESUME_TASK, settle_stalled_jobs
from store.config import get_settings
from store.db import dispose_engine, session_scope
from web.auth import signed_in_user

# Above the longest job: the broker must never hand out a running job's message a second time (see above).
VISIBILITY_TIMEOUT_S = 6 * 3600
RESULT_EXPIRES_S = 24 * 3600

log = logging.getLogger("incdb.jobs")


def make_celery() -> Celery:
    settings = get_settings()
    celery_app = Celery(
        "incdb", broker=settings.broker_url or "memory://", backend=settings.result_backend or "cache+memory://"
    )
    celery_app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
    )
    celery_app.task(name=RESUME_TASK, ignore_result=True)(_resume_job)
    return celery_app


def _resume_job(job_id: int) -> None:
    from pipeline.jobs.tasks import resume_job  # the job kinds import the whole pipeline: only where a job runs

    resume_job(int(job_id))


_watch_stop = threading.Event()


@worker_ready.connect
def _watch_stalled_jobs(**_kwargs) -> None:
    """In a worker's main process, from start to shutdown: settle stalled jobs (re-queue or fail) every beat."""

    def watch() -> None:
        while True:
            try:
                with session_scope() as session:
                    settle_stalled_jobs(session)
            except Exception:  # the database may be away for a while; the next round tries again
                log.warning("stalled jobs could not be settled", exc_info=True)
            if _watch_stop.wait(beat_interval()):
                return

    threading.Thread(target=watch, name="incdb-stalled-jobs", daemon=True).start()


@worker_shutdown.connect
def _stop_watching(**_kwargs) -> None:
    _watch_stop.set()


@worker_process_init.connect
def _fresh_engine_in_worker(**_kwargs) -> None:
    # A forked worker child must not reuse the parent's pooled connections.
    dispose_engine()


def make_background_manager(celery_app: Celery):
    settings = get_settings()
    if settings.broker_url:
        return CeleryManager(celery_app, expire=RESULT_EXPIRES_S)

    cache_dir = settings.data_dir / "cache" / "background"
    cache_dir.mkdir(parents=True, exist_ok=True)
    return DiskcacheManager(diskcache.Cache(str(cache_dir)), expire=RESULT_EXPIRES_S)


@hooks.custom_data("incdb")
def _identity(_ctx) -> dict[str, Any]:
    """Runs in the web request before every callback; its value reaches a background job (also on a Celery worker,
    which has no request and no ``current_user``) as ``callback_context.custom_data["incdb"]``. Only an id
    crosses: the job looks the user up and checks the permission again. The id comes from the signed session
    cookie; no database query for callbacks of anonymous visitors."""
    try:
        raw = flask.session.get("_user_id")
    except RuntimeError:  # no request (never expected here)
        return {"user_id": None}
    user = signed_in_user() if raw else None
    return {"user_id": user.id if user is not None else None}
