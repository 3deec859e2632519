"""Building test images: grids with their own affines, Gaussian blobs at MNI coordinates, files in many encodings.

Every image here is written with nibabel, so the tests read the same bytes a curator's tools would produce.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask

# The field of view of the MNI grid in mm (x from -90 to 90, y from -126 to 90, z from -72 to 108).
MNI_MIN = np.array([-90.0, -126.0, -72.0])
MNI_MAX = np.array([90.0, 90.0, 108.0])


def mni_affine(voxel_mm: float, flip_lr: bool = False, shift_mm=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, tuple]:
    """An affine and shape covering the MNI field of view with isotropic voxels.

    ``flip_lr=False`` is RAS (x grows with i); ``flip_lr=True`` is LAS like FSL's MNI152 files (x shrinks as i
    grows). ``shift_mm`` moves the whole grid, so voxel centres need not coincide with the standard grid's.
    """
    shape = tuple(math.ceil((hi - lo) / voxel_mm) + 1 for lo, hi in zip(MNI_MIN, MNI_MAX))
    affine = np.eye(4)
    affine[:3, :3] = np.diag([voxel_mm] * 3)
    affine[:3, 3] = MNI_MIN + np.asarray(shift_mm, dtype=float)
    if flip_lr:
        affine[0, 0] = -voxel_mm
        affine[0, 3] = MNI_MIN[0] + (shape[0] - 1) * voxel_mm + shift_mm[0]
    return affine, shape


def world_coordinates(affine: np.ndarray, shape) -> np.ndarray:
    """World (mm) coordinates of every voxel of a grid, shape (x, y, z, 3), float64."""
    ijk = np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape[:3]), indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def gaussian_blob(affine: np.ndarray, shape, centre_mm, sigma_mm: float = 6.0, peak: float = 10.0) -> np.ndarray:
    """A Gaussian of ``sigma_mm`` at ``centre_mm`` (MNI), sampled on the given grid, float32."""
    centre = np.asarray(centre_mm, dtype=np.float64)
    rotation = affine[:3, :3]
    if np.count_nonzero(rotation - np.diag(np.diag(rotation))) == 0:
        # Axis-aligned grid: the Gaussian is a product of one 1D Gaussian per axis (fast on 1 mm grids).
        factors = [
            np.exp(-((affine[a, a] * np.arange(shape[a]) + affine[a, 3] - centre[a]) ** 2) / (2 * sigma_mm**2))
            for a in range(3)
        ]
        data = peak * factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]
        return data.astype(np.float32)
    xyz = world_coordinates(affine, shape)
    d2 = ((xyz - centre) ** 2).sum(axis=-1)
    return (peak * np.exp(-d2 / (2 * sigma_mm**2))).astype(np.float32)


def smooth_random(rng: np.random.Generator, shape=GRID_SHAPE, sigma_vox: float = 2.0) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation (an unthresholded, ICA-like map), float32."""
    data = gaussian_filter(rng.standard_normal(shape), sigma_vox)
    return (data / data.std()).astype(np.float32)


def thresholded(data: np.ndarray, keep_share: float) -> np.ndarray:
    """Zero all in-mask voxels but the ``keep_share`` with the largest |value| (and everything outside the mask)."""
    mask = brain_mask()
    inside = np.abs(data[mask])
    cut = np.quantile(inside, 1.0 - keep_share)
    out = np.where(mask & (np.abs(data) > cut), data, 0.0)
    return out.astype(data.dtype)


def write(
    path: Path, data: np.ndarray, affine: np.ndarray = GRID_AFFINE, dtype=None, endianness: str | None = None
) -> Path:
    """Write ``data`` as NIfTI-1 with nibabel (.nii or .nii.gz from the name).

    ``dtype`` sets the on-disk type: for integer types nibabel chooses scl_slope/scl_inter itself.
    ``endianness='>'`` writes a big-endian file.
    """
    path = Path(path)
    header = nib.Nifti1Header(endianness=endianness) if endianness else None
    img = nib.Nifti1Image(np.asarray(data), affine, header=header)
    if dtype is not None:
        img.set_data_dtype(np.dtype(dtype))
    img.set_sform(affine, code=4)
    img.set_qform(affine, code=4)
    nib.save(img, str(path))
    return path


def peak_mm(data: np.ndarray) -> np.ndarray:
    """MNI coordinates of the largest voxel of a map on the standard grid."""
    ijk = np.array(np.unravel_index(int(np.argmax(data)), data.shape))
    return (GRID_AFFINE @ np.r_[ijk, 1.0])[:3]


def raw_header_bytes(shape, dtype=np.float32, sform: np.ndarray | None = None) -> bytes:
    """The 352 bytes (header + empty extension flag) of a .nii file claiming ``shape`` of ``dtype``; craft
    impossible headers with it (no data follows unless the caller adds some). ``sform`` is written as is (even a
    singular one), with qform_code 0 so it is the affine readers use."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.dtype(dtype))
    header.set_data_shape(shape)
    sform = np.diag([2.0, 2.0, 2.0, 1.0]) if sform is None else np.asarray(sform, dtype=float)
    header["srow_x"], header["srow_y"], header["srow_z"] = sform[0], sform[1], sform[2]
    header["sform_code"] = 1
    header["qform_code"] = 0
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4
