"""Changes to a movie's annotations coalesce into one pending recompute per movie.

Five annotation sets added within five seconds from the annotations page, driven as the browser's renderer drives it (a
background callback triggered again while its previous run has not answered is sent with ``oldJob``, and Dash
stops that run): no temporal job fails or is left behind, recomputes of the movie never overlap, the page shows
their state, and the stored temporal decodings equal one recompute from scratch. Once in this process (SQLite,
diskcache) and once on the production stack (gunicorn, a Celery worker, PostgreSQL, Redis). A silent job whose
process still lives is not failed; one whose process died is.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from pipeline.curation.ingest import ingest
from pipeline.jobs.heartbeat import process_identity
from pipeline.jobs.lifecycle import claim_job, create_job, settle_stalled_jobs
from pipeline.temporal import annotations
from pipeline.temporal.annotations import add_annotation_set, decode_collection_in_time, request_recompute, temporal_job
from store.config import reset_settings
from store.db import session_scope
from store.models import ACTIVE_JOB_STATUSES, Collection, Component, Job, Movie, TemporalDecoding, User, utcnow
from tests.conftest import CURATOR_PASSWORD, need_service, use_environment
from tests.services import (
    Client,
    flush_redis_db,
    redis_available,
    running,
    service_env,
    start_celery,
    start_gunicorn,
    wait_until,
)
from tests.test_timeline import TIMING, melodic_zip, new_collection

SETS = 5
LABELS_PER_SET = 160  # enough labels that a recompute takes a few seconds


def events_tsv(set_number: int) -> str:
    """A set of LABELS_PER_SET labels with three events each over the 236 s the runs cover."""
    rng = np.random.default_rng(set_number)
    rows = [
        f"{onset:.2f}\t{rng.uniform(1.0, 8.0):.2f}\tset{set_number} label {j:03d}"
        for j in range(LABELS_PER_SET)
        for onset in np.sort(rng.uniform(0.0, 230.0, 3))
    ]
    return "onset\tduration\ttrial_type\n" + "\n".join(rows) + "\n"


def _movie_with_time_courses(tmp_path: Path) -> tuple[int, str]:
    """(movie id, slug) of a movie with one ingested collection with time courses and no annotations."""
    collection_id, job_id = new_collection([melodic_zip(tmp_path)], annotations=None)
    assert ingest(job_id).components == 4
    with session_scope() as session:
        movie = session.get(Collection, collection_id).movie
        return movie.id, movie.slug


def _snapshot(movie_id: int) -> dict:
    with session_scope() as session:
        rows = session.execute(
            select(
                TemporalDecoding.component_id,
                TemporalDecoding.set_id,
                TemporalDecoding.label,
                TemporalDecoding.r,
                TemporalDecoding.p,
                TemporalDecoding.q,
            )
            .join(Component)
            .join(Collection)
            .where(Collection.movie_id == movie_id)
        ).all()
    return {(c, s, label): (r, p, q) for c, s, label, r, p, q in rows}


def _assert_same_as_from_scratch(movie_id: int) -> None:
    coalesced = _snapshot(movie_id)
    with session_scope() as session:
        collections = list(session.scalars(select(Collection.id).where(Collection.movie_id == movie_id)))
    for collection_id in collections:
        decode_collection_in_time(collection_id)
    scratch = _snapshot(movie_id)
    assert len(scratch) == 4 * SETS * LABELS_PER_SET
    assert coalesced.keys() == scratch.keys()
    np.testing.assert_allclose(
        np.array([coalesced[k] for k in sorted(scratch)]), np.array([scratch[k] for k in sorted(scratch)]), rtol=1e-9
    )


def _temporal_jobs(movie_id: int) -> list[Job]:
    with session_scope() as session:
        jobs = session.scalars(select(Job).where(Job.kind == "temporal", Job.movie_id == movie_id).order_by(Job.id))
        return [session.merge(job) for job in jobs]


def _assert_one_after_the_other_and_none_failed(movie_id: int) -> None:
    jobs = _temporal_jobs(movie_id)
    assert jobs
    assert [(j.id, j.status) for j in jobs] == [(j.id, "succeeded") for j in jobs], [(j.id, j.error) for j in jobs]
    ordered = sorted(jobs, key=lambda j: j.started)
    for before, after in zip(ordered, ordered[1:]):
        assert after.started >= before.finished, "two recomputes of the movie overlapped"


def _wait_for_recomputes(movie_id: int, timeout: float) -> None:
    def settled() -> bool:
        with session_scope() as session:
            settle_stalled_jobs(session)  # as the pages do: a job whose process died is settled
            active = session.scalar(
                select(Job.id).where(
                    Job.kind == "temporal", Job.movie_id == movie_id, Job.status.in_(ACTIVE_JOB_STATUSES)
                )
            )
        return active is None

    wait_until(settled, timeout, "the movie's recomputes to end", interval=0.5)


# --- the pipeline: coalescing, the chain, and who is failed ----------------------------------------------------


def test_changes_while_a_recompute_runs_wait_in_one_job_that_follows_it(data_dir, tmp_path):
    movie_id, _ = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        owner = session.scalar(select(User).join(Collection).where(Collection.movie_id == movie_id))
        movie = session.get(Movie, movie_id)
        add_annotation_set(session, owner, movie, "Set 1", events_tsv(1), "set1.tsv")
        first = request_recompute(session, owner, movie)
        assert first.start and first.running is None
        first_id = first.job.id
    assert claim_job(first_id)  # a page's background callback took it: it runs

    waiting_ids = set()
    for n in range(2, SETS + 1):
        with session_scope() as session:
            owner = session.scalar(select(User).join(Collection).where(Collection.movie_id == movie_id))
            movie = session.get(Movie, movie_id)
            add_annotation_set(session, owner, movie, f"Set {n}", events_tsv(n), f"set{n}.tsv")
            found = request_recompute(session, owner, movie)
            assert not found.start and found.running.id == first_id  # nothing starts while one runs
            waiting_ids.add(found.job.id)
    assert len(waiting_ids) == 1  # four changes, one waiting recompute

    temporal_job(first_id)  # the running job, then the waiting one in the same process
    jobs = _temporal_jobs(movie_id)
    assert [j.id for j in jobs] == [first_id, *waiting_ids]
    _assert_one_after_the_other_and_none_failed(movie_id)
    _assert_same_as_from_scratch(movie_id)


def test_a_silent_job_is_failed_only_when_its_process_died(data_dir):
    long_ago = utcnow() - timedelta(hours=2)
    with session_scope() as session:
        alive, dead = create_job(session, "redecode").id, create_job(session, "redecode").id
        gone = "/".join(process_identity().split("/")[:2] + ["999999999", "1.00"])  # no such PID
        for job_id, runner in ((alive, process_identity()), (dead, gone)):
            job = session.get(Job, job_id)
            job.status, job.runner, job.started, job.heartbeat = "running", runner, long_ago, long_ago
    with session_scope() as session:
        assert settle_stalled_jobs(session) == [dead]
    with session_scope() as session:
        assert session.get(Job, alive).status == "running"  # silent, but its process lives
        assert session.get(Job, dead).status == "failed" and "stopped" in session.get(Job, dead).error


# --- the annotations page, driven as the renderer drives it ----------------------------------------------------


class AnnotationsPage:
    """The annotations page of one browser tab: its add callback, and its runner's background callback started
    and polled with the signed handles, with ``oldJob`` when triggered again before the previous run answered."""

    def __init__(self, client: Client, slug: str):
        self.client, self.slug = client, slug
        client.open_page(f"/movies/{slug}/annotations")
        self.nonce = uuid.uuid4().hex
        self.request: dict | None = None
        self.pending: dict | None = None  # handles of the background run that has not answered yet
        self.clicks = 0
        self.add_output = next(
            d["output"]
            for d in client._deps
            if any(i["id"] == "annot-submit" for i in d["inputs"]) and "annot-sets" in d["output"]
        )

    def add(self, name: str, tsv: str) -> str:
        self.poll()  # the renderer polls its running background callback every few hundred ms
        self.clicks += 1
        values = {
            "annot-movie.data": self.slug,
            "annot-name.value": name,
            "annot-file.contents": "data:text/tab-separated-values;base64," + base64.b64encode(tsv.encode()).decode(),
            "annot-file.filename": f"{name}.tsv",
            "annotjob-nonce.data": self.nonce,
            "annotjob-request.data": self.request,
            "annot-submit.n_clicks": self.clicks,
        }
        out = self.client.callback(self.add_output, values, ["annot-submit.n_clicks"])
        message = str(out["annot-message"]["children"])
        assert "Added" in message, message
        if "annotjob-request" in out and out["annotjob-request"]["data"]:
            self.request = out["annotjob-request"]["data"]
            self._start()
        return message

    def _body(self) -> dict:
        values = {"annotjob-request.data": self.request, "annotjob-nonce.data": self.nonce}
        return self.client._body("annotjob-result.children", values, ["annotjob-request.data"])

    def _start(self) -> None:
        args = {"oldJob": self.pending["job"]} if self.pending else {}
        r = self.client.post(self.client._url(**args), json_body=self._body())
        assert r.status_code == 200, r.text[:2000]
        self.pending = r.json()
        assert "job" in self.pending, self.pending

    def poll(self) -> None:
        if self.pending is None:
            return
        body = self._body()
        for item in body["inputs"] + body["state"]:
            item["value"] = None
        url = self.client._url(cacheKey=self.pending["cacheKey"], job=self.pending["job"])
        r = self.client.post(url, json_body=body)
        if r.status_code == 204 or "response" in r.json():
            self.pending = None

    def finish(self, timeout: float) -> None:
        wait_until(lambda: self.poll() or self.pending is None, timeout, "the page's background callback")

    def recompute_panel(self) -> str:
        out = self.client.callback(
            "..annot-recompute.children...annot-recompute-poll.disabled..",
            {"annot-recompute-poll.n_intervals": 1, "annot-movie.data": self.slug},
            ["annot-recompute-poll.n_intervals"],
        )
        return str(out["annot-recompute"]["children"]) if out else ""


def _add_five_sets_within_five_seconds(page: AnnotationsPage) -> list[str]:
    messages = []
    for n in range(1, SETS + 1):
        messages.append(page.add(f"Set {n}", events_tsv(n)))
        time.sleep(0.3)
    return messages


def test_five_sets_added_within_five_seconds_recompute_once_after_another(web, curator, tmp_path, monkeypatch):
    # Short heartbeat and stall limits: a job whose process was stopped would be settled as failed within seconds.
    monkeypatch.setenv("INCDB_JOB_HEARTBEAT_S", "1")
    monkeypatch.setenv("INCDB_JOB_STALE_AFTER_S", "3")
    reset_settings()
    movie_id, slug = _movie_with_time_courses(tmp_path)
    # The recomputes (in processes forked from this one) hold until the five sets are added, so every addition
    # after the first meets a recompute that is running or about to.
    gate = tmp_path / "gate"
    decode = annotations.decode_collection_in_time

    def held(collection_id: int, n_shifts: int | None = None) -> int:
        wait_until(gate.exists, 120, "the gate", interval=0.05)
        return decode(collection_id, n_shifts)

    monkeypatch.setattr(annotations, "decode_collection_in_time", held)
    client = Client(flask_app=web.server)
    client.sign_in("cora@example.org", CURATOR_PASSWORD)
    page = AnnotationsPage(client, slug)
    messages = _add_five_sets_within_five_seconds(page)
    gate.touch()
    assert "Decoding the movie's components" in messages[0], messages
    assert all("waits in job" in m or "joins the recompute" in m for m in messages[1:]), messages
    page.finish(300)
    _wait_for_recomputes(movie_id, 300)

    _assert_one_after_the_other_and_none_failed(movie_id)
    assert len(_temporal_jobs(movie_id)) == 2  # the first, and one for the four changes made while it ran
    assert "up to date" in page.recompute_panel()
    _assert_same_as_from_scratch(movie_id)


@pytest.fixture
def celery_web(tmp_path, reference_template, postgres_url):
    """gunicorn and a Celery worker on PostgreSQL and Redis, with short heartbeat and stall limits."""
    from tests.test_processing import _clone_reference_into, _copy_template

    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    data_dir = _copy_template(reference_template, tmp_path / "data")
    _clone_reference_into(data_dir, postgres_url)
    env = service_env(
        data_dir, postgres_url, flush_redis_db(13), INCDB_JOB_HEARTBEAT_S="1", INCDB_JOB_STALE_AFTER_S="3"
    )
    use_environment(data_dir, postgres_url, INCDB_JOB_HEARTBEAT_S="1", INCDB_JOB_STALE_AFTER_S="3")
    worker = start_celery(env, tmp_path / "worker.log")
    with running(worker):
        web = start_gunicorn(env, tmp_path / "gunicorn.log", workers=1)
        with running(web):
            yield web
    flush_redis_db(13)


def test_five_sets_added_within_five_seconds_on_the_celery_worker(celery_web, tmp_path):
    from accounts.users import create_user

    movie_id, slug = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        create_user(session, "cora@example.org", CURATOR_PASSWORD, first_name="Cora", last_name="Curator")
    client = Client(celery_web.url)
    client.sign_in("cora@example.org", CURATOR_PASSWORD)
    page = AnnotationsPage(client, slug)
    _add_five_sets_within_five_seconds(page)
    page.finish(300)
    _wait_for_recomputes(movie_id, 300)

    _assert_one_after_the_other_and_none_failed(movie_id)
    assert "up to date" in page.recompute_panel()
    _assert_same_as_from_scratch(movie_id)
    assert TIMING.subjects == 2  # the collection's time courses: 2 subjects x 120 volumes
