"""A job no worker takes says so, and the administrators' System page shows the workers (issue 26, item 4).

Against a real Redis broker: with no worker, a job queued for five minutes shows "Waiting for a background worker"
on the collection page, in the job runner, on the annotations page after a reload and in ``GET /api/system``; the
System page lists a real Celery worker while it runs and none after it stopped. Who may see the page and the API
is in ``tests/test_authz.py``.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from celery import Celery

from accounts.users import create_user
from pipeline.curation.catalog import create_collection, get_or_create_movie
from pipeline.jobs.lifecycle import create_job
from store.db import session_scope
from store.models import Job, JobStatus, User, utcnow
from tests.conftest import CURATOR_PASSWORD, need_service, use_environment
from tests.services import Client, flush_redis_db, redis_available, running, service_env, start_celery

ADMIN = "root@example.org"
REDIS_DB = 5  # this file's own database: fanout (ping) channels are per database, so other tests' workers stay apart
WAITING = "Waiting for a background worker (none has taken a job for 5 min)"


@pytest.fixture
def broker(web, data_dir) -> str:
    """A flushed Redis database as this test's broker (set after the app was imported: other tests' background
    callbacks keep their manager)."""
    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    url = flush_redis_db(REDIS_DB)
    use_environment(data_dir, INCDB_BROKER_URL=url)
    return url


@pytest.fixture
def admin(web) -> Client:
    with session_scope() as session:
        create_user(session, ADMIN, CURATOR_PASSWORD, role="admin")
    client = Client(flask_app=web.server)
    client.sign_in(ADMIN, CURATOR_PASSWORD)
    return client


def _queued_jobs(curator_id: int) -> dict:
    """A collection of the curator with an ingest job, and a movie with a temporal job, both queued five
    minutes ago; the last job any worker took started an hour ago."""
    five_min_ago = utcnow() - timedelta(minutes=5, seconds=10)
    with session_scope() as session:
        cora = session.get(User, curator_id)
        movie = get_or_create_movie(session, "Queue Movie")
        collection = create_collection(session, cora, movie, "Waiting collection")
        old = create_job(session, "ingest", collection.id, curator_id)
        old.status, old.started = JobStatus.SUCCEEDED, utcnow() - timedelta(hours=1)
        old.finished = old.started + timedelta(minutes=1)
        ingest = create_job(session, "ingest", collection.id, curator_id)
        temporal = create_job(session, "temporal", None, curator_id)
        temporal.movie_id = movie.id
        for job in (ingest, temporal):
            job.created = five_min_ago
        return {
            "collection": collection.id,
            "movie": movie.slug,
            "ingest": ingest.id,
            "token": ingest.token,
            "temporal": temporal.id,
        }


def _collection_status(client: Client, collection_id: int) -> str:
    client.open_page("/contribute")
    out = client.callback(
        "..coll-status.children...coll-uploads.children...coll-components.children..."
        "coll-poll.interval...coll-process.disabled...coll-choose.disabled..",
        {"coll-id.data": collection_id, "coll-poll.n_intervals": 1},
        ["coll-poll.n_intervals"],
    )
    return json.dumps(out["coll-status"])


def test_a_job_no_worker_takes_says_it_waits_for_a_worker(web, broker, curator, admin):
    jobs = _queued_jobs(curator)
    # A real message in the queue that no worker reads.
    sender = Celery("test-sender", broker=broker, set_as_current=False)
    sender.send_task("incdb.test.nobody-takes-this")
    sender.close()
    cora = Client(flask_app=web.server)
    cora.sign_in("cora@example.org", CURATOR_PASSWORD)

    # The collection page's status line.
    assert WAITING in _collection_status(cora, jobs["collection"])
    # The job runner of the page that started it (the progress bar alone would say "starting…" forever).
    cora.open_page("/contribute")
    out = cora.callback(
        "..proc-status.children...proc-poll.disabled..",
        {"proc-request.data": {"token": jobs["token"], "nonce": "n"}, "proc-poll.n_intervals": 1},
        ["proc-request.data"],
    )
    assert WAITING in json.dumps(out["proc-status"]) and out["proc-poll"]["disabled"] is False
    # The annotations page after a reload: the queued job is shown, not nothing.
    page = cora.page_layout(f"/movies/{jobs['movie']}/annotations")
    assert f"Decoding in time job #{jobs['temporal']}: " in page and WAITING in page
    # The administrators' view: no worker answers, two messages wait (the one above, and the temporal recompute that
    # nothing ran, which the annotations page's visit handed to the workers), the oldest queued job waits.
    report = admin.get("/api/system").json()
    assert report["background"]["mode"] == "celery" and report["background"]["workers"] == []
    assert report["background"]["queues"]["queued"] == 2
    assert report["jobs"]["queued"] == 2 and report["jobs"]["oldest_queued"]["waiting"] == WAITING
    system = admin.page_layout("/admin/system")
    assert "No worker answered" in system and WAITING in system
    assert WAITING in admin.page_layout("/admin")

    # Once a worker takes any job, the queued ones are ordinary waits again (the workers are busy, not absent).
    with session_scope() as session:
        running_job = session.get(Job, jobs["ingest"])
        running_job.status, running_job.started = JobStatus.RUNNING, utcnow()
    assert "Waiting for a background worker" not in cora.page_layout(f"/movies/{jobs['movie']}/annotations")


def test_the_system_page_shows_a_live_worker_and_none_after_it_stopped(broker, data_dir, admin, tmp_path):
    worker = start_celery(service_env(data_dir, broker_url=broker), tmp_path / "worker.log")
    with running(worker):
        page = admin.page_layout("/admin/system")
        assert "1 worker(s) answered" in page and "celery@" in page, page[:3000]
        assert len(admin.get("/api/system").json()["background"]["workers"]) == 1
    page = admin.page_layout("/admin/system")
    assert "No worker answered" in page and "celery@" not in page
    assert admin.get("/api/system").json()["background"]["workers"] == []


def test_the_system_page_in_the_embedded_mode_and_with_the_broker_down(web, data_dir, admin):
    page = admin.page_layout("/admin/system")
    assert "embedded: jobs run in the web process" in page
    use_environment(data_dir, INCDB_BROKER_URL="redis://127.0.0.1:1/0")  # nothing listens there
    report = admin.get("/api/system").json()["background"]
    assert report["workers"] is None and report["workers_error"].startswith("the broker did not answer")
    assert "the broker did not answer" in admin.page_layout("/admin/system")
