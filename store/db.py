"""Database engine and sessions.

Every piece of code that runs outside a web request (jobs, the command line) opens its own session with
``session_scope()`` and closes it when done; no session or connection crosses a process. The engine is
created lazily per process and thrown away in a forked child, because a pooled connection inherited across
``fork()`` is shared by two processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from store import stats  # noqa: F401  (registers the listeners that keep the derived counts)
from store.config import get_settings

_lock = threading.Lock()
_state: dict = {"pid": None, "url": None, "engine": None, "factory": None}

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            # WAL lets the web process read while a worker writes; busy_timeout waits instead of failing.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def get_engine() -> Engine:
    """This process's engine for the configured database, made on first use.

    A new engine replaces the old one after a fork or when ``INCDB_DATABASE_URL`` changed. SQLite connections
    use WAL, a busy timeout of :data:`SQLITE_BUSY_TIMEOUT_MS` ms and foreign keys; others a pre-pinged pool.

    Returns
    -------
    sqlalchemy.Engine
        The engine, shared by the threads of this process.
    """
    url = get_settings().database_url
    with _lock:
        if _state["engine"] is None or _state["pid"] != os.getpid() or _state["url"] != url:
            if _state["engine"] is not None and _state["pid"] == os.getpid():
                _state["engine"].dispose()
            engine = _make_engine(url)
            _state.update(
                pid=os.getpid(), url=url, engine=engine, factory=sessionmaker(bind=engine, expire_on_commit=False)
            )
        return _state["engine"]


def dispose_engine() -> None:
    """Forget this process's engine (after fork, or when tests switch databases)."""
    with _lock:
        engine = _state["engine"]
        if engine is not None:
            # close=False: in a forked child the parent's connections must not be closed from here.
            engine.dispose(close=_state["pid"] == os.getpid())
        _state.update(pid=None, url=None, engine=None, factory=None)


os.register_at_fork(after_in_child=lambda: _state.update(pid=None, engine=None, factory=None, url=None))


def new_session() -> Session:
    """A new session on this process's engine (objects not expired on commit); the caller closes it.

    Returns
    -------
    sqlalchemy.orm.Session
        An open session; prefer :func:`session_scope`, which commits and closes.
    """
    get_engine()
    return _state["factory"]()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success, rolls back on error and is always closed.

    Yields
    ------
    sqlalchemy.orm.Session
        The open session; objects loaded in it stay readable after the block (they are not expired on commit).
    """
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config():
    """Alembic configuration for the project's migrations and the configured database.

    Returns
    -------
    alembic.config.Config
        ``alembic.ini`` with ``script_location`` set to ``migrations/`` and ``sqlalchemy.url`` to
        ``INCDB_DATABASE_URL``.
    """
    root = Path(__file__).resolve().parent.parent
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.set_main_option("sqlalchemy.url", get_settings().database_url.replace("%", "%%"))
    return cfg


def upgrade_database() -> None:
    """Create or upgrade the schema to the newest Alembic revision."""
    command.upgrade(alembic_config(), "head")
