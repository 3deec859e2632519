"""Ingest of one 70-component MELODIC-like 4D file at 3 mm against a 3,228-term reference.

Times the whole ingest job (header checks, split, resample to the 2 mm grid, QC, decode, store with thumbnails,
merge) and, in the same run, the decode GEMM alone (70 masked components times the reference matrix); prints the
ratio and the peak resident memory. A separate figure: the glass-brain thumbnail of one map
(``pipeline.maps.thumbnails``,
rendered by ingest for every component and merged map), median over the components, target <= 20 ms.
Run by hand: ``python bench/ingest.py [--terms 3228] [--components 70]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def melodic_like(n: int, seed: int = 0) -> nib.Nifti1Image:
    """Smooth, masked, z-scored random components on a 3 mm LAS grid (like melodic_IC.nii.gz)."""
    rng = np.random.default_rng(seed)
    shape = (61, 73, 61)
    affine = np.array([[-3.0, 0, 0, 90], [0, 3.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])
    ii, jj, kk = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    head = ((ii - 30) / 26) ** 2 + ((jj - 38) / 33) ** 2 + ((kk - 30) / 26) ** 2 < 1
    data = np.zeros(shape + (n,), dtype=np.float32)
    for v in range(n):
        vol = gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5) * head
        data[..., v] = vol / vol[head].std()
    return nib.Nifti1Image(data, affine)


def _fit_similarity_basis(n_vox: int) -> None:
    from pipeline.decoding import similar
    from store.db import session_scope

    with session_scope() as session:
        similar.create_basis(session, np.empty((0, n_vox), np.float32), active=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--terms", type=int, default=3228)
    parser.add_argument("--components", type=int, default=70)
    args = parser.parse_args()
    os.environ["INCDB_MERGE_BACKEND"] = "numpy"

    from accounts.users import create_user
    from bench.decode import synthetic_reference
    from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
    from pipeline.curation.ingest import ingest
    from pipeline.decoding.decode import masked
    from pipeline.decoding.reference import load_matrix, matrix_path, set_active
    from pipeline.jobs.lifecycle import create_job
    from pipeline.maps.grid import mask_flat_indices
    from pipeline.maps.nifti import check_nifti, resample_to_grid
    from pipeline.maps.thumbnails import render_thumbnail
    from store.db import session_scope, upgrade_database
    from store.models import ReferenceSet, Term

    upgrade_database()
    n_vox = len(mask_flat_indices())
    with session_scope() as session:
        ref = ReferenceSet(name="bench synthetic", source="builtin", voxel_count=n_vox)
        session.add(ref)
        session.flush()
        session.add_all(
            Term(
                reference_set_id=ref.id,
                name=f"term {i:04d}",
                slug=f"term-{i:04d}",
                column=i,
                storage_key=f"reference/{ref.id}/terms/term-{i:04d}.nii.gz",
            )
            for i in range(args.terms)
        )
        set_active(session, ref)
        ref_id = ref.id
        path = matrix_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_reference(path, n_vox, args.terms)
        user = create_user(session, "bench@example.org", None)
        collection = create_collection(session, user, get_or_create_movie(session, "Bench Movie"), "bench")
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "melodic_IC.nii.gz"
            nib.save(melodic_like(args.components), f)
            add_upload(session, collection, f, f.name)
        job_id = create_job(session, "ingest", collection.id, user.id).id
    with session_scope() as session:  # the very mapping ingest uses (a second mapping would count twice in RSS)
        matrix, _ = load_matrix(session, session.get(ReferenceSet, ref_id))
    for start in range(0, matrix.shape[0], 8192):  # page the reference in, as a running worker has it
        np.asarray(matrix[start : start + 8192]).sum()
    # A similarity basis, as a running site has (the first ingest fits one): fitted in a child process, so that its
    # temporaries do not count in this process's peak memory.
    fitter = multiprocessing.get_context("fork").Process(target=_fit_similarity_basis, args=(n_vox,))
    fitter.start()
    fitter.join()
    assert fitter.exitcode == 0

    t = time.perf_counter()
    result = ingest(job_id)
    t_ingest = time.perf_counter() - t
    assert result.components == args.components, result.errors

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "m.nii.gz"
        nib.save(melodic_like(args.components), f)
        checked = check_nifti(f)
        on_grid = resample_to_grid(checked.volumes(), checked.affine)
        rows = masked(on_grid)
    t = time.perf_counter()
    rows @ matrix
    t_gemm = time.perf_counter() - t
    render_thumbnail(on_grid[0])  # the brain outline is drawn once per process
    thumbnail_s = []
    for volume in on_grid:
        t = time.perf_counter()
        render_thumbnail(volume)
        thumbnail_s.append(time.perf_counter() - t)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    print(
        f"{args.components} components at 3 mm, {args.terms} terms: ingest {t_ingest:.2f} s, "
        f"decode GEMM alone {t_gemm:.2f} s"
    )
    print(f"ratio_vs_gemm={t_ingest / t_gemm:.2f} peak_rss_gb={peak_gb:.2f}")
    print(
        f"thumbnails: {1000 * sum(thumbnail_s):.0f} ms for {len(thumbnail_s)} maps: "
        f"thumbnail_ms_per_map={1000 * float(np.median(thumbnail_s)):.1f} (max {1000 * max(thumbnail_s):.1f})"
    )


if __name__ == "__main__":
    from bench import scratch_data_dir

    with scratch_data_dir("incdb-bench-ingest-"):
        main()
