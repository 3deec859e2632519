"""Reference sets (DESIGN section 6): the built-in demo reference, importing a folder of NIfTI term maps, and the
rules for creating and activating sets."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from pipeline.decoding.decode import decode
from pipeline.decoding.reference import (
    BUILTIN_NAME,
    BUILTIN_PEAKS,
    active_reference,
    builtin_term_map,
    create_reference_set,
    ensure_builtin_reference,
    load_matrix,
    matrix_path,
    nifti_folder_term_maps,
    set_active,
)
from pipeline.maps.files import load_map
from pipeline.maps.grid import (
    GRID_AFFINE,
    GRID_SHAPE,
    brain_mask,
    mni_to_voxel,
    voxel_to_mni,
)
from store.db import session_scope
from store.models import ReferenceSet, Term
from tests.niftis import gaussian_blob, mni_affine, smooth_random, write

REQUIRED_TERMS = (
    "emotion",
    "language",
    "memory",
    "pain",
    "visual",
    "attention",
    "sensory",
    "auditory",
    "motor",
    "faces",
    "reward",
    "social",
)


def test_builtin_table_covers_the_required_terms():
    assert len(BUILTIN_PEAKS) >= 20
    assert set(REQUIRED_TERMS) <= set(BUILTIN_PEAKS)
    mask = brain_mask()
    for term, peaks in BUILTIN_PEAKS.items():
        assert peaks, term
        for peak in peaks:  # every canonical peak lies in the brain mask
            assert mask[tuple(mni_to_voxel(peak))], (term, peak)


def test_builtin_set_in_the_database(data_dir):
    with session_scope() as session:
        ref = active_reference(session)
        assert ref is not None and ref.name == BUILTIN_NAME and ref.source == "builtin"
        assert "Neurosynth" not in ref.name
        assert ref.voxel_count == int(brain_mask().sum())
        assert [t.name for t in ref.terms] == list(BUILTIN_PEAKS)
        assert [t.column for t in ref.terms] == list(range(len(BUILTIN_PEAKS)))
        # Creating it again changes nothing.
        assert ensure_builtin_reference(session).id == ref.id
        assert len(session.scalars(select(ReferenceSet)).all()) == 1


def test_builtin_term_maps_peak_at_their_listed_peaks(data_dir):
    with session_scope() as session:
        terms = session.scalars(select(Term).order_by(Term.column)).all()
        stored = {t.name: load_map(t.storage_key) for t in terms}
    for term, peaks in BUILTIN_PEAKS.items():
        data = stored[term]
        assert data.shape == GRID_SHAPE and data.dtype == np.float32
        assert not np.any(data[~brain_mask()])  # masked
        found = voxel_to_mni(np.unravel_index(int(np.argmax(data)), data.shape))
        distance = min(np.linalg.norm(found - np.asarray(p)) for p in peaks)
        assert distance <= 6.0, (term, found, peaks)
        # Every listed peak carries signal, not only the strongest one.
        for peak in peaks:
            assert data[tuple(mni_to_voxel(peak))] > 0.3 * data.max(), (term, peak)
        np.testing.assert_array_equal(data, builtin_term_map(tuple(peaks)))  # deterministic


def test_decoding_a_builtin_map_gives_its_term_first(data_dir):
    with session_scope() as session:
        ref = active_reference(session)
        matrix, terms = load_matrix(session, ref)
        names = [t.name for t in terms]
        maps = np.stack([load_map(t.storage_key) for t in terms])
    r = decode(maps, matrix)
    for i, name in enumerate(names):
        assert names[int(np.argmax(r[i]))] == name
        assert r[i, i] == pytest.approx(1.0, abs=1e-5)
        assert np.sort(r[i])[-2] < 0.9  # the terms are distinguishable
    # A map made of a term's own peaks with different smoothing still decodes to that term.
    for name in ("visual", "language", "pain"):
        blobs = sum(gaussian_blob(GRID_AFFINE, GRID_SHAPE, p, sigma_mm=5.0) for p in BUILTIN_PEAKS[name])
        assert names[int(np.argmax(decode(blobs[None], matrix)[0]))] == name


def test_matrix_is_rebuilt_when_the_local_copy_is_missing(data_dir):
    with session_scope() as session:
        ref = active_reference(session)
        matrix, _ = load_matrix(session, ref)
        original = np.array(matrix)
        path = matrix_path(ref)
        del matrix
        path.unlink()
        rebuilt, _ = load_matrix(session, ref)
        assert path.exists()
        np.testing.assert_array_equal(np.asarray(rebuilt), original)


def test_nifti_folder_term_names_and_resampling(tmp_path):
    rng = np.random.default_rng(1)
    on_grid = smooth_random(rng)
    affine, shape = mni_affine(3.0, flip_lr=True)
    blob_3mm = gaussian_blob(affine, shape, (30, 10, -10))
    write(tmp_path / "pain_association-test_z.nii.gz", on_grid)
    write(tmp_path / "working_memory_z.nii", blob_3mm, affine)
    write(tmp_path / "face recognition_pFgA_z_FDR_0.01.nii.gz", on_grid * 2)
    (tmp_path / "README.txt").write_text("Neurosynth maps")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "nested_z.nii.gz", on_grid)  # not at the top level: ignored
    maps = list(nifti_folder_term_maps(tmp_path))
    assert [name for name, _ in maps] == ["face recognition", "pain", "working memory"]
    for _, data in maps:
        assert data.shape == GRID_SHAPE and data.dtype == np.float32
    np.testing.assert_array_equal(maps[1][1], on_grid)
    found = voxel_to_mni(np.unravel_index(int(np.argmax(maps[2][1])), GRID_SHAPE))
    assert np.abs(found - (30, 10, -10)).max() <= 2.0  # resampled from 3 mm LAS to the grid


def test_nifti_folder_refusals(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        list(nifti_folder_term_maps(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no .nii or .nii.gz files"):
        list(nifti_folder_term_maps(tmp_path))
    write(tmp_path / "movie_z.nii.gz", np.zeros((10, 10, 10, 2), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="must be 3D"):
        list(nifti_folder_term_maps(tmp_path))


def test_create_reference_set_rules(data_dir):
    rng = np.random.default_rng(2)
    maps = [("alpha", smooth_random(rng)), ("beta", smooth_random(rng))]
    with session_scope() as session:
        ref = create_reference_set(session, "Imported", "nifti-folder", iter(maps))
        assert not ref.active and active_reference(session).name == BUILTIN_NAME
        assert [t.name for t in ref.terms] == ["alpha", "beta"]
        matrix, _ = load_matrix(session, ref)
        r = decode(np.stack([m for _, m in maps]), matrix)
        np.testing.assert_allclose(np.diag(r), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="already exists"), session_scope() as session:
        create_reference_set(session, "Imported", "nifti-folder", iter(maps))
    with pytest.raises(ValueError, match="already exists"), session_scope() as session:
        create_reference_set(session, BUILTIN_NAME, "builtin", iter(maps))
    with pytest.raises(ValueError, match="both named"), session_scope() as session:
        create_reference_set(session, "Twice", "nifti-folder", iter([maps[0], ("Alpha", maps[1][1])]))
    with pytest.raises(ValueError, match="not on the standard grid"), session_scope() as session:
        create_reference_set(session, "Small", "nifti-folder", iter([("x", np.zeros((10, 10, 10)))]))
    with pytest.raises(ValueError, match="no term maps"), session_scope() as session:
        create_reference_set(session, "Empty", "nifti-folder", iter([]))
    with session_scope() as session:
        names = set(session.scalars(select(ReferenceSet.name)))
        assert names == {BUILTIN_NAME, "Imported"}  # a refused set leaves no rows behind (the caller rolls back)


def test_only_one_set_is_active(data_dir):
    rng = np.random.default_rng(3)
    with session_scope() as session:
        new = create_reference_set(session, "New", "nifti-folder", iter([("gamma", smooth_random(rng))]), activate=True)
        assert active_reference(session).id == new.id
    with session_scope() as session:
        active = session.scalars(select(ReferenceSet).where(ReferenceSet.active.is_(True))).all()
        assert [a.name for a in active] == ["New"]
        builtin = session.scalar(select(ReferenceSet).where(ReferenceSet.name == BUILTIN_NAME))
        set_active(session, builtin)
    with session_scope() as session:
        assert [a.name for a in session.scalars(select(ReferenceSet).where(ReferenceSet.active.is_(True)))] == [
            BUILTIN_NAME
        ]


def test_refused_reference_set_leaves_no_files(data_dir):
    import numpy as np

    from pipeline.decoding.reference import create_reference_set
    from pipeline.maps.grid import GRID_SHAPE
    from store.db import session_scope

    before = {p for p in (data_dir / "files").rglob("*") if p.is_file()}
    maps = [("pain", np.ones(GRID_SHAPE, np.float32)), ("Pain", np.zeros(GRID_SHAPE, np.float32))]
    with pytest.raises(ValueError, match="both named"):
        with session_scope() as session:
            create_reference_set(session, "dup terms", "nifti-folder", iter(maps))
    after = {p for p in (data_dir / "files").rglob("*") if p.is_file()}
    assert after == before
