"""The standard space every derived map lives in: the FSL MNI152 2 mm grid (Neurosynth, MELODIC ``*_2mm``)."""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

GRID_SHAPE: tuple[int, int, int] = (91, 109, 91)
GRID_AFFINE = np.array([[-2.0, 0.0, 0.0, 90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0], [0.0, 0.0, 0.0, 1.0]])
GRID_AFFINE.setflags(write=False)


def to_image(data: np.ndarray, dtype=np.float32) -> nib.Nifti1Image:
    """Wrap an array on the grid as a NIfTI-1 image in MNI space (sform and qform code 4).

    Parameters
    ----------
    data : array_like
        ``(91, 109, 91)`` map or ``(91, 109, 91, n)`` maps on the standard grid.
    dtype : numpy dtype
        Voxel type of the image; the data is converted (without a copy when it already has this type).

    Returns
    -------
    nibabel.Nifti1Image
        The image with :data:`GRID_AFFINE`, spatial units mm and time units s.

    Raises
    ------
    ValueError
        When the first three dimensions of ``data`` are not :data:`GRID_SHAPE`.
    """
    data = np.asarray(data)
    if data.shape[:3] != GRID_SHAPE:
        raise ValueError(f"array of shape {data.shape} is not on the {GRID_SHAPE} grid")
    img = nib.Nifti1Image(data.astype(dtype, copy=False), GRID_AFFINE)
    img.set_sform(GRID_AFFINE, code=4)
    img.set_qform(GRID_AFFINE, code=4)
    img.header.set_xyzt_units("mm", "sec")
    return img


def mni_to_voxel(xyz) -> np.ndarray:
    """Nearest grid voxel (i, j, k) of MNI coordinates (x, y, z) in mm; accepts (3,) or (n, 3).

    Parameters
    ----------
    xyz : array_like
        ``(3,)`` or ``(n, 3)`` MNI coordinates in mm.

    Returns
    -------
    numpy.ndarray
        Integer voxel indices, ``(3,)`` for one point (also for an ``(1, 3)`` input) and ``(n, 3)`` otherwise.
        Points outside the grid give indices outside ``[0, GRID_SHAPE)``; they are not clipped.
    """
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    ijk = np.c_[xyz, np.ones(len(xyz))] @ np.linalg.inv(GRID_AFFINE).T
    return np.rint(ijk[:, :3]).astype(int).squeeze()


def voxel_to_mni(ijk) -> np.ndarray:
    """MNI coordinates in mm of grid voxel indices (i, j, k); accepts (3,) or (n, 3).

    Parameters
    ----------
    ijk : array_like
        ``(3,)`` or ``(n, 3)`` voxel indices (fractional indices are allowed).

    Returns
    -------
    numpy.ndarray
        float64 MNI coordinates in mm, ``(3,)`` for one point (also for an ``(1, 3)`` input), ``(n, 3)``
        otherwise.
    """
    ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
    return (np.c_[ijk, np.ones(len(ijk))] @ GRID_AFFINE.T)[:, :3].squeeze()


def voxel_coordinates_mm() -> np.ndarray:
    """MNI coordinates of every grid voxel, shape (91, 109, 91, 3), float32.

    Returns
    -------
    numpy.ndarray
        ``(91, 109, 91, 3)`` float32: ``[i, j, k]`` holds the (x, y, z) mm of voxel (i, j, k).
    """
    i, j, k = np.meshgrid(*(np.arange(n) for n in GRID_SHAPE), indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(np.float32)
    return (ijk1 @ GRID_AFFINE.T.astype(np.float32))[..., :3]


def _cache_file(name: str) -> Path:
    """Where a grid array made from nilearn's templates is kept in the data directory, per nilearn version."""
    from store.config import get_settings

    version = importlib.metadata.version("nilearn")
    return get_settings().data_dir / "cache" / "grid" / f"nilearn-{version}" / f"{name}.npy"


def _disk_cached(name: str, build: Callable[[], np.ndarray]) -> np.ndarray:
    """``build()`` once per data directory: importing nilearn and resampling a template costs about 2.5 s, which
    every command-line call (``pipeline decode``) paid. Written whole or not at all; an unwritable or unreadable
    cache only costs the rebuild."""
    path = _cache_file(name)
    try:
        data = np.load(path, allow_pickle=False)
        if data.shape == GRID_SHAPE:
            data.setflags(write=False)
            return data
    except (OSError, ValueError):
        pass
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, data, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass
    data.setflags(write=False)
    return data


@lru_cache(maxsize=1)
def underlay() -> np.ndarray:
    """MNI152 T1 template (nilearn's, which loads offline) resampled onto the grid, float32.

    Returns
    -------
    numpy.ndarray
        ``(91, 109, 91)`` float32, read-only and shared (cached, also on disk), non-finite values set to 0.
    """
    return _disk_cached("underlay", _build_underlay)


def _build_underlay() -> np.ndarray:
    from nilearn import datasets, image  # lazy: nilearn takes about a second to import

    template = datasets.load_mni152_template(resolution=2)
    res = image.resample_img(
        template,
        target_affine=GRID_AFFINE,
        target_shape=GRID_SHAPE,
        interpolation="continuous",
        force_resample=True,
        copy_header=True,
    )
    data = np.asarray(res.get_fdata(), dtype=np.float32)
    data[~np.isfinite(data)] = 0
    return data


@lru_cache(maxsize=1)
def brain_mask() -> np.ndarray:
    """Boolean brain mask on the grid, from the same template (nearest-neighbour resampling).

    Returns
    -------
    numpy.ndarray
        ``(91, 109, 91)`` bool, read-only and shared (cached, also on disk).
    """
    return _disk_cached("brain_mask", _build_brain_mask)


def _build_brain_mask() -> np.ndarray:
    from nilearn import datasets, image  # lazy: nilearn takes about a second to import

    mask = datasets.load_mni152_brain_mask(resolution=2)
    res = image.resample_img(
        mask,
        target_affine=GRID_AFFINE,
        target_shape=GRID_SHAPE,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return np.asarray(res.get_fdata()) > 0.5


@lru_cache(maxsize=1)
def mask_flat_indices() -> np.ndarray:
    """Indices of the mask voxels in the C-order flattened grid (the order of reference matrix rows).

    Returns
    -------
    numpy.ndarray
        ``(n_mask_voxels,)`` int64, ascending, read-only and shared (cached).
    """
    idx = np.flatnonzero(brain_mask().ravel())
    idx.setflags(write=False)
    return idx
