"""The deployment guide's units: start gunicorn and a Celery worker from the exact ExecStart lines in deploy/,
with the example environment file (pointed at this machine's PostgreSQL and Redis), and check both serve."""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.browser import free_port
from tests.conftest import REDIS_URL, ROOT, need_service, port_open


def unit_command(unit: str, env: dict[str, str]) -> list[str]:
    text = (ROOT / "deploy" / unit).read_text()
    line = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
    venv_bin = str(Path(sys.executable).parent)
    line = line.replace("/srv/incdb/.venv/bin", venv_bin).replace("/srv/incdb", str(ROOT))
    line = line.replace("%H", socket.gethostname())
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line)
    return shlex.split(line)


def example_environment(overrides: dict[str, str]) -> dict[str, str]:
    env = {}
    for raw in (ROOT / "deploy" / "incdb.env.example").read_text().splitlines():
        raw = raw.strip()
        if raw and not raw.startswith("#"):
            key, value = raw.split("=", 1)
            env[key] = value
    env.update(overrides)
    return env


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def redis_db():
    need_service(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    import redis

    client = redis.Redis.from_url(f"{REDIS_URL}/13")
    client.flushdb()
    yield 13
    client.flushdb()


def test_units_start_web_and_worker(tmp_path, postgres_url, redis_db):
    port = free_port()
    overrides = {"INCDB_DATA_DIR": str(tmp_path / "data"), "INCDB_DATABASE_URL": postgres_url,
                 "INCDB_BROKER_URL": f"{REDIS_URL}/{redis_db}", "INCDB_RESULT_BACKEND": f"{REDIS_URL}/14",
                 "INCDB_SECRET_KEY": "x" * 64, "PORT": str(port), "WEB_CONCURRENCY": "2",
                 "INCDB_CELERY_CONCURRENCY": "1"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}, **example_environment(overrides)}
    # Section 4 and 5 of the guide: the check refuses nothing, then the schema and reference are created.
    init = subprocess.run([sys.executable, "-m", "pipeline", "init"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert init.returncode == 0, init.stderr
    check = subprocess.run([sys.executable, "-m", "pipeline", "check"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0 and "refused" not in check.stdout, check.stdout + check.stderr

    logs = tmp_path / "logs"
    logs.mkdir()
    web = subprocess.Popen(unit_command("incdb-web.service", env), cwd=ROOT, env=env, start_new_session=True,
                           stdout=(logs / "web.log").open("wb"),  # noqa: SIM115 - the process's log
                           stderr=subprocess.STDOUT)
    worker = subprocess.Popen(unit_command("incdb-worker.service", env), cwd=ROOT, env=env, start_new_session=True,
                              stdout=(logs / "worker.log").open("wb"),  # noqa: SIM115 - the process's log
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        ok = False
        while time.time() < deadline and not ok:
            try:
                ok = requests.get(f"http://127.0.0.1:{port}/api/stats", timeout=5).status_code == 200
            except requests.RequestException:
                time.sleep(1)
            assert web.poll() is None, (logs / "web.log").read_text()[-3000:]
        assert ok, (logs / "web.log").read_text()[-3000:]
        assert requests.get(f"http://127.0.0.1:{port}/api/stats", timeout=5).json()["terms"] >= 20
        deadline = time.time() + 120
        while time.time() < deadline and b"ready." not in (logs / "worker.log").read_bytes():
            assert worker.poll() is None, (logs / "worker.log").read_text()[-3000:]
            time.sleep(1)
        assert b"ready." in (logs / "worker.log").read_bytes(), (logs / "worker.log").read_text()[-3000:]
        ping = subprocess.run([str(Path(sys.executable).parent / "celery"), "-A", "app:celery_app", "inspect",
                               "ping", "--timeout", "10"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert "pong" in ping.stdout, ping.stdout + ping.stderr
        # The daily sweep's exact command, against the same database and storage.
        sweep = subprocess.run(unit_command("incdb-sweep.service", env), cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=120)
        assert sweep.returncode == 0 and "unreferenced file(s)" in sweep.stdout, sweep.stdout + sweep.stderr
    finally:
        stop(web)
        stop(worker)
