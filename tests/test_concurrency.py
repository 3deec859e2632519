"""Two processes ingesting two collections of the same movie at once (SQLite and PostgreSQL): both finish and
every merged map holds the components of both."""

from __future__ import annotations

import multiprocessing
import os
import shutil

import pytest
from sqlalchemy import func, select

from pipeline.decoding.reference import ensure_builtin_reference
from pipeline.decoding.termmaps import rebuild_term_maps
from store.db import session_scope, upgrade_database
from store.models import Component, Job, Term, TermMap
from tests.conftest import use_environment
from tests.test_faults import assert_consistent, new_ingest_job


def _run_job(env: dict, job_id: int, start) -> None:
    os.environ.update(env)
    from pipeline.curation.ingest import ingest

    start.wait(60)
    ingest(job_id)


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, tmp_path, reference_template):
    data = tmp_path / "data"
    if request.param == "sqlite":
        shutil.copytree(reference_template, data)
        use_environment(data)
    else:
        url = request.getfixturevalue("postgres_url")
        data.mkdir()
        use_environment(data, database_url=url)
        upgrade_database()
        with session_scope() as s:
            ensure_builtin_reference(s)
    return data


def test_two_jobs_at_once_merge_both(site):
    jobs = [
        new_ingest_job(site, terms=("visual", "auditory", "emotion"), seed=10),
        new_ingest_job(site, terms=("visual", "auditory", "memory"), seed=11),
    ]
    env = {k: v for k, v in os.environ.items() if k.startswith("INCDB_")}
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_run_job, args=(env, job_id, start)) for job_id in jobs]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    with session_scope() as s:
        assert [s.get(Job, j).status for j in jobs] == ["succeeded", "succeeded"]
        assert s.scalar(select(func.count(Component.id))) == 6
        for slug, expected in (("visual", 2), ("auditory", 2), ("emotion", 1), ("memory", 1)):
            maps = s.scalars(select(TermMap).join(Term).where(Term.slug == slug)).all()
            assert {tm.n_components for tm in maps} == {expected}, slug  # movie map and all-movies map
        assert rebuild_term_maps(s, ensure_builtin_reference(s)) == 0  # nothing was left stale
    assert_consistent(site)
