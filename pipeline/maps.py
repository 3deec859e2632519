"""Maps on the standard grid in storage: gzip NIfTI bytes, atomic save and load (keys: ``store.artifacts``)."""
from __future__ import annotations

import gzip

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
    """The NIfTI image stored under ``key`` (gzipped or plain)."""
    return nib.Nifti1Image.from_bytes(gunzip(get_storage().read_bytes(key)))


def load_map(key: str) -> np.ndarray:
    """The float32 data of the map stored under ``key``."""
    return load_image(key).get_fdata(dtype=np.float32)
