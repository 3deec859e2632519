"""Faults during a job: a merged-map write that fails, and the database connection dropped mid-job.

Each job ends succeeded or failed with a message, rows and files agree afterwards (every row's file exists, no
file lacks its row), and a retry succeeds with the state an undisturbed run gives.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import select

import pipeline.decoding.termmaps as termmaps
from accounts.users import create_user
from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
from pipeline.curation.ingest import ingest
from pipeline.decoding.reference import BUILTIN_PEAKS, builtin_term_map, ensure_builtin_reference
from pipeline.jobs.lifecycle import create_job
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask
from store.artifacts import similarity_vector_key, thumbnail_key
from store.db import session_scope, upgrade_database
from store.models import Component, Job, SimilarityBasis, Term, TermMap, Upload
from tests.conftest import use_environment


def stored_keys(data_dir) -> set[str]:
    root = data_dir / "files"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def referenced_keys() -> set[str]:
    with session_scope() as s:
        keys = set(s.scalars(select(Component.storage_key)))
        keys |= {k for k in s.scalars(select(Component.decodings_key)) if k}
        keys |= set(s.scalars(select(TermMap.storage_key)))
        keys |= set(s.scalars(select(Term.storage_key)))
        keys |= set(s.scalars(select(Upload.storage_key)))
        keys |= set(s.scalars(select(SimilarityBasis.storage_key)))
        exact = {similarity_vector_key(u) for u in s.scalars(select(Component.uuid))}
    return keys | exact | {thumbnail_key(k) for k in keys if k.endswith(".nii.gz") and not k.startswith("uploads/")}


def assert_consistent(data_dir) -> None:
    on_disk = {k for k in stored_keys(data_dir) if not k.startswith("check/")}
    referenced = referenced_keys()
    assert referenced <= on_disk, f"rows without files: {sorted(referenced - on_disk)[:5]}"
    assert on_disk <= referenced, f"files without rows: {sorted(on_disk - referenced)[:5]}"


def new_ingest_job(data_dir, terms=("visual", "auditory", "language"), seed=0) -> int:
    rng = np.random.default_rng(seed)
    vols = np.stack(
        [builtin_term_map(tuple(BUILTIN_PEAKS[t])) + rng.normal(0, 0.4, GRID_SHAPE) * brain_mask() for t in terms],
        axis=-1,
    ).astype(np.float32)
    path = data_dir.parent / f"ic-{seed}.nii.gz"
    path.write_bytes(gzip.compress(nib.Nifti1Image(vols, GRID_AFFINE).to_bytes()))
    with session_scope() as s:
        user = create_user(s, f"fault{seed}@example.org", "a long password")
        col = create_collection(s, user, get_or_create_movie(s, "Fault Movie"), f"fault {seed}")
        add_upload(s, col, path, path.name)
        return create_job(s, "ingest", col.id, user.id).id


def merged_state() -> list:
    with session_scope() as s:
        return sorted(
            (tm.movie_id or 0, tm.term_id, tm.n_components, tm.storage_key) for tm in s.scalars(select(TermMap))
        )


def test_interrupted_merged_map_write(data_dir, monkeypatch):
    first = new_ingest_job(data_dir, seed=1)
    ingest(first)
    baseline = merged_state()
    job_id = new_ingest_job(data_dir, seed=2)
    real = termmaps._merge_to_storage
    calls = {"n": 0}

    def failing(keys, out_key, backend):
        calls["n"] += 1
        if calls["n"] == 2:
            # The write dies after the first merged map of this job was already written.
            real(keys, out_key, backend)
            raise OSError(28, "No space left on device")
        return real(keys, out_key, backend)

    monkeypatch.setattr(termmaps, "_merge_to_storage", failing)
    with pytest.raises(OSError):
        ingest(job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and "No space left on device" in job.error
    assert merged_state() == baseline  # the failed merge changed no merged map
    assert_consistent(data_dir)

    monkeypatch.setattr(termmaps, "_merge_to_storage", real)
    result = ingest(job_id)  # the retry
    assert result.components == 3
    with session_scope() as s:
        assert s.get(Job, job_id).status == "succeeded"
        assert s.scalar(select(sa.func.count(Component.id))) == 6
        # Every merged map reflects both collections: a fresh full rebuild has nothing left to write.
        assert termmaps.rebuild_term_maps(s, ensure_builtin_reference(s)) == 0
        visual = s.scalar(select(TermMap).join(Term).where(Term.slug == "visual", TermMap.movie_id.is_(None)))
        assert visual.n_components == 2
    assert_consistent(data_dir)


def test_database_connection_dropped_during_job(tmp_path, reference_template, postgres_url, monkeypatch):
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(reference_template / "files", data / "files")
    use_environment(data, database_url=postgres_url)
    upgrade_database()
    # The template's reference rows live in its SQLite file: rebuild the reference in PostgreSQL instead.
    shutil.rmtree(data / "files")
    with session_scope() as s:
        ensure_builtin_reference(s)
    job_id = new_ingest_job(data, seed=3)
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    real = termmaps._merge_to_storage
    dropped = {"done": False}

    def drop_then_merge(keys, out_key, backend):
        if not dropped["done"]:
            dropped["done"] = True
            with admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
        return real(keys, out_key, backend)

    monkeypatch.setattr(termmaps, "_merge_to_storage", drop_then_merge)
    try:
        ingest(job_id)
    except Exception as exc:  # noqa: BLE001 - the drop may surface as an error: then it must be on the Job row
        assert str(exc)
    assert dropped["done"]
    with session_scope() as s:  # the pool reconnects (pre-ping)
        job = s.get(Job, job_id)
        assert job.status in ("succeeded", "failed")
        assert job.status == "succeeded" or job.error
        status = job.status
    assert_consistent(data)
    monkeypatch.setattr(termmaps, "_merge_to_storage", real)
    if status == "failed":
        assert ingest(job_id).components == 3
    with session_scope() as s:
        assert s.get(Job, job_id).status == "succeeded"
        assert termmaps.rebuild_term_maps(s, ensure_builtin_reference(s)) == 0
    assert_consistent(data)
    admin.dispose()
