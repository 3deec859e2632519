"""`python -m pipeline check`: what it reports, and each production refusal."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REDIS_URL, ROOT, need_service, port_open


def run_check(data_dir, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    full.update({"INCDB_DATA_DIR": str(data_dir)}, **env)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "check"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def test_check_reports_each_part(data_dir):
    result = run_check(data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("database", "broker", "storage", "merge backend", "reference set"):
        assert name in out
    assert "built-in demo reference" in out and "auto -> numpy" in out and "diskcache" in out


def test_check_fails_when_database_unreachable(tmp_path):
    result = run_check(tmp_path, INCDB_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "FAIL database" in result.stdout


PROD = {"INCDB_ENV": "production", "INCDB_SECRET_KEY": "s" * 40, "INCDB_BASE_URL": "https://incdb.example.org"}


def test_production_refuses_missing_secret_key(data_dir):
    env = dict(PROD)
    del env["INCDB_SECRET_KEY"]
    result = run_check(data_dir, **env)
    assert result.returncode == 1 and "refused: INCDB_SECRET_KEY" in result.stdout


def test_production_refuses_a_missing_or_malformed_base_url(data_dir):
    env = dict(PROD)
    del env["INCDB_BASE_URL"]
    result = run_check(data_dir, **env)
    assert result.returncode == 1 and "refused: INCDB_BASE_URL is not set" in result.stdout
    result = run_check(data_dir, **dict(PROD, INCDB_BASE_URL="incdb.example.org/path"))
    assert result.returncode == 1 and "refused: INCDB_BASE_URL must be an address" in result.stdout
    result = run_check(data_dir, **PROD)
    assert "INCDB_BASE_URL" not in result.stdout and "site address" in result.stdout


def test_production_refuses_sqlite_with_several_workers(data_dir):
    result = run_check(data_dir, WEB_CONCURRENCY="3", **PROD)
    assert result.returncode == 1 and "refused: SQLite with several processes" in result.stdout


def test_the_result_backend_defaults_to_the_broker_in_production_too(data_dir, postgres_url):
    """The README's default: production used to refuse a broker without INCDB_RESULT_BACKEND (gunicorn workers
    restarted in a loop)."""
    need_service(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    env = dict(
        INCDB_DATABASE_URL=postgres_url, INCDB_BROKER_URL=f"{REDIS_URL}/11", INCDB_SMTP_HOST="smtp.example.org", **PROD
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    full.update({"INCDB_DATA_DIR": str(data_dir)}, **env)
    init = subprocess.run(
        [sys.executable, "-m", "pipeline", "init"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=300
    )
    assert init.returncode == 0, init.stderr
    result = run_check(data_dir, **env)
    assert "refused" not in result.stdout and "warning" not in result.stdout and result.returncode == 0, result.stdout
    assert f"result backend {REDIS_URL}/11" in result.stdout
    # A named result backend is used as given.
    result = run_check(data_dir, INCDB_RESULT_BACKEND=f"{REDIS_URL}/12", **env)
    assert f"result backend {REDIS_URL}/12" in result.stdout and result.returncode == 0, result.stdout


def test_production_warns_when_mail_is_not_configured(data_dir):
    result = run_check(data_dir, **PROD)
    assert "warning: INCDB_SMTP_HOST is not set" in result.stdout and result.returncode == 0, result.stdout
    assert "warning" not in run_check(data_dir).stdout  # outside production the log is where mails belong


def test_production_web_app_refuses_to_start(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}
    env.update(INCDB_DATA_DIR=str(data_dir), INCDB_ENV="production")
    result = subprocess.run(
        [sys.executable, "-c", "import app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "refuses to start in production" in result.stderr


def test_relative_sqlite_url_is_the_same_from_any_working_directory(tmp_path, monkeypatch):
    """The original INcDb's bug: a relative sqlite:/// URL gave the worker another file ("no such table")."""
    from store.config import get_settings, reset_settings

    monkeypatch.setenv("INCDB_DATABASE_URL", "sqlite:///relative/incdb.sqlite3")
    urls = []
    for cwd in (tmp_path, ROOT / "tests"):
        monkeypatch.chdir(cwd)
        reset_settings()
        urls.append(get_settings().database_url)
    assert urls[0] == urls[1] == f"sqlite:///{ROOT / 'relative' / 'incdb.sqlite3'}"
