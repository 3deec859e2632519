"""Shared fixtures: an isolated data directory per test, a built-in reference built once, PostgreSQL databases
made per test, and the rule that in CI (INCDB_REQUIRE_SERVICES=1) a missing service fails instead of skipping."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from store.config import reset_settings
from store.db import dispose_engine

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# `pipeline init` builds the synthetic 22-term reference in tests (seconds), not the shipped Neurosynth topics
# (minutes); tests of the shipped default set INCDB_INIT_REFERENCE=neurosynth themselves.
os.environ.setdefault("INCDB_INIT_REFERENCE", "builtin")
POSTGRES_ADMIN_URL = os.environ.get("INCDB_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("INCDB_TEST_REDIS", "redis://127.0.0.1:6379")


def services_required() -> bool:
    return os.environ.get("INCDB_REQUIRE_SERVICES") == "1"


def need_service(ok: bool, what: str) -> None:
    """Skip when a service is missing on a developer machine; fail in CI."""
    if ok:
        return
    if services_required():
        pytest.fail(f"{what} is required (INCDB_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def use_environment(data_dir: Path, database_url: str | None = None, **extra: str) -> None:
    """Point settings, engine and storage at a data directory (and optionally another database)."""
    from store import storage

    os.environ["INCDB_DATA_DIR"] = str(data_dir)
    if database_url:
        os.environ["INCDB_DATABASE_URL"] = database_url
    else:
        os.environ.pop("INCDB_DATABASE_URL", None)
    for key, value in extra.items():
        os.environ[key] = value
    reset_settings()
    dispose_engine()
    storage._storages.clear()


_ENV_KEYS = (
    "INCDB_DATA_DIR",
    "INCDB_DATABASE_URL",
    "INCDB_BROKER_URL",
    "INCDB_STORAGE_URL",
    "INCDB_MERGE_BACKEND",
    "INCDB_MAX_UPLOAD_BYTES",
    "INCDB_ENV",
    "INCDB_SECRET_KEY",
    "INCDB_INIT_REFERENCE",
    "INCDB_REFERENCE_DATA",
    "INCDB_NEUROSYNTH_URL",
)


@pytest.fixture(autouse=True)
def _restore_environment():
    """Every ``INCDB_*`` variable as it was before the test (``use_environment`` sets any it is given)."""
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    saved.update({k: v for k, v in os.environ.items() if k.startswith("INCDB_")})
    yield
    for key in [k for k in os.environ if k.startswith("INCDB_") and k not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    dispose_engine()


@pytest.fixture(scope="session")
def reference_template(tmp_path_factory) -> Path:
    """A data directory with an upgraded SQLite database and the built-in reference, built once per run."""
    from pipeline.decoding.reference import INIT_REFERENCE_FILE, ensure_builtin_reference
    from store.db import session_scope, upgrade_database

    path = tmp_path_factory.mktemp("reference-template")
    (path / INIT_REFERENCE_FILE).write_text("builtin\n")  # `pipeline init` run on a copy, in any environment
    use_environment(path)
    upgrade_database()
    with session_scope() as session:
        ensure_builtin_reference(session)
    dispose_engine()
    return path


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory, reference_template) -> Path:
    """A data directory with the demo data set loaded, built once per run (copy it before writing)."""
    from pipeline.curation.demo import load_demo

    path = tmp_path_factory.mktemp("demo-template") / "data"
    shutil.copytree(reference_template, path)
    use_environment(path)
    load_demo(progress=None)
    dispose_engine()
    return path


@pytest.fixture
def data_dir(tmp_path, reference_template) -> Path:
    """A private copy of the reference template, in use for this test (SQLite, local storage)."""
    path = tmp_path / "data"
    shutil.copytree(reference_template, path)
    use_environment(path)
    return path


@pytest.fixture
def demo_dir(tmp_path, demo_template) -> Path:
    path = tmp_path / "demo"
    shutil.copytree(demo_template, path)
    use_environment(path)
    return path


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    import sqlalchemy as sa

    need_service(port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"incdb_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    dispose_engine()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def web(data_dir):
    """The app module (Dash app and Flask server) on this test's data directory."""
    import app as app_module

    return app_module


CURATOR_PASSWORD = "correct horse battery"


@pytest.fixture
def curator(data_dir) -> int:
    """The id of a confirmed curator, cora@example.org, with ``CURATOR_PASSWORD``."""
    from accounts.users import create_user
    from store.db import session_scope

    with session_scope() as session:
        return create_user(session, "cora@example.org", CURATOR_PASSWORD, first_name="Cora", last_name="Curator").id
