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
    """(n, 91, 109, 91) or (91, 109, 91) maps -> (n, voxels) float32 over the brain mask, non-finite -> 0."""
    maps = np.asarray(maps)
    if maps.shape == GRID_SHAPE:
        maps = maps[np.newaxis]
    # np.take along the voxel axis is several times faster than fancy indexing with [:, indices] here.
    flat = np.take(maps.reshape(len(maps), -1), mask_flat_indices(), axis=1).astype(np.float32, copy=False)
    if not np.isfinite(flat).all():
        flat[~np.isfinite(flat)] = 0
    return flat


def write_reference_matrix(path: Path, term_maps: Iterable[np.ndarray], n_terms: int) -> None:
    """Write the (voxels x terms) normalised matrix as a .npy file, atomically, one term column at a time."""
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
    matrix = np.load(path, mmap_mode="r")
    if matrix.ndim != 2 or matrix.shape[0] != len(mask_flat_indices()):
        raise ValueError(f"{path} is not a reference matrix for the current brain mask")
    return matrix


def decode(components: np.ndarray, matrix: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Pearson r of each component (maps on the grid, or already masked rows) with every term column.

    Returns (n_components, n_terms) float32 in [-1, 1].
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
    """Terms with r, best first (ties broken by term order)."""
    order = np.argsort(-r, kind="stable")
    if top is not None:
        order = order[:top]
    return [(terms[i], float(r[i])) for i in order]
