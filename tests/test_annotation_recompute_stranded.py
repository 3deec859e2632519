"""No change of a movie's annotations is left waiting with nothing to run it.

A waiting recompute whose page was closed before it started is run by the next trigger (a visit of the annotations
page, the sweep); a change by a second curator runs the first curator's waiting recompute; ``pipeline annotations
import`` goes through the same coalescing path and runs the recompute in its own process, after waiting for a running
one. Recomputes of a movie never overlap, none fails, and the stored decodings equal one recompute from scratch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from pipeline.jobs.heartbeat import process_identity
from pipeline.jobs.sweep import sweep_storage
from pipeline.temporal.annotations import (
    add_annotation_set,
    recompute_state,
    request_recompute,
    temporal_job,
)
from store.db import session_scope
from store.models import Collection, Job, Movie, User, utcnow
from tests.services import wait_until
from tests.test_annotation_recompute import (
    LABELS_PER_SET,
    _assert_one_after_the_other_and_none_failed,
    _movie_with_time_courses,
    _snapshot,
    _temporal_jobs,
    _wait_for_recomputes,
    celery_web,  # noqa: F401 - the fixture: gunicorn and a Celery worker on PostgreSQL and Redis
    events_tsv,
)

ROOT = Path(__file__).resolve().parents[1]


def _owner(session, movie_id: int) -> User:
    return session.scalar(select(User).join(Collection).where(Collection.movie_id == movie_id))


def _add_and_request(movie_id: int, user_id: int, n: int):
    """Add set ``n`` as ``user_id`` and ask for the recompute, as the page does; the page is then closed (the job
    it was told to start is never started by it). Returns (job id, whether the page was told to start it)."""
    with session_scope() as session:
        user, movie = session.get(User, user_id), session.get(Movie, movie_id)
        add_annotation_set(session, user, movie, f"Set {n}", events_tsv(n), f"set{n}.tsv")
        found = request_recompute(session, user, movie)
        return found.job.id, found.start


def _age(job_id: int, seconds: float = 3600) -> None:
    """Make a waiting job look as if its page had been closed long ago."""
    long_ago = utcnow() - timedelta(seconds=seconds)
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.created = long_ago
        if job.heartbeat is not None:
            job.heartbeat = long_ago


def _assert_same_as_from_scratch(movie_id: int, sets: int) -> None:
    from pipeline.temporal.annotations import decode_collection_in_time

    coalesced = _snapshot(movie_id)
    with session_scope() as session:
        collections = list(session.scalars(select(Collection.id).where(Collection.movie_id == movie_id)))
    for collection_id in collections:
        decode_collection_in_time(collection_id)
    scratch = _snapshot(movie_id)
    assert len(scratch) == 4 * sets * LABELS_PER_SET
    assert coalesced == scratch


def test_a_waiting_recompute_whose_page_was_closed_is_run_by_the_next_visit(data_dir, tmp_path):
    movie_id, _ = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        owner_id = _owner(session, movie_id).id
    job_id, start = _add_and_request(movie_id, owner_id, 1)
    assert start  # the page was told to start it, and was closed before it did
    _age(job_id)
    with session_scope() as session:
        state = recompute_state(session, movie_id)  # the next visit of the annotations page reads the state
    assert state["waiting"] is not None and state["waiting"]["id"] == job_id
    _wait_for_recomputes(movie_id, 120)
    _assert_one_after_the_other_and_none_failed(movie_id)
    assert [j.id for j in _temporal_jobs(movie_id)] == [job_id]
    _assert_same_as_from_scratch(movie_id, 1)


def test_the_sweep_runs_a_waiting_recompute_nobody_started(data_dir, tmp_path):
    movie_id, _ = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        owner_id = _owner(session, movie_id).id
    job_id, _ = _add_and_request(movie_id, owner_id, 1)
    _age(job_id)
    sweep_storage()
    _wait_for_recomputes(movie_id, 120)
    _assert_one_after_the_other_and_none_failed(movie_id)
    _assert_same_as_from_scratch(movie_id, 1)


def test_a_second_curator_runs_the_recompute_the_first_left_waiting(data_dir, tmp_path):
    from accounts.users import create_user

    movie_id, _ = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        owner_id = _owner(session, movie_id).id
        other_id = create_user(session, "bea@example.org", "another good password", first_name="Bea").id
    first, start = _add_and_request(movie_id, owner_id, 1)
    assert start  # the first curator's page closes before starting it
    second, start = _add_and_request(movie_id, other_id, 2)
    assert second == first  # the second change joins the waiting recompute
    _wait_for_recomputes(movie_id, 120)
    _assert_one_after_the_other_and_none_failed(movie_id)
    assert [j.id for j in _temporal_jobs(movie_id)] == [first]
    _assert_same_as_from_scratch(movie_id, 2)


def _cli(data_dir: Path, movie_title: str, path: Path, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    env["INCDB_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "pipeline", "annotations", "import", movie_title, str(path), "--name", name]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_command_line_import_goes_through_one_recompute_job(data_dir, tmp_path):
    movie_id, _ = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        title = session.get(Movie, movie_id).title
    path = tmp_path / "set1.tsv"
    path.write_text(events_tsv(1))
    out, err = _cli(data_dir, title, path, "Set 1").communicate(timeout=300)
    assert "decoded in time" in out, (out, err)
    jobs = _temporal_jobs(movie_id)
    assert len(jobs) == 1 and jobs[0].status == "succeeded", [(j.id, j.status, j.error) for j in jobs]
    _assert_same_as_from_scratch(movie_id, 1)


def test_the_command_line_waits_for_a_running_recompute_then_its_change_is_run(data_dir, tmp_path):
    movie_id, _ = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        owner = _owner(session, movie_id)
        owner_id, title = owner.id, session.get(Movie, movie_id).title
    running, _ = _add_and_request(movie_id, owner_id, 1)
    with session_scope() as session:  # a page's process (this one) runs it
        job = session.get(Job, running)
        job.status, job.runner, job.heartbeat, job.started = "running", process_identity(), utcnow(), utcnow()
    path = tmp_path / "set2.tsv"
    path.write_text(events_tsv(2))
    cli = _cli(data_dir, title, path, "Set 2")
    try:

        def queued_behind() -> bool:
            return len(_temporal_jobs(movie_id)) == 2

        wait_until(queued_behind, 120, "the command's change to wait", interval=0.2)
        temporal_job(running)  # the running recompute ends, and its chain takes the command's
        out, err = cli.communicate(timeout=300)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert f"(job #{running}) is running in another process" in out and "Waiting" in out, out
    assert "decoded in time" in out, out
    _assert_one_after_the_other_and_none_failed(movie_id)
    assert len(_temporal_jobs(movie_id)) == 2
    _assert_same_as_from_scratch(movie_id, 2)


def test_a_curator_sees_the_waiting_recompute_and_starts_it_now(web, curator, tmp_path):
    from tests.conftest import CURATOR_PASSWORD
    from tests.services import Client
    from tests.test_annotation_recompute import AnnotationsPage

    movie_id, slug = _movie_with_time_courses(tmp_path)
    job_id, start = _add_and_request(movie_id, curator, 1)
    assert start  # the page that should start it was closed
    client = Client(flask_app=web.server)
    client.sign_in("cora@example.org", CURATOR_PASSWORD)
    page = AnnotationsPage(client, slug)
    panel = page.recompute_panel()
    assert f"job #{job_id}" in panel and "Nothing runs it yet" in panel and "Start now" in panel, panel

    out = client.callback(
        "..annot-message.children...annot-recompute.children...annot-recompute-poll.disabled..",
        {"annot-recompute-start.n_clicks": 1, "annot-movie.data": slug},
        ["annot-recompute-start.n_clicks"],
    )
    assert f"job #{job_id}" in str(out["annot-message"]["children"]), out
    _wait_for_recomputes(movie_id, 120)
    _assert_one_after_the_other_and_none_failed(movie_id)
    assert [j.id for j in _temporal_jobs(movie_id)] == [job_id]
    assert "up to date" in page.recompute_panel()
    _assert_same_as_from_scratch(movie_id, 1)


def test_on_the_celery_worker_a_visit_enqueues_the_waiting_recompute(celery_web, tmp_path):  # noqa: F811
    from accounts.users import create_user
    from tests.conftest import CURATOR_PASSWORD
    from tests.services import Client
    from tests.test_annotation_recompute import AnnotationsPage

    movie_id, slug = _movie_with_time_courses(tmp_path)
    with session_scope() as session:
        cora = create_user(session, "cora@example.org", CURATOR_PASSWORD, first_name="Cora", last_name="Curator").id
    job_id, start = _add_and_request(movie_id, cora, 1)
    assert start  # the page that should start it was closed
    _age(job_id)
    client = Client(celery_web.url)
    client.sign_in("cora@example.org", CURATOR_PASSWORD)
    page = AnnotationsPage(client, slug)
    page.recompute_panel()  # the next visit: the web process sends the waiting recompute to the workers
    wait_until(lambda: "up to date" in page.recompute_panel(), 180, "the worker to run the recompute", interval=1)
    _assert_one_after_the_other_and_none_failed(movie_id)
    assert [j.id for j in _temporal_jobs(movie_id)] == [job_id]
    _assert_same_as_from_scratch(movie_id, 1)
