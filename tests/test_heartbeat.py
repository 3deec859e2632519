"""Job heartbeats: a running job whose process died is marked failed (with a message) and frees its collection;
with a broker it is re-queued, exactly once, until it was started INCDB_JOB_MAX_ATTEMPTS times; a message claims
its job before running it.

The last test kills a real process in the middle of an ingest, as a server restart does to a diskcache job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pipeline.jobs.heartbeat as hb
import pipeline.jobs.lifecycle as jobs
from pipeline.curation.catalog import confirm_license
from pipeline.curation.ingest import ingest
from pipeline.jobs.lifecycle import active_job, start_ingest_job
from store.config import reset_settings
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
from pipeline.curation.ingest import ingest
def stuck(done, total):  # stands for a long step: the process is killed while in here
    if done:
        print("stuck", flush=True)
        time.sleep(120)
ingest(int(sys.argv[1]), progress=stuck)
"""


def test_a_killed_ingest_is_seen_as_stalled_and_can_be_processed_again(data_dir):
    job_id = new_ingest_job(data_dir)
    env = dict(os.environ, INCDB_DATA_DIR=str(data_dir), INCDB_JOB_HEARTBEAT_S="1")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(job_id)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
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


# --- re-queue and claim ---------------------------------------------------------------------------------------


class SentMessages(list):
    """Stands for the broker: the resume messages sent, as (task name, job id)."""

    def send_task(self, name, args):
        self.append((name, args[0]))


def with_broker(monkeypatch) -> SentMessages:
    sent = SentMessages()
    monkeypatch.setenv("INCDB_BROKER_URL", "redis://127.0.0.1:1/0")  # never connected to: sending is replaced
    reset_settings()
    monkeypatch.setattr(jobs, "_broker", lambda: sent)
    return sent


def test_with_a_broker_a_stalled_job_is_requeued_until_its_attempts_are_used_up(data_dir, monkeypatch):
    sent = with_broker(monkeypatch)
    job_id = new_ingest_job(data_dir)
    long_ago = datetime.now(UTC) - hb.STALE_AFTER * 2
    for attempt in (1, 2):
        set_job(job_id, status="running", attempts=attempt, started=long_ago, heartbeat=long_ago)
        with session_scope() as s:
            s.get(Collection, s.get(Job, job_id).collection_id).status = "processing"
            assert jobs.settle_stalled_jobs(s) == [job_id]
            assert len(sent) == attempt - 1  # not before the commit: a worker must find the row queued
        assert sent[-1] == (jobs.RESUME_TASK, job_id) and len(sent) == attempt
        status, _, _, collection = job_row(job_id)
        assert (status, collection) == ("queued", "processing")
    set_job(job_id, status="running", attempts=3, started=long_ago, heartbeat=long_ago)
    with session_scope() as s:
        assert jobs.settle_stalled_jobs(s) == [job_id]
    status, _, error, collection = job_row(job_id)
    assert (status, collection) == ("failed", "failed") and "stopped 3 times" in error
    assert len(sent) == 2


def test_a_requeue_rolled_back_sends_nothing(data_dir, monkeypatch):
    sent = with_broker(monkeypatch)
    job_id = new_ingest_job(data_dir)
    long_ago = datetime.now(UTC) - hb.STALE_AFTER * 2
    set_job(job_id, status="running", attempts=1, started=long_ago, heartbeat=long_ago)
    try:
        with session_scope() as s:
            assert jobs.settle_stalled_jobs(s) == [job_id]
            raise RuntimeError("the page's request failed")
    except RuntimeError:
        pass
    assert sent == [] and job_row(job_id)[0] == "running"


def test_two_processes_noticing_at_once_requeue_once_on_postgresql(tmp_path, postgres_url, monkeypatch):
    """Two sessions settle the same stalled job concurrently: one UPDATE wins, one message is sent."""
    data = tmp_path / "data"
    data.mkdir()
    use_environment(data, database_url=postgres_url)
    upgrade_database()
    sent = with_broker(monkeypatch)
    job_id = new_ingest_job(data)
    long_ago = datetime.now(UTC) - hb.STALE_AFTER * 2
    set_job(job_id, status="running", attempts=1, started=long_ago, heartbeat=long_ago)
    with session_scope() as first, session_scope() as second:
        assert jobs.settle_stalled_jobs(first) == [job_id]
        # the second one read the job as running too; its UPDATE waits for the first commit, then finds it queued
        results = {}
        waiter = threading.Thread(target=lambda: results.update(second=jobs.settle_stalled_jobs(second)))
        waiter.start()
        time.sleep(0.5)
        first.commit()
        waiter.join(30)
        assert results["second"] == []
    assert sent == [(jobs.RESUME_TASK, job_id)]
    assert job_row(job_id)[0] == "queued"


def test_a_claim_takes_a_queued_job_once_and_a_running_one_only_from_a_gone_runner(data_dir):
    job_id = new_ingest_job(data_dir)
    assert jobs.claim_job(job_id) is True
    assert jobs.claim_job(job_id) is False  # a second delivery: this process runs it
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.runner) == ("running", hb.process_identity())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_runner = "/".join(hb.process_identity().split("/")[:2] + [gone.stdout.strip(), "1.00"])
    assert hb.runner_is_gone(dead_runner) and not hb.runner_is_gone(hb.process_identity())
    assert not hb.runner_is_gone("elsewhere/1/1/1.00")  # another machine: only its heartbeat tells
    set_job(job_id, runner=dead_runner, attempts=1)
    assert jobs.claim_job(job_id) is True  # the pool child under it was killed: taken over at once
    set_job(job_id, runner=dead_runner, attempts=3)
    assert jobs.claim_job(job_id) is False
    status, _, error, collection = job_row(job_id)
    assert status == "failed" and "stopped 3 times" in error
    set_job(job_id, status="succeeded")
    assert jobs.claim_job(job_id) is False
