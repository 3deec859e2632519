"""Decoding is exact Pearson r over the brain mask (DESIGN section 4): checked against np.corrcoef.

Documented convention under test: before r is computed, every non-finite value (NaN, +inf, -inf) of a component
or a term map is set to 0. The expected values below therefore come from np.corrcoef of the masked maps after
np.nan_to_num(..., nan=0, posinf=0, neginf=0); a term map with zero variance has r = 0 with every component
(np.corrcoef would give NaN there).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decoding.decode import (
    BATCH,
    decode,
    masked,
    normalise_rows,
    open_reference_matrix,
    ranked,
    write_reference_matrix,
)
from pipeline.maps.grid import GRID_SHAPE, brain_mask, mni_to_voxel
from tests.niftis import gaussian_blob, smooth_random, thresholded

TOLERANCE = 1e-6  # the design promises 1e-5; every stored and shown r is exact to 1e-6
MASK = brain_mask()


def finite(data: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def expected_r(components: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """np.corrcoef of every component row with every term row (both (n, mask voxels)); r = 0 for constant rows."""
    x, y = finite(components), finite(terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.corrcoef(np.vstack([x, y]))
    r = full[: len(x), len(x) :]
    constant = np.r_[x.std(axis=1) == 0, y.std(axis=1) == 0]
    r[constant[: len(x)], :] = 0.0
    r[:, constant[len(x) :]] = 0.0
    return r


def blob_map(centre, sigma=6.0, peak=5.0):
    from pipeline.maps.grid import GRID_AFFINE

    return gaussian_blob(GRID_AFFINE, GRID_SHAPE, centre, sigma_mm=sigma, peak=peak)


def with_non_finite(data: np.ndarray, rng: np.random.Generator, n: int = 300) -> np.ndarray:
    """A copy with NaN, +inf and -inf at random in-mask voxels."""
    out = data.astype(np.float32).copy()
    idx = rng.choice(np.flatnonzero(MASK.ravel()), 3 * n, replace=False)
    out.flat[idx[:n]] = np.nan
    out.flat[idx[n : 2 * n]] = np.inf
    out.flat[idx[2 * n :]] = -np.inf
    return out


@pytest.fixture(scope="module")
def term_maps() -> dict[str, np.ndarray]:
    """Term maps of every shape the matrix builder must handle, including a constant (zero-variance) one."""
    rng = np.random.default_rng(7)
    return {
        "random": rng.normal(0.5, 2.0, GRID_SHAPE).astype(np.float32),
        "smooth": smooth_random(rng),
        "blob": blob_map((-40, -20, 50)),
        "two blobs": blob_map((30, 10, -10)) - blob_map((-30, 10, -10), peak=3.0),
        "sparse": thresholded(smooth_random(rng), 0.05),
        "non-finite": with_non_finite(smooth_random(rng), rng),
        "constant": np.full(GRID_SHAPE, 3.0, dtype=np.float32),
        "float64 offset": smooth_random(rng).astype(np.float64) * 2.0 + 100.0,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, term_maps) -> np.ndarray:
    path = tmp_path_factory.mktemp("matrix") / "reference.npy"
    write_reference_matrix(path, iter(term_maps.values()), len(term_maps))
    return open_reference_matrix(path)


@pytest.fixture(scope="module")
def term_rows(term_maps) -> np.ndarray:
    return np.stack([finite(m)[MASK] for m in term_maps.values()])


def component_maps(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "gaussian noise": rng.normal(0, 1, GRID_SHAPE).astype(np.float32),
        "uniform noise with offset": (rng.random(GRID_SHAPE) * 100 + 50).astype(np.float32),
        "smooth": smooth_random(rng),
        "smooth blob": blob_map((-40, -20, 50), sigma=8.0),
        "negative blob": -blob_map((30, 10, -10)),
        "blob plus noise": blob_map((30, 10, -10)) + 0.5 * smooth_random(rng),
        "thresholded 10%": thresholded(smooth_random(rng), 0.10),
        "sparse 0.5%": thresholded(rng.normal(0, 1, GRID_SHAPE).astype(np.float32), 0.005),
        "nan and inf": with_non_finite(smooth_random(rng), rng),
        "all nan but a blob": np.where(blob_map((0, -60, 20)) > 1.0, blob_map((0, -60, 20)), np.nan),
        "float64": smooth_random(rng).astype(np.float64),
    }


def test_reference_matrix_columns_are_centred_and_unit_norm(reference, term_maps):
    names = list(term_maps)
    assert reference.shape == (int(MASK.sum()), len(names))
    assert reference.dtype == np.float32
    norms = np.linalg.norm(reference.astype(np.float64), axis=0)
    means = reference.astype(np.float64).mean(axis=0)
    constant = names.index("constant")
    np.testing.assert_array_equal(reference[:, constant], 0.0)  # zero variance -> zero column
    np.testing.assert_allclose(np.delete(norms, constant), 1.0, atol=1e-5)
    np.testing.assert_allclose(means, 0.0, atol=1e-6)
    assert np.all(np.isfinite(reference))


def test_decode_equals_corrcoef_over_mask(reference, term_rows):
    rng = np.random.default_rng(11)
    maps = component_maps(rng)
    stack = np.stack([np.asarray(m, dtype=np.float32) for m in maps.values()])
    r = decode(stack, reference)
    expected = expected_r(np.stack([m[MASK] for m in maps.values()]), term_rows)
    assert r.shape == (len(maps), term_rows.shape[0])
    assert r.dtype == np.float32
    for i, name in enumerate(maps):
        np.testing.assert_allclose(r[i], expected[i], atol=TOLERANCE, rtol=0, err_msg=name)
    # The structured maps do produce strong correlations (the comparison is not between numbers near zero).
    assert np.abs(expected).max() > 0.5


def test_zero_variance_term_and_component_give_r_zero(reference, term_maps):
    constant = list(term_maps).index("constant")
    rng = np.random.default_rng(3)
    r = decode(np.stack([smooth_random(rng), blob_map((0, 0, 0))]), reference)
    np.testing.assert_array_equal(r[:, constant], 0.0)
    flat = decode(np.full((1,) + GRID_SHAPE, 7.0, dtype=np.float32), reference)
    np.testing.assert_array_equal(flat, 0.0)
    assert np.all(np.isfinite(flat))


def test_decode_ignores_voxels_outside_the_mask(reference):
    rng = np.random.default_rng(5)
    data = smooth_random(rng)
    changed = data.copy()
    changed[~MASK] = rng.normal(0, 100, int((~MASK).sum()))
    np.testing.assert_array_equal(decode(data[None], reference), decode(changed[None], reference))
    inside = data.copy()
    inside[tuple(mni_to_voxel((0, -20, 20)))] += 500.0  # one in-mask voxel does matter
    assert np.abs(decode(inside[None], reference) - decode(data[None], reference)).max() > 1e-3


def test_masked_rows_and_full_maps_decode_the_same(reference):
    rng = np.random.default_rng(9)
    maps = np.stack([smooth_random(rng) for _ in range(3)])
    rows = masked(maps)
    assert rows.shape == (3, int(MASK.sum()))
    np.testing.assert_array_equal(decode(rows, reference), decode(maps, reference))


def test_masked_sets_non_finite_to_zero():
    data = np.zeros(GRID_SHAPE, dtype=np.float32)
    ijk = tuple(mni_to_voxel((0, -20, 20)))
    assert MASK[ijk]
    data[ijk] = np.nan
    row = masked(data)
    assert row.shape == (1, int(MASK.sum()))
    assert np.all(np.isfinite(row)) and not np.any(row)


@pytest.mark.parametrize("n, batch", [(1, None), (5, 2), (7, 1)])
def test_batches_over_the_mask(reference, term_rows, n, batch):
    """Masked rows decoded in batches (a partial last batch included) agree with np.corrcoef for every row."""
    rng = np.random.default_rng(n * 100 + (batch or 0))
    base = rng.standard_normal((n, term_rows.shape[1]), dtype=np.float32)
    # Mix in the term maps so r spans the whole range, not only values near 0.
    rows = (base * 0.3 + (rng.normal(0, 1, (n, term_rows.shape[0])) @ term_rows) / 5).astype(np.float32)
    r = decode(rows, reference) if batch is None else decode(rows, reference, batch=batch)
    assert r.shape == (n, term_rows.shape[0])
    np.testing.assert_allclose(r, expected_r(rows, term_rows), atol=TOLERANCE, rtol=0)
    assert np.abs(r).max() > 0.3


N_VOXELS = 3000  # a small "mask" so that counts around BATCH stay cheap whatever BATCH is


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(12)
    terms = rng.normal(0, 1, (6, N_VOXELS))
    terms[2] = 4.0  # zero variance -> zero column, r = 0
    terms[4] = np.cumsum(terms[4])  # smooth, offset
    matrix = normalise_rows(terms).T.copy()
    assert matrix.shape == (N_VOXELS, 6) and not np.any(matrix[:, 2])
    return terms, matrix


@pytest.mark.parametrize("n", [1, BATCH - 1, BATCH, BATCH + 1, 2 * BATCH + 3])
def test_component_counts_around_the_default_batch(small_problem, n):
    """Fewer, exactly as many and more components than BATCH (the default batch size) give np.corrcoef's r, and
    any other batch size gives the same result."""
    terms, matrix = small_problem
    rng = np.random.default_rng(n)
    rows = (rng.normal(0, 1, (n, N_VOXELS)) + rng.normal(0, 1, (n, 6)) @ terms).astype(np.float32)
    rows[::7] = rows[::7] * 1e3 - 50.0  # scale and offset do not matter
    r = decode(rows, matrix)
    expected = expected_r(rows, terms)
    np.testing.assert_allclose(r, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(r[:, 2], 0.0)
    assert np.abs(r).max() > 0.5
    for batch in (1, 7, n + 5):
        np.testing.assert_allclose(decode(rows, matrix, batch=batch), r, atol=TOLERANCE, rtol=0)


def test_identical_and_opposite_maps_and_invariance(reference, term_maps):
    names = list(term_maps)
    blob = term_maps["blob"]
    r = decode(np.stack([blob, -blob, 3.0 * blob + 100.0]), reference)
    j = names.index("blob")
    assert r[0, j] == pytest.approx(1.0, abs=TOLERANCE)
    assert r[1, j] == pytest.approx(-1.0, abs=TOLERANCE)
    np.testing.assert_allclose(r[2], r[0], atol=TOLERANCE)  # r ignores scale and offset
    assert int(np.argmax(r[0])) == j


def test_r_is_clipped_to_minus_one_one():
    """Rounding can push float32 r past 1; decode clips. A deliberately over-scaled matrix shows the clip."""
    rng = np.random.default_rng(2)
    x = smooth_random(rng)
    column = normalise_rows(masked(x))[0]
    matrix = np.stack([1.5 * column, -1.5 * column, 0.5 * column], axis=1).astype(np.float32)
    r = decode(x[None], matrix)
    np.testing.assert_allclose(r[0], [1.0, -1.0, 0.5], atol=TOLERANCE)
    assert r.max() <= 1.0 and r.min() >= -1.0
    # And with the real normalisation, many near-identical maps never leave [-1, 1].
    same = np.stack([x * s for s in (1e-3, 1.0, 1e3, 1e6)])
    r = decode(same, normalise_rows(masked(x)).T.copy())
    assert np.all(r <= 1.0) and np.all(r >= -1.0)
    np.testing.assert_allclose(r, 1.0, atol=TOLERANCE)


def test_write_reference_matrix_checks_the_count(tmp_path, term_maps):
    path = tmp_path / "m.npy"
    with pytest.raises(ValueError, match="expected 3 term maps, got 2"):
        write_reference_matrix(path, iter([term_maps["blob"], term_maps["smooth"]]), 3)
    assert list(tmp_path.iterdir()) == []  # no half-written matrix, no temporary file left


def test_open_reference_matrix_refuses_a_matrix_for_another_mask(tmp_path):
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros((1000, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="not a reference matrix"):
        open_reference_matrix(path)


def test_ranked_best_first_ties_in_term_order_and_top():
    r = np.array([0.1, 0.5, -0.2, 0.5, 0.3], dtype=np.float32)
    terms = ["a", "b", "c", "d", "e"]
    result = ranked(r, terms)
    assert [t for t, _ in result] == ["b", "d", "e", "a", "c"]
    assert [v for _, v in result] == sorted((float(v) for v in r), reverse=True)
    assert all(isinstance(v, float) for _, v in result)
    assert [t for t, _ in ranked(r, terms, top=2)] == ["b", "d"]
    assert ranked(r, terms, top=10) == result
    assert ranked(-r, terms)[0][0] == "c"


@pytest.mark.parametrize("batch_of", [1, 12])
def test_thresholded_map_against_the_builtin_reference_is_exact_to_1e_6(tmp_path, batch_of):
    """A map with 90% zeros (one alone: BLAS's matrix-vector kernel; or in a batch: its GEMM) against the built-in
    reference, whose sparse term maps are mostly one constant after centring: the float32 product alone drifted
    up to 5e-4 from np.corrcoef here. Every term's r must be within 1e-6."""
    from pipeline.decoding.reference import builtin_term_maps

    names, maps = zip(*builtin_term_maps())
    path = tmp_path / "builtin.npy"
    write_reference_matrix(path, iter(maps), len(maps))
    matrix = open_reference_matrix(path)
    rng = np.random.default_rng(90)
    components = np.stack([thresholded(smooth_random(rng) + maps[i % len(maps)] / 3, 0.10) for i in range(batch_of)])
    rows = masked(components)
    assert 0.89 <= float(np.mean(rows[0] == 0)) <= 0.91
    r = decode(components, matrix)
    expected = expected_r(rows, np.stack([m[MASK] for m in maps]))
    assert np.abs(r - expected).max() <= 1e-6, (names, np.abs(r - expected).max(axis=0))
    assert np.abs(expected).max() > 0.1  # not all near zero


def test_nonzero_mask_equals_corrcoef_over_the_non_zero_voxels(reference, term_maps):
    """The non-zero mask: r over the map's own support, the term columns re-centred and re-normalised there,
    equals np.corrcoef of the map and each term map (as the reference holds it) over those voxels; a term
    constant there has 0. (The stored columns are float32: a Gaussian's tail of 1e-30 far from its centre is a
    constant there, where np.corrcoef of the float64 original would still find a correlation in it.)"""
    from pipeline.decoding.decode import decode_nonzero

    rng = np.random.default_rng(21)
    maps = np.stack(
        [
            thresholded(smooth_random(rng) + term_maps["blob"] / 2, 0.08),
            np.where(blob_map((30, 10, -10)) > 0.5, blob_map((30, 10, -10)), 0.0),
        ]
    ).astype(np.float32)
    rows = masked(maps)
    r = decode_nonzero(rows, reference)
    names = list(term_maps)
    for i, row in enumerate(rows):
        support = row != 0
        assert 0.002 < support.mean() < 0.2
        expected = expected_r(row[support][None], np.asarray(reference)[support].T)[0]
        np.testing.assert_allclose(r[i], expected, atol=1e-6, rtol=0, err_msg=str(i))
        assert r[i, names.index("constant")] == 0.0
    assert np.abs(r).max() > 0.3
    assert not np.allclose(r, decode(rows, reference), atol=0.05)  # the subset does change the answer
    np.testing.assert_array_equal(decode_nonzero(np.zeros_like(rows[:1]), reference), 0.0)
