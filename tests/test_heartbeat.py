"""Job heartbeats: a running job whose process died is marked failed (with a message) and frees its collection.

The last test kills a real process in the middle of an ingest, as a server restart does to a diskcache job.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pipeline.heartbeat as hb
import pipeline.jobs as jobs
from pipeline.catalog import confirm_license
from pipeline.ingest import ingest
from pipeline.jobs import active_job, start_ingest_job
from store.db import session_scope, upgrade_database
from store.models import Collection, Job, User
from tests.browser import REPO_ROOT
from tests.conftest import use_environment
from tests.test_faults import assert_consistent, new_ingest_job


def aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def job_row(job_id: int) -> tuple[str, datetime | None, str, str]:
    with session_scope() as s:
        job = s.get(Job, job_id)
        return job.status, aware(job.heartbeat), job.error, s.get(Collection, job.collection_id).status


def set_job(job_id: int, **values) -> None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        for name, value in values.items():
            setattr(job, name, value)


def test_heartbeat_beats_while_the_block_runs_and_stops_after(data_dir):
    job_id = new_ingest_job(data_dir)
    set_job(job_id, status="running", started=datetime.now(UTC))
    with hb.heartbeat(job_id, interval=0.05):
        time.sleep(0.4)
        first = job_row(job_id)[1]
        assert first is not None
        time.sleep(0.3)
        assert job_row(job_id)[1] > first
    last = job_row(job_id)[1]
    time.sleep(0.3)
    assert job_row(job_id)[1] == last, "the heartbeat went on after the job ended"
    # A finished job is not touched by a late beat.
    set_job(job_id, status="succeeded")
    hb.beat(job_id)
    assert job_row(job_id)[1] == last


def test_only_running_jobs_without_a_recent_heartbeat_are_settled(data_dir):
    check_settling(data_dir)


def test_settling_on_postgresql(tmp_path, postgres_url):
    data = tmp_path / "data"
    data.mkdir()
    use_environment(data, database_url=postgres_url)
    upgrade_database()
    check_settling(data)


def check_settling(data_dir) -> None:
    now = datetime.now(UTC)
    stalled, alive, queued = (new_ingest_job(data_dir, seed=s) for s in (1, 2, 3))
    set_job(stalled, status="running", started=now - timedelta(hours=1), heartbeat=now - hb.STALE_AFTER * 2)
    set_job(alive, status="running", started=now - timedelta(hours=1), heartbeat=now - timedelta(seconds=20))
    set_job(queued, status="queued")  # waiting for a worker for a long time is not a failure
    with session_scope() as s:
        for job_id in (stalled, alive):
            s.get(Collection, s.get(Job, job_id).collection_id).status = "processing"
    with session_scope() as s:
        assert jobs.settle_stalled_jobs(s, now=now) == [stalled]
    status, _, error, collection = job_row(stalled)
    assert status == "failed" and collection == "failed"
    assert "stopped" in error and "process it again" in error
    assert job_row(alive)[0] == "running" and job_row(alive)[3] == "processing"
    assert job_row(queued)[0] == "queued"


def test_a_job_without_any_heartbeat_counts_from_its_start(data_dir):
    job_id = new_ingest_job(data_dir)
    started = datetime.now(UTC) - hb.STALE_AFTER - timedelta(seconds=5)
    set_job(job_id, status="running", started=started)
    with session_scope() as s:
        assert jobs.settle_stalled_jobs(s, now=started + hb.STALE_AFTER - timedelta(seconds=1)) == []
        assert jobs.settle_stalled_jobs(s) == [job_id]


CHILD = """
import sys, time
import pipeline.heartbeat
from pipeline.ingest import ingest
pipeline.heartbeat.HEARTBEAT_S = 0.1
def stuck(done, total):  # stands for a long step: the process is killed while in here
    if done:
        print("stuck", flush=True)
        time.sleep(120)
ingest(int(sys.argv[1]), progress=stuck)
"""


def test_a_killed_ingest_is_seen_as_stalled_and_can_be_processed_again(data_dir):
    job_id = new_ingest_job(data_dir)
    env = dict(os.environ, INCDB_DATA_DIR=str(data_dir))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(job_id)], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "stuck"
        deadline = time.monotonic() + 30
        while job_row(job_id)[1] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_row(job_id)[1] is not None, "no heartbeat from the running job"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    status, beat, _, collection = job_row(job_id)
    assert (status, collection) == ("running", "processing")  # what a dead process leaves behind
    time.sleep(0.5)
    assert job_row(job_id)[1] == beat, "a killed process cannot beat"

    with session_scope() as s:
        assert active_job(s, s.get(Job, job_id).collection_id) is not None  # too early to tell
        assert jobs.settle_stalled_jobs(s, now=beat + hb.STALE_AFTER - timedelta(seconds=5)) == []
        assert jobs.settle_stalled_jobs(s, now=beat + hb.STALE_AFTER + timedelta(seconds=1)) == [job_id]
    status, _, error, collection = job_row(job_id)
    assert (status, collection) == ("failed", "failed") and "stopped" in error

    # The curator processes the collection again: a new job, and it ends like an undisturbed run.
    with session_scope() as s:
        job = s.get(Job, job_id)
        collection = s.get(Collection, job.collection_id)
        owner = s.get(User, collection.owner_id)
        confirm_license(s, collection, owner)
        retry = start_ingest_job(s, owner, collection).id
    assert retry != job_id
    assert ingest(retry).components == 3
    assert job_row(retry)[0] == "succeeded" and job_row(retry)[3] == "ready"
    assert_consistent(data_dir)
