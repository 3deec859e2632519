"""What INcDb keeps in storage, by key: where each kind of object lives, and the decoding vectors.

Keys derive from stable identities (a component's uuid, a reference set's id, a term's and a movie's slugs), so a
re-run job writes the same keys and a key tells what the object is. Slugs keep the letters of every script
(``сталкер``), which keys accept (``store.storage.check_key``); a slug longer than :data:`MAX_SLUG_BYTES` is cut
and told apart by a hash of the whole (:func:`slug_segment`), so a key segment stays within what file systems
allow. Maps themselves (gzip NIfTI on the standard grid) are read and written by ``pipeline.maps.files``, which needs
the
grid.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from store.storage import get_storage

MAX_SLUG_BYTES = 150  # UTF-8 bytes of a slug in a key; with "-<digest>.nii.gz" a segment stays under 255


def slug_segment(slug: str) -> str:
    """A slug as one segment of a storage key.

    Parameters
    ----------
    slug : str
        A slug made by ``store.models.slugify`` (lower-case letters and digits of any script, joined by ``-``).

    Returns
    -------
    str
        The slug itself (in normal form NFC, anything but letters, digits, ``-`` and ``_`` as ``-``) when it has at
        most :data:`MAX_SLUG_BYTES` UTF-8 bytes; else its longest start that fits with ``-`` and eight hex digits
        of the whole slug's SHA-256, so two long slugs with the same start still get different keys.
    """
    text = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in unicodedata.normalize("NFC", slug))
    text = text.strip("-") or "untitled"
    raw = text.encode("utf-8")
    if len(raw) <= MAX_SLUG_BYTES:
        return text
    digest = hashlib.sha256(raw).hexdigest()[:8]
    start = raw[: MAX_SLUG_BYTES - len(digest) - 1].decode("utf-8", "ignore").rstrip("-")
    return f"{start}-{digest}"


def component_key(component_uuid: str) -> str:
    """Key of a component's map on the standard grid."""
    return f"components/{component_uuid}.nii.gz"


def decodings_key(component_uuid: str) -> str:
    """Key of a component's decoding profile (r with every term, see :func:`save_vector`)."""
    return f"decodings/{component_uuid}.npy"


def similarity_vector_key(component_uuid: str) -> str:
    """Key of a component's masked map as float16 (the similarity search re-ranks its candidates with it)."""
    return f"similar/vectors/{component_uuid}.npy"


def similarity_basis_key(name: str) -> str:
    """Key of a similarity basis (float32, mask voxels x dimensions)."""
    return f"similar/bases/{name}.npy"


def decode_prefix(token: str) -> str:
    """Folder of a visitor's decoded map: its volumes on the grid and its result."""
    return f"decode/{token}/"


def timecourse_key(name: str) -> str:
    """Key of a map's time-course matrix (float32 .npy, rows x components)."""
    return f"timecourses/{name}.npy"


def term_key(reference_id: int, term_slug: str) -> str:
    """Key of a reference set's term map."""
    return f"reference/{reference_id}/terms/{slug_segment(term_slug)}.nii.gz"


def termmap_key(reference_id: int, term_slug: str, movie_slug: str | None, digest: str) -> str:
    """Key of a merged map; ``digest`` identifies the merged components (see pipeline.decoding.termmaps).

    Parameters
    ----------
    reference_id : int
        Id of the reference set the term belongs to.
    term_slug : str
        The term's slug.
    movie_slug : str or None
        The movie's slug; None (or empty) for the term's map across all movies.
    digest : str
        Hex digest of the merged components' keys.

    Returns
    -------
    str
        ``termmaps/<reference_id>/movies/<movie_slug>/<term_slug>-<digest>.nii.gz``, or
        ``termmaps/<reference_id>/all-movies/<term_slug>-<digest>.nii.gz``; the slugs as :func:`slug_segment`
        gives them (unchanged unless very long).
    """
    scope = f"movies/{slug_segment(movie_slug)}" if movie_slug else "all-movies"
    return f"termmaps/{reference_id}/{scope}/{slug_segment(term_slug)}-{digest}.nii.gz"


def thumbnail_key(map_key: str) -> str:
    """Key of a map's glass-brain thumbnail: the map's key with ``.png`` for ``.nii.gz`` (same folder).

    Parameters
    ----------
    map_key : str
        Storage key of a map, e.g. from :func:`component_key`, :func:`term_key` or :func:`termmap_key`.

    Returns
    -------
    str
        e.g. ``components/<uuid>.png`` for ``components/<uuid>.nii.gz``.
    """
    stem = map_key[: -len(".nii.gz")] if map_key.endswith(".nii.gz") else map_key
    return stem + ".png"


def map_and_thumbnail(map_keys) -> list[str]:
    """The keys of maps followed by the keys of their thumbnails (what to delete when the maps go)."""
    keys = [k for k in map_keys if k]
    return keys + [thumbnail_key(k) for k in keys]


def save_vector(key: str, vector: np.ndarray) -> None:
    """Store a float32 vector (a component's full decoding profile) as .npy bytes.

    Parameters
    ----------
    key : str
        Storage key, e.g. from :func:`decodings_key`; an existing object is replaced (atomically).
    vector : array_like
        ``(n_terms,)`` values (any shape is kept), converted to float32.
    """
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32))
    get_storage().put_bytes(key, buf.getvalue())


def load_vector(key: str) -> np.ndarray:
    """A vector stored by ``save_vector``.

    Parameters
    ----------
    key : str
        Storage key of the ``.npy`` object.

    Returns
    -------
    numpy.ndarray
        The stored float32 array, e.g. ``(n_terms,)`` r values in the reference set's column order.

    Raises
    ------
    KeyError
        When nothing is stored under ``key``.
    """
    return np.load(io.BytesIO(get_storage().read_bytes(key)))


@contextmanager
def local_copy(key: str, suffix: str = ".nii.gz") -> Iterator[Path]:
    """A local file path holding the object (the object itself for local storage).

    Parameters
    ----------
    key : str
        Storage key.
    suffix : str
        Ending of the temporary file's name when the object has to be downloaded (readers such as nibabel go
        by it).

    Yields
    ------
    pathlib.Path
        A file to read, never to change: for local storage the stored object itself; otherwise a temporary
        copy, deleted when the block ends.

    Raises
    ------
    KeyError
        When nothing is stored under ``key``.
    """
    storage = get_storage()
    path = storage.local_path(key)
    if path is not None and path.exists():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="incdb-") as tmp:
        dest = Path(tmp) / f"object{suffix}"
        with storage.open(key) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        yield dest
