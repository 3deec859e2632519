"""Downloading Neurosynth release files from the public ``neurosynth/neurosynth-data`` repository.

The files are fetched over HTTPS from the repository's raw addresses at a pinned commit (the one NiMARE's
``fetch_neurosynth`` also downloads from), so their sizes and checksums are known in advance:
``reference/neurosynth-data-files.json`` lists every data file of that commit with its git blob id, and the size
and SHA-256 of those whose content was available when the list was made. A download is written to
``<name>.part`` and renamed only once its size and checksum match, so a folder never holds a half-written file
under a release name; an interrupted download resumes from the ``.part`` file with an HTTP Range request (a
server that ignores the range sends the whole file again, which is written over the partial copy).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import IncompleteRead
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from pipeline.decoding.neurosynth import Vocabulary

COMMIT = "209c33cd009d0b069398a802198b41b9c488b9b7"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/neurosynth/neurosynth-data/{COMMIT}/"
BASE_URL_ENV = "INCDB_NEUROSYNTH_URL"
MANIFEST_PATH = Path(__file__).resolve().parents[2] / "reference" / "neurosynth-data-files.json"
VOCABULARIES = ("terms", "LDA50", "LDA100", "LDA200", "LDA400")
_CHUNK = 1 << 20

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must be: any of size, SHA-256 and git blob id that are known."""

    size: int | None = None
    sha256: str | None = None
    git_blob: str | None = None


def load_manifest(path: str | Path | None = None) -> dict[str, Expected]:
    """The known files of the pinned commit, by file name.

    Parameters
    ----------
    path : str or pathlib.Path or None
        A JSON file as ``reference/neurosynth-data-files.json`` (``{"files": {name: {"size", "sha256",
        "git_blob"}}}``); None: :data:`MANIFEST_PATH`.

    Returns
    -------
    dict of str to Expected
        Possibly with unknown (None) sizes and SHA-256 sums.
    """
    doc = json.loads(Path(path or MANIFEST_PATH).read_text(encoding="utf-8"))
    return {
        name: Expected(entry.get("size"), entry.get("sha256"), entry.get("git_blob"))
        for name, entry in doc["files"].items()
    }


def vocabulary_files(version: int, vocab: str, manifest: dict[str, Expected]) -> list[str]:
    """The release files that building ``vocab`` of ``version`` needs, checked against the manifest.

    Parameters
    ----------
    version : int
        Database version, 3-7.
    vocab : str
        ``terms``, ``LDA50``, ``LDA100``, ``LDA200`` or ``LDA400`` (case-insensitive).
    manifest : dict
        From :func:`load_manifest`.

    Returns
    -------
    list of str
        Coordinates, metadata, features and vocabulary; for topics also the keys and the model's metadata.

    Raises
    ------
    ValueError
        When the release has no such version or vocabulary (the message lists the ones it has).
    """
    names = {v.lower(): v for v in VOCABULARIES}
    chosen = names.get(str(vocab).strip().lower())
    if chosen is None:
        raise ValueError(f"unknown vocabulary {vocab!r}; choose one of {', '.join(VOCABULARIES)}")
    kind = "tfidf" if chosen == "terms" else "weight"
    files = Vocabulary(int(version), chosen, kind).files
    wanted = list(files.values())
    if kind == "weight":
        wanted.append(f"data-neurosynth_version-{version}_vocab-{chosen}_metadata.json")
    missing = [n for n in wanted if n not in manifest]
    if missing:
        have = sorted(
            {
                f"{v} (v{n})"
                for v in VOCABULARIES
                for n in range(3, 8)
                if Vocabulary(n, v, "tfidf" if v == "terms" else "weight").files["features"] in manifest
            }
        )
        raise ValueError(
            f"the Neurosynth release has no {chosen} vocabulary of version {version}; it has: {', '.join(have)}"
        )
    return wanted


def _matches(path: Path, expected: Expected) -> str | None:
    """None when ``path`` is what ``expected`` says; else why not."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return f"{size} bytes instead of {expected.size}"
    if expected.sha256 is None and expected.git_blob is None:
        return None
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    if expected.sha256 is not None and sha256.hexdigest() != expected.sha256:
        return "SHA-256 differs from the release's"
    if expected.sha256 is None and expected.git_blob is not None and blob.hexdigest() != expected.git_blob:
        return "git blob id differs from the release's"
    return None


def _offline(url: str, reason: object, part: Path) -> RuntimeError:
    kept = f"; {part.name} keeps the {part.stat().st_size} bytes received, run again to resume" if part.exists() else ""
    return RuntimeError(
        f"cannot download {url}: {reason} (offline, or the address is blocked?){kept}. Without a network, copy "
        f"the release files into {part.parent} from a machine that has them and run `python -m pipeline reference "
        "build-neurosynth` on the folder"
    )


def _download(url: str, part: Path, expected: Expected, name: str, progress: Progress | None, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    if expected.size is not None and have > expected.size:
        part.unlink()
        have = 0
    if expected.size is not None and have == expected.size:
        return
    headers = {"User-Agent": "INcDb", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial copy is whole (checked next)
            return
        if exc.code == 404:
            raise ValueError(f"{url}: not found (HTTP 404)") from None
        raise RuntimeError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (TimeoutError, URLError, ConnectionError) as exc:
        raise _offline(url, getattr(exc, "reason", exc), part) from None
    with response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else expected.size
        if progress:
            progress(name, have, total)
        try:
            with part.open("ab" if resumed else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    have += len(chunk)
                    if progress:
                        progress(name, have, total)
        except (TimeoutError, URLError, ConnectionError, IncompleteRead) as exc:
            raise _offline(url, exc, part) from None
        if total is not None and have < total:
            raise _offline(url, f"the connection closed after {have} of {total} bytes", part)


def fetch_files(
    names: Iterable[str],
    directory: str | Path,
    base_url: str | None = None,
    manifest: dict[str, Expected] | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Download release files into ``directory`` (files already there and correct are kept).

    Parameters
    ----------
    names : iterable of str
        Release file names.
    directory : str or pathlib.Path
        Created if missing.
    base_url : str or None
        Address the names are appended to; None: :data:`BASE_URL_ENV` or :data:`DEFAULT_BASE_URL`.
    manifest : dict or None
        Expected sizes and checksums (:func:`load_manifest`); None: the shipped list.
    progress : callable or None
        ``progress(name, bytes_done, bytes_total_or_None)`` while downloading.
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    list of pathlib.Path
        The files, in the order of ``names``.

    Raises
    ------
    RuntimeError
        When the server cannot be reached or the connection breaks (the partial download is kept for a resume).
    ValueError
        When a file is not on the server, or a downloaded file's size or checksum is not the release's (the
        download is removed).
    """
    manifest = load_manifest() if manifest is None else manifest
    base = (base_url or os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL).rstrip("/") + "/"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"not a release file name: {name!r}")
        expected = manifest.get(name, Expected())
        final, part = directory / name, directory / (name + ".part")
        if final.exists() and _matches(final, expected) is None:
            paths.append(final)
            continue
        _download(base + quote(name), part, expected, name, progress, timeout)
        problem = _matches(part, expected)
        if problem is not None:
            part.unlink(missing_ok=True)
            raise ValueError(f"{name} downloaded from {base} is not the release's file ({problem}); removed it")
        os.replace(part, final)
        paths.append(final)
    return paths
