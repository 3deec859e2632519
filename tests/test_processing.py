"""Processing through Dash background callbacks, end to end, with real processes:

- gunicorn + a Celery worker (prefork) on Redis + PostgreSQL: sign in, create a collection, confirm the license,
  upload a 4D NIfTI and a zip over HTTP, start processing through ``/_dash-update-component`` exactly as the
  browser does, and follow the background callback's progress; the job runs in the worker's child process and the
  components show up on the Movie and Component pages and in the API with their decodings.
- the embedded default (``python app.py``: SQLite, diskcache, no broker): the same flow.
- the original INcDb bug: a worker started in another working directory, with the same (relative!) environment,
  reads and writes the web process's SQLite database.
- a worker child killed with SIGKILL in the middle of a job: the message is redelivered, the job finishes, and
  rows and files equal those of an undisturbed run; no half-written component is ever visible.
- cancel: the job row says cancelled and the collection is usable again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from accounts.users import create_user
from store.db import dispose_engine, session_scope, upgrade_database
from store.models import (
    Collection,
    Component,
    Decoding,
    Job,
    ReferenceSet,
    Term,
    TermMap,
    Upload,
)
from tests.conftest import POSTGRES_ADMIN_URL, need_service, port_open, use_environment
from tests.services import (
    Client,
    component_maps,
    flush_redis_db,
    redis_available,
    running,
    service_env,
    start_celery,
    start_embedded,
    start_gunicorn,
    wait_until,
    worker_children,
    write_nifti,
    zip_of,
)

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent


# --- fixtures -------------------------------------------------------------------------------------------------


def _copy_template(reference_template: Path, dest: Path) -> Path:
    shutil.copytree(reference_template, dest)
    return dest


def _clone_reference_into(data_dir: Path, database_url: str) -> None:
    """The template's built-in reference set (rows) in a fresh database; its files are in the copied data dir."""
    use_environment(data_dir)
    with session_scope() as session:
        ref = session.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        ref_row = {c: getattr(ref, c) for c in ("name", "description", "source", "voxel_count", "active", "matrix_key")}
        term_rows = [
            {"name": t.name, "slug": t.slug, "column": t.column, "storage_key": t.storage_key}
            for t in session.scalars(select(Term).where(Term.reference_set_id == ref.id))
        ]
        ref_id = ref.id
    dispose_engine()
    use_environment(data_dir, database_url)
    upgrade_database()
    with session_scope() as session:
        new = ReferenceSet(**ref_row)
        session.add(new)
        session.flush()
        assert new.id == ref_id  # the matrix file and term keys are named after the id
        session.add_all(Term(reference_set_id=new.id, **row) for row in term_rows)


@pytest.fixture(scope="module")
def pg_database():
    need_service(port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"incdb_proc_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    dispose_engine()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory, reference_template, pg_database):
    """PostgreSQL + Redis + a Celery worker + gunicorn, shared by the tests of this module that need them."""
    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    base = tmp_path_factory.mktemp("celery-stack")
    data_dir = _copy_template(reference_template, base / "data")
    _clone_reference_into(data_dir, pg_database)
    broker = flush_redis_db(9)
    env = service_env(data_dir, pg_database, broker)
    worker = start_celery(env, base / "worker.log")
    with running(worker):
        web = start_gunicorn(env, base / "gunicorn.log")
        with running(web):
            yield {"data_dir": data_dir, "db": pg_database, "web": web, "worker": worker, "base": base, "env": env}
    flush_redis_db(9)


def _use(stack) -> None:
    use_environment(stack["data_dir"], stack.get("db"))


def _curator(email: str) -> int:
    with session_scope() as session:
        return create_user(session, email, PASSWORD, first_name="Test", last_name="Curator").id


def _files(directory: Path, n_4d: int = 4, voxel_mm: int = 2, seed: int = 0) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    maps = component_maps(n_4d + 1, seed=seed)
    four_d = write_nifti(directory / "melodic_IC.nii.gz", maps[:n_4d], voxel_mm=voxel_mm)
    single = write_nifti(directory / "extra.nii.gz", maps[n_4d])
    archive = zip_of(directory / "more_maps.zip", {"sub-01/extra.nii.gz": single})
    return [four_d, archive]


def _prepare(client: Client, email: str, name: str, movie: str, files: list[Path]) -> tuple[str, int]:
    """Sign in, create a collection, confirm the license and upload: everything over HTTP."""
    client.sign_in(email, PASSWORD)
    slug = client.create_collection(name, movie, description="made by a test")
    with session_scope() as session:
        collection_id = session.scalar(select(Collection.id).where(Collection.slug == slug))
    client.open_page(f"/contribute/{slug}")
    client.confirm_license(collection_id)
    for path in files:
        r = client.upload(slug, path)
        assert r.status_code == 200, r.text
    return slug, collection_id


def _process(client: Client, collection_id: int, timeout: float = 180) -> tuple[dict, list, dict]:
    nonce = uuid.uuid4().hex
    request = client.start_processing(collection_id, nonce)
    progress: list = []
    result = client.run_processing(request, nonce, on_progress=progress.append, timeout=timeout)
    return request, progress, result


def _job(collection_id: int) -> Job:
    with session_scope() as session:
        return session.scalar(select(Job).where(Job.collection_id == collection_id).order_by(Job.id.desc()))


def _check_published(client: Client, slug: str, movie_slug: str, n_components: int) -> None:
    """The components are on the Movie and Component pages and in the API, with their decodings."""
    movie = client.get(f"/api/movies/{movie_slug}").json()
    assert movie["n_components"] == n_components and movie["terms"]
    comps = client.get(f"/api/components?collection={slug}&per_page=100").json()
    assert comps["total"] == n_components
    first = comps["items"][0]
    detail = client.get(f"/api/components/{first['uuid']}").json()
    assert detail["best_term"] and len(detail["decodings"]) >= 10
    assert detail["decodings"][0]["term"] == detail["best_term"]
    assert client.get(f"/files/components/{first['uuid']}.nii.gz").status_code == 200
    page = client.page_layout(f"/components/{first['uuid']}")
    assert detail["best_term"] in page and first["source_file"] in page
    assert slug in client.page_layout(f"/movies/{movie_slug}") or "made by a test" in client.page_layout(
        f"/movies/{movie_slug}"
    )


# --- gunicorn + Celery + PostgreSQL -----------------------------------------------------------------------------


def test_upload_and_process_on_the_celery_worker(celery_stack, tmp_path):
    _use(celery_stack)
    _curator("cora@example.org")
    client = Client(celery_stack["web"].url)
    slug, cid = _prepare(client, "cora@example.org", "Celery run", "Forrest Gump", _files(tmp_path / "in"))
    request, progress, result = _process(client, cid)
    assert "Processing finished" in json.dumps(result), result
    assert progress, "the background callback reported no progress"
    job = _job(cid)
    assert (job.status, job.progress_done, job.progress_total, job.attempts) == ("succeeded", 5, 5, 1)
    assert job.token == request["token"]
    log = celery_stack["worker"].text()
    line = f"job {job.id} (ingest, collection {cid}) runs in process "
    assert line in log, log[-3000:]
    pid = int(log.split(line, 1)[1].split()[0])
    assert pid in worker_children(celery_stack["worker"])  # a prefork child of the worker, not a web process
    assert pid not in [celery_stack["web"].pid] + [c.pid for c in psutil.Process(celery_stack["web"].pid).children()]
    with session_scope() as session:
        collection = session.get(Collection, cid)
        assert collection.status == "ready"
        movie_slug = collection.movie.slug
    _check_published(client, slug, movie_slug, 5)
    # My collections shows the result after the fact (from the Job row)
    mine = client.page_layout("/contribute")
    assert "Celery run" in mine and "5 component(s) decoded" in mine


def test_chunked_upload_is_capped_while_streaming(celery_stack, tmp_path):
    """No Content-Length: the endpoint counts while it reads and stops at the limit."""
    import requests

    _use(celery_stack)
    _curator("chunky@example.org")
    client = Client(celery_stack["web"].url)
    client.sign_in("chunky@example.org", PASSWORD)
    slug = client.create_collection("Chunked", "Chunks")
    with session_scope() as session:
        cid = session.scalar(select(Collection.id).where(Collection.slug == slug))
    client.open_page(f"/contribute/{slug}")
    client.confirm_license(cid)
    limit = 2 * 1024**3

    def body():
        chunk = b"\0" * (4 * 1024 * 1024)
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    started = time.monotonic()
    try:
        r = client._session.post(
            f"{client.base}/upload/{slug}?name=huge.nii",
            data=body(),
            headers={**client.csrf_headers(), "Content-Type": "application/octet-stream"},
            timeout=120,
        )
        status, text = r.status_code, r.text
    except requests.ConnectionError:  # the server may close the connection once it refused the body
        status, text = 413, "connection closed by the server"
    assert status == 413, text
    assert time.monotonic() - started < 100
    with session_scope() as session:
        assert session.scalar(select(Collection).where(Collection.id == cid)).uploads == []
    assert not any((celery_stack["data_dir"] / "tmp" / "uploads").iterdir())


def _snapshot(collection_id: int) -> dict:
    """Rows and files of a collection, by source file and volume (independent of ids, uuids and keys)."""
    from store.storage import get_storage

    storage = get_storage()

    def digest(key: str) -> str:
        return hashlib.sha256(storage.read_bytes(key)).hexdigest()

    with session_scope() as session:
        comps = session.scalars(select(Component).where(Component.collection_id == collection_id)).all()
        out = {}
        for c in comps:
            decodings = session.execute(
                select(Term.name, Decoding.rank, Decoding.r)
                .join(Term)
                .where(Decoding.component_id == c.id)
                .order_by(Decoding.rank)
            ).all()
            out[(c.source_file, c.volume_index)] = (
                c.best_term.name,
                round(c.best_r, 6),
                tuple(c.qc_warnings or []),
                digest(c.storage_key),
                digest(c.decodings_key),
                tuple((t, k, round(r, 6)) for t, k, r in decodings),
            )
        collection = session.get(Collection, collection_id)
        maps = {
            session.get(Term, tm.term_id).name: (tm.n_components, digest(tm.storage_key))
            for tm in session.scalars(select(TermMap).where(TermMap.movie_id == collection.movie_id))
        }
        return {"components": out, "term_maps": maps}


def test_sigkill_of_the_worker_child_redelivers_and_ends_like_an_undisturbed_run(celery_stack, tmp_path):
    _use(celery_stack)
    _curator("kill@example.org")
    files = _files(tmp_path / "in", n_4d=24, voxel_mm=3, seed=5)
    client = Client(celery_stack["web"].url)
    _, cid = _prepare(client, "kill@example.org", "Killed run", "Killed movie", files)
    worker = celery_stack["worker"]
    nonce = uuid.uuid4().hex
    request = client.start_processing(cid, nonce)

    import threading

    outcome: dict = {}

    def browser():
        try:
            outcome["result"] = client.run_processing(request, nonce, timeout=240)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    polling = threading.Thread(target=browser, daemon=True)
    polling.start()

    def mid_job():
        job = _job(cid)
        return job.status == "running" and 1 <= job.progress_done < job.progress_total

    wait_until(mid_job, 120, "the job to be half way", interval=0.05)
    victims = worker_children(worker)
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    # nothing half-written: components appear all at once, when the job stores them
    seen = set()
    while polling.is_alive():
        with session_scope() as session:
            seen.add(session.scalar(select(sa.func.count(Component.id)).where(Component.collection_id == cid)))
        time.sleep(0.05)
    polling.join()
    assert "error" not in outcome, outcome.get("error")
    assert "Processing finished" in json.dumps(outcome["result"]), outcome["result"]
    assert seen <= {0, 25}, seen
    job = _job(cid)
    assert (job.status, job.attempts, job.progress_done) == ("succeeded", 2, 25)
    assert victims[0] not in worker_children(worker)  # the pool replaced the child

    # the same files, processed undisturbed in this process, for another movie
    _curator("calm@example.org")
    calm = Client(celery_stack["web"].url)
    _, calm_id = _prepare(calm, "calm@example.org", "Calm run", "Calm movie", files)
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import run_job

    with session_scope() as session:
        calm_job = create_job(session, "ingest", calm_id).id
    run_job(calm_job)
    killed, undisturbed = _snapshot(cid), _snapshot(calm_id)
    assert len(killed["components"]) == 25
    assert killed == undisturbed
    # every component file there is belongs to a row, and reads as a map (or is the map's thumbnail)
    from pipeline.maps.files import load_map
    from store.artifacts import thumbnail_key
    from store.storage import get_storage

    with session_scope() as session:
        keys = set(session.scalars(select(Component.storage_key)))
    stored = {
        f"components/{p.name}"
        for p in (celery_stack["data_dir"] / "files" / "components").iterdir()
        if not p.name.startswith(".")
    }
    assert stored == keys | {thumbnail_key(k) for k in keys}
    for key in keys:
        assert load_map(key).shape == (91, 109, 91)
    assert get_storage()


def test_cancel_marks_the_job_and_frees_the_collection(celery_stack, tmp_path):
    _use(celery_stack)
    _curator("cancel@example.org")
    client = Client(celery_stack["web"].url)
    _, cid = _prepare(
        client,
        "cancel@example.org",
        "Cancelled run",
        "Cancel movie",
        _files(tmp_path / "in", n_4d=24, voxel_mm=3, seed=7),
    )
    nonce = uuid.uuid4().hex
    request = client.start_processing(cid, nonce)
    body = client._body(
        "proc-result.children", {"proc-request.data": request, "proc-nonce.data": nonce}, ["proc-request.data"]
    )
    handles = client.post(client._url(), json_body=body).json()
    wait_until(lambda: _job(cid).status == "running", 60, "the job to start", interval=0.05)
    # what the Cancel button sends: Dash's own cancel (kills the task) and ours (marks the Job)
    out = client.callback(
        "proc-cancel-message.children",
        {"proc-cancel.n_clicks": 1, "proc-request.data": request},
        ["proc-cancel.n_clicks"],
    )
    assert "Cancelled" in json.dumps(out)
    client.post(
        client._url(cancelJob=handles["job"]),
        json_body=client._body("proc-cancel.id", {"proc-cancel.n_clicks": 1}, ["proc-cancel.n_clicks"]),
    )
    job = _job(cid)
    assert job.status == "cancelled"
    with session_scope() as session:
        assert session.get(Collection, cid).status == "empty"
    time.sleep(2)
    assert _job(cid).status == "cancelled"  # a run that was still finishing did not overwrite it
    # the collection can be processed again
    _, _, result = _process(client, cid)
    assert "Processing finished" in json.dumps(result)


# --- the original bug: another working directory, the same relative environment, SQLite ---------------------


def test_worker_in_another_directory_shares_the_sqlite_database(tmp_path, reference_template):
    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    data_dir = _copy_template(reference_template, tmp_path / "data")
    relative = os.path.relpath(data_dir, ROOT)  # relative, as in the original INcDb's configuration
    assert not Path(relative).is_absolute()
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    broker = flush_redis_db(10)
    env = service_env(relative, None, broker)
    use_environment(data_dir)
    _curator("sqlite@example.org")
    worker = start_celery(env, tmp_path / "worker.log", cwd=elsewhere)
    web = start_gunicorn(env, tmp_path / "gunicorn.log", cwd=ROOT)
    with running(worker, web):
        assert not (elsewhere / relative).exists() or (elsewhere / relative).resolve() == data_dir.resolve()
        client = Client(web.url)
        slug, cid = _prepare(client, "sqlite@example.org", "SQLite run", "Sherlock", _files(tmp_path / "in", 2))
        _, _, result = _process(client, cid)
        assert "Processing finished" in json.dumps(result), result
        job = _job(cid)  # written by the worker, read here and by the web process
        assert (job.status, job.progress_done) == ("succeeded", 3)
        assert f"job {job.id} (ingest, collection {cid}) runs in process" in worker.text()
        assert "no such table" not in worker.text()
        assert client.get(f"/api/components?collection={slug}").json()["total"] == 3
    flush_redis_db(10)


# --- the embedded default -------------------------------------------------------------------------------------


def test_embedded_default_processes_with_diskcache(tmp_path, reference_template):
    data_dir = _copy_template(reference_template, tmp_path / "data")
    env = service_env(data_dir)
    assert "INCDB_BROKER_URL" not in env
    use_environment(data_dir)
    _curator("embedded@example.org")
    web = start_embedded(env, tmp_path / "app.log")
    with running(web):
        client = Client(web.url)
        slug, cid = _prepare(
            client, "embedded@example.org", "Embedded run", "Partly Cloudy", _files(tmp_path / "in", 3)
        )
        _, _, result = _process(client, cid)
        assert "Processing finished" in json.dumps(result), result
        job = _job(cid)
        assert (job.status, job.progress_done) == ("succeeded", 4)
        line = f"job {job.id} (ingest, collection {cid}) runs in process "
        assert line in web.text()
        assert int(web.text().split(line, 1)[1].split()[0]) != web.pid  # a forked job process
        with session_scope() as session:
            movie_slug = session.get(Collection, cid).movie.slug
        _check_published(client, slug, movie_slug, 4)


# --- in this process (diskcache): errors, restarts, re-decoding, deletion ---------------------------------------


def _in_process_collection(web, tmp_path, email: str, maps, visibility: str = "public") -> tuple[Client, str, int]:
    _curator(email)
    client = Client(flask_app=web.server)
    paths = [write_nifti(tmp_path / f"{email.split('@')[0]}_{i}.nii.gz", m) for i, m in enumerate(maps)]
    slug, cid = _prepare(client, email, f"Collection of {email}", f"Movie of {email}", paths)
    if visibility != "public":
        with session_scope() as session:
            session.get(Collection, cid).visibility = visibility
    return client, slug, cid


def test_errors_are_recorded_on_the_job_and_shown(web, tmp_path):
    import numpy as np

    flat = np.full((1, 91, 109, 91), 3.0, dtype=np.float32)  # zero variance: every map is rejected
    client, _, cid = _in_process_collection(web, tmp_path, "flat@example.org", flat)
    _, _, result = _process(client, cid)
    text = json.dumps(result)
    assert "Processing failed" in text and "variance" in text.lower(), text
    job = _job(cid)
    assert job.status == "failed" and job.error
    page = client.callback(
        "..coll-status.children...coll-uploads.children...coll-components.children"
        "...coll-poll.interval...coll-process.disabled...coll-choose.disabled..",
        {"coll-id.data": cid, "coll-poll.n_intervals": 1},
        ["coll-poll.n_intervals"],
    )
    assert "coll-job-errors" in json.dumps(page) and job.error.splitlines()[0][:40] in json.dumps(page)
    # an unexpected failure (here: no active reference set) is caught into the Job row as well
    with session_scope() as session:
        session.execute(sa.update(ReferenceSet).values(active=False))
    _, _, result = _process(client, cid)
    assert "no active reference set" in json.dumps(result)
    assert _job(cid).status == "failed" and "no active reference set" in _job(cid).error
    with session_scope() as session:
        assert session.get(Collection, cid).status == "failed"


def test_reprocess_link_starts_processing_on_page_load(web, tmp_path):
    client, slug, cid = _in_process_collection(web, tmp_path, "again@example.org", component_maps(1, seed=2))
    assert '"coll-autostart"' in client.page_layout(f"/contribute/{slug}", "?process=1")
    client.open_page(f"/contribute/{slug}?process=1")
    out = client.callback(
        "..proc-request.data...coll-start-message.children..",
        {"coll-id.data": cid, "proc-nonce.data": "n", "coll-autostart.data": True},
        [],
    )
    token = out["proc-request"]["data"]["token"]
    assert _job(cid).token == token and _job(cid).status == "queued"
    # a second start finds the queued job and reuses it instead of doubling it
    again = client.callback(
        "..proc-request.data...coll-start-message.children..",
        {"coll-id.data": cid, "proc-nonce.data": "m", "coll-process.n_clicks": 1},
        ["coll-process.n_clicks"],
    )
    assert again["proc-request"]["data"]["token"] == token
    # without ?process=1 the page load starts nothing
    assert (
        client.callback(
            "..proc-request.data...coll-start-message.children..",
            {"coll-id.data": cid, "proc-nonce.data": "n", "coll-autostart.data": False},
            [],
        )
        is None
    )


def test_admin_switches_the_reference_set_and_everything_is_redecoded(web, tmp_path):
    from pipeline.decoding.reference import create_reference_set
    from tests.services import term_maps

    client, _, cid = _in_process_collection(web, tmp_path, "owner@example.org", component_maps(2, seed=4))
    _process(client, cid)
    with session_scope() as session:
        other = create_reference_set(session, "three terms", "nifti-folder", list(term_maps().items())[:3])
        other_id, names = other.id, {t.name for t in other.terms}
        create_user(session, "boss@example.org", PASSWORD, role="admin")
    admin = Client(flask_app=web.server)
    admin.sign_in("boss@example.org", PASSWORD)
    admin.open_page("/admin")
    ident = {"type": "admin-ref", "rid": other_id}
    out = admin.callback(
        "..adminjob-request.data...admin-ref-message.children...admin-refresh.data..",
        {"adminjob-nonce.data": "nonce"},
        [Client.pattern_prop(ident)],
        patterns={"admin-ref": [(ident, 1)]},
    )
    request = out["adminjob-request"]["data"]
    result = admin.background(
        "adminjob-result.children",
        {"adminjob-request.data": request, "adminjob-nonce.data": "nonce"},
        ["adminjob-request.data"],
    )
    assert "Re-decoding finished" in json.dumps(result), result
    with session_scope() as session:
        assert session.get(ReferenceSet, other_id).active
        comps = session.scalars(select(Component).where(Component.collection_id == cid)).all()
        assert len(comps) == 2 and all(c.best_term.name in names for c in comps)
        assert {tm.reference_set_id for tm in session.scalars(select(TermMap))} == {other_id}


def test_delete_removes_rows_files_and_merged_maps(web, tmp_path, data_dir):
    from store.storage import get_storage

    maps = component_maps(3, seed=9)
    client, slug, cid = _in_process_collection(web, tmp_path, "del@example.org", maps)
    _process(client, cid)
    keep_client, _, keep_id = _in_process_collection(web, tmp_path, "keep@example.org", maps[:1])
    _process(keep_client, keep_id)
    with session_scope() as session:
        comps = session.scalars(select(Component).where(Component.collection_id == cid)).all()
        keys = [k for c in comps for k in (c.storage_key, c.decodings_key)]
        uploads = list(session.scalars(select(Upload.storage_key).where(Upload.collection_id == cid)))
        movie_id = session.get(Collection, cid).movie_id
        assert session.scalar(select(sa.func.count(TermMap.id)).where(TermMap.movie_id == movie_id))
        before = {
            tm.term_id: tm.n_components for tm in session.scalars(select(TermMap).where(TermMap.movie_id.is_(None)))
        }
    client.open_page(f"/contribute/{slug}?delete=1")
    assert '"is_open": true' in client.page_layout(f"/contribute/{slug}", "?delete=1")
    out = client.callback(
        "..coll-delete-message.children...coll-go.href..",
        {"coll-delete-confirm.n_clicks": 1, "coll-id.data": cid},
        ["coll-delete-confirm.n_clicks"],
    )
    assert out["coll-go"]["href"] == "/contribute?deleted=1"
    storage = get_storage()
    with session_scope() as session:
        assert session.get(Collection, cid) is None
        assert not session.scalars(select(Component).where(Component.collection_id == cid)).all()
        assert not session.scalars(select(Job).where(Job.collection_id == cid)).all()
        assert not session.scalar(select(sa.func.count(TermMap.id)).where(TermMap.movie_id == movie_id))
        after = {
            tm.term_id: tm.n_components for tm in session.scalars(select(TermMap).where(TermMap.movie_id.is_(None)))
        }
        assert sum(after.values()) == sum(before.values()) - 3  # the across-movies maps lost exactly these
        assert session.get(Collection, keep_id) is not None
    assert not any(storage.exists(k) for k in keys + uploads)
    assert not (data_dir / "files" / "uploads" / str(cid)).exists()


def test_visibility_change_rebuilds_the_merged_maps(web, tmp_path):
    from pipeline.curation.catalog import update_collection

    client, _, cid = _in_process_collection(web, tmp_path, "vis@example.org", component_maps(2, seed=6))
    _process(client, cid)
    with session_scope() as session:
        movie_id = session.get(Collection, cid).movie_id
        assert session.scalar(select(sa.func.count(TermMap.id)).where(TermMap.movie_id == movie_id))
        update_collection(session, session.get(Collection, cid), visibility="private")
    with session_scope() as session:
        assert not session.scalar(select(sa.func.count(TermMap.id)).where(TermMap.movie_id == movie_id))
        update_collection(session, session.get(Collection, cid), visibility="public")
    with session_scope() as session:
        assert session.scalar(select(sa.func.sum(TermMap.n_components)).where(TermMap.movie_id == movie_id)) == 2
