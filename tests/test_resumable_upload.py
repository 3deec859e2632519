"""Resumable uploads on the server (``/upload/<slug>/resumable``): a file sent in chunks is stored byte for byte and
answers like a single upload; a chunk at another offset than the one the server holds is refused with that offset
(409); a chunk past the declared size, or a size past the cap, is refused (413); an interrupted chunk keeps the
bytes that arrived and the upload goes on from them; chunks hold the upload slots and the upload's lock; partial
uploads are removed after ``INCDB_UPLOAD_RESUME_HOURS``. The browser side (a restart during an upload) is in
``test_resumable_upload_browser.py``."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from accounts.users import create_user
from pipeline.curation.catalog import confirm_license, create_collection, get_or_create_movie
from store.config import reset_settings
from store.db import session_scope
from store.models import Upload
from store.storage import get_storage
from tests.services import Client, component_maps, wait_until, write_nifti

PASSWORD = "correct horse battery"


@pytest.fixture
def site(data_dir, tmp_path):
    """Two curators, a confirmed collection of the first, and a 4D map file of about 1 MB."""
    with session_scope() as session:
        a = create_user(session, "a@example.org", PASSWORD)
        create_user(session, "b@example.org", PASSWORD)
        collection = create_collection(session, a, get_or_create_movie(session, "Up"), "A public")
        confirm_license(session, collection, a)
        slug, owner = collection.slug, a.id
    path = write_nifti(tmp_path / "melodic_IC.nii.gz", component_maps(3, seed=4))
    return {"slug": slug, "owner": owner, "file": path, "bytes": path.read_bytes()}


def _client(email: str = "a@example.org", base_url: str | None = None) -> Client:
    import app as app_module

    client = Client(base_url) if base_url else Client(flask_app=app_module.server)
    client.sign_in(email, PASSWORD)
    return client


def _start(client: Client, slug: str, size: int, name: str = "melodic_IC.nii.gz", **headers: str):
    return client._flask.post(
        f"/upload/{slug}/resumable?name={name}",
        headers={**client.csrf_headers(), "Upload-Length": str(size), **headers},
    )


def _put(client: Client, url: str, offset: int, data: bytes, csrf: bool = True, **kwargs):
    headers = {"Upload-Offset": str(offset), "Content-Type": "application/octet-stream"}
    if csrf:
        headers.update(client.csrf_headers())
    return client._flask.put(url, data=data, headers=headers, **kwargs)


def _partial_folder(url: str) -> Path:
    from pipeline.curation.resumable_uploads import partials_root

    return next(partials_root().glob(f"*/{url.rsplit('/', 1)[1]}"))


def test_a_file_sent_in_chunks_is_stored_byte_for_byte(web, site):
    client, raw = _client(), site["bytes"]
    started = _start(client, site["slug"], len(raw))
    assert started.status_code == 201, started.text
    url = started.json["url"]
    assert started.headers["Location"] == url and started.json["offset"] == 0
    assert started.json["chunk_bytes"] == 8 * 1024 * 1024
    cuts = [0, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
    for start, end in zip(cuts[:-2], cuts[1:-1]):
        r = _put(client, url, start, raw[start:end])
        assert r.status_code == 200 and r.json == {"ok": True, "done": False, "size": len(raw), "offset": end}
        status = client._flask.get(url)
        assert status.json["offset"] == end and status.headers["Upload-Offset"] == str(end)
        assert client._flask.head(url).headers["Upload-Offset"] == str(end)
    last = _put(client, url, cuts[2], raw[cuts[2] :])
    assert last.status_code == 200, last.text
    assert last.json["maps"] == 3 and last.json["upload"]["filename"] == "melodic_IC.nii.gz"
    with session_scope() as session:
        upload = session.scalar(select(Upload))
        assert upload.sha256 == hashlib.sha256(raw).hexdigest() and upload.size == len(raw)
        assert get_storage().read_bytes(upload.storage_key) == raw
    # The data are gone; the answer stays for a client whose last response was lost.
    assert sorted(p.name for p in _partial_folder(url).iterdir()) == [".lock", "result.json", "upload.json"]
    again = _put(client, url, len(raw), b"")
    assert again.status_code == 200 and again.json["upload"] == last.json["upload"]
    status = client._flask.get(url).json
    assert status["done"] and status["status"] == 200 and status["result"]["upload"] == last.json["upload"]
    with session_scope() as session:
        assert len(session.scalars(select(Upload)).all()) == 1


def test_a_chunk_at_another_offset_is_refused_with_the_held_one(web, site):
    client, raw = _client(), site["bytes"]
    url = _start(client, site["slug"], len(raw)).json["url"]
    assert _put(client, url, 0, raw[:1000]).json["offset"] == 1000
    for wrong in (0, 500, 2000):
        r = _put(client, url, wrong, raw[wrong : wrong + 1000])
        assert r.status_code == 409, r.text
        assert r.json["offset"] == 1000 and r.headers["Upload-Offset"] == "1000"
        assert "holds 1000 bytes" in r.json["error"]
    assert (_partial_folder(url) / "partial").read_bytes() == raw[:1000]
    missing = client._flask.put(url, data=b"x", headers=client.csrf_headers())
    assert missing.status_code == 400 and "Upload-Offset" in missing.json["error"]
    assert _put(client, url, 1000, raw[1000:]).status_code == 200


def test_a_chunk_past_the_size_cap_is_refused(web, site, monkeypatch):
    monkeypatch.setenv("INCDB_MAX_UPLOAD_BYTES", "100000")
    reset_settings()
    client = _client()
    over = _start(client, site["slug"], 100001)
    assert over.status_code == 413 and "larger than the limit" in over.json["error"]
    url = _start(client, site["slug"], 100000).json["url"]
    assert _put(client, url, 0, b"\0" * 60000).status_code == 200
    declared = _put(client, url, 60000, b"\0" * 40001)
    assert declared.status_code == 413 and "past the file's size (100000 bytes" in declared.json["error"]
    # A body without Content-Length is cut off where it passes the size, and what it added is dropped.
    streamed = client._flask.put(
        url,
        input_stream=io.BytesIO(b"\1" * 50000),
        headers={**client.csrf_headers(), "Upload-Offset": "60000"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert streamed.status_code == 413, streamed.text
    assert client._flask.get(url).json["offset"] == 60000
    assert (_partial_folder(url) / "partial").read_bytes() == b"\0" * 60000


def test_a_stale_partial_is_removed_after_its_deadline(web, site, monkeypatch):
    from pipeline.curation.resumable_uploads import open_partial, remove_stale_partials

    monkeypatch.setenv("INCDB_UPLOAD_RESUME_HOURS", "2")
    reset_settings()
    client, raw = _client(), site["bytes"]
    old, busy, fresh = (
        _start(client, site["slug"], len(raw), name=f"{n}.nii.gz").json["url"] for n in ("old", "busy", "fresh")
    )
    for url in (old, busy, fresh):
        assert _put(client, url, 0, raw[:1000]).status_code == 200
    three_hours_ago = time.time() - 3 * 3600
    for url in (old, busy):
        for path in [_partial_folder(url), *_partial_folder(url).iterdir()]:
            os.utime(path, (three_hours_ago, three_hours_ago))
    busy_upload, old_folder = open_partial(busy.rsplit("/", 1)[1], site["owner"]), _partial_folder(old)
    with busy_upload.writing():  # a request is writing to it right now: kept, however old
        assert remove_stale_partials() == [old_folder]
    assert not old_folder.exists()
    gone = client._flask.get(old)
    assert gone.status_code == 404 and "no longer on the server" in gone.json["error"]
    assert "kept for 2 hours" in gone.json["error"]
    assert _put(client, old, 1000, raw[1000:]).status_code == 404
    assert client._flask.get(fresh).json["offset"] == 1000
    # Starting an upload sweeps too.
    _start(client, site["slug"], len(raw), name="new.nii.gz")
    assert client._flask.get(busy).status_code == 404 and client._flask.get(fresh).status_code == 200


def test_chunks_hold_the_slots_and_the_upload_lock_and_check_who_sends(web, site, monkeypatch):
    from pipeline.curation.resumable_uploads import open_partial
    from web.upload import process_uploads, user_upload_slot

    monkeypatch.setenv("INCDB_UPLOADS_PER_USER", "1")
    monkeypatch.setenv("INCDB_UPLOADS_PER_PROCESS", "1")
    reset_settings()
    client, raw = _client(), site["bytes"]
    url = _start(client, site["slug"], len(raw)).json["url"]
    with user_upload_slot(site["owner"], 1, 3600):
        r = _put(client, url, 0, raw[:1000])
        assert r.status_code == 429 and "at the same time (1)" in r.json["error"]
    with process_uploads.place(1):
        assert _put(client, url, 0, raw[:1000]).status_code == 503
    with open_partial(url.rsplit("/", 1)[1], site["owner"]).writing():
        r = _put(client, url, 0, raw[:1000])
        assert r.status_code == 423 and r.json["offset"] == 0 and r.headers["Retry-After"] == "5"
    assert _put(client, url, 0, raw[:1000], csrf=False).status_code == 403
    other = _client("b@example.org")
    assert other._flask.get(url).status_code == 404
    assert _put(other, url, 0, raw[:1000]).status_code == 404
    assert _start(other, site["slug"], len(raw)).status_code == 403
    assert _put(client, url, 0, raw[:1000]).json["offset"] == 1000


def test_an_interrupted_chunk_keeps_what_arrived_and_the_upload_goes_on(data_dir, site, tmp_path):
    """Over a real server: the connection breaks in the middle of a chunk; the server holds the bytes that
    arrived before the break (flushed to disk), and the rest is sent from there."""
    import app as app_module
    from tests.browser import serve_wsgi_in_thread

    big = write_nifti(tmp_path / "big.nii", np.random.default_rng(5).standard_normal((91, 109, 91)))
    raw = big.read_bytes()
    with serve_wsgi_in_thread(app_module.server) as base:
        client = _client(base_url=base)
        r = client._session.post(
            f"{base}/upload/{site['slug']}/resumable?name=big.nii",
            headers={**client.csrf_headers(), "Upload-Length": str(len(raw))},
        )
        url = r.json()["url"]
        host, port = base.rsplit("//", 1)[1].split(":")
        cookies = "; ".join(f"{c.name}={c.value}" for c in client._session.cookies)
        head = (
            f"PUT {url} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookies}\r\n"
            f"X-CSRFToken: {client.csrf_headers()['X-CSRFToken']}\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(raw)}\r\n\r\n"
        ).encode()
        sent = 1_000_000
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(head + raw[:sent])
            time.sleep(0.5)

        # Once the server has noticed the break, the upload is unlocked and holds a prefix of what was sent.
        def settled():
            answer = client._session.put(base + url, data=b"", headers={**client.csrf_headers(), "Upload-Offset": "0"})
            return answer.json() if answer.status_code == 409 else None

        held = wait_until(settled, 20, "the server to end the broken chunk")["offset"]
        assert 0 < held <= sent
        assert (_partial_folder(url) / "partial").read_bytes() == raw[:held]
        done = client._session.put(
            base + url, data=raw[held:], headers={**client.csrf_headers(), "Upload-Offset": str(held)}
        )
        assert done.status_code == 200 and done.json()["maps"] == 1, done.text
    with session_scope() as session:
        assert get_storage().read_bytes(session.scalar(select(Upload.storage_key))) == raw


def test_a_user_leaves_few_uploads_and_the_unfinished_ones_go_last(web, site):
    from pipeline.curation.resumable_uploads import PARTIALS_PER_USER, partials_root

    client, raw = _client(), site["bytes"]
    unfinished = _start(client, site["slug"], len(raw)).json["url"]
    assert _put(client, unfinished, 0, raw[:1000]).status_code == 200
    garbage = b"not a NIfTI file at all" * 20
    for i in range(PARTIALS_PER_USER + 1):  # refused files: over, their answers kept
        url = _start(client, site["slug"], len(garbage), name=f"bad{i}.nii").json["url"]
        assert _put(client, url, 0, garbage).status_code == 422
        assert client._flask.get(url).json["status"] == 422  # the answer, for a client that lost it
    assert len(list((partials_root() / str(site["owner"])).iterdir())) == PARTIALS_PER_USER
    assert client._flask.get(unfinished).json["offset"] == 1000
