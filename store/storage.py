"""File storage addressed by keys (never by user file names).

Keys are ``/``-separated relative paths made by the application, e.g. ``components/<uuid>.nii.gz``.
Every write is atomic: readers see the old object or the whole new one, never a half-written file.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from store.config import get_settings

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def copy(self, src_key: str, dest_key: str) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def list(self, prefix: str) -> Iterator[tuple[str, datetime]]: ...
    def local_path(self, key: str) -> Path | None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def version(self, key: str) -> str: ...


class LocalStorage:
    """A directory on the local disk (the embedded default)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._atomic_writer(key) as fh:
            fh.write(data)

    def put_file(self, key: str, path: Path) -> None:
        with self._atomic_writer(key) as fh, open(path, "rb") as src:
            shutil.copyfileobj(src, fh, 1024 * 1024)

    def copy(self, src_key: str, dest_key: str) -> None:
        """``dest_key`` gets the bytes of ``src_key`` (KeyError when it is missing).

        A hard link where the file system allows it: objects are never changed in place (every write replaces the
        file), so two names of one file stay independent, and the copy costs no I/O.
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
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise KeyError(key) from None

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def list(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """Keys under ``prefix`` (a folder, e.g. ``components/``) with their modification times."""
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
        """Temporary files of writes that were killed midway (a live write's file is younger than ``before``)."""
        stale = []
        for path in self.root.rglob(".tmp-*"):
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < before:
                    stale.append(path)
            except FileNotFoundError:
                continue
        return stale

    def version(self, key: str) -> str:
        """Changes whenever the object is rewritten (for ETags and caches); KeyError when missing."""
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
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self._client.upload_file(str(path), self.bucket, self._key(key), Config=self._transfer)

    def copy(self, src_key: str, dest_key: str) -> None:
        """Server-side copy (no bytes through this process)."""
        try:
            self._client.copy_object(Bucket=self.bucket, Key=self._key(dest_key),
                                     CopySource={"Bucket": self.bucket, "Key": self._key(src_key)})
        except Exception as exc:
            if self._missing(exc):
                raise KeyError(src_key) from None
            raise

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def open(self, key: str) -> BinaryIO:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except Exception as exc:
            if self._missing(exc):
                raise KeyError(key) from None
            raise

    def read_bytes(self, key: str) -> bytes:
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
        try:
            self._head(key)
            return True
        except KeyError:
            return False

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def version(self, key: str) -> str:
        return self._head(key)["ETag"].strip('"')

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        full = self._key(prefix.rstrip("/")) + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
        self.delete(prefix.rstrip("/"))

    def local_path(self, key: str) -> Path | None:
        return None

    def list(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        full = self._key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:], obj["LastModified"]

    def check(self) -> None:
        """Raise if the bucket cannot be reached."""
        self._client.head_bucket(Bucket=self.bucket)


_storages: dict[str, Storage] = {}


def get_storage() -> Storage:
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
