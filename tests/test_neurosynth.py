"""Neurosynth v7 loader and association-test maps, checked against independent brute-force computations."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from scipy import sparse
from scipy.stats import chi2_contingency, norm

from pipeline.decoding import neurosynth as ns
from pipeline.maps.grid import GRID_SHAPE, brain_mask, voxel_coordinates_mm
from tests.neurosynth_files import write_neurosynth_v7

OCCIPITAL = np.array([0.0, -90.0, 0.0])
LEFT_IFG = np.array([-48.0, 20.0, 10.0])
VOCAB = ["visual", "language", "memory", "working memory"]

# Lancaster et al. (2007) icbm_spm2tal, typed in again here so the test does not trust the module's copy.
ICBM_SPM2TAL = np.array(
    [[0.9254, 0.0024, -0.0118, -1.0207], [-0.0048, 0.9316, -0.0871, -1.7667], [0.0152, 0.0883, 0.8924, 4.0926]]
)


def _tal_to_mni(xyz):
    m = np.vstack([ICBM_SPM2TAL, [0, 0, 0, 1]])
    return np.linalg.solve(m, np.r_[xyz, 1.0])[:3]


def _snap_to_voxel_centre(xyz):
    """Centre (mm) of the 2 mm grid voxel nearest to ``xyz``: x = 90 - 2i, y = -126 + 2j, z = -72 + 2k."""
    x, y, z = xyz
    i, j, k = np.rint((90 - x) / 2), np.rint((y + 126) / 2), np.rint((z + 72) / 2)
    return np.array([90 - 2 * i, -126 + 2 * j, -72 + 2 * k])


def _make_studies(seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    mask = brain_mask()
    coords = voxel_coordinates_mm()[mask]
    far_from_targets = coords[
        (np.linalg.norm(coords - OCCIPITAL, axis=1) > 30) & (np.linalg.norm(coords - LEFT_IFG, axis=1) > 30)
    ]

    def jitter(centre):
        return tuple(centre + rng.integers(-3, 4, size=3) * 2.0)

    def elsewhere(n):
        return [tuple(map(float, p)) for p in far_from_targets[rng.choice(len(far_from_targets), n)]]

    studies = []
    for s in range(12):
        studies.append(
            {
                "id": f"{10000 + s}",
                "peaks": [jitter(OCCIPITAL), jitter(OCCIPITAL)] + elsewhere(2),
                "terms": {"visual": float(rng.uniform(0.01, 0.2)), "memory": 0.02 * (s % 3 == 0)},
            }
        )
    for s in range(12):
        studies.append(
            {
                "id": f"{20000 + s}",
                "peaks": [jitter(LEFT_IFG)] + elsewhere(3),
                "terms": {"language": float(rng.uniform(0.01, 0.2)), "working memory": 0.05 * (s % 2)},
            }
        )
    for s in range(16):
        terms = {"memory": 0.03} if s % 4 == 0 else {}
        if s in (1, 2):
            terms["visual"] = 0.0005  # below the 0.001 threshold: these do not "have" the term
        studies.append(
            {
                "id": f"{30000 + s}",
                "peaks": elsewhere(int(rng.integers(1, 6))),
                "terms": terms,
                "space": "TAL" if s in (3, 4, 5) else "MNI",
            }
        )
    # One visual study reported in Talairach space, with a DOI-like id.
    studies.append(
        {"id": "10.1016/j.synthetic.2018.01", "peaks": [jitter(OCCIPITAL)], "space": "TAL", "terms": {"visual": 0.05}}
    )
    return studies


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ns7")
    studies = _make_studies()
    write_neurosynth_v7(path, studies, VOCAB)
    return path, studies


@pytest.fixture(scope="module")
def maps(fixture_dir):
    path, _ = fixture_dir
    data = ns.load_neurosynth_v7(path)
    return dict(ns.association_z_maps(data, terms=["visual", "language", "memory"]))


def test_fixture_files_are_in_v7_layout(fixture_dir):
    path, studies = fixture_dir
    assert sorted(p.name for p in path.iterdir()) == sorted(ns.NEUROSYNTH_V7_FILES.values())
    with gzip.open(path / ns.NEUROSYNTH_V7_FILES["coordinates"], "rt") as fh:
        assert fh.readline().rstrip("\n").split("\t") == ["id", "table_id", "table_num", "peak_id", "x", "y", "z"]
    with gzip.open(path / ns.NEUROSYNTH_V7_FILES["metadata"], "rt") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        assert header == ["id", "doi", "space", "title", "authors", "year", "journal"]
        assert sum(1 for _ in fh) == len(studies)
    features = sparse.load_npz(path / ns.NEUROSYNTH_V7_FILES["features"])
    assert features.shape == (len(studies), len(VOCAB))
    assert (path / ns.NEUROSYNTH_V7_FILES["vocabulary"]).read_text().split("\n") == VOCAB


def test_round_trip(fixture_dir):
    path, studies = fixture_dir
    data = ns.load_neurosynth_v7(path)
    assert data.study_ids == [s["id"] for s in studies]
    assert data.terms == VOCAB
    assert data.n_dropped_peaks == 0
    assert data.n_peaks == sum(len(s["peaks"]) for s in studies)

    expected_tfidf = np.zeros((len(studies), len(VOCAB)))
    for i, s in enumerate(studies):
        for term, value in s["terms"].items():
            expected_tfidf[i, VOCAB.index(term)] = value
    np.testing.assert_array_equal(data.tfidf.toarray(), expected_tfidf)

    for i, s in enumerate(studies):
        got = data.peaks_mni[data.peak_study == i]
        want = np.array([_tal_to_mni(p) if s.get("space") == "TAL" else p for p in s["peaks"]]).reshape(-1, 3)
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert data.peak_talairach[data.peak_study == i].tolist() == [s.get("space") == "TAL"] * len(s["peaks"])


def test_talairach_peaks_are_moved(tmp_path):
    studies = [
        {"id": "1", "peaks": [tuple(OCCIPITAL)], "space": "MNI"},
        {"id": "2", "peaks": [tuple(OCCIPITAL)], "space": "TAL"},
    ]
    write_neurosynth_v7(tmp_path, studies, ["visual"])
    data = ns.load_neurosynth_v7(tmp_path)
    mni, tal = data.peaks_mni[data.peak_study == 0][0], data.peaks_mni[data.peak_study == 1][0]
    np.testing.assert_array_equal(mni, OCCIPITAL)
    np.testing.assert_allclose(tal, _tal_to_mni(OCCIPITAL), atol=1e-9)
    # MNI brains are larger than Talairach's: an occipital Talairach peak lies further back in MNI.
    assert tal[1] < OCCIPITAL[1] - 3
    assert np.linalg.norm(tal - mni) > 5
    act = ns.study_activation_matrix(data)
    assert (act[0] != act[1]).nnz > 0


def test_activation_matches_brute_force_sphere(fixture_dir):
    path, studies = fixture_dir
    data = ns.load_neurosynth_v7(path)
    act = ns.study_activation_matrix(data).toarray().astype(bool)
    mask = brain_mask()
    coords = voxel_coordinates_mm()[mask].astype(float)
    for i in (0, 13, 30, len(studies) - 1):
        s = studies[i]
        peaks = [_tal_to_mni(p) if s.get("space") == "TAL" else np.asarray(p) for p in s["peaks"]]
        want = np.zeros(len(coords), dtype=bool)
        for p in peaks:
            want |= np.linalg.norm(coords - _snap_to_voxel_centre(p), axis=1) <= 10.0 + 1e-6
        np.testing.assert_array_equal(act[i], want)
    # A single deep peak activates the full 10 mm sphere: 515 voxels of the 2 mm grid.
    assert len(ns.sphere_offsets(10.0)) == 515


def test_maps_peak_where_the_terms_were_reported(maps):
    mask = brain_mask()
    coords = voxel_coordinates_mm()
    for term, home, other in (("visual", OCCIPITAL, LEFT_IFG), ("language", LEFT_IFG, OCCIPITAL)):
        z = maps[term]
        assert z.shape == GRID_SHAPE and z.dtype == np.float32
        assert np.all(z[~mask] == 0)
        peak = np.unravel_index(np.argmax(z), GRID_SHAPE)
        assert np.linalg.norm(coords[peak] - home) <= 10.0, (term, coords[peak])
        i_home = tuple(np.rint((np.linalg.inv(_affine()) @ np.r_[home, 1])[:3]).astype(int))
        i_other = tuple(np.rint((np.linalg.inv(_affine()) @ np.r_[other, 1])[:3]).astype(int))
        assert z[i_home] > 3.0, (term, z[i_home])
        assert z[i_other] <= 0.0, (term, z[i_other])


def _affine():
    return np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


def test_z_equals_scipy_chi_square_at_voxels(fixture_dir, maps):
    _, studies = fixture_dir
    mask = brain_mask()
    coords = voxel_coordinates_mm()
    snapped = [
        [_snap_to_voxel_centre(_tal_to_mni(p) if s.get("space") == "TAL" else np.asarray(p)) for p in s["peaks"]]
        for s in studies
    ]
    probes = [OCCIPITAL, LEFT_IFG, OCCIPITAL + [8, 0, 4], LEFT_IFG + [0, -10, 0], np.array([-40.0, -60, 40])]
    checked = 0
    for term in ("visual", "language", "memory"):
        has = np.array([s["terms"].get(term, 0.0) >= 0.001 for s in studies])
        for probe in probes:
            ijk = tuple(np.rint((np.linalg.inv(_affine()) @ np.r_[probe, 1])[:3]).astype(int))
            assert mask[ijk]
            centre = coords[ijk].astype(float)
            active = np.array([any(np.linalg.norm(p - centre) <= 10.0 + 1e-6 for p in ps) for ps in snapped])
            table = np.array(
                [[np.sum(has & active), np.sum(has & ~active)], [np.sum(~has & active), np.sum(~has & ~active)]]
            )
            if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
                assert maps[term][ijk] == 0.0
                continue
            _, p, _, _ = chi2_contingency(table, correction=False)
            sign = np.sign(table[0, 0] / has.sum() - table[1, 0] / (~has).sum())
            expected = sign * norm.isf(p / 2)
            assert maps[term][ijk] == pytest.approx(expected, rel=1e-5, abs=1e-5), (term, probe, table)
            checked += 1
    assert checked >= 10


def test_threshold_and_chunking_do_not_change_counts(fixture_dir, monkeypatch):
    path, _ = fixture_dir
    data = ns.load_neurosynth_v7(path)
    reference = dict(ns.association_z_maps(data, terms=["visual", "memory"], batch=1))
    act = ns.study_activation_matrix(data)
    # Small blocks and tiny chunks exercise the block-boundary and gather-splitting paths.
    monkeypatch.setattr(ns, "_STUDIES_PER_BLOCK", 3)
    assert (ns.study_activation_matrix(data) != act).nnz == 0
    monkeypatch.setattr(ns, "_CHUNK_ENTRIES", 700)
    assert (ns.study_activation_matrix(data) != act).nnz == 0
    chunked = dict(ns.association_z_maps(data, terms=["visual", "memory"], batch=2))
    for term, z in reference.items():
        np.testing.assert_array_equal(chunked[term], z)
    # 0.0004 lets the two 0.0005 studies count as "visual": the map must change.
    lower = dict(ns.association_z_maps(data, terms=["visual"], tfidf_threshold=0.0004))
    assert not np.array_equal(lower["visual"], reference["visual"])


def test_all_terms_and_progress(fixture_dir):
    path, _ = fixture_dir
    data = ns.load_neurosynth_v7(path)
    calls = []
    out = list(ns.association_z_maps(data, batch=3, progress=lambda d, t: calls.append((d, t))))
    assert [t for t, _ in out] == VOCAB
    assert calls == [(0, 4), (3, 4), (4, 4)]


def test_unknown_term_raises_eagerly(fixture_dir):
    path, _ = fixture_dir
    data = ns.load_neurosynth_v7(path)
    with pytest.raises(ValueError, match="visuall") as err:
        ns.association_z_maps(data, terms=["visual", "visuall"])
    assert "'visual'" in str(err.value)


@pytest.mark.parametrize("role", sorted(ns.NEUROSYNTH_V7_FILES))
def test_missing_file_is_named(tmp_path, role):
    write_neurosynth_v7(tmp_path, [{"id": "1", "peaks": [(0, 0, 0)], "terms": {"a": 1.0}}], ["a"])
    (tmp_path / ns.NEUROSYNTH_V7_FILES[role]).unlink()
    with pytest.raises(ValueError, match=ns.NEUROSYNTH_V7_FILES[role]):
        ns.load_neurosynth_v7(tmp_path)


def test_missing_column_is_named(tmp_path):
    write_neurosynth_v7(tmp_path, [{"id": "1", "peaks": [(0, 0, 0)], "terms": {"a": 1.0}}], ["a"])
    with gzip.open(tmp_path / ns.NEUROSYNTH_V7_FILES["coordinates"], "wt") as fh:
        fh.write("id\tx\ty\n1\t0\t0\n")
    with pytest.raises(ValueError, match=r"coordinates.*'z'"):
        ns.load_neurosynth_v7(tmp_path)


def test_feature_rows_must_match_metadata(tmp_path):
    write_neurosynth_v7(tmp_path, [{"id": "1", "peaks": [(0, 0, 0)]}, {"id": "2"}], ["a"])
    sparse.save_npz(tmp_path / ns.NEUROSYNTH_V7_FILES["features"], sparse.csc_matrix((3, 1)))
    with pytest.raises(ValueError, match="3 studies"):
        ns.load_neurosynth_v7(tmp_path)


def test_terms_no_study_has_are_left_out_and_named(tmp_path, capsys):
    """A vocabulary term that no study has (and one that every study has) would be an all-zero map, r = 0 with
    everything: it is not built, and the build's message names it."""
    from pipeline.__main__ import main
    from store.db import session_scope
    from store.models import ReferenceSet
    from tests.conftest import use_environment

    studies = [
        {
            "id": str(i),
            "peaks": [tuple(OCCIPITAL) if i % 2 else tuple(LEFT_IFG)],
            "terms": {"visual": 0.1 * (i % 2), "everywhere": 0.2},
        }
        for i in range(10)
    ]
    folder = tmp_path / "ns"
    write_neurosynth_v7(folder, studies, ["visual", "never used", "everywhere", "also unused"])
    data = ns.load_neurosynth_v7(folder)
    left_out: list[str] = []
    built = dict(ns.association_z_maps(data, left_out=left_out))
    assert list(built) == ["visual"]
    assert left_out == ["never used", "everywhere", "also unused"]
    assert np.any(built["visual"])

    use_environment(tmp_path / "data")
    assert main(["reference", "build-neurosynth", str(folder), "--name", "NS"]) == 0
    out = capsys.readouterr().out
    assert "reference set 'NS': 1 terms" in out
    assert "left out 3 term(s)" in out and "never used, everywhere, also unused" in out
    with session_scope() as session:
        ref = session.query(ReferenceSet).filter_by(name="NS").one()
        assert [t.name for t in ref.terms] == ["visual"]
    assert main(["reference", "build-neurosynth", str(folder), "--name", "NS2", "--terms", "never used"]) == 1
    assert "no term is left" in capsys.readouterr().err
