"""Maps on the standard grid in storage: keys, gzip NIfTI bytes, atomic save and load."""
from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.grid import to_image
from store.storage import get_storage

try:  # isal's gzip is several times faster than zlib's, with the same output format
    from isal import igzip as _gzip

    _LEVEL = 2  # isal levels are 0-3
except ImportError:  # pragma: no cover
    _gzip = gzip
    _LEVEL = 6


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


def nifti_bytes(img: nib.Nifti1Image) -> bytes:
    """Gzipped NIfTI-1 bytes of an image. The gzip header's mtime is fixed at 0, so the same map always gives the
    same bytes (a re-run job rewrites byte-identical files)."""
    return _gzip.compress(img.to_bytes(), _LEVEL, mtime=0)


def save_map(key: str, data: np.ndarray) -> None:
    """Store a float32 map on the grid under ``key`` (atomically)."""
    get_storage().put_bytes(key, nifti_bytes(to_image(data)))


def gunzip(raw: bytes) -> bytes:
    """``raw`` decompressed when it is gzip, else unchanged (plain .nii)."""
    return _gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def load_image(key: str) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gunzip(get_storage().read_bytes(key)))


def load_map(key: str) -> np.ndarray:
    return load_image(key).get_fdata(dtype=np.float32)


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


def save_vector(key: str, vector: np.ndarray) -> None:
    """Store a float32 vector (a component's full decoding profile) as .npy bytes."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32))
    get_storage().put_bytes(key, buf.getvalue())


def load_vector(key: str) -> np.ndarray:
    import io

    return np.load(io.BytesIO(get_storage().read_bytes(key)))
