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
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
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

    def version(self, key: str) -> str:
        """Changes whenever the object is rewritten (for ETags and caches); KeyError when missing."""
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise KeyError(key) from None
        return f"{st.st_size:x}-{st.st_mtime_ns:x}"


_storages: dict[str, Storage] = {}


def get_storage() -> Storage:
    from store.config import get_settings

    url = get_settings().storage_url
    if url not in _storages:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            _storages[url] = LocalStorage(Path(unquote(parsed.path)))
        else:
            raise ValueError(f"unsupported INCDB_STORAGE_URL scheme {parsed.scheme!r} (use a file:// path)")
    return _storages[url]
