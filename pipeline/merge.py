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

from pipeline.grid import GRID_AFFINE, GRID_SHAPE, to_image
from pipeline.maps import nifti_bytes
from store.config import get_settings

BACKENDS = ("auto", "afni", "numpy")


def afni_available() -> bool:
    return shutil.which("3dmerge") is not None


def resolve_backend(name: str | None = None) -> str:
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
    """Voxelwise mean, zeros included, accumulated in float64; non-finite values count as 0."""
    if not maps:
        raise ValueError("nothing to merge: no input maps")
    total = np.zeros(np.shape(maps[0]), dtype=np.float64)
    for data in maps:
        if np.shape(data) != total.shape:
            raise ValueError(f"cannot merge maps of shapes {total.shape} and {np.shape(data)}")
        total += np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return (total / len(maps)).astype(np.float32)


def afni_merge_interface(in_files: Sequence[str | os.PathLike], out_file: str | os.PathLike):
    """The nipype interface for ``3dmerge -doall -prefix OUT IN...`` (inputs must exist)."""
    from nipype.interfaces import afni  # lazy: nipype takes seconds to import, and only the AFNI backend needs it

    return afni.Merge(in_files=[str(p) for p in in_files], doall=True, out_file=str(out_file),
                      outputtype="NIFTI_GZ")


def merge_files(out_file: str | os.PathLike, in_files: Sequence[str | os.PathLike],
                backend: str | None = None) -> str:
    """Merge NIfTI files into ``out_file`` (written atomically). Returns the backend used."""
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
