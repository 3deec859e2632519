"""A job whose whole Celery worker dies finishes with no one acting (issue 26, item 2).

The production stack in small: PostgreSQL, Redis, gunicorn and a real prefork Celery worker, with a short heartbeat
(1 s) and stall limit (3 s) from the environment. A curator starts processing over HTTP as the browser does; once
the Job row shows progress, the worker's whole process group is killed with SIGKILL (a machine or container going
down: its message stays unacknowledged in Redis for the visibility timeout, hours). A new worker is started and
nobody else does anything: the new worker notices the silent job, re-queues it once, runs it, and the collection
ends with the same rows and files as an undisturbed run of the same upload, with nothing left behind.
"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import timedelta

import psutil

from pipeline.jobs.lifecycle import create_job
from pipeline.jobs.sweep import sweep_storage
from pipeline.jobs.tasks import run_job
from store.db import session_scope
from store.models import Collection
from tests.conftest import need_service, use_environment
from tests.services import (
    Client,
    flush_redis_db,
    redis_available,
    running,
    service_env,
    start_celery,
    start_gunicorn,
    wait_until,
    worker_children,
)
from tests.test_processing import _clone_reference_into, _copy_template, _curator, _files, _job, _prepare, _snapshot

REDIS_DB = 12


def _start_background_callback(client: Client, request: dict, nonce: str) -> None:
    """The browser's first request of the background callback (which queues its Celery task); nobody polls it."""
    body = client._body(
        "proc-result.children", {"proc-request.data": request, "proc-nonce.data": nonce}, ["proc-request.data"]
    )
    r = client.post(client._url(), json_body=body)
    assert r.status_code == 200, r.text[:2000]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_job_whose_worker_is_killed_is_finished_by_the_next_worker(tmp_path, reference_template, postgres_url):
    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    data_dir = _copy_template(reference_template, tmp_path / "data")
    _clone_reference_into(data_dir, postgres_url)
    env = service_env(
        data_dir, postgres_url, flush_redis_db(REDIS_DB), INCDB_JOB_HEARTBEAT_S="1", INCDB_JOB_STALE_AFTER_S="3"
    )
    use_environment(data_dir, postgres_url)
    first = start_celery(env, tmp_path / "worker-1.log")
    with running(first):
        web = start_gunicorn(env, tmp_path / "gunicorn.log", workers=1)
        with running(web):
            files = _files(tmp_path / "in", n_4d=12, voxel_mm=3, seed=7)
            _curator("dies@example.org")
            client = Client(web.url)
            _, cid = _prepare(client, "dies@example.org", "Worker dies", "Dying movie", files)
            _curator("calm@example.org")  # the same files for an undisturbed run, processed at the end
            _, calm_id = _prepare(Client(web.url), "calm@example.org", "Calm run", "Calm movie", files)
            nonce = uuid.uuid4().hex
            _start_background_callback(client, client.start_processing(cid, nonce), nonce)

            def mid_job():
                job = _job(cid)
                return job.status == "running" and 1 <= job.progress_done < job.progress_total

            wait_until(mid_job, 120, "the job to show progress", interval=0.05)
            processes = [first.pid] + worker_children(first)
            os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool children, as a machine going down
            first.proc.wait(10)
            wait_until(lambda: all(_gone(p) for p in processes), 10, "the killed worker's processes to be gone")
            left = _job(cid)
            assert (left.status, left.attempts) == ("running", 1)  # what the dead worker left behind

            second = start_celery(env, tmp_path / "worker-2.log")
            with running(second):
                wait_until(lambda: _job(cid).status not in ("queued", "running"), 90, "the job to finish")
                job = _job(cid)
                assert (job.status, job.attempts, job.progress_done) == ("succeeded", 2, 13), (job.error, job.message)
                assert f"job {job.id} resumed in process " in second.text()
            with session_scope() as session:
                assert session.get(Collection, cid).status == "ready"

    # The same files processed undisturbed, in this process, for another movie.
    with session_scope() as session:
        calm_job = create_job(session, "ingest", calm_id).id
    run_job(calm_job)
    killed, undisturbed = _snapshot(cid), _snapshot(calm_id)
    assert len(killed["components"]) == 13
    assert killed == undisturbed
    # Nothing left behind: no file that no row refers to, whatever its age, and no unfinished write.
    assert sweep_storage(grace=timedelta(0), dry_run=True).removed == []
    assert not list((data_dir / "files").rglob(".tmp-*"))
