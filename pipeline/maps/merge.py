"""Merging components into one map with AFNI's semantics (DESIGN section 5).

``3dmerge -doall -prefix OUT IN1 IN2 ...`` with AFNI's default ``-gmean`` combining: the voxelwise mean over all
inputs, zeros included. The ``numpy`` backend computes the same in-process; the ``afni`` backend runs 3dmerge
through nipype when AFNI is installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.maps.files import nifti_bytes
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, to_image
from store.config import get_settings

BACKENDS = ("auto", "afni", "numpy")


def afni_available() -> bool:
    """Whether AFNI's ``3dmerge`` is on PATH."""
    return shutil.which("3dmerge") is not None


def resolve_backend(name: str | None = None) -> str:
    """The merge backend to use: ``"afni"`` or ``"numpy"``.

    Parameters
    ----------
    name : str or None
        ``"auto"``, ``"afni"`` or ``"numpy"`` (case-insensitive); None means the configured
        ``INCDB_MERGE_BACKEND``. ``"auto"`` picks AFNI when ``3dmerge`` is on PATH.

    Returns
    -------
    str
        ``"afni"`` or ``"numpy"``.

    Raises
    ------
    ValueError
        When ``name`` is not one of :data:`BACKENDS`.
    RuntimeError
        When ``"afni"`` is asked for and ``3dmerge`` is not on PATH.
    """
    if name is None:
        name = get_settings().merge_backend
    name = name.lower()
    if name not in BACKENDS:
        raise ValueError(f"merge backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    if name == "auto":
        return "afni" if afni_available() else "numpy"
    if name == "afni" and not afni_available():
        raise RuntimeError("the AFNI merge backend needs AFNI's 3dmerge on PATH (or use --backend numpy)")
    return name


def mean_of_maps(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Voxelwise mean, zeros included, accumulated in float64; non-finite values count as 0.

    Parameters
    ----------
    maps : sequence of numpy.ndarray
        Maps of one shape (e.g. ``(91, 109, 91)``), any real dtype.

    Returns
    -------
    numpy.ndarray
        float32 mean, the shape of the inputs.

    Raises
    ------
    ValueError
        When ``maps`` is empty or the shapes differ.
    """
    if not maps:
        raise ValueError("nothing to merge: no input maps")
    total = np.zeros(np.shape(maps[0]), dtype=np.float64)
    for data in maps:
        if np.shape(data) != total.shape:
            raise ValueError(f"cannot merge maps of shapes {total.shape} and {np.shape(data)}")
        total += np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return (total / len(maps)).astype(np.float32)


def afni_merge_interface(in_files: Sequence[str | os.PathLike], out_file: str | os.PathLike):
    """The nipype interface for ``3dmerge -doall -prefix OUT IN...`` (inputs must exist).

    Parameters
    ----------
    in_files : sequence of str or os.PathLike
        Existing NIfTI files to merge.
    out_file : str or os.PathLike
        The gzipped NIfTI file ``3dmerge`` writes.

    Returns
    -------
    nipype.interfaces.afni.Merge
        The configured interface, not run yet (call its ``run()``).
    """
    from nipype.interfaces import afni  # lazy: nipype takes seconds to import, and only the AFNI backend needs it

    return afni.Merge(in_files=[str(p) for p in in_files], doall=True, out_file=str(out_file), outputtype="NIFTI_GZ")


def merge_files(out_file: str | os.PathLike, in_files: Sequence[str | os.PathLike], backend: str | None = None) -> str:
    """Merge NIfTI files into ``out_file`` (written atomically). Returns the backend used.

    Parameters
    ----------
    out_file : str or os.PathLike
        Where the merged gzipped NIfTI goes; its folder is made if missing. It appears only when complete.
    in_files : sequence of str or os.PathLike
        At least one NIfTI file; all on one grid (same shape and affine) for the ``numpy`` backend.
    backend : str or None
        As for :func:`resolve_backend` (None means the configured one).

    Returns
    -------
    str
        The backend that ran, ``"afni"`` or ``"numpy"``.

    Raises
    ------
    ValueError
        When no input is given, an input file does not exist, the backend name is unknown, or (``numpy``
        backend) the inputs are not on the same grid.
    RuntimeError
        When the ``afni`` backend is asked for without ``3dmerge`` on PATH.

    Notes
    -----
    The ``numpy`` backend writes float32; a result on the standard grid gets the MNI sform and qform of
    :func:`pipeline.maps.grid.to_image`, any other grid the first input's affine.
    """
    in_files = [Path(p) for p in in_files]
    if not in_files:
        raise ValueError("nothing to merge: give at least one input map")
    for path in in_files:
        if not path.is_file():
            raise ValueError(f"input map not found: {path}")
    backend = resolve_backend(backend)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=".merge-") as tmpdir:
        tmp_out = Path(tmpdir) / "merged.nii.gz"
        if backend == "afni":
            afni_merge_interface(in_files, tmp_out).run(cwd=tmpdir)
        else:
            images = [nib.load(str(p)) for p in in_files]
            first = images[0]
            for path, img in zip(in_files, images):
                if img.shape[:3] != first.shape[:3] or not np.allclose(img.affine, first.affine, atol=1e-3):
                    raise ValueError(f"{path.name} is not on the same grid as {in_files[0].name}")
            merged = mean_of_maps([img.get_fdata(dtype=np.float32) for img in images])
            if merged.shape[:3] == GRID_SHAPE and np.allclose(first.affine, GRID_AFFINE, atol=1e-3):
                out_img = to_image(merged)
            else:
                out_img = nib.Nifti1Image(merged, first.affine)
            tmp_out.write_bytes(nifti_bytes(out_img))
        os.replace(tmp_out, out_file)
    return backend
