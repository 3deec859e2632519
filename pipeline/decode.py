"""Exact Pearson decoding against a pre-normalised, memory-mapped reference matrix (DESIGN section 4).

For a component x and a term map y over the mask voxels (non-finite values set to 0 beforehand):
    r = sum((x - mean x)(y - mean y)) / (||x - mean x|| * ||y - mean y||)
The reference matrix keeps every term column centred and unit-normalised (float32, voxels x terms), so decoding a
batch is one GEMM of centred, unit-normalised components against it. A term map with zero variance gets a zero
column (r = 0 for every component).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pipeline.grid import GRID_SHAPE, mask_flat_indices

BATCH = 256  # components per GEMM: few passes over the reference, ~240 MB of batch


def normalise_rows(x: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Centre and unit-normalise each row (float64 arithmetic, float32 result). Zero-variance rows -> 0.

    Works on a few rows at a time so the float64 copy stays in cache-sized pieces instead of a second full array.

    Parameters
    ----------
    x : array_like
        ``(n_rows, n_values)`` real numbers, finite (non-finite values propagate; :func:`masked` sets them to 0).
    chunk : int
        Rows converted to float64 at a time.

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_values)`` float32, a new array: every row with mean 0 and Euclidean norm 1, or all 0 for a
        row whose centred norm is 0.
    """
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk].astype(np.float64)
        block -= block.mean(axis=1, keepdims=True)
        norm = np.sqrt(np.einsum("ij,ij->i", block, block))[:, np.newaxis]
        np.divide(block, norm, out=block, where=norm > 0)
        block[(norm == 0)[:, 0]] = 0.0
        out[start:start + chunk] = block
    return out


def masked(maps: np.ndarray) -> np.ndarray:
    """(n, 91, 109, 91) or (91, 109, 91) maps -> (n, voxels) float32 over the brain mask, non-finite -> 0.

    Parameters
    ----------
    maps : array_like
        ``(n_maps, 91, 109, 91)`` maps on the standard grid, or one ``(91, 109, 91)`` map; any real dtype.

    Returns
    -------
    numpy.ndarray
        ``(n_maps, n_mask_voxels)`` float32, a new array (the input is not changed); columns in the order of
        :func:`pipeline.grid.mask_flat_indices`, NaN and infinities set to 0. One map gives ``n_maps = 1``.
    """
    maps = np.asarray(maps)
    if maps.shape == GRID_SHAPE:
        maps = maps[np.newaxis]
    # np.take along the voxel axis is several times faster than fancy indexing with [:, indices] here.
    flat = np.take(maps.reshape(len(maps), -1), mask_flat_indices(), axis=1).astype(np.float32, copy=False)
    if not np.isfinite(flat).all():
        flat[~np.isfinite(flat)] = 0
    return flat


def write_reference_matrix(path: Path, term_maps: Iterable[np.ndarray], n_terms: int) -> None:
    """Write the (voxels x terms) normalised matrix as a .npy file, atomically, one term column at a time.

    Parameters
    ----------
    path : pathlib.Path
        Where the ``.npy`` file goes; its folder is made if missing. The file appears only once it is complete
        (a temporary file in the same folder is renamed onto it, and removed on any error).
    term_maps : iterable of numpy.ndarray
        ``(91, 109, 91)`` term maps on the standard grid, in column order; consumed one at a time.
    n_terms : int
        Number of maps ``term_maps`` yields (the matrix is allocated before reading them).

    Raises
    ------
    ValueError
        When ``term_maps`` yields fewer than ``n_terms`` maps (more raise IndexError). Either way no file is
        written.
    """
    n_vox = len(mask_flat_indices())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
    os.close(fd)
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_vox, n_terms))
        count = 0
        for column, data in enumerate(term_maps):
            mm[:, column] = normalise_rows(masked(data))[0]
            count += 1
        if count != n_terms:
            raise ValueError(f"expected {n_terms} term maps, got {count}")
        mm.flush()
        del mm
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_reference_matrix(path: Path) -> np.ndarray:
    """Memory-map a reference matrix written by :func:`write_reference_matrix`, read-only.

    Parameters
    ----------
    path : pathlib.Path
        The ``.npy`` file.

    Returns
    -------
    numpy.ndarray
        ``(n_mask_voxels, n_terms)`` float32 read-only memory map: one centred, unit-normalised column per term.

    Raises
    ------
    ValueError
        When the file is not a 2D array with one row per voxel of the current brain mask.
    FileNotFoundError
        When the file does not exist.
    """
    matrix = np.load(path, mmap_mode="r")
    if matrix.ndim != 2 or matrix.shape[0] != len(mask_flat_indices()):
        raise ValueError(f"{path} is not a reference matrix for the current brain mask")
    return matrix


def decode(components: np.ndarray, matrix: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Pearson r of each component (maps on the grid, or already masked rows) with every term column.

    Returns (n_components, n_terms) float32 in [-1, 1].

    Parameters
    ----------
    components : array_like
        ``(n_components, 91, 109, 91)`` maps on the standard grid or one ``(91, 109, 91)`` map (masked here), or
        ``(n_components, n_mask_voxels)`` rows from :func:`masked` (used as given, so already finite).
    matrix : numpy.ndarray
        ``(n_mask_voxels, n_terms)`` float32 reference matrix from :func:`open_reference_matrix`.
    batch : int
        Components normalised and multiplied at a time.

    Returns
    -------
    numpy.ndarray
        ``(n_components, n_terms)`` float32 Pearson r, clipped to [-1, 1]; r is 0 for a component or a term map
        that is constant inside the mask.
    """
    components = np.asarray(components)
    rows = components if components.ndim == 2 and components.shape[1] == matrix.shape[0] else masked(components)
    out = np.empty((len(rows), matrix.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), batch):
        x = normalise_rows(rows[start:start + batch])
        np.matmul(x, matrix, out=out[start:start + batch])
    np.clip(out, -1.0, 1.0, out=out)
    return out


def ranked(r: np.ndarray, terms: list[str], top: int | None = None) -> list[tuple[str, float]]:
    """Terms with r, best first (ties broken by term order).

    Parameters
    ----------
    r : numpy.ndarray
        ``(n_terms,)`` r of one component with every term (a row of :func:`decode`).
    terms : list of str
        Term names in the same order as ``r``.
    top : int or None
        Keep only the ``top`` best terms; None keeps all.

    Returns
    -------
    list of (str, float)
        ``(term, r)`` pairs sorted by descending r.
    """
    order = np.argsort(-r, kind="stable")
    if top is not None:
        order = order[:top]
    return [(terms[i], float(r[i])) for i in order]
