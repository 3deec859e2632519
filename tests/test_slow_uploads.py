"""Slow uploads. The real app under gunicorn with the project's ``gunicorn.conf.py`` (2 workers, its default
threads) and small upload limits: six uploads trickling in from three users hold their threads, yet the API answers
at once; a user's upload beyond INCDB_UPLOADS_PER_USER is refused (429); an upload that falls below
INCDB_UPLOAD_MIN_RATE, or passes INCDB_UPLOAD_DEADLINE_S, is refused with its message, and nothing of it is kept.
Then the upload slots when a process dies or a request hangs, the cap per web process, and the nginx site's rules
for slow bodies, forwarded headers and unknown hosts."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from sqlalchemy import select as sql_select

from accounts.users import create_user
from pipeline.curation.catalog import confirm_license, create_collection, get_or_create_movie
from store.config import reset_settings
from store.db import session_scope
from store.models import Upload
from tests.conftest import need_service
from tests.services import (
    BIN,
    NGINX_SITE,
    ROOT,
    Client,
    Service,
    _wait_http,
    free_port,
    nginx_binary,
    nginx_site_config,
    running,
    service_env,
    wait_until,
    write_nifti,
)

PASSWORD = "correct horse battery"
MIN_RATE, WINDOW_S, DEADLINE_S, PER_USER = 500, 3, 12, 2


def _curators(n: int) -> list[tuple[str, str]]:
    """(email, slug of a confirmed public collection) for n new curators."""
    out = []
    with session_scope() as session:
        movie = get_or_create_movie(session, "Slow Movie")
        for i in range(n):
            user = create_user(session, f"slow{i}@example.org", PASSWORD)
            collection = create_collection(session, user, movie, f"Slow collection {i}")
            confirm_license(session, collection, user)
            out.append((user.email, collection.slug))
    return out


class RawUpload(threading.Thread):
    """POST /upload/<slug> over a plain socket, sending ``piece`` bytes every ``interval`` seconds until the server
    answers; ``status`` and ``body`` hold the answer, ``seconds`` how long it took from the headers on."""

    def __init__(
        self, url: str, client: Client, slug: str, name: str, piece: int, interval: float, length: int = 1_000_000
    ):
        super().__init__(daemon=True)
        self.host, port = url.rsplit("//", 1)[1].split(":")
        self.port = int(port)
        cookies = "; ".join(f"{c.name}={c.value}" for c in client._session.cookies)
        self.head = (
            f"POST /upload/{slug}?name={name} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Cookie: {cookies}\r\nX-CSRFToken: {client.csrf_headers()['X-CSRFToken']}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
        self.piece, self.interval, self.length = piece, interval, length
        self.status: int | None = None
        self.body: dict = {}
        self.seconds: float | None = None
        self.sent = 0

    def run(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=60) as sock:
            sock.sendall(self.head)
            started = time.monotonic()
            while self.sent < self.length:
                readable, _, _ = select.select([sock], [], [], self.interval)
                if readable:
                    break
                try:
                    sock.sendall(b"\0" * self.piece)
                except OSError:
                    break
                self.sent += self.piece
            raw = b""
            try:
                while b"\r\n\r\n" not in raw or len(raw.split(b"\r\n\r\n", 1)[1]) < self._length(raw):
                    data = sock.recv(65536)
                    if not data:
                        break
                    raw += data
            except OSError:
                pass
            self.seconds = time.monotonic() - started
        head, _, body = raw.partition(b"\r\n\r\n")
        if head:
            self.status = int(head.split()[1])
            self.body = json.loads(body or b"{}")

    @staticmethod
    def _length(raw: bytes) -> int:
        found = re.search(rb"(?im)^content-length:\s*(\d+)", raw.split(b"\r\n\r\n", 1)[0])
        return int(found.group(1)) if found else 0

    @property
    def error(self) -> str:
        return self.body.get("error", "")


@pytest.fixture
def server(data_dir, tmp_path):
    """gunicorn -c gunicorn.conf.py app:server, 2 workers and the file's own thread count, small upload limits."""
    env = service_env(
        data_dir,
        WEB_CONCURRENCY="2",
        HOST="127.0.0.1",
        PORT=str(free_port()),
        INCDB_UPLOAD_MIN_RATE=str(MIN_RATE),
        INCDB_UPLOAD_RATE_WINDOW_S=str(WINDOW_S),
        INCDB_UPLOAD_DEADLINE_S=str(DEADLINE_S),
        INCDB_UPLOADS_PER_USER=str(PER_USER),
    )
    for key in ("GUNICORN_THREADS", "GUNICORN_BIND", "GUNICORN_TIMEOUT"):
        env.pop(key, None)
    service = Service(
        "gunicorn",
        [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "app:server"],
        env,
        ROOT,
        tmp_path / "gunicorn.log",
    )
    service.url = f"http://127.0.0.1:{env['PORT']}"
    with running(service):
        _wait_http(service, service.url + "/api/stats", 90)
        yield service


def test_slow_uploads_keep_neither_the_server_nor_their_slots(server, data_dir, tmp_path):
    curators = _curators(4)
    clients = []
    for email, _ in curators:
        client = Client(server.url)
        client.sign_in(email, PASSWORD)
        clients.append(client)
    temp = data_dir / "tmp" / "uploads"

    def in_progress() -> int:
        return len(list(temp.iterdir())) if temp.is_dir() else 0

    # Three users, two uploads each, at 2000 bytes/s: four times the minimum rate, so they stay until the deadline.
    holders = [
        RawUpload(server.url, clients[u], curators[u][1], f"hold-{u}-{i}.nii", piece=200, interval=0.1)
        for u in range(3)
        for i in range(PER_USER)
    ]
    for upload in holders:
        upload.start()
    try:
        wait_until(lambda: in_progress() == len(holders), 20, "every upload to be streaming")
    except TimeoutError:
        pytest.fail(f"only {in_progress()} of {len(holders)} uploads reached the app: the server ran out of threads")

    for _ in range(3):
        started = time.monotonic()
        r = requests.get(server.url + "/api/stats", timeout=30)
        assert r.status_code == 200 and time.monotonic() - started < 5, "the API waited behind the uploads"

    third = RawUpload(server.url, clients[0], curators[0][1], "third.nii", piece=200, interval=0.1)
    third.start()
    third.join(30)
    assert third.status == 429, (third.status, third.body)
    assert f"at the same time ({PER_USER})" in third.error and "Wait until one of them has finished" in third.error

    # One byte every half second: refused once the first window (the grace period) is over.
    slow = RawUpload(server.url, clients[3], curators[3][1], "trickle.nii", piece=1, interval=0.5)
    slow.start()
    slow.join(40)
    assert slow.status == 408, (slow.status, slow.body, server.text()[-3000:])
    assert "trickle.nii: the upload was too slow" in slow.error
    assert f"the server needs at least {MIN_RATE} bytes/s" in slow.error
    assert slow.seconds < WINDOW_S + 10

    for upload in holders:
        upload.join(DEADLINE_S + 30)
    for upload in holders:
        assert upload.status == 408, (upload.status, upload.body)
        assert f"did not finish within {DEADLINE_S} s" in upload.error, upload.error
        assert upload.seconds > DEADLINE_S - 1

    # Nothing half-received is kept, and every slot is free again: user 0 uploads two files at once.
    assert in_progress() == 0
    with session_scope() as session:
        assert session.scalar(sql_select(Upload.id)) is None
    files = [
        write_nifti(tmp_path / f"real{i}.nii", np.random.default_rng(i).standard_normal((91, 109, 91)))
        for i in range(PER_USER)
    ]
    answers: list = [None] * PER_USER

    def send(i: int) -> None:
        answers[i] = clients[0].upload(curators[0][1], files[i])

    senders = [threading.Thread(target=send, args=(i,)) for i in range(PER_USER)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    assert [a.status_code for a in answers] == [200] * PER_USER, [a.text for a in answers]
    server.check_alive()


def _hold_slot_in_child(data_dir: Path, user_id: int) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from web.upload import user_upload_slot\n"
        f"with user_upload_slot({user_id}, 5, 3600):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "INCDB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_killed_process_or_a_hung_request_does_not_keep_a_slot(data_dir):
    from web.upload import UploadRefused, held_slots, user_upload_slot

    child = _hold_slot_in_child(data_dir, 7)
    try:
        assert held_slots(7, 3600) == 1
        with user_upload_slot(7, 2, 3600):
            with pytest.raises(UploadRefused) as refused:
                with user_upload_slot(7, 2, 3600):
                    pass
            assert refused.value.status == 429 and "at the same time (2)" in refused.value.message
    finally:
        child.kill()
        child.wait(10)
    # The kernel dropped the dead process's lock: both slots are free.
    assert held_slots(7, 3600) == 0
    with user_upload_slot(7, 2, 3600), user_upload_slot(7, 2, 3600):
        assert held_slots(7, 3600) == 2
    assert not list((data_dir / "tmp" / "upload-slots" / "7").glob("slot-*"))

    # A request that hangs in a live process: its slot stops counting once it is older than the allowance.
    child = _hold_slot_in_child(data_dir, 8)
    try:
        (slot,) = (data_dir / "tmp" / "upload-slots" / "8").glob("slot-*")
        assert held_slots(8, 600) == 1
        an_hour_ago = time.time() - 3600
        os.utime(slot, (an_hour_ago, an_hour_ago))
        assert held_slots(8, 600) == 0
        with user_upload_slot(8, 1, 600):
            assert held_slots(8, 600) == 1
    finally:
        child.kill()
        child.wait(10)


def test_uploads_per_process_leave_threads_for_the_rest(data_dir, monkeypatch, tmp_path):
    import app as app_module
    from web.upload import process_uploads

    monkeypatch.setenv("INCDB_UPLOADS_PER_PROCESS", "1")
    reset_settings()
    ((email, slug),) = _curators(1)
    client = Client(flask_app=app_module.server)
    client.sign_in(email, PASSWORD)
    path = write_nifti(tmp_path / "one.nii", np.random.default_rng(0).standard_normal((91, 109, 91)))
    with process_uploads.place(1):
        r = client.upload(slug, path)
        assert r.status_code == 503 and "as many uploads as it can" in r.json()["error"]
        assert r.headers["Retry-After"] == "60"
    assert client.upload(slug, path).status_code == 200


# --- the nginx site --------------------------------------------------------------------------------------------


def _server_blocks(text: str) -> list[str]:
    """The top-level ``server { ... }`` blocks of an nginx file, comments removed."""
    text = re.sub(r"#[^\n]*", "", text)
    blocks, depth, start = [], 0, None
    for match in re.finditer(r"\bserver\s*\{|\{|\}", text):
        if match.group().startswith("server") and depth == 0:
            start = match.start()
        if match.group().endswith("{"):
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start is not None:
                blocks.append(text[start : match.end()])
                start = None
    return blocks


def test_nginx_site_refuses_unknown_hosts_and_slow_bodies():
    blocks = _server_blocks(NGINX_SITE.read_text())
    defaults = [b for b in blocks if "default_server" in b]
    plain = next((b for b in defaults if re.search(r"listen\s+80\s+default_server", b)), None)
    tls = next((b for b in defaults if re.search(r"listen\s+443\s+ssl\s+default_server", b)), None)
    assert plain and tls, "no default_server block for port 80 and for port 443"
    assert re.search(r"listen\s+\[::\]:80\s+default_server", plain) and re.search(r"return\s+444\s*;", plain)
    assert re.search(r"listen\s+\[::\]:443\s+ssl\s+default_server", tls)
    assert re.search(r"ssl_reject_handshake\s+on\s*;", tls) and re.search(r"return\s+444\s*;", tls)

    site = next(b for b in blocks if "proxy_pass" in b)
    assert "default_server" not in site and re.search(r"server_name\s+incdb\.example\.org\s*;", site)
    assert re.search(r"proxy_set_header\s+Host\s+\$server_name\s*;", site)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr\s*;", site)
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme\s*;", site)
    assert re.search(r'proxy_set_header\s+X-Forwarded-Host\s+""\s*;', site)
    # One proxy_set_header in a location would drop every one of the server's there.
    assert not re.search(r"location[^{]*\{[^}]*proxy_set_header", site)
    assert re.search(r"client_body_timeout\s+\d+s\s*;", site)
    assert not re.search(r"proxy_request_buffering\s+off", site)


def test_nginx_accepts_the_site(tmp_path):
    """``nginx -t`` on the site with a throw-away certificate (where nginx is installed)."""
    nginx = nginx_binary()
    need_service(nginx is not None, "nginx (apt-get install nginx)")
    config, _ = nginx_site_config(tmp_path)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
