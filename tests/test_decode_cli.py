"""`python -m pipeline decode` on 4D files: every volume in one run, equal to the library's decoding; `--volume`
picks one; a bad volume index is refused in one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import affine_transform

from pipeline.decoding.decode import decode, ranked
from pipeline.decoding.reference import BUILTIN_PEAKS, builtin_term_map, load_matrix, require_active_reference
from pipeline.maps.grid import GRID_AFFINE, GRID_SHAPE
from pipeline.maps.nifti import check_nifti, resample_to_grid
from store.db import session_scope
from tests.niftis import mni_affine, smooth_random, write
from tests.test_cli import assert_one_error_line, run

FOUR_TERMS = ("faces", "auditory", "visual", "memory")


@pytest.fixture(params=["3mm", "grid"])
def ica_file(data_dir, tmp_path, request):
    """A 4D file of five volumes, four built-in term maps under smooth noise, then pure noise: at 3 mm LAS (read
    through resampling), or on the standard grid (read straight from the file's layout)."""
    affine, shape = mni_affine(3.0, flip_lr=True) if request.param == "3mm" else (GRID_AFFINE, GRID_SHAPE)
    transform = np.linalg.inv(GRID_AFFINE) @ affine
    rng = np.random.default_rng(7)
    volumes = []
    for term in FOUR_TERMS:
        on_3mm = affine_transform(
            builtin_term_map(tuple(BUILTIN_PEAKS[term])), transform[:3, :3], transform[:3, 3], output_shape=shape
        )
        volumes.append(on_3mm + smooth_random(rng, shape, 1.5))
    volumes.append(smooth_random(rng, shape, 1.5))
    return write(tmp_path / "melodic_IC.nii.gz", np.stack(volumes, axis=-1).astype(np.float32), affine)


def library_r(path) -> tuple[np.ndarray, list[str]]:
    """What the library gives for every volume: (volumes, terms) r and the term names."""
    checked = check_nifti(path)
    with session_scope() as session:
        matrix, terms = load_matrix(session, require_active_reference(session))
        names = [t.name for t in terms]
    return decode(resample_to_grid(checked.volumes(), checked.affine), matrix), names


def test_a_4d_file_gives_one_ranked_block_per_volume_equal_to_the_library(data_dir, ica_file):
    expected, names = library_r(ica_file)
    result = json.loads(run(data_dir, "decode", str(ica_file), "--json").stdout)
    assert [entry["volume"] for entry in result] == [1, 2, 3, 4, 5]
    for entry, row in zip(result, expected, strict=True):
        assert entry["error"] is None
        want = ranked(row, names)
        assert [d["term"] for d in entry["decodings"]] == [t for t, _ in want]
        np.testing.assert_allclose([d["r"] for d in entry["decodings"]], [r for _, r in want], atol=1e-6)
    assert [entry["decodings"][0]["term"] for entry in result[:4]] == list(FOUR_TERMS)

    text = run(data_dir, "decode", str(ica_file), "--top", "2").stdout
    blocks = [block.splitlines() for block in text.strip().split("\n\n")]
    assert [block[0] for block in blocks] == [f"volume {v}" for v in range(1, 6)]
    for block, row in zip(blocks, expected, strict=True):
        assert len(block) == 3
        for line, (term, r) in zip(block[1:], ranked(row, names, 2), strict=True):
            printed_term, printed_r = line.rsplit(None, 1)
            assert printed_term.strip() == term and float(printed_r) == pytest.approx(r, abs=1e-4)


def test_volume_picks_one_volume(data_dir, ica_file):
    expected, names = library_r(ica_file)
    result = json.loads(run(data_dir, "decode", str(ica_file), "--volume", "3", "--json").stdout)
    assert [d["term"] for d in result] == [t for t, _ in ranked(expected[2], names)]
    np.testing.assert_allclose([d["r"] for d in result], [r for _, r in ranked(expected[2], names)], atol=1e-6)
    lines = run(data_dir, "decode", str(ica_file), "--volume", "1", "--top", "1").stdout.splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == "faces"


@pytest.mark.parametrize("volume", ["0", "6", "-2"])
def test_a_bad_volume_index_is_refused_in_one_line(data_dir, ica_file, volume):
    assert_one_error_line(
        run(data_dir, "decode", str(ica_file), "--volume", volume, check=False),
        f"--volume {volume} is out of range",
        "5 volume(s), numbered 1 to 5",
    )


def test_a_constant_volume_is_reported_and_the_others_decoded(data_dir, tmp_path):
    rng = np.random.default_rng(3)
    data = np.stack([smooth_random(rng), np.zeros_like(smooth_random(rng)), smooth_random(rng)], axis=-1)
    path = write(tmp_path / "with_empty.nii.gz", data)
    proc = run(data_dir, "decode", str(path), "--json")
    result = json.loads(proc.stdout)
    assert [entry["volume"] for entry in result] == [1, 2, 3]
    assert result[1]["decodings"] == [] and "constant inside the brain mask" in result[1]["error"]
    assert result[0]["error"] is None and len(result[2]["decodings"]) == len(BUILTIN_PEAKS)
    text = run(data_dir, "decode", str(path))
    assert "volume 2: not decoded" in text.stderr and "volume 2\n" not in text.stdout
    empty = write(tmp_path / "all_empty.nii.gz", np.zeros(data.shape, dtype=np.float32))
    assert_one_error_line(run(data_dir, "decode", str(empty), check=False), "no volume can be decoded")
