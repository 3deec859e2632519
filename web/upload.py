"""Upload endpoint (DESIGN section 9): one file per request (or, for large files, per resumable upload of chunks),
streamed to a temporary file under a hard size cap.

``assets/upload.js`` sends each file as the raw request body (``POST /upload/<collection slug>?name=<file name>``)
with the CSRF header, so neither the browser nor this process ever holds a whole file in memory. The file is
checked before it is kept (type, size, a readable NIfTI header and an intact gzip stream, an archive that is safe
and holds at least one NIfTI), then stored with ``pipeline.curation.catalog.add_upload``. Answers are JSON with an
``error`` a curator can act on.

An upload holds one of the web process's threads while its body arrives, so a few clients sending a byte a second
could once take every thread. Hence the limits (``store.config``; all refusals are JSON, no Upload row is made,
and nothing received is kept but the bytes of a resumable upload's chunk that was cut short, below):

- the body must arrive at ``INCDB_UPLOAD_MIN_RATE`` bytes/s or more, measured over each ``INCDB_UPLOAD_RATE_WINDOW_S``
  (the first window is the grace period), and be complete within ``INCDB_UPLOAD_DEADLINE_S``. A read blocked on a
  client that stopped sending cannot check a clock, so a watchdog thread per process ends such uploads by shutting
  the socket's reading side, which wakes the blocked read (408);
- ``INCDB_UPLOADS_PER_USER`` concurrent uploads per user on this machine, counted across processes with a locked
  file per upload under the data directory: the kernel drops the lock of a process that dies, and a slot older
  than the deadline plus an allowance for the checks no longer counts, so a crash cannot keep a slot (429);
- ``INCDB_UPLOADS_PER_PROCESS`` concurrent uploads per web process (``gunicorn.conf.py`` makes it half of the
  process's threads), so that pages and the API always find a free thread (503);
- quotas counted from the Upload rows, so they hold across processes and machines: ``INCDB_UPLOADS_PER_HOUR`` files
  in the last hour and ``INCDB_UPLOAD_BYTES_PER_DAY`` bytes in the last 24 hours into the user's collections.
  Administrators are exempt from the quotas (they restore and move data sets); they do count for the collection
  owner, because Upload rows record the collection, not who sent the file (429).

Resumable uploads, for large files (``assets/upload.js`` sends files over 8 MiB this way; the decoder and API
clients may keep to the single request): ``POST /upload/<slug>/resumable?name=`` with the file's size in
``Upload-Length`` runs every check that needs no byte of the file (type, collection, size cap, quotas) and answers
201 with the upload's URL. Each ``PUT`` to that URL appends its body at ``Upload-Offset``, which must equal the
bytes the server holds (else 409 with them, in the body's ``offset`` and the ``Upload-Offset`` header); ``GET``
(or ``HEAD``) on it tells that offset. A chunk is one request under every rule above: it holds a user and a process
slot, keeps the minimum rate and the deadline, and may not go past the declared size (413). The bytes of a chunk
whose connection breaks are kept, so after a dropped connection or a restart of the web process the client asks
for the offset and goes on from there. The chunk that completes the file has it checked and stored and gets the
answer a single request gets; that answer is kept, so a client whose last response was lost asks again and gets
it. ``pipeline.curation.resumable_uploads`` keeps the partial files, and removes them ``INCDB_UPLOAD_RESUME_HOURS``
after
their last byte.

``GET /upload/<slug>/raw.zip`` streams a collection's uploads as received (owners and admins only).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import ClientDisconnected

from pipeline.curation.archives import ArchiveError, file_kind, storage_suffix
from pipeline.curation.catalog import add_upload
from pipeline.curation.resumable_uploads import (
    PartialBusy,
    PartialGone,
    PartialUpload,
    create_partial,
    open_partial,
    remove_stale_partials,
)
from pipeline.curation.uploads import check_file_name, check_upload
from pipeline.jobs.lifecycle import active_job
from pipeline.maps.nifti import NiftiError
from pipeline.temporal.timing import TimeCourseError, Timing
from store.access import can_edit, can_view
from store.config import get_settings
from store.db import session_scope
from store.models import Collection, Upload, User, utcnow
from store.queries import lookup_key
from store.units import human_bytes
from web.auth import signed_in_user
from web.files import zip_stream

blueprint = flask.Blueprint("upload", __name__)
log = logging.getLogger("incdb.upload")

CHUNK = 1024 * 1024
OFFSET_HEADER = "Upload-Offset"  # resumable uploads: where a chunk starts, and what the server holds
LENGTH_HEADER = "Upload-Length"  # resumable uploads: the whole file's size, declared when the upload starts


class UploadRefused(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


def _json(status: int, body: dict, retry_after: int | None = None, offset: int | None = None) -> flask.Response:
    """An answer that no cache keeps; ``offset``: the bytes the server holds of a resumable upload."""
    response = flask.jsonify(body if offset is None else {**body, "offset": offset})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, int(retry_after)))
    if offset is not None:
        response.headers[OFFSET_HEADER] = str(offset)
    return response


def _error(status: int, message: str, retry_after: int | None = None) -> flask.Response:
    return _json(status, {"ok": False, "error": message}, retry_after)


def _editable_collection(slug: str, user) -> int:
    if lookup_key(slug) is None:  # NUL or an absurd length: PostgreSQL would refuse the query
        raise UploadRefused(404, "No such collection.")
    with session_scope() as session:
        collection = session.scalar(select(Collection).where(Collection.slug == slug))
        if collection is None or not can_view(user, collection):
            raise UploadRefused(404, "No such collection.")
        if not can_edit(user, collection):
            raise UploadRefused(403, "Only the owner of this collection (or an administrator) can upload to it.")
        if collection.license_confirmed_at is None:
            raise UploadRefused(409, f"Confirm first that you may share these data under {collection.license}.")
        if active_job(session, collection.id) is not None:
            raise UploadRefused(409, "The collection is being processed; upload again when processing has ended.")
        return collection.id


def human_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} minutes"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


# --- the rate and the deadline of one upload -------------------------------------------------------------------

WATCH_INTERVAL_S = 0.5


class Transfer:
    """One request body being received: how much arrived when, checked against the minimum rate and the deadline.

    ``received`` counts what the server's reader handed over; up to ``slack`` more bytes may sit in the reader's
    buffer, so a window passes when ``received`` plus ``slack`` reaches the minimum."""

    def __init__(
        self,
        name: str,
        declared: int | None,
        min_rate: int,
        window_s: int,
        deadline_s: int,
        sock: socket.socket | None = None,
        slack: int = 0,
    ):
        self.name, self.declared, self.sock, self.slack = name, declared, sock, slack
        self.min_rate, self.window_s, self.deadline_s = min_rate, window_s, deadline_s
        self.started = self.mark_time = time.monotonic()
        self.received = self.mark_bytes = 0
        self.refusal: str | None = None
        self._lock = threading.Lock()

    def note(self, n: int) -> None:
        self.received += n
        self.check()

    def check(self, now: float | None = None) -> str | None:
        """The refusal, once the upload is too slow or too long (then the socket stops reading too)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.refusal is not None:
                return self.refusal
            elapsed = now - self.started
            if self.deadline_s and elapsed > self.deadline_s:
                got = human_bytes(self.received) + (f" of {human_bytes(self.declared)}" if self.declared else "")
                self.refusal = (
                    f"{self.name}: the upload did not finish within {human_duration(self.deadline_s)}, "
                    f"the longest one file may take here ({got} had arrived). Upload it over a faster "
                    "connection, or split the data into smaller files (one run per file)."
                )
            elif self.min_rate and now - self.mark_time >= self.window_s:
                span = now - self.mark_time
                arrived = self.received - self.mark_bytes
                if arrived + self.slack < self.min_rate * span:
                    self.refusal = (
                        f"{self.name}: the upload was too slow ({human_bytes(arrived / span)}/s over "
                        f"the last {span:.0f} s; the server needs at least "
                        f"{human_bytes(self.min_rate)}/s). Check the connection and upload the file "
                        "again."
                    )
                else:
                    self.mark_time, self.mark_bytes = now, self.received
            refusal = self.refusal
        if refusal is not None:
            self._stop_reading()
        return refusal

    def _stop_reading(self) -> None:
        # Shutting the reading side wakes a read blocked in another thread (it returns end-of-file); the
        # writing side stays open for the JSON answer. socket.socket's own method, because on a TLS socket the
        # SSL object's shutdown would tear down the state the answer needs.
        if self.sock is None:
            return
        with contextlib.suppress(OSError, TypeError, ValueError):  # the connection is gone already
            socket.socket.shutdown(self.sock, socket.SHUT_RD)


class _Watchdog:
    """A thread per process that checks the uploads in flight while their reads are blocked; it ends when none
    is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transfers: set[Transfer] = set()
        self._thread: threading.Thread | None = None

    def add(self, transfer: Transfer) -> None:
        with self._lock:
            self._transfers.add(transfer)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="incdb-upload-watchdog", daemon=True)
                self._thread.start()

    def discard(self, transfer: Transfer) -> None:
        with self._lock:
            self._transfers.discard(transfer)

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            with self._lock:
                transfers = list(self._transfers)
                if not transfers:
                    self._thread = None
                    return
            for transfer in transfers:
                try:
                    transfer.check()
                except Exception:  # noqa: BLE001 - the watchdog must outlive any one upload
                    log.exception("upload watchdog: checking %s failed", transfer.name)


_watchdog = _Watchdog()


def _request_socket() -> socket.socket | None:
    """The client connection under gunicorn or werkzeug's server (None under the test client, and for HTTP/2,
    where one connection carries other requests too)."""
    environ = flask.request.environ
    if not str(environ.get("SERVER_PROTOCOL", "")).startswith("HTTP/1"):
        return None
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if isinstance(sock, socket.socket) else None


def _stream_to(
    path: Path, stream: IO[bytes], limit: int, transfer: Transfer | None = None, append: bool = False
) -> tuple[int, str]:
    """Copy the request body to ``path``; refuse as soon as it passes ``limit``, or when ``transfer`` finds it too
    slow or too long. Returns (bytes, sha256 of these bytes).

    ``append``: add to the end of ``path`` (a chunk of a resumable upload) and flush to disk on the way out, also
    when the body is refused or cut short, so that every byte that arrived is kept for the next chunk."""
    digest = hashlib.sha256()
    # Reads return only when full: small enough that a slow but acceptable client shows progress every window.
    size = (
        CHUNK
        if transfer is None or not transfer.min_rate
        else max(256, min(CHUNK, transfer.min_rate * transfer.window_s // 4))
    )
    if transfer is not None:
        transfer.slack = size
        _watchdog.add(transfer)
    try:
        with open(path, "ab" if append else "wb") as out:
            try:
                received = _copy(stream, out, size, limit, digest, transfer)
            finally:
                if append:
                    out.flush()
                    os.fsync(out.fileno())
    finally:
        if transfer is not None:
            _watchdog.discard(transfer)
    return received, digest.hexdigest()


def _copy(stream: IO[bytes], out: IO[bytes], size: int, limit: int, digest, transfer: Transfer | None) -> int:
    """``_stream_to``'s loop: reads of ``size`` bytes until the body ends; returns the bytes copied."""
    received = 0
    while True:
        try:
            chunk = stream.read(size)
        except (OSError, ValueError, ClientDisconnected):
            if transfer is not None and transfer.refusal:
                raise UploadRefused(408, transfer.refusal) from None
            raise
        if transfer is not None:
            transfer.note(len(chunk))
            if transfer.refusal:
                raise UploadRefused(408, transfer.refusal)
        if not chunk:
            return received
        received += len(chunk)
        if received > limit:
            raise UploadRefused(413, f"The file is larger than the limit of {human_bytes(limit)}.")
        digest.update(chunk)
        out.write(chunk)


# --- concurrent uploads ----------------------------------------------------------------------------------------

# Checking and storing a received file (decompressing up to 2 GiB, copying it to object storage) may take this
# long after the deadline; a slot held longer than both belongs to a request that hangs, and stops counting.
SLOT_CHECK_ALLOWANCE_S = 1800


def _slot_folder(user_id: int | str) -> Path:
    """A user's slot folder; a text key (letters, digits and ``-`` only) names another kind of sender."""
    name = str(int(user_id)) if isinstance(user_id, int) else "".join(ch for ch in user_id if ch.isalnum() or ch == "-")
    return get_settings().data_dir / "tmp" / "upload-slots" / name


def held_slots(user_id: int | str, expire_after_s: float) -> int:
    """Uploads of this user in flight on this machine. Slot files whose holder is gone are removed."""
    folder = _slot_folder(user_id)
    if not folder.is_dir():
        return 0
    held, now = 0, time.time()
    for entry in folder.glob("slot-*"):
        try:
            fh = open(entry, "rb")  # noqa: SIM115 - closed below, after the lock test
        except FileNotFoundError:
            continue  # released meanwhile
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if now - os.fstat(fh.fileno()).st_mtime <= expire_after_s:
                    held += 1
                continue
            entry.unlink(missing_ok=True)  # its process died, or it was just released
    return held


@contextmanager
def user_upload_slot(user_id: int | str, limit: int, expire_after_s: float) -> Iterator[None]:
    """Hold one of ``limit`` concurrent upload slots of a user, across the processes of this machine (429 when
    all are taken). A slot is a locked file: flock locks belong to the open file, so two threads of one process
    exclude each other as two processes do, and a killed process's locks are dropped by the kernel."""
    if not limit:
        yield
        return
    folder = _slot_folder(user_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".guard", "a+b") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one count-and-take at a time for this user
        held = held_slots(user_id, expire_after_s)
        if held >= limit:
            raise UploadRefused(
                429,
                f"You have {held} uploads running already, the most one curator may send "
                f"at the same time ({limit}). Wait until one of them has finished (another "
                "browser tab or window may be sending it), then upload this file again.",
                retry_after=60,
            )
        path = folder / f"slot-{uuid.uuid4().hex}"
        slot = open(path, "wb")  # noqa: SIM115 - held for the whole upload, closed below
        fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        slot.close()


class _ProcessUploads:
    """Uploads in flight in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    @contextmanager
    def place(self, limit: int) -> Iterator[None]:
        with self._lock:
            if limit and self.count >= limit:
                raise UploadRefused(
                    503,
                    "The server is receiving as many uploads as it can at the moment. Upload "
                    "this file again in a minute.",
                    retry_after=60,
                )
            self.count += 1
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1


process_uploads = _ProcessUploads()


# --- quotas ------------------------------------------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def check_quotas(session: Session, user: User, incoming: int = 0, name: str = "") -> None:
    """Refuse (429) when the user's uploads of the last hour, or their bytes of the last 24 hours with
    ``incoming`` more, reach the configured quotas. Administrators are exempt."""
    settings = get_settings()
    if user.is_admin:
        return
    now = utcnow()
    mine = (Upload.collection_id == Collection.id, Collection.owner_id == user.id)
    if settings.uploads_per_hour:
        count, oldest = session.execute(
            select(func.count(Upload.id), func.min(Upload.created)).where(
                *mine, Upload.created > now - timedelta(hours=1)
            )
        ).one()
        if count >= settings.uploads_per_hour:
            wait = (_aware(oldest) + timedelta(hours=1) - now).total_seconds() if oldest else 3600
            raise UploadRefused(
                429,
                f"You have uploaded {count} files in the last hour; the limit is "
                f"{settings.uploads_per_hour}. Try again later (in about "
                f"{human_duration(max(wait, 60))}).",
                retry_after=int(max(wait, 1)),
            )
    if settings.upload_bytes_per_day:
        limit = settings.upload_bytes_per_day
        used = (
            session.scalar(
                select(func.coalesce(func.sum(Upload.size), 0)).where(*mine, Upload.created > now - timedelta(hours=24))
            )
            or 0
        )
        if used >= limit:
            raise UploadRefused(
                429,
                f"You have uploaded {human_bytes(used)} in the last 24 hours; the limit is "
                f"{human_bytes(limit)} per day. Try again later.",
                retry_after=3600,
            )
        if used + incoming > limit:
            raise UploadRefused(
                429,
                f"{name} ({human_bytes(incoming)}) would take your uploads of the last 24 "
                f"hours to {human_bytes(used + incoming)}, over the limit of "
                f"{human_bytes(limit)} per day ({human_bytes(limit - used)} left). Try again "
                "later, or upload a smaller file.",
                retry_after=3600,
            )


def _file_name() -> str:
    try:
        return check_file_name(flask.request.args.get("name") or flask.request.headers.get("X-Filename") or "")
    except ValueError as exc:
        raise UploadRefused(400, str(exc)) from None


def _checked_name() -> str:
    """The request's file name, refused (400, 415) before any byte is read when no upload may have it."""
    name = _file_name()
    try:
        file_kind(name)
    except ArchiveError as exc:
        raise UploadRefused(415, str(exc)) from None
    return name


def _check_size(name: str, declared: int | None, limit: int) -> None:
    if declared is not None and declared > limit:
        raise UploadRefused(413, f"{name} ({human_bytes(declared)}) is larger than the limit of {human_bytes(limit)}.")


@contextmanager
def _upload_slots(user_id: int) -> Iterator[None]:
    """One of the user's concurrent upload slots and one of this process's, for one request (429, 503)."""
    settings = get_settings()
    expire_after = (settings.upload_deadline_s or 24 * 3600) + SLOT_CHECK_ALLOWANCE_S
    with (
        user_upload_slot(user_id, settings.uploads_per_user, expire_after),
        process_uploads.place(settings.uploads_per_process),
    ):
        yield


def _check_and_store(path: Path, name: str, workdir: Path, collection_id: int, user: User, sha: str, size: int) -> dict:
    """Check a complete received file and keep it as an Upload of the collection; returns the JSON answer.

    Refused (UploadRefused) when the file gives no map (422), was uploaded already (409), the collection is gone
    (404), or the quotas are reached now that the real size is known (429)."""
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        timing = Timing.from_dict(collection.timing) if collection is not None and collection.timing else None
    try:
        report = check_upload(path, name, workdir, timing=timing)
    except (ArchiveError, NiftiError, TimeCourseError) as exc:
        raise UploadRefused(422, str(exc)) from None
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        if collection is None:
            raise UploadRefused(404, "The collection was deleted during the upload.")
        same = session.scalar(select(Upload).where(Upload.collection_id == collection_id, Upload.sha256 == sha))
        if same is not None:
            raise UploadRefused(409, f"{name}: this file was uploaded already (as {same.filename}).")
        # Again with the real size (a chunked body declares none) and the uploads that ended meanwhile.
        check_quotas(session, user, size, name)
        row = add_upload(session, collection, path, name, sha256=sha)
        return {
            "ok": True,
            "upload": {"id": row.id, "filename": row.filename, "size": row.size},
            "maps": report.maps,
            "warnings": report.warnings,
            "notes": report.notes,
        }


@blueprint.post("/upload/<slug>")
def upload(slug: str):
    user = signed_in_user()
    if user is None:
        return _error(401, "Sign in to upload files.")
    tmp_dir = None
    try:
        name = _checked_name()
        collection_id = _editable_collection(slug, user)
        settings = get_settings()
        limit = settings.max_upload_bytes
        declared = flask.request.content_length
        _check_size(name, declared, limit)
        with session_scope() as session:
            check_quotas(session, user, declared or 0, name)
        # The slots are held through checking and storing too: those take the thread as well.
        with _upload_slots(user.id):
            base = settings.data_dir / "tmp" / "uploads"
            base.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files()
            tmp_dir = Path(tempfile.mkdtemp(prefix="upload-", dir=base))
            path = tmp_dir / f"received{storage_suffix(name)}"
            transfer = Transfer(
                name,
                declared,
                settings.upload_min_rate,
                settings.upload_rate_window_s,
                settings.upload_deadline_s,
                _request_socket(),
            )
            try:
                received, sha = _stream_to(path, flask.request.stream, limit, transfer)
            except UploadRefused as exc:
                raise UploadRefused(
                    exc.status, f"{name}: {exc.message}" if exc.status == 413 else exc.message
                ) from None
            except ClientDisconnected:
                raise UploadRefused(
                    400, f"{name}: the upload was interrupted (the connection ended before the whole file had arrived)."
                ) from None
            except OSError as exc:  # the client went away, or the disk is full
                raise UploadRefused(400, f"{name}: the upload was interrupted ({exc})") from None
            if received == 0:
                raise UploadRefused(400, f"{name}: the file is empty.")
            if declared is not None and received != declared:
                raise UploadRefused(400, f"{name}: the upload was interrupted ({received} of {declared} bytes).")
            payload = _check_and_store(path, name, tmp_dir / "members", collection_id, user, sha, received)
        return flask.jsonify(payload)
    except UploadRefused as exc:
        return _error(exc.status, exc.message, exc.retry_after)
    except Exception:
        log.exception("upload to %s failed", slug)
        return _error(500, "The server could not store this file (an internal error; the log has details).")
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


# --- resumable uploads -------------------------------------------------------------------------------------------

RESUMABLE_CHUNK_BYTES = 8 * 1024 * 1024  # what the server asks clients to send per request
BUSY_RETRY_S = 5


def _resumable_url(slug: str, token: str) -> str:
    return flask.url_for("upload.resumable_chunk", slug=slug, token=token)


def _header_bytes(header: str, what: str) -> int:
    raw = (flask.request.headers.get(header) or "").strip()
    if not raw.isdigit() or len(raw) > 18:
        raise UploadRefused(400, f"Send {what} in the {header} header (a whole number of bytes).")
    return int(raw)


def _own_partial(token: str, user: User) -> PartialUpload:
    partial = open_partial(token, user.id)
    if partial is None:
        raise UploadRefused(
            404,
            f"This upload is no longer on the server (unfinished uploads are kept for "
            f"{get_settings().upload_resume_hours} hours after their last byte). Upload the "
            "file again.",
        )
    return partial


def _same_collection(slug: str, user: User, partial: PartialUpload) -> None:
    """The upload goes into the collection the URL names, and the user may still upload there."""
    if _editable_collection(slug, user) != partial.collection_id:
        raise UploadRefused(404, "No such upload in this collection.")


@blueprint.post("/upload/<slug>/resumable")
def start_resumable(slug: str):
    """Start a resumable upload of ``?name=`` with ``Upload-Length`` bytes: every check that needs no byte of the
    file runs here (type, collection, size cap, quotas). Answers 201 with the upload's URL and the chunk size."""
    user = signed_in_user()
    if user is None:
        return _error(401, "Sign in to upload files.")
    try:
        name = _checked_name()
        collection_id = _editable_collection(slug, user)
        size = _header_bytes(LENGTH_HEADER, "the file's size")
        if size == 0:
            raise UploadRefused(400, f"{name}: the file is empty.")
        _check_size(name, size, get_settings().max_upload_bytes)
        with session_scope() as session:
            check_quotas(session, user, size, name)
        remove_stale_partials()
        partial = create_partial(user.id, collection_id, name, size)
    except UploadRefused as exc:
        return _error(exc.status, exc.message, exc.retry_after)
    url = _resumable_url(slug, partial.token)
    response = _json(201, {"ok": True, "url": url, "size": size, "chunk_bytes": RESUMABLE_CHUNK_BYTES}, offset=0)
    response.headers["Location"] = url
    response.headers[LENGTH_HEADER] = str(size)
    return response


@blueprint.get("/upload/<slug>/resumable/<token>")
def resumable_status(slug: str, token: str):
    """The offset the server holds (also as the ``Upload-Offset`` header, and for ``HEAD``); once the upload is
    over, ``done`` and its answer (``status`` and ``result``)."""
    user = signed_in_user()
    if user is None:
        return _error(401, "Sign in to upload files.")
    try:
        partial = _own_partial(token, user)
        stored = partial.result()
        if stored is not None:
            return _json(
                200,
                {"ok": True, "done": True, "status": stored[0], "result": stored[1], "size": partial.size},
                offset=partial.size,
            )
        _same_collection(slug, user, partial)
        return _json(
            200,
            {
                "ok": True,
                "done": False,
                "size": partial.size,
                "name": partial.name,
                "chunk_bytes": RESUMABLE_CHUNK_BYTES,
            },
            offset=partial.held(),
        )
    except UploadRefused as exc:
        return _error(exc.status, exc.message, exc.retry_after)


@blueprint.put("/upload/<slug>/resumable/<token>")
def resumable_chunk(slug: str, token: str):
    """Append the body at ``Upload-Offset``, which must be the offset the server holds (else 409 with it).

    Each chunk request holds a user slot and a process slot like a whole upload does, and its body must keep the
    minimum rate and the deadline. The chunk that completes the file (or an empty one at the end, after a lost
    answer) has the file checked and stored, and gets the answer a single-request upload gets."""
    user = signed_in_user()
    if user is None:
        return _error(401, "Sign in to upload files.")
    partial: PartialUpload | None = None
    try:
        partial = _own_partial(token, user)
        stored = partial.result()
        if stored is not None:
            return _json(*stored)
        _same_collection(slug, user, partial)
        offset = _header_bytes(OFFSET_HEADER, "the offset of this chunk")
        declared = flask.request.content_length
        if declared is not None and offset + declared > partial.size:
            raise UploadRefused(413, _past_the_end(partial, offset + declared))
        with _upload_slots(user.id), partial.writing():
            stored = partial.result()  # another request finished it meanwhile
            if stored is not None:
                return _json(*stored)
            held = partial.held()
            if offset != held:
                return _json(
                    409,
                    {
                        "ok": False,
                        "error": f"{partial.name}: the server holds {held} bytes of this "
                        f"file, not {offset}; send the rest from byte {held}.",
                    },
                    offset=held,
                )
            if held < partial.size:
                held += _receive_chunk(partial, held, declared)
            if held < partial.size:
                return _json(200, {"ok": True, "done": False, "size": partial.size}, offset=held)
            return _json(200, _finish(partial, user), offset=held)
    except UploadRefused as exc:
        return _error(exc.status, exc.message, exc.retry_after)
    except PartialBusy:
        return _json(
            423,
            {
                "ok": False,
                "error": "An earlier request is still sending to this upload; the server "
                "ends it when no more bytes arrive. Send again in a few seconds.",
            },
            retry_after=BUSY_RETRY_S,
            offset=partial.held(),
        )
    except PartialGone:
        return _error(404, "This upload is no longer on the server. Upload the file again.")
    except Exception:
        log.exception("resumable upload %s to %s failed", token, slug)
        return _error(500, "The server could not store this file (an internal error; the log has details).")


def _past_the_end(partial: PartialUpload, end: int | None = None) -> str:
    what = f"would take the file to {end} bytes" if end is not None else "goes on"
    return (
        f"{partial.name}: this chunk {what}, past the file's size ({partial.size} bytes, as declared when the "
        "upload started)."
    )


def _receive_chunk(partial: PartialUpload, held: int, declared: int | None) -> int:
    """Append the request body to the partial file; returns the bytes appended. The bytes of a body that breaks
    off or is too slow are kept (the client goes on from them); a body past the file's end is dropped (413)."""
    settings = get_settings()
    transfer = Transfer(
        partial.name,
        declared,
        settings.upload_min_rate,
        settings.upload_rate_window_s,
        settings.upload_deadline_s,
        _request_socket(),
    )
    try:
        received, _sha = _stream_to(
            partial.partial_path, flask.request.stream, partial.size - held, transfer, append=True
        )
    except UploadRefused as exc:
        if exc.status == 413:
            partial.truncate(held)
            raise UploadRefused(413, _past_the_end(partial)) from None
        raise
    except ClientDisconnected:
        raise UploadRefused(
            400,
            f"{partial.name}: the chunk was interrupted (the connection ended before all of "
            "it had arrived); the bytes that arrived are kept.",
        ) from None
    except OSError as exc:  # the client went away, or the disk is full
        raise UploadRefused(400, f"{partial.name}: the chunk was interrupted ({exc})") from None
    if declared is not None and received != declared:
        raise UploadRefused(400, f"{partial.name}: the chunk was interrupted ({received} of {declared} bytes).")
    return received


def _finish(partial: PartialUpload, user: User) -> dict:
    """Check and store the complete file; the answer, and the end of the upload's data, whatever the answer.
    After an internal error (storage down) the complete file stays: an empty chunk at the end tries again."""
    path = partial.complete()
    shutil.rmtree(partial.folder / "members", ignore_errors=True)  # left by an attempt that failed
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    try:
        payload = _check_and_store(
            path,
            partial.name,
            partial.folder / "members",
            partial.collection_id,
            user,
            digest.hexdigest(),
            partial.size,
        )
    except UploadRefused as exc:
        partial.finish(exc.status, {"ok": False, "error": exc.message})
        raise
    partial.finish(200, payload)
    return payload


@blueprint.get("/upload/<slug>/raw.zip")
def raw_uploads(slug: str):
    user = signed_in_user()
    if lookup_key(slug) is None:
        flask.abort(404)
    with session_scope() as session:
        collection = session.scalar(select(Collection).where(Collection.slug == slug))
        # 404 also for collections the user may see but not edit: raw uploads are the owner's, not public data.
        if collection is None or not can_edit(user, collection):
            flask.abort(404)
        members = [
            (f"{slug}/{u.id:05d}-{u.filename}", u.storage_key)
            for u in session.scalars(select(Upload).where(Upload.collection_id == collection.id).order_by(Upload.id))
        ]
    if not members:
        flask.abort(404)
    response = flask.Response(flask.stream_with_context(zip_stream(members)), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{slug}-uploads.zip"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def remove_stale_temp_files(max_age_s: int = 24 * 3600) -> None:
    """Temporary upload folders left by a killed web process."""
    import time

    base = get_settings().data_dir / "tmp" / "uploads"
    if not base.is_dir():
        return
    for entry in base.iterdir():
        try:
            if time.time() - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass
