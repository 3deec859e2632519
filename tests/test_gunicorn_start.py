"""A web process serves correctly from its first request, and a reload replaces the workers without a pause.

Fresh processes get a burst of parallel requests (the page's scripts, Dash's routes, the API) before anything has
warmed them up: they are sent as soon as the port accepts connections, and wait in the socket's queue until the
workers accept them all at once, as the requests of browsers that reloaded a page during a restart do. Dash's lazy
first-request set-up used to race under that burst (``dashboard.startup``).

The reload test runs the web unit's own ``ExecStart`` and ``ExecReload`` lines (as ``systemctl reload`` would),
with clients requesting pages in a loop all the while.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from dash import _dash_renderer

from tests.services import ROOT, Service, free_port, running, service_env, wait_until
from tests.test_deploy import unit_commands

BURST = 32
# Dash's own scripts, without fingerprint (Dash serves those too): the page stays blank when one fails.
SCRIPTS = [
    f"/_dash-component-suites/dash/{path}"
    for path in _dash_renderer._js_dist_dependencies[0]["relative_package_path"]["prod"]
    + [_dash_renderer._js_dist[0]["relative_package_path"]]
]
ROUTES = [*SCRIPTS, "/_dash-dependencies", "/_dash-layout", "/", "/api/stats", "/api/terms"]


def web_env(data_dir: Path, port: int) -> dict[str, str]:
    """Overrides of gunicorn.conf.py's settings: 2 workers of 16 threads on a free port."""
    return service_env(data_dir, PORT=str(port), WEB_CONCURRENCY="2", GUNICORN_THREADS="16")


def wait_for_port(service: Service, port: int, timeout: float = 60) -> None:
    """Until the port accepts connections: gunicorn's master listens before its workers have imported the app; the
    development server only once it is ready. The connection made to find out is closed unused."""

    def accepts() -> bool:
        service.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(accepts, timeout, f"{service.name} to listen on {port}", interval=0.05)


def get(url: str) -> tuple[str, int | str, bytes]:
    try:
        response = requests.get(url, timeout=120)
        return url, response.status_code, response.content
    except requests.RequestException as exc:
        return url, repr(exc), b""


def burst(base: str) -> list[tuple[str, int | str, bytes]]:
    routes = (ROUTES * (BURST // len(ROUTES) + 1))[:BURST]
    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(get, [base + route for route in routes]))


def assert_all_served(answers: list[tuple[str, int | str, bytes]], base: str, log: str) -> None:
    """Every answer a 200, and every callback list the complete one (the one a warm process gives)."""
    failed = [(url, status, body[:300]) for url, status, body in answers if status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed: {failed[:5]}\n{log[-3000:]}"
    complete = requests.get(base + "/_dash-dependencies", timeout=30).content
    assert all(body == complete for url, _, body in answers if url.endswith("/_dash-dependencies"))


def test_fresh_gunicorn_serves_a_burst_of_first_requests(data_dir, tmp_path):
    """Three starts of the real gunicorn configuration, each met by a burst of 32 requests: all answered."""
    for start in range(3):
        port = free_port()
        web = Service(
            "gunicorn",
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "app:server"],
            web_env(data_dir, port),
            ROOT,
            tmp_path / f"web{start}.log",
        )
        with running(web):
            wait_for_port(web, port)
            base = f"http://127.0.0.1:{port}"
            assert_all_served(burst(base), base, web.text())


def test_fresh_development_server_serves_a_burst_of_first_requests(data_dir, tmp_path):
    """``python app.py`` (werkzeug, a thread per request) likewise, three times."""
    for start in range(3):
        port = free_port()
        web = Service(
            "python app.py",
            [sys.executable, str(ROOT / "app.py")],
            web_env(data_dir, port),
            ROOT,
            tmp_path / f"app{start}.log",
        )
        with running(web):
            wait_for_port(web, port, timeout=120)
            base = f"http://127.0.0.1:{port}"
            assert_all_served(burst(base), base, web.text())


class Visitors:
    """Clients requesting pages, scripts and the API in a loop, each answer noted with how long it took."""

    def __init__(self, base: str, clients: int = 4):
        self.base, self.answers, self._stop = base, [], threading.Event()
        self._threads = [threading.Thread(target=self._visit, args=(i,), daemon=True) for i in range(clients)]

    def _visit(self, offset: int) -> None:
        n = offset
        while not self._stop.is_set():
            url = self.base + ROUTES[n % len(ROUTES)]
            started = time.monotonic()
            try:
                # A connection per request, as nginx makes them (deploy/nginx-incdb.conf keeps none open).
                status = requests.get(url, timeout=60).status_code
            except requests.RequestException as exc:
                status = repr(exc)
            self.answers.append((url, status, time.monotonic() - started))
            n += 1
            self._stop.wait(0.05)  # leave the CPU to the workers starting meanwhile

    def __enter__(self) -> Visitors:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)


def workers_of(service: Service) -> set[int]:
    return {child.pid for child in psutil.Process(service.pid).children()}


def test_reload_replaces_workers_while_the_site_answers(data_dir, tmp_path):
    """``systemctl reload incdb-web`` while visitors keep requesting: every request is answered, promptly."""
    port = free_port()
    env = web_env(data_dir, port)
    web = Service("gunicorn", unit_commands("incdb-web.service", env)[0], env, ROOT, tmp_path / "web.log")
    with running(web):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(base + "/api/stats")[1] == 200 and len(workers_of(web)) == 2, 120, "gunicorn")
        old = workers_of(web)
        with Visitors(base) as visitors:
            reload = unit_commands("incdb-web.service", {**env, "MAINPID": str(web.pid)}, "ExecReload")
            assert reload, "the unit has no ExecReload"
            for command in reload:
                done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stdout + done.stderr

            def replaced() -> bool:
                """The old workers have stopped serving (their process may take a while longer to end) and two
                new ones serve."""
                web.check_alive()
                stopped = all(f"Worker exiting (pid: {pid})" in web.text() for pid in old)
                return stopped and len(workers_of(web) - old) == 2

            wait_until(replaced, 180, "the old workers to be replaced")
            time.sleep(1)  # a moment of the new workers alone
        answers = visitors.answers
    failed = [(url, status) for url, status, _ in answers if status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"
    slowest = max(answers, key=lambda answer: answer[2])
    # Served all along: without the hand-over, requests waited while the new workers imported the app.
    assert slowest[2] < 5, f"a request waited {slowest[2]:.1f} s: {slowest[0]}"
    assert len(answers) > 50, len(answers)


def test_reload_refuses_code_that_cannot_start(data_dir, tmp_path):
    """The reload's first step refuses code or settings that fail on import; the running workers stay."""
    env = {**web_env(data_dir, free_port()), "INCDB_ENV": "production"}  # no secret key, no base URL: refused
    check = unit_commands("incdb-web.service", {**env, "MAINPID": str(os.getpid())}, "ExecReload")[0]
    done = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "refuses to start" in done.stdout + done.stderr, done.stdout + done.stderr
