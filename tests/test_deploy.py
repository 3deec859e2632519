"""The deployment guide's units: start gunicorn and a Celery worker from the exact ExecStart lines in deploy/,
with the example environment file (pointed at this machine's PostgreSQL and Redis), and check both serve. Then the
nginx site, run as it is (on local ports, with a throw-away certificate and a stand-in app): the request body
sizes it lets through on each location."""

from __future__ import annotations

import http.client
import http.server
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.browser import free_port
from tests.conftest import REDIS_URL, ROOT, need_service, port_open
from tests.services import nginx_binary, nginx_site_config


def unit_commands(unit: str, env: dict[str, str], key: str = "ExecStart") -> list[list[str]]:
    """The unit's ``key=`` command lines, in order, with this checkout's paths and the values of ``env`` (``${VAR}``
    and ``$VAR``, e.g. ``$MAINPID``) put in."""
    text = (ROOT / "deploy" / unit).read_text()
    venv_bin = str(Path(sys.executable).parent)
    commands = []
    for line in re.findall(rf"^{key}=(.+)$", text, re.M):
        line = line.replace("/srv/incdb/.venv/bin", venv_bin).replace("/srv/incdb", str(ROOT))
        line = line.replace("%H", socket.gethostname())
        line = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], line)
        commands.append(shlex.split(line))
    return commands


def unit_command(unit: str, env: dict[str, str]) -> list[str]:
    return unit_commands(unit, env)[0]


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
    overrides = {
        "INCDB_DATA_DIR": str(tmp_path / "data"),
        "INCDB_DATABASE_URL": postgres_url,
        "INCDB_BROKER_URL": f"{REDIS_URL}/{redis_db}",
        "INCDB_RESULT_BACKEND": f"{REDIS_URL}/14",
        "INCDB_SECRET_KEY": "x" * 64,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "INCDB_CELERY_CONCURRENCY": "1",
    }
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INCDB_")}, **example_environment(overrides)}
    # Section 4 and 5 of the guide: the check refuses nothing, then the schema and reference are created.
    init = subprocess.run(
        [sys.executable, "-m", "pipeline", "init"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert init.returncode == 0, init.stderr
    check = subprocess.run(
        [sys.executable, "-m", "pipeline", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0 and "refused" not in check.stdout, check.stdout + check.stderr

    logs = tmp_path / "logs"
    logs.mkdir()
    web = subprocess.Popen(
        unit_command("incdb-web.service", env),
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=(logs / "web.log").open("wb"),  # noqa: SIM115 - the process's log
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        unit_command("incdb-worker.service", env),
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=(logs / "worker.log").open("wb"),  # noqa: SIM115 - the process's log
        stderr=subprocess.STDOUT,
    )
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
        ping = subprocess.run(
            [str(Path(sys.executable).parent / "celery"), "-A", "app:celery_app", "inspect", "ping", "--timeout", "10"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "pong" in ping.stdout, ping.stdout + ping.stderr
        # The daily sweep's exact command, against the same database and storage.
        sweep = subprocess.run(
            unit_command("incdb-sweep.service", env), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert sweep.returncode == 0 and "unreferenced file(s)" in sweep.stdout, sweep.stdout + sweep.stderr
    finally:
        stop(web)
        stop(worker)


# --- the nginx site's body limits -------------------------------------------------------------------------------

MIB = 1024**2
# (path, body size, status): large bodies only where files arrive, 24 MiB for Dash's callbacks, 4 MiB elsewhere.
# A refusal is checked from the Content-Length alone (nginx answers before any of the body); a body that passes
# is sent whole and reaches the app (here a stand-in that counts it).
NGINX_BODIES = [
    ("/upload/some-collection?name=x.nii.gz", 2 * 1024 * MIB + 1, 413),
    ("/upload/some-collection?name=x.nii.gz", 5 * MIB, 200),
    ("/upload/some-collection/resumable/abc", 5 * MIB, 200),
    ("/api/decode?name=x.nii.gz", 1025 * MIB + 1, 413),
    ("/api/decode?name=x.nii.gz", 5 * MIB, 200),
    ("/_dash-update-component", 24 * MIB + 1, 413),
    ("/_dash-update-component", 5 * MIB, 200),
    ("/api/decode/abc", 4 * MIB + 1, 413),
    ("/api/stats", 4 * MIB + 1, 413),
    ("/", 4 * MIB + 1, 413),
    ("/api/stats", 4 * MIB, 200),
]


class _CountingApp(http.server.BaseHTTPRequestHandler):
    """Stands in for gunicorn behind nginx: answers 200 with the number of body bytes it received."""

    def _answer(self) -> None:
        received = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        body = str(received).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = _answer

    def log_message(self, *_args) -> None:
        pass


def _send(port: int, path: str, size: int, whole: bool) -> tuple[int, bytes]:
    """A POST (a PUT for a resumable upload's chunk) of ``size`` bytes over TLS to incdb.example.org; the body is
    sent only when ``whole`` (otherwise nginx must answer from the headers, and soon)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    method = "PUT" if "/resumable/" in path else "POST"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=60 if whole else 10) as raw,
        context.wrap_socket(raw, server_hostname="incdb.example.org") as sock,
    ):
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: incdb.example.org\r\nContent-Length: {size}\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        if whole:
            piece = b"x" * MIB
            for start in range(0, size, MIB):
                sock.sendall(piece[: min(MIB, size - start)])
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def test_nginx_limits_request_bodies_per_location(tmp_path):
    nginx = nginx_binary()
    need_service(nginx is not None, "nginx (apt-get install nginx)")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingApp)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    config, port = nginx_site_config(tmp_path, upstream.server_address[1])
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "error.log").read_text()[-2000:]
            time.sleep(0.1)
        for path, size, status in NGINX_BODIES:
            answer = _send(port, path, size, whole=status == 200)
            assert answer[0] == status, (path, size, answer)
            if status == 200:
                assert answer[1] == str(size).encode(), (path, size, answer)
    finally:
        stop(proc)
        upstream.shutdown()
