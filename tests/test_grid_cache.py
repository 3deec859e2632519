"""The template arrays on the 2 mm grid are kept in the data directory, so a command-line call does not import
nilearn and resample a template each time; the copy on disk equals a fresh build, and a broken copy is rebuilt."""

from __future__ import annotations

import numpy as np

from pipeline.maps import grid


def _fresh():
    grid.brain_mask.cache_clear()
    grid.underlay.cache_clear()


def test_grid_arrays_are_cached_on_disk_and_equal_a_fresh_build(data_dir, monkeypatch):
    _fresh()
    mask, under = grid.brain_mask(), grid.underlay()
    assert grid._cache_file("brain_mask").is_file() and grid._cache_file("underlay").is_file()
    np.testing.assert_array_equal(mask, grid._build_brain_mask())
    np.testing.assert_array_equal(under, grid._build_underlay())

    def no_build():
        raise AssertionError("rebuilt although the data directory holds the array")

    monkeypatch.setattr(grid, "_build_brain_mask", no_build)
    _fresh()
    again = grid.brain_mask()
    np.testing.assert_array_equal(again, mask)
    assert not again.flags.writeable
    _fresh()


def test_a_broken_cache_file_is_rebuilt(data_dir):
    _fresh()
    expected = grid.brain_mask()
    path = grid._cache_file("brain_mask")
    path.write_bytes(b"not an array")
    _fresh()
    np.testing.assert_array_equal(grid.brain_mask(), expected)
    assert np.load(path).shape == grid.GRID_SHAPE  # written again, whole
    _fresh()
