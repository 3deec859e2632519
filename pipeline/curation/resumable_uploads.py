"""The files of resumable uploads: a large file sent in chunks, each appended at the offset the server holds.

``web.upload`` receives the chunks (``/upload/<slug>/resumable``); this module keeps what they leave on disk,
Flask-free, so that the storage sweep can remove abandoned uploads too (:func:`remove_stale_partials`). A dropped
connection or a restart of the web process costs at most the chunk in flight: the client asks for the offset the
server holds and goes on from there.

One folder per upload, ``<data dir>/tmp/resumable-uploads/<user id>/<token>/``, holds

- ``upload.json``: who sends what where (owner, collection, file name, declared size, creation time);
- ``partial``: the bytes received so far, in order. Its size *is* the offset the server holds: a request appends
  only when the offset it names equals that size, and flushes what arrived to disk also when its connection
  breaks, so every byte that arrived counts;
- ``received<suffix>``: the complete file, renamed from ``partial`` after its last byte (a rename within one
  folder is atomic: a half-written file is never checked nor stored);
- ``result.json``: the answer once the file was checked and stored, or refused. The data are gone by then; the
  answer stays so that a client whose last response was lost (a restart during the checks) gets it again;
- ``.lock``: locked (``flock``) by the one request that writes. The kernel drops the lock of a killed process,
  so a restart never leaves an upload locked.

An upload is removed once ``INCDB_UPLOAD_RESUME_HOURS`` (default 24) have passed since anything was written to it
(its last byte, or its answer), and when its owner starts more than :data:`PARTIALS_PER_USER` uploads (finished
ones first, then the one untouched longest), so abandoned uploads cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.curation.archives import storage_suffix
from store.config import get_settings

PARTIALS_PER_USER = 6  # unfinished uploads one user may leave on the server
_TOKEN = re.compile(r"[0-9a-f]{32}")


class PartialBusy(Exception):
    """Another request is writing to this upload (its connection may have broken without the server knowing)."""


class PartialGone(Exception):
    """The upload was removed (its deadline passed) while a request was about to write to it."""


def partials_root() -> Path:
    """The folder of every user's resumable uploads."""
    return get_settings().data_dir / "tmp" / "resumable-uploads"


@dataclass(frozen=True)
class PartialUpload:
    """One resumable upload on disk.

    Attributes
    ----------
    folder : pathlib.Path
        Its folder (see the module docstring for what it holds).
    owner : int
        The id of the user sending it; nobody else may see or extend it.
    collection_id : int
        The collection it goes into.
    name : str
        The file name the curator gave (checked by ``pipeline.curation.uploads.check_file_name``).
    size : int
        The file's size in bytes, declared when the upload started.
    """

    folder: Path
    owner: int
    collection_id: int
    name: str
    size: int

    @property
    def token(self) -> str:
        return self.folder.name

    @property
    def partial_path(self) -> Path:
        return self.folder / "partial"

    @property
    def received_path(self) -> Path:
        return self.folder / f"received{storage_suffix(self.name)}"

    def held(self) -> int:
        """The bytes the server holds: where the next chunk must start (``size`` once the file is complete)."""
        try:
            return self.partial_path.stat().st_size
        except FileNotFoundError:
            return self.size if self.received_path.exists() else 0

    def result(self) -> tuple[int, dict] | None:
        """The stored answer (HTTP status, JSON body) of a finished upload, or None while it is unfinished."""
        try:
            stored = json.loads((self.folder / "result.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return int(stored["status"]), stored["body"]

    def finish(self, status: int, body: dict) -> None:
        """Keep the answer and drop the data: the upload is over, whatever the answer."""
        _write_atomically(self.folder / "result.json", json.dumps({"status": status, "body": body}))
        for path in self.folder.iterdir():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.name not in ("result.json", "upload.json", ".lock"):
                path.unlink(missing_ok=True)

    def complete(self) -> Path:
        """Rename the complete ``partial`` to ``received<suffix>`` (already done after a restart) and return it.
        The caller holds the lock and made sure that ``held() == size``."""
        if self.partial_path.exists():
            with open(self.partial_path, "rb") as fh:
                os.fsync(fh.fileno())
            self.partial_path.rename(self.received_path)
            _fsync_folder(self.folder)
        return self.received_path

    def truncate(self, offset: int) -> None:
        """Drop what was appended after ``offset`` (a chunk that was refused)."""
        with open(self.partial_path, "r+b") as fh:
            fh.truncate(offset)
            os.fsync(fh.fileno())

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold this upload's lock: PartialBusy at once when another request holds it, PartialGone when the upload
        was removed before the lock was taken."""
        try:
            fh = open(self.folder / ".lock", "a+b")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise PartialGone(self.token) from None
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PartialBusy(self.token) from None
            if not (self.folder / "upload.json").exists():
                raise PartialGone(self.token)
            yield


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` survive a crash of the machine."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_partial(owner: int, collection_id: int, name: str, size: int) -> PartialUpload:
    """Start a resumable upload: an empty ``partial`` under a new random token.

    The owner's uploads untouched longest are removed first when more than :data:`PARTIALS_PER_USER` would be
    left (abandoned ones, since the upload panel sends one file at a time).

    Parameters
    ----------
    owner : int
        The id of the signed-in user who sends the file.
    collection_id : int
        The collection the file goes into (the caller checked that the owner may upload there).
    name : str
        The checked file name.
    size : int
        The declared size in bytes (the caller checked it against the size cap and the quotas).

    Returns
    -------
    PartialUpload
        The new upload; its token names it in the URLs of its chunks.
    """
    mine = partials_root() / str(int(owner))
    mine.mkdir(parents=True, exist_ok=True)
    _evict(mine, PARTIALS_PER_USER - 1)
    folder = mine / secrets.token_hex(16)
    folder.mkdir()
    upload = PartialUpload(folder, int(owner), int(collection_id), name, int(size))
    upload.partial_path.touch()
    _write_atomically(
        folder / "upload.json",
        json.dumps(
            {
                "owner": upload.owner,
                "collection_id": upload.collection_id,
                "name": name,
                "size": upload.size,
                "created": time.time(),
            }
        ),
    )
    return upload


def open_partial(token: str, owner: int) -> PartialUpload | None:
    """The upload ``token`` of ``owner``; None when there is none (removed, never made, or another user's)."""
    if not _TOKEN.fullmatch(token or ""):
        return None
    folder = partials_root() / str(int(owner)) / token
    try:
        meta = json.loads((folder / "upload.json").read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return PartialUpload(folder, int(meta["owner"]), int(meta["collection_id"]), str(meta["name"]), int(meta["size"]))


def _last_written(folder: Path) -> float:
    """When anything in ``folder`` was last written (appending changes a file's time, not the folder's)."""
    times = [folder.stat().st_mtime]
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            times.append(path.stat().st_mtime)
    return max(times)


@contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Try the lock of the upload in ``folder`` without waiting: yields whether this caller holds it now."""
    with open(folder / ".lock", "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _remove_unless_busy(folder: Path) -> bool:
    """Remove the upload in ``folder`` unless a request is writing to it; under its lock, so that none starts to."""
    try:
        with _locked(folder) as held:
            if held:
                shutil.rmtree(folder, ignore_errors=True)
            return held
    except FileNotFoundError:  # removed meanwhile by another process
        return False


def _evict(mine: Path, keep: int) -> None:
    """Leave at most ``keep`` uploads in a user's folder: finished ones go first (they only keep an answer), then
    the unfinished ones untouched longest."""
    folders = sorted(
        (f for f in mine.iterdir() if f.is_dir()), key=lambda f: (not (f / "result.json").exists(), _last_written(f))
    )
    for folder in folders[: max(0, len(folders) - keep)]:
        _remove_unless_busy(folder)


def remove_stale_partials(
    max_age_s: float | None = None, now: float | None = None, dry_run: bool = False
) -> list[Path]:
    """Remove the resumable uploads nothing was written to for ``max_age_s``.

    Uploads a request is writing to right now are kept, however old. The upload endpoint calls this whenever a
    resumable upload starts; the storage sweep may call it too.

    Parameters
    ----------
    max_age_s : float or None
        Age after the last write; None means ``INCDB_UPLOAD_RESUME_HOURS``.
    now : float or None
        The current time (``time.time()``); None means now.
    dry_run : bool
        True: remove nothing, only report.

    Returns
    -------
    list of pathlib.Path
        The folders removed (or that would be).
    """
    root = partials_root()
    if not root.is_dir():
        return []
    max_age_s = get_settings().upload_resume_hours * 3600 if max_age_s is None else max_age_s
    now = time.time() if now is None else now
    removed = []
    for mine in root.iterdir():
        if not mine.is_dir():
            continue
        for folder in mine.iterdir():
            try:
                stale = folder.is_dir() and now - _last_written(folder) > max_age_s
            except FileNotFoundError:  # removed meanwhile by another process
                continue
            if stale and (dry_run or _remove_unless_busy(folder)):
                removed.append(folder)
    return removed
