"""Upload endpoint (DESIGN section 9): one file per request, streamed to a temporary file under a hard size cap.

``assets/upload.js`` sends each file as the raw request body (``POST /upload/<collection slug>?name=<file name>``)
with the CSRF header, so neither the browser nor this process ever holds a whole file in memory. The file is
checked before it is kept (type, size, a readable NIfTI header and an intact gzip stream, an archive that is safe
and holds at least one NIfTI), then stored with ``pipeline.catalog.add_upload``. Answers are JSON with an
``error`` a curator can act on.

``GET /upload/<slug>/raw.zip`` streams a collection's uploads as received (owners and admins only).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import flask
import numpy as np
from sqlalchemy import select

from pipeline.archives import ArchiveError, file_kind, iter_niftis, storage_suffix
from pipeline.catalog import add_upload
from pipeline.jobs import active_job
from pipeline.nifti import NiftiError, check_nifti
from store.access import can_edit, can_view
from store.config import get_settings
from store.db import session_scope
from store.models import Collection, Upload
from store.units import human_bytes
from web.auth import signed_in_user
from web.files import zip_stream

try:  # isal decompresses several times faster than zlib, same format
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    import gzip as _gzip

blueprint = flask.Blueprint("upload", __name__)
log = logging.getLogger("incdb.upload")

CHUNK = 1024 * 1024


class UploadRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> flask.Response:
    response = flask.jsonify({"ok": False, "error": message})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _editable_collection(slug: str, user) -> int:
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


def _stream_to(path: Path, stream, limit: int) -> tuple[int, str]:
    """Copy the request body to ``path``; refuse as soon as it passes ``limit``. Returns (bytes, sha256)."""
    digest, received = hashlib.sha256(), 0
    with open(path, "wb") as out:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise UploadRefused(413, f"The file is larger than the limit of {human_bytes(limit)}.")
            digest.update(chunk)
            out.write(chunk)
    return received, digest.hexdigest()


def _gzip_stream_length(path: Path, name: str) -> int:
    """Decompress a .gz file without keeping it, so a truncated or damaged file is refused now, not at ingest."""
    total = 0
    try:
        with _gzip.open(path, "rb") as fh:
            while chunk := fh.read(CHUNK * 4):
                total += len(chunk)
    except EOFError:
        raise NiftiError(f"{name}: the file is truncated (the gzip stream ends early)") from None
    except (OSError, zlib.error, ValueError) as exc:
        raise NiftiError(f"{name}: the gzip data is corrupt ({exc})") from None
    return total


def _check_nifti_file(path: Path, name: str) -> int:
    """Volumes in a NIfTI file whose header and (for .nii.gz) whole compressed stream are intact."""
    image = check_nifti(path, name)
    if name.lower().endswith(".gz"):
        header = image.image.header
        offset = int(header["vox_offset"]) if "vox_offset" in header else 352
        needed = offset + int(np.prod(image.shape, dtype=np.int64)) * image.dtype.itemsize
        if _gzip_stream_length(path, name) < needed:
            raise NiftiError(f"{name}: the file is truncated (less data than its header describes)")
    return image.n_volumes


@dataclass
class UploadReport:
    maps: int = 0
    warnings: list[str] = field(default_factory=list)


def check_upload(path: Path, name: str, workdir: Path) -> UploadReport:
    """Refuse a file that cannot give a single map; report members of an archive that will be skipped."""
    report = UploadReport()
    if file_kind(name) == "nifti":
        report.maps = _check_nifti_file(path, name)
        return report
    problems: list[str] = []
    for member in iter_niftis(path, name, workdir, report.warnings):
        try:
            report.maps += _check_nifti_file(member.path, member.name)
        except NiftiError as exc:
            problems.append(str(exc))
        finally:
            member.path.unlink(missing_ok=True)  # checked one by one: never the whole archive on disk twice
    if not report.maps:
        raise ArchiveError(f"{name}: no usable NIfTI map inside ({'; '.join(problems) or 'nothing found'})")
    report.warnings += [f"{p} (will be skipped)" for p in problems]
    return report


def _file_name() -> str:
    raw = flask.request.args.get("name") or flask.request.headers.get("X-Filename") or ""
    name = PurePosixPath(raw.replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        raise UploadRefused(400, "The upload has no file name.")
    return name[:255]


@blueprint.post("/upload/<slug>")
def upload(slug: str):
    user = signed_in_user()
    if user is None:
        return _error(401, "Sign in to upload files.")
    tmp_dir = None
    try:
        name = _file_name()
        try:
            file_kind(name)
        except ArchiveError as exc:
            raise UploadRefused(415, str(exc)) from None
        collection_id = _editable_collection(slug, user)
        limit = get_settings().max_upload_bytes
        declared = flask.request.content_length
        if declared is not None and declared > limit:
            raise UploadRefused(413, f"{name} ({human_bytes(declared)}) is larger than the limit of "
                                     f"{human_bytes(limit)}.")
        base = get_settings().data_dir / "tmp" / "uploads"
        base.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files()
        tmp_dir = Path(tempfile.mkdtemp(prefix="upload-", dir=base))
        path = tmp_dir / f"received{storage_suffix(name)}"
        try:
            received, sha = _stream_to(path, flask.request.stream, limit)
        except UploadRefused as exc:
            raise UploadRefused(exc.status, f"{name}: {exc.message}") from None
        except OSError as exc:  # the client went away, or the disk is full
            raise UploadRefused(400, f"{name}: the upload was interrupted ({exc})") from None
        if received == 0:
            raise UploadRefused(400, f"{name}: the file is empty.")
        if declared is not None and received != declared:
            raise UploadRefused(400, f"{name}: the upload was interrupted ({received} of {declared} bytes).")
        try:
            report = check_upload(path, name, tmp_dir / "members")
        except (ArchiveError, NiftiError) as exc:
            raise UploadRefused(422, str(exc)) from None
        with session_scope() as session:
            collection = session.get(Collection, collection_id)
            if collection is None:
                raise UploadRefused(404, "The collection was deleted during the upload.")
            same = session.scalar(select(Upload).where(Upload.collection_id == collection_id, Upload.sha256 == sha))
            if same is not None:
                raise UploadRefused(409, f"{name}: this file was uploaded already (as {same.filename}).")
            row = add_upload(session, collection, path, name, sha256=sha)
            payload = {"ok": True, "upload": {"id": row.id, "filename": row.filename, "size": row.size},
                       "maps": report.maps, "warnings": report.warnings}
        return flask.jsonify(payload)
    except UploadRefused as exc:
        return _error(exc.status, exc.message)
    except Exception:
        log.exception("upload to %s failed", slug)
        return _error(500, "The server could not store this file (an internal error; the log has details).")
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


@blueprint.get("/upload/<slug>/raw.zip")
def raw_uploads(slug: str):
    user = signed_in_user()
    with session_scope() as session:
        collection = session.scalar(select(Collection).where(Collection.slug == slug))
        # 404 also for collections the user may see but not edit: raw uploads are the owner's, not public data.
        if collection is None or not can_edit(user, collection):
            flask.abort(404)
        members = [(f"{slug}/{u.id:05d}-{u.filename}", u.storage_key) for u in
                   session.scalars(select(Upload).where(Upload.collection_id == collection.id).order_by(Upload.id))]
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
