"""Merging components with AFNI's semantics (DESIGN section 5): the voxelwise mean over all inputs, zeros included,
exactly what ``3dmerge -doall -prefix OUT IN1 IN2 ...`` computes with its default -gmean."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask, to_image
from pipeline.maps.merge import (
    afni_available,
    afni_merge_interface,
    mean_of_maps,
    merge_files,
    resolve_backend,
)
from store.config import reset_settings
from tests.niftis import smooth_random, thresholded, write


def regional_maps(rng: np.random.Generator, n: int = 3) -> list[np.ndarray]:
    """Thresholded maps: each is zero in a different (overlapping) part of the brain and everywhere outside."""
    return [thresholded(smooth_random(rng), share) for share in (0.2, 0.35, 0.5)[:n]]


def test_mean_includes_zeros(tmp_path):
    rng = np.random.default_rng(1)
    maps = regional_maps(rng)
    merged = mean_of_maps(maps)
    assert merged.dtype == np.float32 and merged.shape == GRID_SHAPE
    np.testing.assert_allclose(merged, np.mean(np.stack(maps).astype(np.float64), axis=0), atol=1e-6, rtol=1e-6)
    # Where only one map is non-zero the mean is that value over n, not the value itself (no "mean of non-zeros").
    nonzero = np.stack([m != 0 for m in maps])
    only_first = nonzero[0] & ~nonzero[1] & ~nonzero[2]
    assert only_first.sum() > 100
    np.testing.assert_allclose(merged[only_first], maps[0][only_first] / 3, rtol=1e-6)
    assert not np.any(merged[~nonzero.any(axis=0)])


def test_mean_of_small_arrays_by_hand():
    a = np.array([[2.0, 0.0], [4.0, -6.0]], dtype=np.float32)
    b = np.array([[0.0, 0.0], [2.0, 6.0]], dtype=np.float32)
    c = np.array([[1.0, 3.0], [np.nan, np.inf]], dtype=np.float32)  # non-finite values count as 0
    np.testing.assert_allclose(mean_of_maps([a, b, c]), [[1.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(mean_of_maps([a]), a)


def test_mean_refuses_no_input_and_shape_mismatch():
    with pytest.raises(ValueError, match="nothing to merge"):
        mean_of_maps([])
    with pytest.raises(ValueError, match="shapes"):
        mean_of_maps([np.zeros((2, 2)), np.zeros((2, 3))])


def test_merge_files_numpy_writes_the_mean_on_the_grid(tmp_path):
    rng = np.random.default_rng(2)
    maps = regional_maps(rng)
    paths = [write(tmp_path / f"in{i}.nii.gz", m) for i, m in enumerate(maps)]
    # Inputs need not be float32: a float64 copy of the last map is the same map.
    paths[-1] = write(tmp_path / "in2-f64.nii.gz", maps[-1].astype(np.float64))
    out = tmp_path / "out" / "merged.nii.gz"
    assert merge_files(out, paths, backend="numpy") == "numpy"
    img = nib.load(str(out))
    assert img.shape == GRID_SHAPE
    np.testing.assert_array_equal(img.affine, GRID_AFFINE)
    assert img.header.get_data_dtype() == np.float32
    assert int(img.header["sform_code"]) == 4
    np.testing.assert_allclose(
        img.get_fdata(), np.mean(np.stack(maps).astype(np.float64), axis=0), atol=1e-6, rtol=1e-6
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["merged.nii.gz"]  # no temporary left behind


def test_merge_files_replaces_an_existing_output(tmp_path):
    a = write(tmp_path / "a.nii.gz", np.ones(GRID_SHAPE, np.float32))
    b = write(tmp_path / "b.nii.gz", np.full(GRID_SHAPE, 3.0, np.float32))
    out = tmp_path / "m.nii.gz"
    merge_files(out, [a], backend="numpy")
    merge_files(out, [a, b], backend="numpy")
    np.testing.assert_allclose(nib.load(str(out)).get_fdata(), 2.0)


def test_merge_files_keeps_a_non_standard_grid(tmp_path):
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    a = write(tmp_path / "a.nii", np.full((5, 6, 7), 2.0, np.float32), affine)
    b = write(tmp_path / "b.nii", np.zeros((5, 6, 7), np.float32), affine)
    out = tmp_path / "m.nii.gz"
    merge_files(out, [a, b], backend="numpy")
    img = nib.load(str(out))
    assert img.shape == (5, 6, 7)
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(img.get_fdata(), 1.0)


def test_merge_files_refuses_mismatched_grids(tmp_path):
    data = np.ones(GRID_SHAPE, np.float32)
    a = write(tmp_path / "a.nii.gz", data)
    shifted = GRID_AFFINE.copy()
    shifted[0, 3] += 2.0
    b = write(tmp_path / "b.nii.gz", data, shifted)
    c = write(tmp_path / "c.nii.gz", np.ones((91, 109, 90), np.float32))
    out = tmp_path / "m.nii.gz"
    with pytest.raises(ValueError, match="same grid"):
        merge_files(out, [a, b], backend="numpy")
    with pytest.raises(ValueError, match="same grid"):
        merge_files(out, [a, c], backend="numpy")
    assert not out.exists()


def test_merge_files_refuses_no_input_and_missing_input(tmp_path):
    with pytest.raises(ValueError, match="at least one input"):
        merge_files(tmp_path / "m.nii.gz", [], backend="numpy")
    with pytest.raises(ValueError, match="not found"):
        merge_files(tmp_path / "m.nii.gz", [tmp_path / "missing.nii.gz"], backend="numpy")


def test_afni_cmdline_is_exactly_3dmerge_doall(tmp_path):
    inputs = [write(tmp_path / f"comp{i}.nii.gz", np.zeros((4, 4, 4), np.float32), np.eye(4)) for i in range(3)]
    out = tmp_path / "merged.nii.gz"
    iface = afni_merge_interface(inputs[:2], out)
    assert iface.cmdline == f"3dmerge -doall -prefix {out} {inputs[0]} {inputs[1]}"
    iface = afni_merge_interface(inputs, out)
    assert iface.cmdline.split() == ["3dmerge", "-doall", "-prefix", str(out)] + [str(p) for p in inputs]


def _empty_path_dir(tmp_path: Path) -> str:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return str(empty)


def test_resolve_backend_without_afni(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _empty_path_dir(tmp_path))
    assert not afni_available()
    with pytest.raises(RuntimeError, match="3dmerge"):
        resolve_backend("afni")
    assert resolve_backend("auto") == "numpy"
    assert resolve_backend("NUMPY") == "numpy"
    with pytest.raises(ValueError, match="merge backend"):
        resolve_backend("fsl")
    # The setting is read when no name is given.
    monkeypatch.setenv("INCDB_MERGE_BACKEND", "numpy")
    reset_settings()
    assert resolve_backend() == "numpy"
    monkeypatch.setenv("INCDB_MERGE_BACKEND", "afni")
    reset_settings()
    with pytest.raises(RuntimeError, match="3dmerge"):
        resolve_backend()
    with pytest.raises(RuntimeError, match="3dmerge"):
        merge_files(tmp_path / "m.nii.gz", [write(tmp_path / "a.nii.gz", np.ones(GRID_SHAPE, np.float32))])


FAKE_3DMERGE = """#!{python}
# Stands in for AFNI's 3dmerge: checks the arguments, records them and writes the voxelwise mean.
import json, os, sys
import nibabel as nib, numpy as np
args = sys.argv[1:]
assert args[:2] == ["-doall", "-prefix"], args
out, ins = args[2], args[3:]
imgs = [nib.load(p) for p in ins]
mean = np.mean([i.get_fdata() for i in imgs], axis=0).astype(np.float32)
nib.save(nib.Nifti1Image(mean, imgs[0].affine), out)
with open(os.environ["FAKE_3DMERGE_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
"""


def test_afni_backend_runs_3dmerge_through_nipype(tmp_path, monkeypatch):
    """With a 3dmerge on PATH, `auto` picks AFNI and merge_files runs it through nipype and moves its output into
    place. (A stand-in script is used: AFNI itself is not installed on the test machine.)"""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "3dmerge"
    script.write_text(FAKE_3DMERGE.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_3DMERGE_LOG", str(log))
    assert resolve_backend("auto") == "afni"
    rng = np.random.default_rng(3)
    maps = regional_maps(rng, 2)
    inputs = [write(tmp_path / f"in{i}.nii.gz", m) for i, m in enumerate(maps)]
    out = tmp_path / "result" / "merged.nii.gz"
    assert merge_files(out, inputs, backend="auto") == "afni"
    (call,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert call[:2] == ["-doall", "-prefix"] and call[3:] == [str(p) for p in inputs]
    np.testing.assert_allclose(nib.load(str(out)).get_fdata(), mean_of_maps(maps), atol=1e-6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["merged.nii.gz"]


def test_merge_of_masked_maps_stays_zero_outside_the_mask(tmp_path):
    rng = np.random.default_rng(4)
    mask = brain_mask()
    maps = [np.where(mask, smooth_random(rng), 0).astype(np.float32) for _ in range(2)]
    inputs = []
    for i, m in enumerate(maps):
        path = tmp_path / f"m{i}.nii.gz"
        nib.save(to_image(m), str(path))
        inputs.append(path)
    out = tmp_path / "out.nii.gz"
    merge_files(out, inputs, backend="numpy")
    merged = nib.load(str(out)).get_fdata()
    assert not np.any(merged[~mask])
    np.testing.assert_allclose(merged[mask], (maps[0][mask] + maps[1][mask]) / 2, atol=1e-6)


def test_term_wide_maps_follow_a_running_sum(data_dir, tmp_path, monkeypatch):
    """A term's across-movies map is updated from the components that joined or left (only their maps are read)
    and always equals the mean of its public components' maps; the sums survive the sweep."""
    from sqlalchemy import select

    from accounts.users import create_user
    from pipeline.curation.catalog import delete_collection
    from pipeline.decoding import termmaps
    from pipeline.jobs.sweep import referenced_keys
    from pipeline.maps.files import load_map
    from store.db import session_scope
    from store.models import Collection, Component, TermMap
    from store.storage import get_storage
    from tests.test_stats import PEAKS, ingest_collection

    monkeypatch.setattr(termmaps, "RUNNING_SUM_MIN", 2)
    with session_scope() as session:
        create_user(session, "ann@example.org", "a long enough password")
    ids = [ingest_collection(tmp_path, "ann@example.org", f"Movie {i}", f"Part {i}", "public", PEAKS) for i in range(3)]

    def assert_maps_are_means() -> int:
        with session_scope() as session:
            rows = session.scalars(select(TermMap).where(TermMap.movie_id.is_(None))).all()
            for tm in rows:
                keys = session.scalars(
                    select(Component.storage_key)
                    .join(Collection)
                    .where(Component.best_term_id == tm.term_id, Collection.visibility == "public")
                ).all()
                want = np.mean([load_map(k).astype(np.float64) for k in keys], axis=0)
                assert tm.n_components == len(keys)
                assert np.abs(load_map(tm.storage_key) - want).max() < 1e-6
                assert get_storage().exists(termmaps.sum_key(tm.storage_key)) == (len(keys) >= 2)
            assert {termmaps.sum_key(tm.storage_key) for tm in rows} <= referenced_keys(session)
            return len(rows)

    assert assert_maps_are_means() > 0
    read: list[str] = []
    original = termmaps._finite
    monkeypatch.setattr(termmaps, "_finite", lambda key: read.append(key) or original(key))
    ingest_collection(tmp_path, "ann@example.org", "Movie 3", "Part 3", "public", PEAKS)
    with session_scope() as session:
        new_keys = set(
            session.scalars(select(Component.storage_key).join(Collection).where(Collection.name == "Part 3"))
        )
    assert read and set(read) <= new_keys  # only the new components' maps were read for the sums
    assert_maps_are_means()
    read.clear()
    delete_collection(ids[0])
    assert len(read) <= len(PEAKS)
    assert_maps_are_means()
