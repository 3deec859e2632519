"""The public decoder's HTTP side: ``POST /api/decode``, ``GET``/``DELETE /api/decode/<id>``, and the files of a
result (its volumes on the grid for the viewer, its profile as CSV). The work is ``pipeline.decoding.visitors``'.

A file arrives either as the raw request body (``assets/upload.js`` on ``/decode``, with ``?name=``, ``mask=`` and
``reference=`` in the query string) or as ``multipart/form-data`` with the field ``file`` (and optional fields
``mask`` and ``reference``). Either way the body streams to a temporary file under the curator upload's rules
(``web.upload``: a minimum rate, a deadline, per-process and per-sender concurrent slots), so one visitor sending a
large file holds one thread and never the decoder. No session cookie: no CSRF token is needed (the request carries
no privilege); with a session cookie, the ``X-CSRFToken`` header must match it.
"""

from __future__ import annotations

import hmac
import io
import logging
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask
from werkzeug.exceptions import ClientDisconnected
from werkzeug.formparser import MultiPartParser
from werkzeug.http import parse_options_header

from pipeline.curation.uploads import check_file_name
from pipeline.decoding import visitors
from pipeline.jobs.tasks import run_job
from store.config import get_settings
from store.db import session_scope
from web.api import json_response, similar_item
from web.auth import CSRF_HEADER, CSRF_SESSION_KEY, client_address, viewer
from web.csvfile import csv_writer
from web.files import PRIVATE_CACHE, _send_map
from web.upload import (
    SLOT_CHECK_ALLOWANCE_S,
    Transfer,
    UploadRefused,
    _request_socket,
    _stream_to,
    process_uploads,
    user_upload_slot,
)

blueprint = flask.Blueprint("decode", __name__)
log = logging.getLogger("incdb.decode")

DECODE_TASK = "incdb.decode"
CONCURRENT_PER_SENDER = 2  # uploads to the decoder at once from one address or account
MULTIPART_OVERHEAD = 64 * 1024  # form fields and part headers around the file
_celery: dict[str, Any] = {}
_local_jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="incdb-decode-job")


def use_celery(celery_app) -> None:
    """Send background decodings to Celery workers when a broker is configured (``app.py`` calls this)."""
    _celery["app"] = celery_app


def dispatch(job_id: int) -> None:
    """Start a ``decode`` job: on a Celery worker with a broker, else on this process's one decoding thread (a
    process that dies with it leaves a job without heartbeat, which ``pipeline.jobs.lifecycle`` marks failed)."""
    if get_settings().broker_url and "app" in _celery:
        _celery["app"].send_task(DECODE_TASK, args=[job_id])
    else:
        _local_jobs.submit(_run_logged, job_id)


def _run_logged(job_id: int) -> None:
    try:
        run_job(job_id)
    except Exception:  # noqa: BLE001 - recorded on the Job row by running_job; the thread must live on
        log.exception("decode job %s failed", job_id)


def _refusal(status: int, message: str, retry_after: int | None = None) -> flask.Response:
    response = json_response({"ok": False, "error": message}, status)
    response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after)))
    return response


@blueprint.before_request
def _csrf_with_a_session_cookie():
    """A state-changing request that carries the session cookie must carry its CSRF token too."""
    if flask.request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if flask.current_app.config.get("SESSION_COOKIE_NAME", "session") not in flask.request.cookies:
        return None
    expected = flask.session.get(CSRF_SESSION_KEY, "")
    sent = flask.request.headers.get(CSRF_HEADER, "")
    if expected and sent and hmac.compare_digest(expected, sent):
        return None
    return _refusal(
        403,
        "Missing or wrong CSRF token: reload the page and try again (or send the request without the session cookie).",
    )


def _sender_key(user, client: str) -> str:
    return f"decode-user-{user.id}" if getattr(user, "is_authenticated", False) else f"decode-{client[:40]}"


def _receive(tmp: Path, user, name_hint: str | None) -> tuple[Path, str, dict[str, str]]:
    """Stream the body to ``tmp``; returns the file, its name and the options (query string, then form)."""
    settings = get_settings()
    limits = visitors.limits_for(user)
    content_type = flask.request.headers.get("Content-Type", "")
    multipart = content_type.lower().startswith("multipart/form-data")
    declared = flask.request.content_length
    options = {k: flask.request.args.get(k, "") for k in ("mask", "reference")}
    if not multipart:
        try:
            name = check_file_name(name_hint or "")
        except ValueError as exc:
            raise UploadRefused(400, str(exc)) from None
        visitors.check_kind(name)
        visitors.check_size(declared, name, user)
    else:
        name = ""
        if declared is not None and limits.max_bytes and declared > limits.max_bytes + MULTIPART_OVERHEAD:
            visitors.check_size(declared - MULTIPART_OVERHEAD, "The file", user)
    body = tmp / (f"received{visitors.check_kind(name)}" if name else "body")
    transfer = Transfer(
        name or "the file",
        declared,
        settings.upload_min_rate,
        settings.upload_rate_window_s,
        settings.upload_deadline_s,
        _request_socket(),
    )
    limit = (limits.max_bytes + (MULTIPART_OVERHEAD if multipart else 0)) if limits.max_bytes else 2**62
    try:
        received, _sha = _stream_to(body, flask.request.stream, limit, transfer)
    except UploadRefused as exc:
        if exc.status == 413:
            visitors.check_size(None, name or "The file", user, exceeded=True)
        raise
    except (ClientDisconnected, OSError):
        raise UploadRefused(
            400, "The upload was interrupted (the connection ended before the whole file had arrived)."
        ) from None
    if not multipart:
        if received == 0:
            raise UploadRefused(400, f"{name}: the file is empty.")
        return body, name, options
    return _file_part(tmp, body, received, content_type, options)


def _file_part(
    tmp: Path, body: Path, size: int, content_type: str, options: dict[str, str]
) -> tuple[Path, str, dict[str, str]]:
    _, params = parse_options_header(content_type)
    boundary = params.get("boundary", "").encode()
    if not boundary:
        raise UploadRefused(400, "The multipart body has no boundary.")
    parts: list[Path] = []

    def to_file(*_args, **_kwargs):
        path = tmp / f"part-{len(parts)}"
        parts.append(path)
        return open(path, "w+b")  # noqa: SIM115 - closed with the FileStorage below

    parser = MultiPartParser(stream_factory=to_file, max_form_memory_size=1024 * 1024, max_form_parts=20)
    try:
        with open(body, "rb") as fh:
            form, files = parser.parse(fh, boundary, size)
    except Exception as exc:  # noqa: BLE001 - werkzeug raises several kinds for a malformed body
        raise UploadRefused(400, f"The multipart body could not be read ({str(exc)[:120]}).") from None
    upload = files.get("file")
    if upload is None:
        for other in files.values():
            other.close()
        raise UploadRefused(400, "Send the map in the multipart field 'file'.")
    try:
        name = check_file_name(upload.filename or "")
    except ValueError as exc:
        raise UploadRefused(400, str(exc)) from None
    index = [p.name for p in parts].index(Path(upload.stream.name).name)
    upload.close()
    for other in files.values():
        other.close()
    path = parts[index].rename(tmp / f"received{visitors.check_kind(name)}")  # readers go by the ending
    if path.stat().st_size == 0:
        raise UploadRefused(400, f"{name}: the file is empty.")
    for key in ("mask", "reference"):
        if form.get(key):
            options[key] = form.get(key)
    return path, name, options


# Decodings run in requests, per process: each holds a chunk of volumes (bounded by pipeline.maps.nifti.CHUNK_BYTES and
# the decoder's volume chunk) and the CPU; more requests wait for their turn while holding their slots.
_inline_decodes = threading.BoundedSemaphore(1)


@blueprint.post("/api/decode")
def create():
    """Receive one map, check it, and decode it now (3D and small 4D) or start a job; answers its address."""
    user = viewer()
    client = visitors.client_hash(client_address())
    tmp_dir: Path | None = None
    settings = get_settings()
    try:
        with session_scope() as session:
            visitors.check_rate(session, user, client)
        expire_after = (settings.upload_deadline_s or 24 * 3600) + SLOT_CHECK_ALLOWANCE_S
        # A sender's slots and the process's: sending holds a thread, so neither one sender nor all of them
        # together can take every thread of the web process.
        with (
            user_upload_slot(_sender_key(user, client), CONCURRENT_PER_SENDER, expire_after),
            process_uploads.place(settings.uploads_per_process),
        ):
            base = settings.data_dir / "tmp" / "uploads"
            base.mkdir(parents=True, exist_ok=True)
            tmp_dir = Path(tempfile.mkdtemp(prefix="decode-", dir=base))
            path, name, options = _receive(tmp_dir, user, flask.request.args.get("name"))
            accepted = visitors.accept(
                path, name, path.stat().st_size, user, client, options.get("mask"), options.get("reference")
            )
            if accepted.inline:
                # Still inside the sender's slot, and one in-request decoding per process at a time: neither
                # one sender nor many can run more decodings at once than the process has room for.
                with _inline_decodes:
                    visitors.run_decode(accepted.result_id)
        if not accepted.inline:
            dispatch(accepted.job_id)
        with session_scope() as session:
            row = visitors.find(session, accepted.token)
            body = {"ok": True, **visitors.summary(row)}
        return json_response(body, 200 if accepted.inline else 202)
    except UploadRefused as exc:
        if exc.status == 429:  # only the sender's slots refuse with 429 here
            return _refusal(
                429,
                f"{CONCURRENT_PER_SENDER} files are being sent to the decoder from here already; "
                "wait until one has finished, then send this one again.",
                60,
            )
        return _refusal(exc.status, exc.message, exc.retry_after)
    except visitors.DecodeRefused as exc:
        if exc.status != 429:  # a refused file still cost a check: it counts toward the sender's hourly cap
            visitors.record_refusal(
                user, client, flask.request.args.get("name", ""), flask.request.content_length, exc.message
            )
        return _refusal(exc.status, exc.message, exc.retry_after)
    except Exception:
        log.exception("decoding an upload failed")
        return _refusal(500, "The server could not decode this file (an internal error; the log has details).")
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


@blueprint.get("/api/decode/<token>")
def result(token: str):
    """The state of a decoding and, once done, every volume's terms (best first) and similar components."""
    with session_scope() as session:
        row = visitors.find(session, token)
        if row is None:
            return json_response({"error": "decoding not found (it may have expired)"}, 404)
        body = visitors.summary(row)
        body["volumes"] = []
        payload = visitors.load_payload(row) if row.status in ("done", "failed") else None
        if payload is not None:
            for volume in visitors.shown_volumes(session, viewer(), payload):
                body["volumes"].append(
                    {
                        "volume": volume["volume"],
                        "error": volume["error"],
                        "warnings": volume["warnings"],
                        "terms": [{"term": t["term"], "r": round(t["r"], 6)} for t in volume["terms"]],
                        "similar": [similar_item(s) for s in volume["similar"]],
                    }
                )
    response = json_response(body)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@blueprint.delete("/api/decode/<token>")
def remove(token: str):
    """Delete a result at once (its owner, signed in, or an administrator)."""
    with session_scope() as session:
        row = visitors.find(session, token)
        if row is None:
            return json_response({"error": "decoding not found (it may have expired)"}, 404)
        if not visitors.can_delete(viewer(), row):
            return json_response({"error": "only the curator who sent this map (signed in) can delete it"}, 403)
        visitors.delete_result(session, row)
    return json_response({"deleted": True})


def _row_or_404(token: str):
    with session_scope() as session:
        row = visitors.find(session, token)
        if row is None or row.status != "done":
            flask.abort(404)
        session.expunge(row)
        return row


@blueprint.get("/decode/<token>/volumes/<int:volume>.nii.gz")
def volume_file(token: str, volume: int):
    row = _row_or_404(token)
    if not 1 <= volume <= row.volumes:
        flask.abort(404)
    return _send_map(visitors.volume_key(row.token, volume), f"decoded-map-volume-{volume}.nii.gz", PRIVATE_CACHE)


@blueprint.get("/decode/<token>/profile.csv")
def profile_csv(token: str):
    row = _row_or_404(token)
    payload = visitors.load_payload(row)
    if payload is None:
        flask.abort(404)
    with session_scope() as session:
        volumes = visitors.shown_volumes(session, viewer(), payload, limit=0)
    buf = io.StringIO()
    writer = csv_writer(buf)
    writer.writerow(["volume", "rank", "term", "r"])
    for volume in volumes:
        for rank, term in enumerate(volume["terms"], start=1):
            writer.writerow([volume["volume"], rank, term["term"], f"{term['r']:.6f}"])
    response = flask.Response(buf.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="decoding-profile.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
