"""Derived counts (store.stats, DESIGN section 16): after every kind of change they equal a recomputation from the
base tables, on SQLite and PostgreSQL; a private collection's numbers reach only its owner and admins; the CLI's
``stats check`` finds a wrong number and ``stats rebuild`` repairs it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text, update

from accounts.users import create_user
from pipeline.__main__ import main as cli
from pipeline.curation.catalog import (
    add_upload,
    create_collection,
    delete_collection,
    get_or_create_movie,
    update_collection,
)
from pipeline.curation.ingest import ingest
from pipeline.decoding.reference import create_reference_set, ensure_builtin_reference
from pipeline.jobs.lifecycle import create_job
from pipeline.jobs.tasks import redecode
from store import queries, stats
from store.db import session_scope, upgrade_database
from store.models import Collection, Component, TermStats, User
from tests.conftest import use_environment
from tests.niftis import gaussian_blob, mni_affine, smooth_random, write

PEAKS = [(-40.0, -20.0, 50.0), (30.0, 10.0, -10.0), (0.0, -80.0, 5.0), (44.0, -60.0, -10.0)]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, reference_template) -> str:
    if request.param == "sqlite":
        request.getfixturevalue("data_dir")
    else:
        use_environment(tmp_path / "data", database_url=request.getfixturevalue("postgres_url"))
        upgrade_database()
        with session_scope() as session:
            ensure_builtin_reference(session)
    return request.param


def assert_consistent() -> None:
    with session_scope() as session:
        assert stats.check(session) == []


def blob_file(path: Path, peaks) -> Path:
    affine, shape = mni_affine(3.0)
    return write(path, np.stack([gaussian_blob(affine, shape, p) for p in peaks], axis=-1), affine)


def ingest_collection(tmp_path: Path, owner: str, movie: str, name: str, visibility: str, peaks) -> int:
    with session_scope() as session:
        user = session.scalar(select(User).where(User.email == owner))
        collection = create_collection(session, user, get_or_create_movie(session, movie), name, visibility=visibility)
        path = blob_file(tmp_path / f"{collection.slug}.nii.gz", peaks)
        add_upload(session, collection, path, path.name)
        job_id = create_job(session, "ingest", collection.id, user.id).id
        collection_id = collection.id
    ingest(job_id)
    return collection_id


def users() -> dict[str, User]:
    with session_scope() as session:
        out = {u.email.split("@")[0]: u for u in session.scalars(select(User))}
        for u in out.values():
            session.expunge(u)
    out["anonymous"] = None
    return out


def direct_counts(who: User | None) -> dict[str, int]:
    """What ``who`` may see, counted with plain SQL over the base tables."""
    if who is None:
        where = "col.visibility = 'public'"
    elif who.role == "admin":
        where = "1 = 1"
    else:
        where = f"(col.visibility = 'public' OR col.owner_id = {int(who.id)})"
    with session_scope() as session:
        one = lambda sql: session.execute(text(sql)).scalar()  # noqa: E731
        return {
            "movies": one(f"SELECT COUNT(DISTINCT col.movie_id) FROM collections col WHERE {where}"),
            "collections": one(f"SELECT COUNT(*) FROM collections col WHERE {where}"),
            "components": one(
                f"SELECT COUNT(*) FROM components c JOIN collections col ON col.id = c.collection_id WHERE {where}"
            ),
            "per_term": dict(
                session.execute(
                    text(
                        "SELECT t.slug, COUNT(*) FROM components c JOIN collections col ON col.id = c.collection_id "
                        "JOIN terms t ON t.id = c.best_term_id JOIN reference_sets r ON r.id = t.reference_set_id "
                        f"WHERE r.active AND {where} GROUP BY t.slug"
                    )
                ).all()
            ),
        }


def assert_everyone_sees_their_own_numbers() -> None:
    for name, who in users().items():
        want = direct_counts(who)
        with session_scope() as session:
            got = queries.counts(session, who)
            terms = queries.list_terms(session, who, per_page=100)
            heat = queries.heatmap(session, who, terms=100, movies=100)
        assert {k: got[k] for k in ("movies", "collections", "components")} == {
            k: want[k] for k in ("movies", "collections", "components")
        }, name
        assert {t["slug"]: t["n_components"] for t in terms.items if t["n_components"]} == want["per_term"], name
        assert sum(map(sum, heat["count"])) == want["components"], name


def test_derived_counts_follow_every_kind_of_change(database, tmp_path):
    with session_scope() as session:
        create_user(session, "ann@example.org", "a long enough password")
        create_user(session, "bob@example.org", "a long enough password")
        create_user(session, "root@example.org", "a long enough password", role="admin")
    assert_consistent()

    public = ingest_collection(tmp_path, "ann@example.org", "Shared Movie", "Ann public", "public", PEAKS)
    assert_consistent()
    private = ingest_collection(tmp_path, "ann@example.org", "Secret Movie", "Ann private", "private", PEAKS[:3])
    assert_consistent()
    ingest_collection(tmp_path, "bob@example.org", "Shared Movie", "Bob public", "public", PEAKS[1:])
    assert_consistent()
    assert_everyone_sees_their_own_numbers()
    with session_scope() as session:  # the stored public numbers never include the private collection
        assert queries.counts(session, None)["movies"] == 1
        assert queries.counts(session, users()["bob"])["components"] == len(PEAKS) + len(PEAKS[1:])
        assert queries.counts(session, users()["ann"])["components"] == 2 * len(PEAKS) - 1 + 3

    # visibility, both ways, and moving a collection to another movie
    for visibility in ("public", "private"):
        with session_scope() as session:
            update_collection(session, session.get(Collection, private), visibility=visibility)
        assert_consistent()
        assert_everyone_sees_their_own_numbers()
    with session_scope() as session:
        update_collection(session, session.get(Collection, private), movie=get_or_create_movie(session, "Shared Movie"))
    assert_consistent()
    assert_everyone_sees_their_own_numbers()

    # re-decoding against a new reference (a switch), then against the old one again
    rng = np.random.default_rng(7)
    with session_scope() as session:
        admin = session.scalar(select(User).where(User.email == "root@example.org"))
        create_reference_set(
            session, "Switched", "nifti-folder", iter([(f"t{i}", smooth_random(rng)) for i in range(3)]), activate=True
        )
        job_id = create_job(session, "redecode", None, admin.id).id
    redecode(job_id)
    assert_consistent()
    assert_everyone_sees_their_own_numbers()

    # re-processing a collection with fewer files, and deleting one
    with session_scope() as session:
        admin = session.scalar(select(User).where(User.email == "root@example.org"))
        job_id = create_job(session, "ingest", public, admin.id).id
    ingest(job_id)
    assert_consistent()
    delete_collection(public)
    assert_consistent()
    assert_everyone_sees_their_own_numbers()
    delete_collection(private)
    assert_consistent()
    assert_everyone_sees_their_own_numbers()


def test_check_finds_a_wrong_number_and_rebuild_repairs_it(database, tmp_path, capsys):
    with session_scope() as session:
        create_user(session, "ann@example.org", "a long enough password")
    ingest_collection(tmp_path, "ann@example.org", "Shared Movie", "Ann public", "public", PEAKS)
    assert cli(["stats", "check"]) == 0
    with session_scope() as session:
        session.execute(
            update(TermStats).where(TermStats.scope == "public").values(n_components=TermStats.n_components + 1)
        )
    assert cli(["stats", "check"]) == 1
    assert "differ from a recomputation" in capsys.readouterr().err
    assert cli(["stats", "rebuild"]) == 0
    assert cli(["stats", "check"]) == 0
    assert_consistent()


def test_concurrent_changes_to_one_movie_keep_the_counts(tmp_path, postgres_url):
    """Two transactions adding components to two collections of the same movie at the same moment: the movie's
    row lock makes the second refresh see the first one's rows. (PostgreSQL: SQLite has one writer at a time.)"""
    use_environment(tmp_path / "data", database_url=postgres_url)
    upgrade_database()
    with session_scope() as session:
        ensure_builtin_reference(session)
    with session_scope() as session:
        owner = create_user(session, "ann@example.org", "a long enough password")
        movie = get_or_create_movie(session, "Busy Movie")
        ids = [create_collection(session, owner, movie, f"Part {i}").id for i in range(2)]
        term_id = session.scalar(
            text(
                "SELECT t.id FROM terms t JOIN reference_sets r ON r.id = t.reference_set_id "
                "WHERE r.active ORDER BY t.id LIMIT 1"
            )
        )
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def add(collection_id: int) -> None:
        try:
            with session_scope() as session:
                for k in range(5):
                    session.add(
                        Component(
                            collection_id=collection_id,
                            source_file=f"f{k}.nii",
                            volume_index=k,
                            storage_key="x",
                            best_term_id=term_id,
                            best_r=0.1 * k,
                        )
                    )
                session.flush()
                barrier.wait(timeout=30)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert_consistent()
    with session_scope() as session:
        assert queries.counts(session, None)["components"] == 10
