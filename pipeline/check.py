"""Configuration check: what the deployment uses, whether each part answers, and production refusals.

``python -m pipeline check`` prints one line per part; the web app and the worker run ``production_problems`` at
start when ``INCDB_ENV=production`` and refuse to start on any. ``production_warnings`` lists what production lacks
without being unsafe (mail); both lists also show on the administrators' System page (``pipeline.jobs.system``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from pipeline.decoding.reference import active_reference
from pipeline.maps.merge import resolve_backend
from store.config import Settings, get_settings
from store.db import get_engine, session_scope
from store.storage import get_storage


@dataclass
class Part:
    name: str
    value: str
    ok: bool
    detail: str = ""


def _worker_count() -> int:
    """How many processes will share the database: gunicorn workers plus Celery worker processes."""
    total = 0
    for var in ("WEB_CONCURRENCY", "INCDB_WEB_WORKERS", "INCDB_CELERY_CONCURRENCY"):
        with contextlib.suppress(ValueError):  # a malformed count is reported by whatever reads it
            total += int(os.environ.get(var, "0"))
    return total


def production_problems(settings: Settings | None = None) -> list[str]:
    """Reasons not to start in production (empty when fine or not in production)."""
    s = settings or get_settings()
    if s.env != "production":
        return []
    problems = []
    if not os.environ.get("INCDB_SECRET_KEY"):
        problems.append("INCDB_SECRET_KEY is not set (sessions and reset links would use a key kept on disk)")
    base = os.environ.get("INCDB_BASE_URL") or ""
    if not base:
        problems.append(
            "INCDB_BASE_URL is not set (the site's public address, e.g. https://incdb.example.org: "
            "links in password-reset mails are built from it, never from a request's Host header)"
        )
    elif not _is_site_url(base):
        problems.append(f"INCDB_BASE_URL must be an address such as https://incdb.example.org, not {base[:100]!r}")
    if s.is_sqlite and (s.broker_url or _worker_count() > 1):
        problems.append(
            "SQLite with several processes (Celery workers or several web workers): use PostgreSQL (INCDB_DATABASE_URL)"
        )
    return problems


def production_warnings(settings: Settings | None = None) -> list[str]:
    """What a production deployment lacks without being unsafe (empty when fine or not in production): printed
    by ``python -m pipeline check`` and shown on the administrators' System page, never a reason to refuse."""
    s = settings or get_settings()
    if s.env != "production":
        return []
    warnings = []
    if not s.smtp.host:
        warnings.append(
            "INCDB_SMTP_HOST is not set: password-reset and confirmation mails are written to the "
            "server log instead of being sent"
        )
    return warnings


def _is_site_url(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy-style URL
        return url


def _check_database(s: Settings) -> Part:
    try:
        engine = get_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        tables = set(inspect(engine).get_table_names())
        detail = "schema present" if "components" in tables else "empty: run `python -m pipeline init`"
        return Part("database", _redact(s.database_url), True, detail)
    except Exception as exc:  # noqa: BLE001
        return Part("database", _redact(s.database_url), False, str(exc).splitlines()[0])


def _check_broker(s: Settings) -> Part:
    if not s.broker_url:
        return Part("broker", "none (diskcache background manager, jobs run on the web machine)", True)
    try:
        from kombu import Connection  # lazy: only a configuration with a broker needs kombu

        with Connection(s.broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
        return Part("broker", _redact(s.broker_url), True, f"result backend {_redact(s.result_backend or '-')}")
    except Exception as exc:  # noqa: BLE001
        return Part("broker", _redact(s.broker_url), False, str(exc).splitlines()[0])


def _check_storage(s: Settings) -> Part:
    try:
        storage = get_storage()
        if hasattr(storage, "check"):
            storage.check()
        probe = f"check/probe-{os.getpid()}"
        storage.put_bytes(probe, b"ok")
        ok = storage.read_bytes(probe) == b"ok"
        storage.delete(probe)
        return Part("storage", s.storage_url, ok, "read/write ok" if ok else "read back differs")
    except Exception as exc:  # noqa: BLE001
        return Part("storage", s.storage_url, False, str(exc).splitlines()[0])


def _check_merge(s: Settings) -> Part:
    try:
        return Part("merge backend", f"{s.merge_backend} -> {resolve_backend(s.merge_backend)}", True)
    except Exception as exc:  # noqa: BLE001
        return Part("merge backend", s.merge_backend, False, str(exc))


def _check_reference(db_ok: bool) -> Part:
    if not db_ok:
        return Part("reference set", "unknown", False, "database not reachable")
    try:
        with session_scope() as session:
            ref = active_reference(session)
            if ref is None:
                return Part("reference set", "none active", False, "run `python -m pipeline init`")
            return Part("reference set", ref.name, True, f"{len(ref.terms)} terms, source {ref.source}")
    except Exception as exc:  # noqa: BLE001
        return Part("reference set", "unknown", False, str(exc).splitlines()[0])


def check_all() -> list[Part]:
    s = get_settings()
    db = _check_database(s)
    return [
        Part("environment", s.env, True),
        _check_base_url(s),
        db,
        _check_broker(s),
        _check_storage(s),
        _check_merge(s),
        _check_reference(db.ok and "schema present" in db.detail),
    ]


def _check_base_url(s: Settings) -> Part:
    if os.environ.get("INCDB_BASE_URL"):
        return Part("site address", s.base_url, _is_site_url(s.base_url), "links in mails point here")
    return Part(
        "site address", s.base_url, s.env != "production", "INCDB_BASE_URL is not set: links in mails use HOST and PORT"
    )
