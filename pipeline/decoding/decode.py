"""Exact Pearson decoding against a pre-normalised, memory-mapped reference matrix (DESIGN section 4).

For a component x and a term map y over the mask voxels (non-finite values set to 0 beforehand):
    r = sum((x - mean x)(y - mean y)) / (||x - mean x|| * ||y - mean y||)
The reference matrix keeps every term column centred and unit-normalised (float32, voxels x terms), so decoding a
batch is one GEMM of centred, unit-normalised components against it. A term map with zero variance gets a zero
column (r = 0 for every component).

Exactness. The float32 values themselves are accurate to 1e-7 relative; what loses digits is summing 235,375
float32 products in float32, worst when most products share a sign (a thresholded map: 90% of its voxels hold the
same centred value, and so do most voxels of a sparse term map). A single map goes through BLAS's matrix-vector
kernel, which adds the products one after the other into each output, and drifted up to 5e-4 from
``np.corrcoef`` here. Two things keep every r within 1e-7 at GEMM speed:

* the products are summed over blocks of :data:`ACCUMULATE_ROWS` voxels by BLAS in float32, and the blocks'
  sums are added in float64, so no float32 partial sum grows past one block (a quarter of a block for a few
  maps, which BLAS sums one product after the other; a GEMM sums in short runs of its own);
* a map whose voxels are mostly exactly 0 (a thresholded map) is scaled but not shifted: since every term column
  sums to 0, ``sum((x - c) * y) = sum(x * y)`` for any constant c, and then its zeros add nothing at all.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pipeline.maps.grid import GRID_SHAPE, mask_flat_indices

BATCH = 256  # components per GEMM: few passes over the reference, ~240 MB of batch
# Voxels per float32 partial product (the partials are added in float64): 58 blocks for the 2 mm mask, so adding
# them costs about 2% of the GEMM, and a 4096 x 3228 block of the matrix (53 MB) is still a large GEMM.
ACCUMULATE_ROWS = 4096
FEW_ROWS = 8  # fewer components than this go through BLAS's matrix-vector kernel: shorter blocks for them
FEW_ROWS_BLOCK = 1024


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
        block = x[start : start + chunk].astype(np.float64)
        block -= block.mean(axis=1, keepdims=True)
        norm = np.sqrt(np.einsum("ij,ij->i", block, block))[:, np.newaxis]
        np.divide(block, norm, out=block, where=norm > 0)
        block[(norm == 0)[:, 0]] = 0.0
        out[start : start + chunk] = block
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
        :func:`pipeline.maps.grid.mask_flat_indices`, NaN and infinities set to 0. One map gives ``n_maps = 1``.
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


def decoding_rows(x: np.ndarray) -> np.ndarray:
    """Components scaled for decoding: each row divided by the norm of its centred values, float32.

    A row is also shifted by its mean, except when at least half of its values are exactly 0: a shift changes
    no r (every term column sums to 0) but would turn those zeros into a constant that the float32 sums carry.

    Parameters
    ----------
    x : array_like
        ``(n_rows, n_values)`` finite real numbers.

    Returns
    -------
    numpy.ndarray
        ``(n_rows, n_values)`` float32, a new array; all 0 for a row whose centred norm is 0.
    """
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, len(x), 8):
        block = x[start : start + 8].astype(np.float64)
        sparse_rows = np.count_nonzero(block, axis=1) * 2 <= block.shape[1]
        mean = block.mean(axis=1, keepdims=True)
        block -= mean
        norm = np.sqrt(np.einsum("ij,ij->i", block, block))[:, np.newaxis]
        if sparse_rows.any():  # their zeros back to 0 (same r, see above): only these rows take another pass
            block[sparse_rows] += mean[sparse_rows]
        np.divide(block, norm, out=block, where=norm > 0)
        block[(norm == 0)[:, 0]] = 0.0
        out[start : start + 8] = block
    return out


def correlate(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix`` with float32 products summed per block of voxels and the blocks summed in float64.

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, n_voxels)`` float32 rows (from :func:`decoding_rows`).
    matrix : numpy.ndarray
        ``(n_voxels, n_terms)`` float32, e.g. the memory-mapped reference matrix.

    Returns
    -------
    numpy.ndarray
        ``(n, n_terms)`` float64.
    """
    total = np.zeros((len(x), matrix.shape[1]), dtype=np.float64)
    part = np.empty((len(x), matrix.shape[1]), dtype=np.float32)
    step = ACCUMULATE_ROWS if len(x) >= FEW_ROWS else FEW_ROWS_BLOCK
    for start in range(0, matrix.shape[0], step):
        stop = start + step
        np.matmul(x[:, start:stop], matrix[start:stop], out=part)
        total += part
    return total


def decode(components: np.ndarray, matrix: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Pearson r of each component (maps on the grid, or already masked rows) with every term column.

    Returns (n_components, n_terms) float32 in [-1, 1], within 1e-6 of ``np.corrcoef`` (see the module's
    notes on exactness).

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
        out[start : start + batch] = correlate(decoding_rows(rows[start : start + batch]), matrix)
    np.clip(out, -1.0, 1.0, out=out)
    return out


def decode_nonzero(components: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Pearson r of each component over its own non-zero voxels (a thresholded map's support), with every term.

    Over such a subset the term columns are no longer centred or of unit norm, so each is re-centred and
    re-normalised there: one float64 pass over the subset's rows of the matrix gives every column's sum, sum of
    squares and product with the component (a column constant over the subset has r = 0).

    Parameters
    ----------
    components : array_like
        Maps on the grid or masked rows, as for :func:`decode`.
    matrix : numpy.ndarray
        ``(n_mask_voxels, n_terms)`` reference matrix.

    Returns
    -------
    numpy.ndarray
        ``(n_components, n_terms)`` float32 r in [-1, 1]; a component with fewer than 3 non-zero voxels, or
        constant over them, gives all 0.
    """
    components = np.asarray(components)
    rows = components if components.ndim == 2 and components.shape[1] == matrix.shape[0] else masked(components)
    out = np.zeros((len(rows), matrix.shape[1]), dtype=np.float32)
    for i, row in enumerate(rows):
        support = np.flatnonzero(row)
        if len(support) < 3:
            continue
        x = row[support].astype(np.float64)
        x -= x.mean()
        norm = float(np.linalg.norm(x))
        if norm == 0:
            continue
        x /= norm
        first = np.asarray(matrix[support[0]], dtype=np.float64)  # a shift: sums of squares without cancellation
        sums = np.zeros(matrix.shape[1])
        squares = np.zeros(matrix.shape[1])
        dots = np.zeros(matrix.shape[1])
        for start in range(0, len(support), ACCUMULATE_ROWS):
            y = np.asarray(matrix[support[start : start + ACCUMULATE_ROWS]], dtype=np.float64) - first
            sums += y.sum(axis=0)
            squares += np.einsum("ij,ij->j", y, y)
            dots += x[start : start + ACCUMULATE_ROWS] @ y  # = sum(x * y) for the shifted y too: x sums to 0
        spread = squares - sums * sums / len(support)
        usable = spread > squares * 1e-12
        r = np.zeros(matrix.shape[1])
        r[usable] = dots[usable] / np.sqrt(spread[usable])
        out[i] = np.clip(r, -1.0, 1.0)
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
