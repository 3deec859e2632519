"""What INcDb keeps in storage, by key: where each kind of object lives, and the decoding vectors.

Keys derive from stable identities (a component's uuid, a reference set's id, a term's and a movie's slugs), so a
re-run job writes the same keys and a key tells what the object is. Maps themselves (gzip NIfTI on the standard
grid) are read and written by ``pipeline.maps``, which needs the grid.
"""
from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from store.storage import get_storage


def component_key(component_uuid: str) -> str:
    return f"components/{component_uuid}.nii.gz"


def decodings_key(component_uuid: str) -> str:
    return f"decodings/{component_uuid}.npy"


def term_key(reference_id: int, term_slug: str) -> str:
    return f"reference/{reference_id}/terms/{term_slug}.nii.gz"


def termmap_key(reference_id: int, term_slug: str, movie_slug: str | None, digest: str) -> str:
    """Key of a merged map; ``digest`` identifies the merged components (see pipeline.termmaps)."""
    scope = f"movies/{movie_slug}" if movie_slug else "all-movies"
    return f"termmaps/{reference_id}/{scope}/{term_slug}-{digest}.nii.gz"


def save_vector(key: str, vector: np.ndarray) -> None:
    """Store a float32 vector (a component's full decoding profile) as .npy bytes."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32))
    get_storage().put_bytes(key, buf.getvalue())


def load_vector(key: str) -> np.ndarray:
    """A vector stored by ``save_vector``."""
    return np.load(io.BytesIO(get_storage().read_bytes(key)))


@contextmanager
def local_copy(key: str, suffix: str = ".nii.gz") -> Iterator[Path]:
    """A local file path holding the object (the object itself for local storage)."""
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
