"""Ingest: files in any grid and encoding -> components on the MNI 2 mm grid, decoded, stored and merged
(DESIGN sections 2-5, 8)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from accounts.users import create_user
from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
from pipeline.curation.ingest import TOP_DECODINGS, ingest
from pipeline.decoding.decode import decode, masked, normalise_rows
from pipeline.decoding.reference import load_matrix, require_active_reference
from pipeline.jobs.lifecycle import create_job
from pipeline.maps.files import load_map
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask, voxel_to_mni
from pipeline.maps.nifti import check_nifti, resample_to_grid
from store.artifacts import load_vector, thumbnail_key
from store.db import session_scope
from store.models import (
    Collection,
    Component,
    Decoding,
    Job,
    Movie,
    Term,
    TermMap,
    Upload,
)
from tests.niftis import gaussian_blob, mni_affine, smooth_random, thresholded, write

PEAKS = [(-40.0, -20.0, 50.0), (30.0, 10.0, -10.0)]


def peak_voxel_mm(data: np.ndarray) -> np.ndarray:
    """MNI coordinates of the largest voxel of a map on the grid, via the grid's voxel_to_mni."""
    return voxel_to_mni(np.unravel_index(int(np.argmax(data)), data.shape))


def blob_file(path: Path, voxel_mm: float, flip_lr: bool, peaks=PEAKS, **write_kwargs) -> Path:
    """A 4D file, one 6 mm Gaussian blob per volume, on its own grid (voxel size, orientation)."""
    affine, shape = mni_affine(voxel_mm, flip_lr=flip_lr)
    data = np.stack([gaussian_blob(affine, shape, p, sigma_mm=6.0) for p in peaks], axis=-1)
    return write(path, data, affine, **write_kwargs)


# --- position is kept through reading and resampling -----------------------------------------------------------


@pytest.mark.parametrize(
    "voxel_mm, flip_lr",
    [(1.0, False), (1.0, True), (3.0, False), (3.0, True), (2.0, False)],
    ids=["1mm-RAS", "1mm-LAS", "3mm-RAS", "3mm-LAS", "2mm-RAS"],
)
def test_blob_stays_at_its_mni_coordinate(tmp_path, voxel_mm, flip_lr):
    path = blob_file(tmp_path / "blobs.nii", voxel_mm, flip_lr)
    checked = check_nifti(path)
    assert checked.n_volumes == len(PEAKS)
    # The file's own orientation is what the test says it is.
    assert np.sign(checked.affine[0, 0]) == (-1 if flip_lr else 1)
    on_grid = resample_to_grid(checked.volumes(), checked.affine)
    assert on_grid.shape == (len(PEAKS),) + GRID_SHAPE
    for volume, target in zip(on_grid, PEAKS):
        found = peak_voxel_mm(volume)
        assert np.abs(found - target).max() <= 2.0, (found, target)
        # The blob's centre of mass (above half maximum) is closer still: no half-voxel shift, no flip.
        ijk = np.argwhere(volume > volume.max() / 2)
        weights = volume[volume > volume.max() / 2]
        centre = voxel_to_mni((ijk * weights[:, None]).sum(axis=0) / weights.sum())
        assert np.linalg.norm(centre - target) < 1.0, (centre, target)


def test_a_wrongly_flipped_image_would_be_caught(tmp_path):
    """Guard for the test above: data laid out for LAS but labelled RAS ends up on the other hemisphere."""
    affine, shape = mni_affine(3.0, flip_lr=True)
    data = gaussian_blob(affine, shape, PEAKS[0])
    ras_affine, ras_shape = mni_affine(3.0, flip_lr=False)
    assert ras_shape == shape
    checked = check_nifti(write(tmp_path / "wrong.nii", data, ras_affine))
    found = peak_voxel_mm(resample_to_grid(checked.volumes(), checked.affine)[0])
    assert abs(found[0] - (-PEAKS[0][0])) <= 3.0  # mirrored x: the position check above would fail


# --- the full ingest ------------------------------------------------------------------------------------------


def new_job(
    files: list[Path],
    movie: str = "Test Movie",
    name: str = "Test collection",
    visibility: str = "public",
    email: str = "curator@example.org",
) -> int:
    with session_scope() as session:
        from store.models import User

        user = session.scalar(select(User).where(User.email == email)) or create_user(
            session, email, "a long enough password"
        )
        collection = create_collection(session, user, get_or_create_movie(session, movie), name, visibility=visibility)
        for path in files:
            add_upload(session, collection, path, path.name)
        return create_job(session, "ingest", collection.id, user.id).id


def job_state(job_id: int) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def components_of(job_id: int) -> list[Component]:
    with session_scope() as session:
        collection_id = session.get(Job, job_id).collection_id
        comps = session.scalars(
            select(Component)
            .where(Component.collection_id == collection_id)
            .order_by(Component.source_file, Component.volume_index)
        ).all()
        for c in comps:
            session.expunge(c)
        return comps


def test_ingest_keeps_blob_positions_in_stored_maps(data_dir, tmp_path):
    path = blob_file(tmp_path / "blobs_3mm_las.nii.gz", 3.0, flip_lr=True)
    job_id = new_job([path])
    result = ingest(job_id)
    assert result.components == 2 and result.errors == []
    comps = components_of(job_id)
    assert [c.volume_index for c in comps] == [0, 1]
    for comp, target in zip(comps, PEAKS):
        stored = load_map(comp.storage_key)
        assert stored.shape == GRID_SHAPE
        found = peak_voxel_mm(stored)
        assert np.abs(found - target).max() <= 2.0, (comp.volume_index, found, target)


def test_4d_file_becomes_one_component_per_volume(data_dir, tmp_path):
    rng = np.random.default_rng(1)
    mask = brain_mask()
    n = 4
    maps = np.stack([np.where(mask, smooth_random(rng), 0) for _ in range(n)], axis=-1).astype(np.float32)
    path = write(tmp_path / "melodic_IC.nii.gz", maps)
    job_id = new_job([path])
    progress: list[tuple[int, int]] = []
    result = ingest(job_id, progress=lambda done, total: progress.append((done, total)))
    assert result.components == n and result.errors == []
    assert progress[0] == (0, n) and progress[-1] == (n, n)
    job = job_state(job_id)
    assert job.status == "succeeded" and job.progress_done == job.progress_total == n and job.error == ""
    assert f"{n} component(s)" in job.message
    comps = components_of(job_id)
    assert [c.volume_index for c in comps] == list(range(n))
    assert {c.source_file for c in comps} == {"melodic_IC.nii.gz"}
    assert len({c.uuid for c in comps}) == n
    with session_scope() as session:
        reference = require_active_reference(session)
        matrix, terms = load_matrix(session, reference)
        names = {t.id: t.name for t in terms}
        assert session.get(Collection, comps[0].collection_id).status == "ready"
        for comp in comps:
            decodings = session.scalars(
                select(Decoding).where(Decoding.component_id == comp.id).order_by(Decoding.rank)
            ).all()
            assert len(decodings) == min(TOP_DECODINGS, len(terms))
            assert [d.rank for d in decodings] == list(range(1, len(decodings) + 1))
            rs = [d.r for d in decodings]
            assert rs == sorted(rs, reverse=True)
            assert decodings[0].term_id == comp.best_term_id and decodings[0].r == pytest.approx(comp.best_r)
            # The stored map decodes to the stored r values; the full vector artifact matches the top list.
            stored = load_map(comp.storage_key)
            np.testing.assert_allclose(stored, maps[..., comp.volume_index], atol=1e-6)
            r = decode(stored[None], matrix)[0]
            vector = load_vector(comp.decodings_key)
            np.testing.assert_allclose(vector, r, atol=1e-5)
            for d in decodings:
                assert d.r == pytest.approx(float(r[[t.id for t in terms].index(d.term_id)]), abs=1e-5)
            assert names[comp.best_term_id] == terms[int(np.argmax(r))].name
        # Merged maps exist for every best term, for the movie and across movies.
        best = {c.best_term_id for c in comps}
        maps_rows = session.scalars(select(TermMap)).all()
        assert {(tm.term_id, tm.movie_id is None) for tm in maps_rows} == {
            (t, scope) for t in best for scope in (True, False)
        }
        for tm in maps_rows:
            members = [c for c in comps if c.best_term_id == tm.term_id]
            assert tm.n_components == len(members)
            expected = np.mean([maps[..., c.volume_index] for c in members], axis=0)
            np.testing.assert_allclose(load_map(tm.storage_key), expected, atol=1e-5)


def test_zero_variance_volume_is_rejected_others_kept_and_thresholded_flagged(data_dir, tmp_path):
    rng = np.random.default_rng(2)
    mask = brain_mask()
    good = np.where(mask, smooth_random(rng), 0)
    flat = np.zeros(GRID_SHAPE)
    sparse = thresholded(smooth_random(rng), 0.05)
    data = np.stack([good, flat, sparse], axis=-1).astype(np.float32)
    job_id = new_job([write(tmp_path / "ica.nii.gz", data)])
    result = ingest(job_id)
    assert result.components == 2
    job = job_state(job_id)
    assert job.status == "succeeded"
    assert "ica.nii.gz volume 2" in job.error and "zero variance" in job.error
    assert "1 file(s) or map(s) could not be used" in job.message
    comps = components_of(job_id)
    assert [c.volume_index for c in comps] == [0, 2]
    assert comps[0].qc_warnings == []
    assert any(w.startswith("looks thresholded") for w in comps[1].qc_warnings)
    assert any("ica.nii.gz volume 3: looks thresholded" in w for w in job.warnings)


def test_bad_files_are_reported_and_good_ones_kept(data_dir, tmp_path):
    rng = np.random.default_rng(3)
    good = write(tmp_path / "good.nii.gz", np.where(brain_mask(), smooth_random(rng), 0).astype(np.float32))
    fake = tmp_path / "photo.nii.gz"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    archive = tmp_path / "maps.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(good, "study/run1/good.nii.gz")
        zf.writestr("study/readme.txt", "notes")
        zf.writestr("__MACOSX/study/._good.nii.gz", "resource fork")
    job_id = new_job([fake, archive])
    result = ingest(job_id)
    assert result.components == 1
    job = job_state(job_id)
    assert job.status == "succeeded"
    assert "photo.nii.gz" in job.error and "not gzip" in job.error
    assert any("readme.txt" in w for w in job.warnings)
    assert not any("MACOSX" in w for w in job.warnings)
    (comp,) = components_of(job_id)
    assert comp.source_file == "maps.zip/study/run1/good.nii.gz"


def test_job_fails_when_nothing_is_usable(data_dir, tmp_path):
    flat = write(tmp_path / "flat.nii.gz", np.zeros(GRID_SHAPE, np.float32))
    job_id = new_job([flat])
    result = ingest(job_id)
    assert result.components == 0
    job = job_state(job_id)
    assert job.status == "failed" and "zero variance" in job.error
    with session_scope() as session:
        assert session.get(Collection, job.collection_id).status == "failed"
        assert session.scalar(select(func.count(Component.id))) == 0


def test_private_collections_are_not_merged(data_dir, tmp_path):
    """Merged maps are shown to everyone, so only public components go into them."""
    rng = np.random.default_rng(7)
    data = np.where(brain_mask(), smooth_random(rng), 0).astype(np.float32)
    private = new_job([write(tmp_path / "private.nii.gz", data)], name="Private", visibility="private")
    assert ingest(private).components == 1
    with session_scope() as session:
        assert session.scalar(select(func.count(Component.id))) == 1
        assert session.scalar(select(func.count(TermMap.id))) == 0
    public = new_job([write(tmp_path / "public.nii.gz", data)], name="Public")
    ingest(public)
    with session_scope() as session:
        maps = session.scalars(select(TermMap)).all()
        assert len(maps) == 2 and all(tm.n_components == 1 for tm in maps)  # movie map and across-movies map


# --- encodings decode the same -------------------------------------------------------------------------------


def test_float64_int16_and_big_endian_decode_like_float32(tmp_path):
    """The same map saved by nibabel as float32, float64, scaled int16 and big-endian float32 (on a 3 mm grid, so
    resampling is included) decodes to the same r values."""
    rng = np.random.default_rng(4)
    affine, shape = mni_affine(3.0, flip_lr=True)
    data = (
        gaussian_blob(affine, shape, PEAKS[0], peak=8.0)
        - gaussian_blob(affine, shape, PEAKS[1], peak=4.0)
        + 0.5 * smooth_random(rng, shape, 1.5)
    ).astype(np.float64) + 20.0
    files = {
        "float32": write(tmp_path / "f32.nii.gz", data.astype(np.float32), affine),
        "float64": write(tmp_path / "f64.nii.gz", data, affine),
        "big-endian": write(tmp_path / "be.nii.gz", data.astype(">f4"), affine, endianness=">"),
        # nibabel picks scl_slope/scl_inter to use the full int16 range: quantisation is about 3e-4 of it.
        "int16": write(tmp_path / "i16.nii.gz", data, affine, dtype=np.int16),
    }
    terms = np.stack(
        [smooth_random(rng) for _ in range(6)] + [gaussian_blob(GRID_AFFINE, GRID_SHAPE, p) for p in PEAKS]
    )
    matrix = normalise_rows(masked(terms)).T.copy()
    r = {}
    for name, path in files.items():
        checked = check_nifti(path)
        r[name] = decode(resample_to_grid(checked.volumes(), checked.affine), matrix)[0]
    i16 = check_nifti(files["int16"])
    assert i16.dtype == np.int16 and i16.image.dataobj.slope != 1.0 and i16.image.dataobj.inter != 0.0
    assert check_nifti(files["big-endian"]).dtype.byteorder == ">"
    assert check_nifti(files["float64"]).dtype == np.float64
    assert np.abs(r["float32"]).max() > 0.3
    np.testing.assert_allclose(r["float64"], r["float32"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(r["big-endian"], r["float32"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(r["int16"], r["float32"], atol=1e-4, rtol=0)


# --- idempotence ----------------------------------------------------------------------------------------------


def db_listing(collection_id: int) -> dict:
    with session_scope() as session:
        term_names = dict(session.execute(select(Term.id, Term.name)).all())
        comps = session.scalars(
            select(Component).where(Component.collection_id == collection_id).order_by(Component.uuid)
        ).all()
        movies = dict(session.execute(select(Movie.id, Movie.slug)).all())
        return {
            "components": [
                (
                    c.uuid,
                    c.source_file,
                    c.volume_index,
                    c.storage_key,
                    c.decodings_key,
                    term_names.get(c.best_term_id),
                    c.best_r,
                    tuple(c.qc_warnings),
                    c.upload_id,
                )
                for c in comps
            ],
            "decodings": sorted((c.uuid, term_names[d.term_id], d.r, d.rank) for c in comps for d in c.decodings),
            "term_maps": sorted(
                (movies.get(tm.movie_id) or "", term_names[tm.term_id], tm.storage_key, tm.n_components)
                for tm in session.scalars(select(TermMap))
            ),
            "counts": {
                model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Component, Decoding, TermMap, Upload, Collection, Job)
            },
        }


def file_listing(data_dir: Path) -> dict[str, str]:
    root = data_dir / "files"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_ingest_twice_leaves_the_same_rows_and_files(data_dir, tmp_path):
    rng = np.random.default_rng(5)
    mask = brain_mask()
    maps = np.stack([np.where(mask, smooth_random(rng), 0) for _ in range(3)], axis=-1).astype(np.float32)
    single = np.where(mask, smooth_random(rng), 0).astype(np.float32)
    job_id = new_job(
        [
            write(tmp_path / "ica.nii.gz", maps),
            blob_file(tmp_path / "blobs.nii", 3.0, False),
            write(tmp_path / "single.nii.gz", single),
        ]
    )
    collection_id = job_state(job_id).collection_id
    ingest(job_id)
    first_rows, first_files = db_listing(collection_id), file_listing(data_dir)
    ingest(job_id)
    second_rows, second_files = db_listing(collection_id), file_listing(data_dir)
    assert first_rows["counts"]["Component"] == 6
    assert second_rows == first_rows
    assert second_files == first_files  # same keys, byte-identical maps, vectors and merged maps
    component_files = {k for k in second_files if k.startswith("components/")}
    maps = {c[3] for c in second_rows["components"]}
    assert component_files == maps | {thumbnail_key(k) for k in maps}  # no orphan maps or thumbnails
    assert not any(Path(k).name.startswith(".tmp") for k in second_files)
    job = job_state(job_id)
    assert job.attempts == 2 and job.status == "succeeded"


def test_ingest_rerun_after_a_crash_ends_like_an_undisturbed_run(data_dir, tmp_path, monkeypatch):
    """A worker dying after maps were written but before rows were stored: the redelivered job ends with the same
    rows and files as an undisturbed run (same uuids, same keys, no orphan files)."""
    import pipeline.curation.ingest as ingest_module

    rng = np.random.default_rng(6)
    maps = np.stack([np.where(brain_mask(), smooth_random(rng), 0) for _ in range(2)], axis=-1).astype(np.float32)
    job_id = new_job([write(tmp_path / "ica.nii.gz", maps)])
    collection_id = job_state(job_id).collection_id
    real = ingest_module._store_components

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(ingest_module, "_store_components", crash)
    with pytest.raises(RuntimeError, match="worker lost"):
        ingest(job_id)
    crashed = job_state(job_id)
    assert crashed.status == "failed" and "worker lost" in crashed.error
    monkeypatch.setattr(ingest_module, "_store_components", real)
    ingest(job_id)
    after_retry = db_listing(collection_id), file_listing(data_dir)
    ingest(job_id)
    assert (db_listing(collection_id), file_listing(data_dir)) == after_retry
    rows, files = after_retry
    maps = {c[3] for c in rows["components"]}
    assert {k for k in files if k.startswith("components/")} == maps | {thumbnail_key(k) for k in maps}
    assert job_state(job_id).status == "succeeded"
