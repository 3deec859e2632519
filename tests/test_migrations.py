"""Schema changes go through Alembic (DESIGN section 7): upgrade on SQLite and PostgreSQL, idempotent, and the ORM
models match the migrations (a model change without a migration fails here)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select

from accounts.users import create_user
from pipeline.curation.catalog import create_collection, get_or_create_movie
from store.db import (
    alembic_config,
    dispose_engine,
    get_engine,
    session_scope,
    upgrade_database,
)
from store.models import Base, Collection, Movie, User, is_search_object
from tests.conftest import use_environment

MODEL_TABLES = set(Base.metadata.tables)


def current_revision() -> str | None:
    with get_engine().connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences() -> list:
    def include(obj, name, type_, reflected, compare_to):
        return not (reflected and is_search_object(name))

    with get_engine().connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"include_object": include}), Base.metadata)


def table_names() -> set[str]:
    return {t for t in sa.inspect(get_engine()).get_table_names() if not is_search_object(t)}


def round_trip() -> None:
    with session_scope() as session:
        user = create_user(
            session, "Curator@Example.org", "correct horse battery", role="admin", first_name="Ada", affiliation="Lab"
        )
        movie = get_or_create_movie(session, "  Forrest   Gump ", 1994)
        create_collection(
            session,
            user,
            movie,
            "Forrest Gump ICA",
            visibility="private",
            license="CC-BY-4.0",
            metadata_={"acquisition": {"tr": 2.0}, "participants": {"number": 15}},
        )
    dispose_engine()  # read back through a new connection
    with session_scope() as session:
        user = session.scalar(select(User))
        assert user.email == "curator@example.org" and user.is_admin and user.password_hash.startswith("scrypt")
        movie = session.scalar(select(Movie))
        assert (movie.title, movie.slug, movie.year) == ("Forrest Gump", "forrest-gump", 1994)
        collection = session.scalar(select(Collection))
        assert collection.slug == "forrest-gump-ica" and collection.owner.id == user.id
        assert collection.movie.slug == "forrest-gump"
        assert collection.metadata_ == {"acquisition": {"tr": 2.0}, "participants": {"number": 15}}
        assert collection.visibility == "private" and collection.license == "CC-BY-4.0"
        assert collection.created.tzinfo is not None or get_engine().dialect.name == "sqlite"
        assert get_or_create_movie(session, "forrest gump").id == movie.id  # same slug, same movie
        with pytest.raises(ValueError, match="already exists"):
            create_user(session, "curator@example.org", "another long password")


def check_database() -> None:
    upgrade_database()
    tables = table_names()
    assert tables >= MODEL_TABLES
    assert tables - MODEL_TABLES == {"alembic_version"}
    assert current_revision() == head_revision()
    upgrade_database()  # a second upgrade is a no-op
    assert current_revision() == head_revision()
    assert table_names() == tables
    assert schema_differences() == []
    round_trip()


def test_single_head():
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1


def test_sqlite_upgrade(tmp_path):
    use_environment(tmp_path)
    check_database()
    assert (tmp_path / "incdb.sqlite3").is_file()
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_downgrade_and_upgrade_again(tmp_path):
    use_environment(tmp_path)
    upgrade_database()
    command.downgrade(alembic_config(), "base")
    assert set(sa.inspect(get_engine()).get_table_names()) <= {"alembic_version"}
    upgrade_database()
    assert set(sa.inspect(get_engine()).get_table_names()) >= MODEL_TABLES


def test_relative_sqlite_url_is_the_same_file_from_any_directory(tmp_path, monkeypatch):
    """A relative sqlite:/// URL must not depend on the process's working directory (the original INcDb's worker
    opened another, empty file: "no such table"): settings make it absolute, the same from anywhere."""
    from store.config import get_settings

    urls = []
    for cwd in (tmp_path / "a", tmp_path / "b"):
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        use_environment(tmp_path / "data", database_url="sqlite:///rel/db.sqlite3")
        urls.append(get_settings().database_url)
    assert urls[0] == urls[1]
    assert urls[0].startswith("sqlite:////") and urls[0].endswith("/rel/db.sqlite3")


def test_postgresql_upgrade(tmp_path, postgres_url):
    use_environment(tmp_path, database_url=postgres_url)
    assert get_engine().dialect.name == "postgresql"
    check_database()


def test_a_model_change_without_migration_is_detected(tmp_path):
    """compare_metadata is not vacuous: a column or table missing from the migrations shows up as a difference."""
    use_environment(tmp_path)
    upgrade_database()
    changed = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["movies"].append_column(sa.Column("imdb_id", sa.String(20), nullable=True))
    sa.Table("notes", changed, sa.Column("id", sa.Integer, primary_key=True))
    with get_engine().connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), changed)
    kinds = {(d[0], getattr(d[-1], "name", None) if d[0] == "add_column" else d[1].name) for d in diffs}
    assert ("add_column", "imdb_id") in kinds
    assert ("add_table", "notes") in kinds
