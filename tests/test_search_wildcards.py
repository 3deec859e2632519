"""Search matches ``%``, ``_`` and ``\\`` as themselves (they are LIKE's wildcards and escape character), on SQLite
(FTS5 trigram table) and PostgreSQL (pg_trgm index), in the movie and term lists and the search box."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from accounts.users import create_user
from pipeline.curation.catalog import create_collection, get_or_create_movie
from pipeline.decoding.reference import ensure_builtin_reference
from store import queries
from store.db import session_scope, upgrade_database
from store.models import Term
from tests.conftest import use_environment

TITLES = ("50% Off", "500 Days", "Under_score", "Under Score Two", "Back\\slash", "Plain Movie")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalogue(request, tmp_path, reference_template) -> str:
    if request.param == "sqlite":
        request.getfixturevalue("data_dir")
    else:
        use_environment(tmp_path / "data", database_url=request.getfixturevalue("postgres_url"))
        upgrade_database()
        with session_scope() as session:
            ensure_builtin_reference(session)
    with session_scope() as session:
        owner = create_user(session, "wild@example.org", "a long password 1")
        for title in TITLES:
            create_collection(session, owner, get_or_create_movie(session, title), f"{title} collection")
        term = session.scalar(select(Term).order_by(Term.id).limit(1))
        term.name = "face_100%"
    return request.param


def movies(search: str) -> list[str]:
    with session_scope() as session:
        return sorted(m["title"] for m in queries.list_movies(session, None, search=search, per_page=100).items)


def test_wildcards_are_matched_as_themselves(catalogue):
    assert len(movies("")) == len(TITLES)
    assert movies("%") == ["50% Off"]
    assert movies("%%") == []
    assert movies("50%") == ["50% Off"]
    assert movies("_") == ["Under_score"]
    assert movies("r_s") == ["Under_score"]
    assert movies("__") == []
    assert movies("\\") == ["Back\\slash"]
    assert movies("k\\s") == ["Back\\slash"]
    assert movies("under") == ["Under Score Two", "Under_score"]  # plain text still finds both
    with session_scope() as session:
        assert queries.search(session, None, "%%") == []
        assert [h["label"] for h in queries.search(session, None, "0%")] == ["face_100%", "50% Off"]
        assert [t["name"] for t in queries.list_terms(session, None, search="_1", per_page=100).items] == ["face_100%"]
        assert queries.list_terms(session, None, search="%", per_page=100).total == 1
        if catalogue == "postgresql":  # the escaped pattern still uses the pg_trgm index
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = session.execute(
                text("EXPLAIN SELECT id FROM movies WHERE lower(title) LIKE :p"), {"p": queries._like("50% o_f")}
            ).all()
            assert "ix_movies_title_trgm" in "\n".join(row[0] for row in plan)
