"""NIfTI checks before data is read (DESIGN sections 3 and 11), reading in every encoding, resampling and QC."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask
from pipeline.maps.nifti import (
    MAX_SPATIAL_DIM,
    MAX_VOLUMES,
    THRESHOLDED_ZERO_SHARE,
    NiftiError,
    check_nifti,
    quality_check,
    resample_to_grid,
)
from tests.niftis import (
    mni_affine,
    raw_header_bytes,
    smooth_random,
    thresholded,
    world_coordinates,
    write,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00" + bytes(200)
SMALL_AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def small(path, data=None, **kwargs):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (6, 7, 8)).astype(np.float32) if data is None else data
    return write(path, data, SMALL_AFFINE, **kwargs)


# --- refusals -------------------------------------------------------------------------------------------------


def refused(path, *patterns, name=None):
    with pytest.raises(NiftiError) as info:
        check_nifti(path, display_name=name)
    message = str(info.value)
    assert message.startswith(name or path.name), message  # the message names the file
    for pattern in patterns:
        assert pattern in message, message
    return message


def test_missing_and_empty_files(tmp_path):
    refused(tmp_path / "nothing.nii.gz", "not found")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    refused(tmp_path / "empty.nii.gz", "empty")


def test_png_renamed_to_nifti(tmp_path):
    (tmp_path / "brain.nii.gz").write_bytes(PNG_BYTES)
    refused(tmp_path / "brain.nii.gz", "not gzip")
    (tmp_path / "brain.nii").write_bytes(PNG_BYTES)
    refused(tmp_path / "brain.nii", "not a readable NIfTI")
    # A gzip stream of PNG bytes (right compression, wrong content).
    (tmp_path / "zipped.nii.gz").write_bytes(gzip.compress(PNG_BYTES))
    refused(tmp_path / "zipped.nii.gz", "not a readable NIfTI")


def test_display_name_is_used_in_messages(tmp_path):
    (tmp_path / "member-00001.nii.gz").write_bytes(b"")
    refused(tmp_path / "member-00001.nii.gz", "empty", name="upload.zip/sub/map.nii.gz")


def test_truncated_nii_is_refused_from_the_header(tmp_path):
    path = small(tmp_path / "full.nii")
    raw = path.read_bytes()
    check_nifti(path)  # the complete file is fine
    for cut in (1, 100, len(raw) - 352):
        (tmp_path / "cut.nii").write_bytes(raw[:-cut])
        refused(tmp_path / "cut.nii", "truncated", f"claims {len(raw)} bytes")


def test_truncated_header_is_refused(tmp_path):
    raw = small(tmp_path / "full.nii").read_bytes()
    (tmp_path / "header.nii").write_bytes(raw[:200])
    refused(tmp_path / "header.nii", "not a readable NIfTI")


def test_truncated_nii_gz_fails_when_reading_volumes(tmp_path):
    rng = np.random.default_rng(1)
    path = write(tmp_path / "full.nii.gz", rng.normal(0, 1, (30, 30, 30, 3)).astype(np.float32), SMALL_AFFINE)
    raw = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    checked = check_nifti(cut)  # the header alone is intact: gzip size is unknown until read
    with pytest.raises(NiftiError, match="truncated or corrupt") as info:
        checked.volumes()
    assert str(info.value).startswith("cut.nii.gz")
    # A gzip header with a valid NIfTI header but no data at all.
    (tmp_path / "nodata.nii.gz").write_bytes(gzip.compress(raw_header_bytes((30, 30, 30))))
    with pytest.raises(NiftiError, match="truncated or corrupt"):
        check_nifti(tmp_path / "nodata.nii.gz").volumes()


def test_2d_image(tmp_path):
    path = write(tmp_path / "slice.nii", np.ones((20, 20), np.float32), np.eye(4))
    refused(path, "2D")


def test_5d_with_non_singleton_fifth_dimension(tmp_path):
    path = write(tmp_path / "five.nii", np.ones((6, 6, 6, 2, 3), np.float32), SMALL_AFFINE)
    refused(path, "5D", "(6, 6, 6, 2, 3)")


def test_5d_with_singleton_fifth_dimension_is_a_4d_map(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.normal(0, 1, (6, 6, 6, 2, 1)).astype(np.float32)
    checked = check_nifti(write(tmp_path / "five.nii", data, SMALL_AFFINE))
    assert checked.n_volumes == 2
    np.testing.assert_array_equal(checked.volumes(), data[..., 0])


@pytest.mark.parametrize(
    "dtype, label", [(np.complex64, "complex64"), (np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]), "RGB")]
)
def test_unsupported_datatypes(tmp_path, dtype, label):
    path = write(tmp_path / "odd.nii", np.zeros((6, 6, 6), dtype=dtype), SMALL_AFFINE)
    assert nib.load(str(path)).get_data_dtype() == np.dtype(dtype)
    refused(path, "data type", label, "not supported")


@pytest.mark.parametrize("zoom", [0.01, 50.0])
def test_absurd_voxel_sizes(tmp_path, zoom):
    path = write(tmp_path / "vox.nii", np.ones((6, 6, 6), np.float32), np.diag([zoom, zoom, zoom, 1.0]))
    refused(path, "voxel size", "not plausible")


def test_singular_and_non_finite_affines(tmp_path):
    singular = np.eye(4)
    singular[0, 0] = 0.0
    (tmp_path / "singular.nii").write_bytes(raw_header_bytes((6, 6, 6), sform=singular) + bytes(6 * 6 * 6 * 4))
    refused(tmp_path / "singular.nii", "voxel size", "not plausible")
    degenerate = np.diag([2.0, 2.0, 2.0, 1.0])
    degenerate[:3, 1] = degenerate[:3, 0]  # two axes pointing the same way: non-zero zooms, zero determinant
    (tmp_path / "degenerate.nii").write_bytes(raw_header_bytes((6, 6, 6), sform=degenerate) + bytes(864))
    refused(tmp_path / "degenerate.nii", "not plausible")
    bad = np.diag([2.0, 2.0, 2.0, 1.0])
    bad[0, 3] = np.nan
    (tmp_path / "nan.nii").write_bytes(raw_header_bytes((6, 6, 6), sform=bad) + bytes(864))
    refused(tmp_path / "nan.nii", "affine", "not finite")


def test_huge_dimensions_are_refused_before_reading(tmp_path):
    # Headers only: the files hold no data, so reading any would fail differently.
    (tmp_path / "wide.nii").write_bytes(raw_header_bytes((MAX_SPATIAL_DIM + 88, 600, 600)))
    refused(tmp_path / "wide.nii", f"exceeds {MAX_SPATIAL_DIM}")
    (tmp_path / "big.nii").write_bytes(raw_header_bytes((400, 400, 400, 1000)))
    refused(tmp_path / "big.nii", "GiB of data")
    (tmp_path / "big.nii.gz").write_bytes(gzip.compress(raw_header_bytes((400, 400, 400, 1000))))
    refused(tmp_path / "big.nii.gz", "GiB of data")
    (tmp_path / "long.nii").write_bytes(raw_header_bytes((4, 4, 4, MAX_VOLUMES + 1)))
    refused(tmp_path / "long.nii", f"{MAX_VOLUMES + 1} volumes")
    (tmp_path / "flat.nii").write_bytes(raw_header_bytes((64, 64, 1)) + bytes(64 * 64 * 4))
    refused(tmp_path / "flat.nii", "too small")


# --- accepted encodings ---------------------------------------------------------------------------------------


def test_encodings_read_as_the_same_float32_values(tmp_path):
    rng = np.random.default_rng(3)
    data = (rng.normal(0, 3, (6, 7, 8)) + 50).astype(np.float64)
    reference = data.astype(np.float32)
    f32 = check_nifti(small(tmp_path / "f32.nii.gz", reference)).volumes()
    f64 = check_nifti(small(tmp_path / "f64.nii.gz", data)).volumes()
    be = check_nifti(small(tmp_path / "be.nii", reference.astype(">f4"), endianness=">"))
    i16 = check_nifti(small(tmp_path / "i16.nii.gz", data, dtype=np.int16))
    assert be.image.header.endianness == ">" and be.dtype.byteorder == ">"
    assert i16.dtype == np.int16
    slope, inter = i16.image.dataobj.slope, i16.image.dataobj.inter
    assert slope not in (0.0, 1.0) and inter != 0.0  # nibabel scaled the values: the test covers scl_slope/inter
    for got in (f32, f64, be.volumes(), i16.volumes()):
        assert got.dtype == np.float32 and got.shape == (6, 7, 8, 1)
    np.testing.assert_array_equal(f32[..., 0], reference)
    np.testing.assert_allclose(f64[..., 0], data, rtol=1e-6)
    np.testing.assert_array_equal(be.volumes()[..., 0], reference)
    np.testing.assert_allclose(i16.volumes()[..., 0], data, atol=slope)


def test_non_finite_values_become_zero(tmp_path):
    data = np.ones((6, 6, 6), np.float32)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = np.nan, np.inf, -np.inf
    volumes = check_nifti(small(tmp_path / "nan.nii", data)).volumes()
    assert volumes[0, 0, 0, 0] == 0 and volumes[1, 1, 1, 0] == 0 and volumes[2, 2, 2, 0] == 0
    assert volumes.sum() == data.size - 3


def test_nifti2_and_4d(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.normal(0, 1, (6, 6, 6, 5)).astype(np.float32)
    img = nib.Nifti2Image(data, SMALL_AFFINE)
    nib.save(img, str(tmp_path / "four.nii"))
    checked = check_nifti(tmp_path / "four.nii")
    assert checked.n_volumes == 5 and checked.shape == (6, 6, 6, 5)
    np.testing.assert_array_equal(checked.volumes(), data)
    raw = (tmp_path / "four.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[:-4])
    refused(tmp_path / "cut.nii", "truncated")


# --- resampling -----------------------------------------------------------------------------------------------


def test_resample_on_the_grid_is_the_identity():
    rng = np.random.default_rng(5)
    data = rng.normal(0, 1, GRID_SHAPE + (2,)).astype(np.float32)
    out = resample_to_grid(data, GRID_AFFINE)
    assert out.shape == (2,) + GRID_SHAPE
    np.testing.assert_array_equal(out[1], data[..., 1])


@pytest.mark.parametrize("voxel_mm, flip, shift", [(3.0, False, (0.5, -1.0, 0.3)), (4.0, True, (0.0, 0.0, 0.0))])
def test_resample_is_trilinear_interpolation_in_world_space(voxel_mm, flip, shift):
    """At every grid voxel whose source position lies inside the source field of view, the result is exactly
    scipy's order-1 interpolation at that world position."""
    affine, shape = mni_affine(voxel_mm, flip_lr=flip, shift_mm=shift)
    rng = np.random.default_rng(6)
    data = smooth_random(rng, shape, 1.0) + np.linspace(0, 3, shape[0])[:, None, None].astype(np.float32)
    out = resample_to_grid(data, affine)[0]
    world = world_coordinates(GRID_AFFINE, GRID_SHAPE).reshape(-1, 3)
    src = (np.c_[world, np.ones(len(world))] @ np.linalg.inv(affine).T)[:, :3]
    inside = np.all((src >= 0) & (src <= np.array(shape) - 1), axis=1)
    assert inside.mean() > 0.5
    expected = map_coordinates(data.astype(np.float64), src[inside].T, order=1)
    np.testing.assert_allclose(out.ravel()[inside], expected, atol=1e-4)
    # Outside the source field of view the map is zero.
    far = np.all((src < -1) | (src > np.array(shape)), axis=1)
    assert not np.any(out.ravel()[far])


@pytest.mark.parametrize("oblique", [False, True])
def test_resample_matches_nilearn_where_the_field_of_view_ends_inside_the_grid(oblique):
    """A small 3 mm image covering part of the grid, whose edges fall between grid voxels (and, rotated, in
    every direction): the result equals nilearn's linear resampling everywhere, also in the voxel just beyond
    the source's outermost voxel centres, where both give 0 (zero padding would give a fraction of the edge)."""
    from nilearn.image import resample_img

    shape = (23, 27, 21)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = (-31.3, -47.6, -12.2)  # ends near x = 34.7, y = 30.4, z = 47.8: inside the grid
    if oblique:
        angle = np.deg2rad(7.0)
        rotation = np.array(
            [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
        )
        affine[:3, :3] = rotation @ affine[:3, :3]
    rng = np.random.default_rng(31)
    data = (smooth_random(rng, shape, 1.0) + 4.0).astype(np.float32)  # no zeros inside: every edge shows
    ours = resample_to_grid(data, affine)[0]
    theirs = resample_img(
        nib.Nifti1Image(data, affine),
        target_affine=GRID_AFFINE,
        target_shape=GRID_SHAPE,
        interpolation="linear",
        force_resample=True,
        copy_header=True,
    ).get_fdata()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert np.count_nonzero(ours) == np.count_nonzero(theirs) > 10_000
    assert np.count_nonzero(ours) < ours.size / 4  # the field of view does end inside the grid


def test_resample_many_volumes_at_once_equals_one_by_one():
    affine, shape = mni_affine(3.0)
    rng = np.random.default_rng(7)
    vols = np.stack([smooth_random(rng, shape, 1.0) for _ in range(3)], axis=-1)
    together = resample_to_grid(vols, affine)
    for v in range(3):
        np.testing.assert_allclose(together[v], resample_to_grid(vols[..., v], affine)[0], atol=1e-6)


# --- quality checks -------------------------------------------------------------------------------------------


MASK = brain_mask()


def test_qc_rejects_zero_variance():
    assert quality_check(np.zeros(GRID_SHAPE, np.float32)).rejected
    constant = np.where(MASK, 4.0, 0.0).astype(np.float32)
    result = quality_check(constant)
    assert result.rejected and "zero variance" in result.rejected
    # Variance outside the mask does not rescue a map that is flat inside it.
    outside_only = constant.copy()
    outside_only[~MASK] = np.random.default_rng(8).normal(0, 1, int((~MASK).sum()))
    assert quality_check(outside_only).rejected


def test_qc_accepts_an_unthresholded_map_without_warnings():
    data = np.where(MASK, smooth_random(np.random.default_rng(9)), 0).astype(np.float32)
    result = quality_check(data)
    assert result.rejected is None and result.warnings == []


@pytest.mark.parametrize("keep, flagged", [(0.05, True), (0.10, True), (0.5, False)])
def test_qc_flags_thresholded_maps(keep, flagged):
    assert 1 - 0.10 > THRESHOLDED_ZERO_SHARE > 1 - 0.5  # the cases straddle the documented threshold
    data = thresholded(smooth_random(np.random.default_rng(10)), keep)
    result = quality_check(data)
    assert result.rejected is None
    assert any(w.startswith("looks thresholded") for w in result.warnings) == flagged, result.warnings


def test_qc_flags_maps_mostly_outside_the_brain():
    rng = np.random.default_rng(11)
    data = np.zeros(GRID_SHAPE, np.float32)
    data[~MASK] = rng.normal(0, 5, int((~MASK).sum()))
    data[MASK] = rng.normal(0, 0.5, int(MASK.sum()))
    result = quality_check(data)
    assert result.rejected is None
    assert any(w.startswith("may not be in MNI space") for w in result.warnings), result.warnings
    # The same map shifted into the mask is not flagged.
    inside = np.where(MASK, rng.normal(0, 5, GRID_SHAPE), 0).astype(np.float32)
    assert not any("MNI space" in w for w in quality_check(inside).warnings)
