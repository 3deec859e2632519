"""The production shape: storage on a local S3-compatible server, PostgreSQL, Redis, gunicorn and TWO Celery
worker processes (each with its own data directory, as on two machines). Two curators upload and start processing
at the same moment; each job runs once, on a worker; both collections finish; the merged maps hold both."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.decoding.reference import ensure_builtin_reference
from pipeline.decoding.termmaps import rebuild_term_maps
from store.db import session_scope
from store.models import Collection, Component, Job, Term, TermMap
from store.storage import get_storage
from tests.conftest import use_environment
from tests.services import (
    Client,
    flush_redis_db,
    redis_available,
    running,
    service_env,
    start_celery,
    start_gunicorn,
)
from tests.test_processing import _clone_reference_into, _curator, _files, _prepare


@pytest.fixture
def s3_env():
    from tests.conftest import need_service
    from tests.s3server import S3Server

    try:
        server = S3Server().start()
    except (RuntimeError, OSError) as exc:
        need_service(False, f"moto S3 server ({exc})")
    server.make_bucket("incdb-prod")
    yield server
    server.stop()


def test_two_workers_two_collections_on_object_storage(tmp_path, reference_template, postgres_url, s3_env, monkeypatch):
    import shutil

    from tests.conftest import need_service

    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    for key, value in s3_env.environment().items():
        monkeypatch.setenv(key, value)
    storage_url = "s3://incdb-prod/site"
    web_dir = tmp_path / "web"
    shutil.copytree(reference_template, web_dir)
    _clone_reference_into(web_dir, postgres_url)
    # Move the reference's term maps into the bucket, as section 9 of docs/deploy.md does; no local files remain.
    use_environment(web_dir, postgres_url, INCDB_STORAGE_URL=storage_url)
    storage = get_storage()
    for path in (web_dir / "files").rglob("*"):
        if path.is_file():
            storage.put_file(path.relative_to(web_dir / "files").as_posix(), path)
    shutil.rmtree(web_dir / "files")
    shutil.rmtree(web_dir / "cache", ignore_errors=True)

    broker = flush_redis_db(8)
    extra = {"INCDB_STORAGE_URL": storage_url, **s3_env.environment()}
    workers = [
        start_celery(service_env(tmp_path / f"worker{i}", postgres_url, broker, **extra), tmp_path / f"worker{i}.log")
        for i in (1, 2)
    ]
    with running(*workers):
        web = start_gunicorn(service_env(web_dir, postgres_url, broker, **extra), tmp_path / "web.log")
        with running(web):
            prepared = []
            for n, movie_terms_seed in enumerate((0, 1)):
                email = f"prod{n}@example.org"
                _curator(email)
                client = Client(web.url)
                slug, cid = _prepare(
                    client,
                    email,
                    f"Production run {n}",
                    "Shared Movie",
                    _files(tmp_path / f"in{n}", seed=movie_terms_seed),
                )
                prepared.append((client, slug, cid))
            results: dict[int, object] = {}

            def process(client: Client, cid: int) -> None:
                nonce = uuid.uuid4().hex
                request = client.start_processing(cid, nonce)
                try:
                    results[cid] = client.run_processing(request, nonce, timeout=300)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    results[cid] = exc

            threads = [threading.Thread(target=process, args=(c, cid)) for c, _, cid in prepared]
            for t in threads:
                t.start()
            for t in threads:
                t.join(400)
            for _, _, cid in prepared:
                assert "Processing finished" in str(results[cid]), results[cid]
            logs = [w.text() for w in workers]

    use_environment(web_dir, postgres_url, INCDB_STORAGE_URL=storage_url)
    with session_scope() as session:
        jobs = [session.scalar(select(Job).where(Job.collection_id == cid)) for _, _, cid in prepared]
        assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 1), ("succeeded", 1)]
        assert [session.get(Collection, cid).status for _, _, cid in prepared] == ["ready", "ready"]
        # Each job ran exactly once, and the two workers each took one.
        ran_on = []
        for job in jobs:
            pattern = re.compile(rf"job {job.id} \(ingest, collection {job.collection_id}\) runs in process")
            counts = [len(pattern.findall(log)) for log in logs]
            assert sum(counts) == 1, counts
            ran_on.append(counts.index(1))
        assert sorted(ran_on) == [0, 1], ran_on
        # Merged maps: the all-movies and the movie map of every term hold the components of both collections.
        maps = session.scalars(select(TermMap)).all()
        assert maps and all(storage.exists(tm.storage_key) for tm in maps)
        assert rebuild_term_maps(session, ensure_builtin_reference(session)) == 0  # nothing stale or missing
        by_term: dict[str, set[int]] = {}
        for comp in session.scalars(select(Component)):
            by_term.setdefault(comp.best_term.slug, set()).add(comp.collection_id)
        shared = [t for t, cols in by_term.items() if len(cols) == 2]
        assert shared, by_term  # the two data sets share at least one term
        for slug in shared:
            tm = session.scalar(select(TermMap).join(Term).where(Term.slug == slug, TermMap.movie_id.is_not(None)))
            n = sum(1 for c in session.scalars(select(Component)) if c.best_term.slug == slug)
            assert tm.n_components == n
    assert not list(Path(web_dir).rglob("*.nii.gz"))  # every map went to object storage
