"""File storage addressed by keys (never by user file names).

Keys are ``/``-separated relative paths made by the application, e.g. ``components/<uuid>.nii.gz``.
Every write is atomic: readers see the old object or the whole new one, never a half-written file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from store.config import get_settings

# A key is a file name on local storage and an S3 object name: a segment at most NAME_MAX bytes of ext4, XFS and
# APFS, a key at most the 1,024 bytes S3 allows.
MAX_SEGMENT_BYTES = 255
MAX_KEY_BYTES = 1024
_PUNCTUATION = frozenset("_-.")


def _valid_segment(segment: str) -> bool:
    # str.isalnum: the letters and digits of every script, which slugs keep (store.models.slugify), and nothing
    # that separates paths, hides a file or looks like a space.
    return (
        bool(segment)
        and not segment.startswith(".")
        and len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES
        and all(ch.isalnum() or ch in _PUNCTUATION for ch in segment)
    )


def check_key(key: str) -> str:
    """``key`` unchanged when it is a valid storage key, else ValueError.

    A valid key is a relative ``/``-separated path of segments made of letters and digits of any script (what
    :func:`str.isalnum` accepts: slugs keep the letters of every title, ``сталкер``, ``千と千尋の神隠し``), ``_``,
    ``-`` and ``.``, none starting with ``.`` (so no ``..``, no hidden or temporary names and no absolute paths).
    It must be in Unicode normal form NFC, so that one name is one byte sequence on every file system and in S3
    (macOS and S3 would otherwise keep two spellings of ``é`` apart), with segments of at most
    :data:`MAX_SEGMENT_BYTES` and a whole key of at most :data:`MAX_KEY_BYTES` UTF-8 bytes.

    Parameters
    ----------
    key : str
        The key to check.

    Returns
    -------
    str
        ``key`` itself.

    Raises
    ------
    ValueError
        When ``key`` is not a valid storage key.
    """
    valid = (
        isinstance(key, str)
        and all(_valid_segment(s) for s in key.split("/"))
        and unicodedata.normalize("NFC", key) == key
        and len(key.encode("utf-8")) <= MAX_KEY_BYTES
    )
    if not valid:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    """What every storage backend offers. Every method raises ValueError for an invalid key (:func:`check_key`)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any object there.

        Parameters
        ----------
        key : str
            Storage key.
        data : bytes
            The object's contents.
        """

    def put_file(self, key: str, path: Path) -> None:
        """Store the contents of the local file ``path`` under ``key`` atomically, replacing any object there.

        Parameters
        ----------
        key : str
            Storage key.
        path : pathlib.Path
            An existing local file (left in place).
        """

    def copy(self, src_key: str, dest_key: str) -> None:
        """Store the object of ``src_key`` also under ``dest_key``; the two stay independent.

        Parameters
        ----------
        src_key, dest_key : str
            Storage keys of the existing object and of the copy (replaced if present).

        Raises
        ------
        KeyError
            When nothing is stored under ``src_key``.
        """

    def open(self, key: str) -> BinaryIO:
        """The object for reading, as a binary file-like object the caller closes.

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        BinaryIO
            Readable from the start; usable as a context manager.

        Raises
        ------
        KeyError
            When nothing is stored under ``key``.
        """

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    def size(self, key: str) -> int:
        """The object's size in bytes.

        Parameters
        ----------
        key : str
            Storage key of an existing object.

        Returns
        -------
        int
            Size in bytes.

        Raises
        ------
        KeyError
            When nothing is stored under ``key`` (:class:`LocalStorage` raises FileNotFoundError).
        """

    def delete(self, key: str) -> None:
        """Delete the object under ``key``; a missing object is not an error."""

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under the folder ``prefix`` and an object named ``prefix`` itself.

        Parameters
        ----------
        prefix : str
            A folder key, with or without the trailing ``/`` (e.g. ``reference/3``).
        """

    def list(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """The objects under the folder ``prefix``, in no particular order.

        Parameters
        ----------
        prefix : str
            A folder key, with or without the trailing ``/`` (e.g. ``components/``).

        Yields
        ------
        tuple of (str, datetime.datetime)
            The object's key and its last modification time, timezone-aware UTC. A missing folder yields nothing.
        """

    def local_path(self, key: str) -> Path | None:
        """The object's file on local disk (it may not exist), or None for remote storage.

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        pathlib.Path or None
            The path, for reading only; None when the backend keeps no local files.
        """

    def read_bytes(self, key: str) -> bytes:
        """The whole object.

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        bytes
            The object's contents.

        Raises
        ------
        KeyError
            When nothing is stored under ``key``.
        """

    def version(self, key: str) -> str:
        """A string that changes whenever the object is rewritten (for ETags and caches).

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        str
            Opaque version tag.

        Raises
        ------
        KeyError
            When nothing is stored under ``key``.
        """


class LocalStorage:
    """A directory on the local disk (the embedded default)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` via a temporary file that is fsynced and renamed onto the object.

        Parameters
        ----------
        key : str
            Storage key; missing folders are made.
        data : bytes
            The object's contents.

        Raises
        ------
        ValueError
            When ``key`` is not a valid storage key.
        """
        with self._atomic_writer(key) as fh:
            fh.write(data)

    def put_file(self, key: str, path: Path) -> None:
        """Copy the local file ``path`` under ``key`` via a temporary file renamed onto the object.

        Parameters
        ----------
        key : str
            Storage key; missing folders are made.
        path : pathlib.Path
            An existing local file (left in place).

        Raises
        ------
        ValueError
            When ``key`` is not a valid storage key.
        FileNotFoundError
            When ``path`` does not exist.
        """
        with self._atomic_writer(key) as fh, open(path, "rb") as src:
            shutil.copyfileobj(src, fh, 1024 * 1024)

    def copy(self, src_key: str, dest_key: str) -> None:
        """``dest_key`` gets the bytes of ``src_key`` (KeyError when it is missing).

        A hard link where the file system allows it: objects are never changed in place (every write replaces the
        file), so two names of one file stay independent, and the copy costs no I/O.

        Parameters
        ----------
        src_key, dest_key : str
            Storage keys of the existing object and of the copy (replaced if present).

        Raises
        ------
        KeyError
            When nothing is stored under ``src_key``.
        ValueError
            When a key is not a valid storage key.
        """
        src, dest = self._path(src_key), self._path(dest_key)
        if not src.is_file():
            raise KeyError(src_key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-link-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            os.link(src, tmp)
        except OSError:  # e.g. a file system without hard links
            self.put_file(dest_key, src)
            return
        try:
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @contextmanager
    def _atomic_writer(self, key: str) -> Iterator[BinaryIO]:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        """The object's file, opened for binary reading; the caller closes it.

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        BinaryIO
            The open file.

        Raises
        ------
        KeyError
            When nothing is stored under ``key``.
        """
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise KeyError(key) from None

    def read_bytes(self, key: str) -> bytes:
        """The whole object as bytes; KeyError when nothing is stored under ``key``."""
        with self.open(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """The object's size in bytes.

        Parameters
        ----------
        key : str
            Storage key of an existing object.

        Returns
        -------
        int
            Size in bytes.

        Raises
        ------
        FileNotFoundError
            When nothing is stored under ``key`` (not KeyError, unlike the other methods).
        """
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        """Delete the file under ``key``; a missing file is not an error."""
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Delete the folder ``prefix`` with everything in it, or the file of that name; nothing there is fine.

        Parameters
        ----------
        prefix : str
            A folder key, with or without the trailing ``/``.
        """
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        """The object's file under the storage root (it may not exist); read it, never write it."""
        return self._path(key)

    def list(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Keys under ``prefix`` (a folder, e.g. ``components/``) with their modification times.

        Temporary files of writes in progress (``.tmp-*``) are not objects and are left out.

        Parameters
        ----------
        prefix : str
            A folder key, with or without the trailing ``/``.

        Yields
        ------
        tuple of (str, datetime.datetime)
            Key and modification time (timezone-aware UTC), in no particular order; a missing folder yields
            nothing.
        """
        top = self._path(prefix.rstrip("/"))
        if not top.is_dir():
            return
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(".tmp-"):  # a write in progress (or one killed midway): not an object
                    continue
                path = Path(dirpath) / name
                try:
                    mtime = path.stat().st_mtime
                except FileNotFoundError:  # deleted while listing
                    continue
                yield path.relative_to(self.root).as_posix(), datetime.fromtimestamp(mtime, UTC)

    def stale_temporaries(self, before: datetime) -> list[Path]:
        """Temporary files of writes that were killed midway (a live write's file is younger than ``before``).

        Parameters
        ----------
        before : datetime.datetime
            Timezone-aware cutoff: only temporaries last modified earlier are returned.

        Returns
        -------
        list of pathlib.Path
            Absolute paths of the ``.tmp-*`` files anywhere under the storage root.
        """
        stale = []
        for path in self.root.rglob(".tmp-*"):
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < before:
                    stale.append(path)
            except FileNotFoundError:
                continue
        return stale

    def version(self, key: str) -> str:
        """Changes whenever the object is rewritten (for ETags and caches); KeyError when missing.

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        str
            ``"<size>-<mtime in ns>"``, both in hexadecimal.

        Raises
        ------
        KeyError
            When nothing is stored under ``key``.
        """
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise KeyError(key) from None
        return f"{st.st_size:x}-{st.st_mtime_ns:x}"


class S3Storage:
    """S3-compatible object storage (``s3://bucket/prefix``).

    A single PUT (or a completed multipart upload) replaces an object atomically, so readers never see a partial
    object. Endpoint, credentials and region come from the usual variables (``AWS_ENDPOINT_URL`` or
    ``INCDB_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None):
        import boto3  # lazy: only S3 storage needs boto3, which is slow to import
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = boto3.client("s3", endpoint_url=endpoint_url)
        self._transfer = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload ``data`` under ``key`` in one PUT (atomic); ValueError for an invalid key."""
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        """Upload the local file ``path`` under ``key`` (multipart above 64 MiB; the object appears when complete).

        Parameters
        ----------
        key : str
            Storage key.
        path : pathlib.Path
            An existing local file (left in place).

        Raises
        ------
        ValueError
            When ``key`` is not a valid storage key.
        """
        self._client.upload_file(str(path), self.bucket, self._key(key), Config=self._transfer)

    def copy(self, src_key: str, dest_key: str) -> None:
        """Server-side copy (no bytes through this process).

        Parameters
        ----------
        src_key, dest_key : str
            Storage keys of the existing object and of the copy (replaced if present).

        Raises
        ------
        KeyError
            When nothing is stored under ``src_key``.
        """
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=self._key(dest_key),
                CopySource={"Bucket": self.bucket, "Key": self._key(src_key)},
            )
        except Exception as exc:
            if self._missing(exc):
                raise KeyError(src_key) from None
            raise

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def open(self, key: str) -> BinaryIO:
        """The object's body as a stream; the caller closes it.

        Parameters
        ----------
        key : str
            Storage key.

        Returns
        -------
        botocore.response.StreamingBody
            The readable body (file-like, binary).

        Raises
        ------
        KeyError
            When nothing is stored under ``key``.
        """
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except Exception as exc:
            if self._missing(exc):
                raise KeyError(key) from None
            raise

    def read_bytes(self, key: str) -> bytes:
        """The whole object as bytes; KeyError when nothing is stored under ``key``."""
        body = self.open(key)
        try:
            return body.read()
        finally:
            body.close()

    def _head(self, key: str) -> dict:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if self._missing(exc):
                raise KeyError(key) from None
            raise

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key`` (a HEAD request)."""
        try:
            self._head(key)
            return True
        except KeyError:
            return False

    def size(self, key: str) -> int:
        """The object's size in bytes; KeyError when nothing is stored under ``key``."""
        return int(self._head(key)["ContentLength"])

    def version(self, key: str) -> str:
        """The object's ETag without quotes; KeyError when nothing is stored under ``key``."""
        return self._head(key)["ETag"].strip('"')

    def delete(self, key: str) -> None:
        """Delete the object under ``key``; a missing object is not an error."""
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with ``prefix/``, then an object named ``prefix`` itself.

        Parameters
        ----------
        prefix : str
            A folder key, with or without the trailing ``/``.
        """
        full = self._key(prefix.rstrip("/")) + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        self.delete(prefix.rstrip("/"))

    def local_path(self, key: str) -> Path | None:
        """Always None: S3 objects have no local file."""
        return None

    def list(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Keys under ``prefix`` (a folder, e.g. ``components/``) with their modification times.

        Parameters
        ----------
        prefix : str
            A folder key, with or without the trailing ``/``.

        Yields
        ------
        tuple of (str, datetime.datetime)
            Key (without the storage prefix) and S3's ``LastModified`` (timezone-aware), in key order.
        """
        full = self._key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:], obj["LastModified"]

    def check(self) -> None:
        """Raise if the bucket cannot be reached.

        Raises
        ------
        botocore.exceptions.ClientError
            When the bucket does not exist or the credentials may not use it.
        botocore.exceptions.BotoCoreError
            When the endpoint cannot be reached or no credentials are found.
        """
        self._client.head_bucket(Bucket=self.bucket)


_storages: dict[str, Storage] = {}


def get_storage() -> Storage:
    """The storage that ``INCDB_STORAGE_URL`` names, made once per URL and process.

    Returns
    -------
    Storage
        :class:`LocalStorage` for ``file://`` URLs and plain paths, :class:`S3Storage` for ``s3://bucket/prefix``.

    Raises
    ------
    ValueError
        When an ``s3://`` URL names no bucket or the URL's scheme is neither ``file`` nor ``s3``.
    """
    url = get_settings().storage_url
    if url not in _storages:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            _storages[url] = LocalStorage(Path(unquote(parsed.path)))
        elif parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError("INCDB_STORAGE_URL must name a bucket: s3://bucket/prefix")
            endpoint = get_settings().s3_endpoint_url
            _storages[url] = S3Storage(parsed.netloc, parsed.path, endpoint_url=endpoint)
        else:
            raise ValueError(f"unsupported INCDB_STORAGE_URL scheme {parsed.scheme!r} (use file:// or s3://)")
    return _storages[url]
