"""Request body limits (``web.limits``): a body above its limit is refused (413, JSON) before it is read or parsed.

A real gunicorn worker (the project's ``gunicorn.conf.py``, one process) is sent a 100 MB callback body, once with
a Content-Length and once chunked, and its peak memory (``VmHWM``, the kernel's high-water mark of its resident
set) must stay far below the body's size. The Flask test client checks the rest: every route but the upload routes
refuses bodies over ``INCDB_MAX_REQUEST_BYTES``, and a callback body may be larger (up to
``INCDB_MAX_CALLBACK_BYTES``) only in text, as the events file of the annotation page's drop zone is.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from tests.conftest import use_environment
from tests.services import Client, running, service_env, start_gunicorn

MIB = 1024**2
HUGE = 100 * 1000**2  # the hostile probe's body
CALLBACK = "/_dash-update-component"


def noop_body(value_json: bytes = b"null") -> tuple[bytes, bytes]:
    """The JSON of a request for the app's no-op callback (which answers with its input), cut around the value."""
    marker = "VALUE"
    text = json.dumps(
        {
            "output": "noop-out.data",
            "outputs": {"id": "noop-out", "property": "data"},
            "inputs": [{"id": "noop-in", "property": "data", "value": marker}],
            "state": [],
            "changedPropIds": ["noop-in.data"],
        }
    ).encode()
    head, tail = text.split(json.dumps(marker).encode())
    return head, tail


def list_of_zeros(size: int) -> tuple[int, Iterator[bytes]]:
    """A callback body of about ``size`` bytes whose value is a JSON list of zeros: (its exact length, its pieces
    of at most 1 MiB; the body is never held whole)."""
    head, tail = noop_body()
    count = (size - len(head) - len(tail)) // 2  # "[" + "0," * (count - 1) + "0" + "]"

    def pieces() -> Iterator[bytes]:
        yield head + b"["
        block, left = b"0," * (MIB // 2), count - 1
        while left:
            n = min(left, MIB // 2)
            yield block[: 2 * n]
            left -= n
        yield b"0]" + tail

    return len(head) + 2 * count + 1 + len(tail), pieces()


# --- a real worker ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, reference_template) -> Path:
    path = tmp_path_factory.mktemp("limits") / "data"
    shutil.copytree(reference_template, path)
    return path


@pytest.fixture(scope="module")
def worker(data_path, tmp_path_factory) -> Iterator[tuple[str, psutil.Process]]:
    """(address, the one worker process) of gunicorn serving the app."""
    log = tmp_path_factory.mktemp("limits-logs") / "gunicorn.log"
    service = start_gunicorn(service_env(data_path), log, workers=1)
    with running(service):
        workers = psutil.Process(service.pid).children()
        assert len(workers) == 1, workers
        yield service.url, workers[0]


def peak_rss(process: psutil.Process) -> int:
    """The process's highest resident set size so far, in bytes (``VmHWM``; Linux)."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def post(url: str, pieces: Iterator[bytes], length: int | None) -> tuple[int, bytes]:
    """POST the pieces to the callback route, with a Content-Length or chunked; (status, body) of the answer.

    A server that refuses a body answers before it has all of it and then closes the connection: sending stops
    there, and the answer, already received, is read."""
    parts = urlsplit(url)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        sock.sendall(
            f"POST {CALLBACK} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n".encode()
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in pieces:
                sock.sendall(piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
            if length is None:
                sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def warm_up(url: str) -> None:
    """Dash's first-request set-up and the callback's imports, so that the peak measured is the body's."""
    client = Client(url)
    assert client.get("/").status_code == 200
    head, tail = noop_body(b"[1, 2, 3]")
    assert (
        client.post(CALLBACK, data=head + b"[1, 2, 3]" + tail, headers={"Content-Type": "application/json"}).status_code
        == 200
    )


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_100_mb_callback_body_is_refused_without_the_memory_it_would_take(worker, declared) -> None:
    url, process = worker
    warm_up(url)
    before = peak_rss(process)
    length, pieces = list_of_zeros(HUGE)
    status, body = post(url, pieces, length if declared else None)
    grown = peak_rss(process) - before
    assert status == 413, (status, body[:200])
    # Declared, the body is past the callback's limit for any content; chunked, past the limit of any body.
    limit = "24.0 MiB" if declared else "4.0 MiB"
    assert json.loads(body)["error"] == f"The request is larger than the {limit} this address accepts."
    # Unrefused, this body took 0.7 GB; refused, at most the limit (chunked: 4 MiB read, then copied once).
    assert grown < 16 * MIB, f"the worker's peak memory grew by {grown / MIB:.0f} MiB"
    warm_up(url)  # and the worker serves on


# --- the rules, through the test client ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(data_path):
    use_environment(data_path)
    from app import server

    return server


@pytest.fixture(autouse=True)
def _use_data(data_path):
    use_environment(data_path)


def test_bodies_over_the_limit_are_refused_on_every_route_but_the_uploads(server) -> None:
    client = Client(flask_app=server)
    body = b"x" * (4 * MIB + 1)
    for path in ("/api/stats", "/", "/movies", "/api/decode/abc", "/_dash-layout", "/nothere"):
        response = client.post(path, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, path
        assert response.json()["error"] == "The request is larger than the 4.0 MiB this address accepts."
    # The upload routes take their files under caps of their own: this anonymous visitor is asked to sign in,
    # and the decoder reads the body (and finds no NIfTI in it).
    assert client.post("/upload/some-collection?name=x.nii.gz", data=body).status_code == 401
    decoded = client.post("/api/decode?name=x.nii.gz", data=body, headers={"Content-Type": "application/gzip"})
    assert decoded.status_code == 422 and "accepts" not in decoded.json()["error"]
    # Within the limit, a body reaches the route as before.
    assert client.post("/api/stats", data=b"x" * (4 * MIB)).status_code == 405


def test_a_larger_callback_body_is_accepted_only_as_text(server) -> None:
    """The largest events file the annotation page's drop zone takes (twice INCDB_ANNOTATION_MAX_BYTES), as the
    base64 data URL dcc.Upload sends, passes; the same size in JSON values, or past INCDB_MAX_CALLBACK_BYTES in
    text, does not."""
    from store.config import get_settings

    client = Client(flask_app=server)
    head, tail = noop_body()
    dropped = 2 * get_settings().annotation_max_bytes
    events = "data:text/tab-separated-values;base64," + base64.b64encode(b"\t" * dropped).decode()
    response = client.post(
        CALLBACK, data=head + json.dumps(events).encode() + tail, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["response"]["noop-out"]["data"] == events

    values = b"".join(list_of_zeros(len(events))[1])
    response = client.post(CALLBACK, data=values, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == (
        "The callback request, without its text, is larger than the 4.0 MiB this address accepts."
    )
    too_long = head + json.dumps("x" * 24 * MIB).encode() + tail
    response = client.post(CALLBACK, data=too_long, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "The request is larger than the 24.0 MiB this address accepts."
