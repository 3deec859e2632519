"""8-bit display encoding: accuracy, exact zeros, nibabel compatibility and size."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from pipeline.maps.display import (
    N_CODES,
    PREDICTED_INTENT,
    decode_display,
    display_scale,
    encode_for_display,
    lorenzo_residuals,
    undo_lorenzo,
)
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE, brain_mask, to_image

TOLERANCE = 0.005  # of the data range, DESIGN section 10


def decode(payload: bytes) -> nib.Nifti1Image:
    img = decode_display(payload)
    assert img.header["intent_name"].tobytes().rstrip(b"\0") == b"", "the decoded image must not claim residuals"
    return img


def is_predicted(payload: bytes) -> bool:
    raw = nib.Nifti1Image.from_bytes(gzip.decompress(payload))
    return raw.header["intent_name"].tobytes().rstrip(b"\0") == PREDICTED_INTENT


def relative_error(decoded: np.ndarray, original: np.ndarray) -> float:
    original = np.where(np.isfinite(original), original, 0.0)
    span = float(original.max() - original.min())
    return float(np.abs(decoded - original).max() / span)


def smooth_map(rng: np.random.Generator, shape=GRID_SHAPE) -> np.ndarray:
    data = gaussian_filter(rng.standard_normal(shape), 2.5)
    return (data / data.std()).astype(np.float32)


def maps() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    random = rng.normal(0, 2, GRID_SHAPE).astype(np.float32)
    sparse = np.zeros(GRID_SHAPE, np.float32)
    idx = rng.choice(sparse.size, 2000, replace=False)
    sparse.flat[idx] = rng.normal(0, 4, idx.size)
    skewed = (rng.lognormal(0, 1.5, GRID_SHAPE) * (rng.random(GRID_SHAPE) < 0.3)).astype(np.float32)
    negative = -np.abs(smooth_map(rng)) - 1.0  # entirely negative, zero not in range
    offset = smooth_map(rng).astype(np.float64) + 1000.0  # far from zero, float64 input
    return {"random": random, "sparse": sparse, "skewed": skewed, "negative": negative, "offset": offset}


@pytest.mark.parametrize("name", list(maps()))
def test_round_trip_within_half_percent_of_range(name: str) -> None:
    data = maps()[name]
    img = decode(encode_for_display(data, GRID_AFFINE))
    assert img.get_data_dtype() == np.uint8
    assert img.shape == data.shape
    np.testing.assert_allclose(img.affine, GRID_AFFINE)
    decoded = img.get_fdata()
    assert relative_error(decoded, data) <= TOLERANCE
    # Half a code step is the design target; allow a hair of float32 rounding on top.
    assert relative_error(decoded, data) <= 0.5 / N_CODES * 1.001


@pytest.mark.parametrize("name", ["random", "sparse", "skewed"])
def test_zeros_decode_to_exact_zero(name: str) -> None:
    data = maps()[name]
    data.flat[::97] = 0.0
    img = decode(encode_for_display(data, GRID_AFFINE))
    decoded = img.get_fdata()
    assert np.all(decoded[data == 0] == 0.0)
    # The same holds in float32 arithmetic, which is what the WebGL shader and the header fields use.
    slope, inter = np.float32(img.dataobj.slope), np.float32(img.dataobj.inter)
    codes = np.asarray(img.dataobj.get_unscaled())
    assert np.all(codes[data == 0].astype(np.float32) * slope + inter == np.float32(0))
    # Codes of other voxels sit on the right side of zero, so "value > 0" thresholds stay correct.
    assert np.all(decoded[data > 0.5 * slope] > 0) and np.all(decoded[data < -0.5 * slope] < 0)


def test_nan_and_inf_become_zero() -> None:
    data = smooth_map(np.random.default_rng(2)) + 3.0  # all positive: zero only enters through NaN
    data[10, 10, 10] = np.nan
    data[20, 20, 20] = np.inf
    data[30, 30, 30] = -np.inf
    decoded = decode(encode_for_display(data, GRID_AFFINE)).get_fdata()
    assert decoded[10, 10, 10] == 0 and decoded[20, 20, 20] == 0 and decoded[30, 30, 30] == 0
    assert np.isfinite(decoded).all()
    assert relative_error(decoded, data) <= TOLERANCE
    assert not np.isfinite(data).all(), "the caller's array must be left alone"


@pytest.mark.parametrize("value", [0.0, 3.25, -7.5])
def test_constant_maps(value: float) -> None:
    data = np.full(GRID_SHAPE, value, np.float32)
    decoded = decode(encode_for_display(data, GRID_AFFINE)).get_fdata()
    assert np.all(decoded == value)


def test_all_nan_map() -> None:
    decoded = decode(encode_for_display(np.full(GRID_SHAPE, np.nan, np.float32), GRID_AFFINE)).get_fdata()
    assert np.all(decoded == 0)


def test_4d_uses_one_scale_per_file() -> None:
    rng = np.random.default_rng(3)
    data = np.stack([smooth_map(rng), 5 * smooth_map(rng), np.zeros(GRID_SHAPE, np.float32)], axis=-1)
    img = decode(encode_for_display(data, GRID_AFFINE))
    assert img.shape == GRID_SHAPE + (3,)
    decoded = img.get_fdata()
    assert relative_error(decoded, data) <= TOLERANCE
    assert np.all(decoded[..., 2] == 0)


def test_integer_and_float64_inputs() -> None:
    ints = np.random.default_rng(4).integers(-300, 300, GRID_SHAPE).astype(np.int16)
    decoded = decode(encode_for_display(ints, GRID_AFFINE)).get_fdata()
    assert relative_error(decoded, ints.astype(float)) <= TOLERANCE
    assert np.all(decoded[ints == 0] == 0)


def test_scale_is_exact_in_float32() -> None:
    for lo, hi in [(-3.7, 12.9), (-1e-3, 2e-3), (-5e4, 1.0), (0.0, 1.0), (-2.0, 0.0)]:
        slope, inter = display_scale(lo, hi)
        assert float(np.float32(slope)) == slope and float(np.float32(inter)) == inter
        assert slope * N_CODES >= hi - lo


@pytest.mark.parametrize("shape", [(5, 4, 3), (7, 1, 6, 2), GRID_SHAPE + (2,)])
def test_lorenzo_residuals_invert_exactly(shape) -> None:
    codes = np.random.default_rng(6).integers(0, 256, shape).astype(np.uint8)
    residuals = lorenzo_residuals(codes)
    assert residuals.dtype == np.uint8 and residuals.shape == codes.shape
    assert np.array_equal(undo_lorenzo(residuals), codes)
    # Volumes of a 4D array are predicted on their own: a volume's residuals do not depend on the others.
    if len(shape) == 4:
        assert np.array_equal(residuals[..., 1], lorenzo_residuals(codes[..., 1]))


def test_lorenzo_residuals_of_a_linear_ramp_vanish() -> None:
    i, j, k = np.meshgrid(*(np.arange(n) for n in (9, 8, 7)), indexing="ij")
    residuals = lorenzo_residuals((3 * i + 2 * j + k + 10).astype(np.uint8))
    # The predictor is exact on any sum of one-axis functions: only the first row, column and slab carry values.
    assert np.count_nonzero(residuals[1:, 1:, 1:]) == 0 and residuals[0, 0, 0] == 10


def test_smooth_maps_are_sent_predicted_and_sparse_maps_plain() -> None:
    smooth = smooth_map(np.random.default_rng(7))
    smooth[~brain_mask()] = 0.0
    assert is_predicted(encode_for_display(smooth, GRID_AFFINE))
    sparse = maps()["sparse"]
    assert not is_predicted(encode_for_display(sparse, GRID_AFFINE))
    # Either way the decoded values are the same 8-bit codes.
    for data in (smooth, sparse):
        assert relative_error(decode(encode_for_display(data, GRID_AFFINE)).get_fdata(), data) <= 0.5 / N_CODES * 1.001


def test_display_bytes_much_smaller_than_float32_gzip() -> None:
    data = smooth_map(np.random.default_rng(5))
    data[~brain_mask()] = 0.0  # real maps are zero outside the brain
    full = gzip.compress(to_image(data).to_bytes(), compresslevel=6)
    display = encode_for_display(data, GRID_AFFINE)
    # Measured here: 0.25 with plain 8-bit codes, about 0.12 with Lorenzo residuals.
    assert len(display) < 0.15 * len(full), (len(display), len(full))
