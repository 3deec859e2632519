"""Maps on the standard grid in storage: gzip NIfTI bytes, atomic save and load (keys: ``store.artifacts``)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from pipeline.maps.grid import to_image
from store.storage import get_storage

try:  # isal's gzip is several times faster than zlib's, with the same output format
    from isal import igzip as _gzip

    _LEVEL = 2  # isal levels are 0-3
except ImportError:  # pragma: no cover
    _gzip = gzip
    _LEVEL = 6


def nifti_bytes(img: nib.Nifti1Image) -> bytes:
    """Gzipped NIfTI-1 bytes of an image. The gzip header's mtime is fixed at 0, so the same map always gives the
    same bytes (a re-run job rewrites byte-identical files).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        The image to serialise.

    Returns
    -------
    bytes
        The gzip-compressed ``.nii`` file.
    """
    return _gzip.compress(img.to_bytes(), _LEVEL, mtime=0)


def save_map(key: str, data: np.ndarray) -> None:
    """Store a float32 map on the grid under ``key`` (atomically).

    Parameters
    ----------
    key : str
        Storage key, e.g. from :func:`store.artifacts.component_key`; an existing object is replaced.
    data : array_like
        ``(91, 109, 91)`` map on the standard grid (or ``(91, 109, 91, n)``), converted to float32.

    Raises
    ------
    ValueError
        When ``data`` is not on the standard grid or ``key`` is not a valid storage key.
    """
    get_storage().put_bytes(key, nifti_bytes(to_image(data)))


def gunzip(raw: bytes) -> bytes:
    """``raw`` decompressed when it is gzip, else unchanged (plain .nii).

    Parameters
    ----------
    raw : bytes
        File contents; gzip is recognised by its magic bytes, not by a name.

    Returns
    -------
    bytes
        The decompressed bytes, or ``raw`` itself.

    Raises
    ------
    EOFError
        When ``raw`` starts like gzip but the stream is truncated.
    gzip.BadGzipFile
        When the gzip stream is corrupt (e.g. a failed CRC check).
    """
    return _gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def load_image(key: str) -> nib.Nifti1Image:
    """The NIfTI image stored under ``key`` (gzipped or plain).

    Parameters
    ----------
    key : str
        Storage key of a NIfTI object.

    Returns
    -------
    nibabel.Nifti1Image
        The image, held in memory (no file stays open).

    Raises
    ------
    KeyError
        When no object is stored under ``key``.
    ValueError
        When ``key`` is not a valid storage key.
    """
    return nib.Nifti1Image.from_bytes(gunzip(get_storage().read_bytes(key)))


def load_map(key: str) -> np.ndarray:
    """The float32 data of the map stored under ``key``.

    Parameters
    ----------
    key : str
        Storage key of a map saved by :func:`save_map` (or any NIfTI object).

    Returns
    -------
    numpy.ndarray
        float32 voxels with scaling applied, the stored shape: ``(91, 109, 91)`` for a map from :func:`save_map`.

    Raises
    ------
    KeyError
        When no object is stored under ``key``.
    """
    return load_image(key).get_fdata(dtype=np.float32)
