"""Any Neurosynth vocabulary of a folder laid out as the neurosynth-data repository, the label threshold as a
choice, and the Talairach transform as a choice; on NiMARE's bundled sample of the v7 release."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from pipeline.decoding import neurosynth as ns
from store.db import session_scope
from store.models import ReferenceSet, Term
from tests.conftest import use_environment
from tests.neurosynth_files import SAMPLE_DIR, SAMPLE_TAL_STUDY, write_neurosynth_repository

# BrainMap's icbm_other (MNI from software other than SPM/FSL -> Talairach; Lancaster et al. 2007), the matrix
# NiMARE 0.22.1's nimare.utils.tal2mni inverts (source: BrainMap's tal2icbm_other.m, as copied in NiMARE).
NIMARE_ICBM_OTHER = np.array(
    [
        [0.9357, 0.0029, -0.0072, -1.0423],
        [-0.0065, 0.9396, -0.0726, -1.3940],
        [0.0103, 0.0752, 0.8967, 3.6475],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neurosynth-data")
    labels = write_neurosynth_repository(folder, topics=(50, 100))
    return folder, labels


def test_every_vocabulary_of_the_folder_is_found(repository):
    folder, _ = repository
    found = ns.find_vocabularies(folder)
    assert [(v.version, v.name, v.kind) for v in found] == [
        (7, "terms", "tfidf"),
        (7, "LDA50", "weight"),
        (7, "LDA100", "weight"),
    ]
    assert ns.choose_vocabulary(folder, "lda50").name == "LDA50"
    assert ns.choose_vocabulary(folder, "vocab-LDA100_source-abstract_type-weight").name == "LDA100"
    with pytest.raises(ValueError, match=r"several vocabularies; choose one with --vocab: terms \(v7\), LDA50 \(v7\)"):
        ns.choose_vocabulary(folder)
    with pytest.raises(ValueError, match="no vocabulary 'LDA400'.*found: terms"):
        ns.choose_vocabulary(folder, "LDA400")
    with pytest.raises(ValueError, match="no vocabulary of version 6"):
        ns.choose_vocabulary(folder, "terms", version=6)


def test_topics_are_named_by_number_and_top_words(repository):
    folder, labels = repository
    data = ns.load_neurosynth(folder, "LDA50")
    assert len(data.terms) == 50 and data.vocabulary.is_topics
    keys = {
        line.split("\t")[0]: line.split("\t")[2]
        for line in (folder / ("data-neurosynth_version-7_vocab-LDA50_keys.tsv")).read_text().splitlines()
    }
    for label, name in zip(labels["LDA50"], data.terms, strict=True):
        number = label.split("_")[0]
        assert name == f"{number} · {' '.join(keys[number].split()[:3])}"
        assert data.term_keys[name] == keys[number]
    # Rows of the topic weights are the metadata's studies; tf-idf terms keep their names.
    assert data.tfidf.shape == (20, 50)
    assert ns.load_neurosynth(folder, "terms").terms == labels["terms"]


@pytest.mark.parametrize("vocab", ["terms", "LDA50", "LDA100"])
def test_build_neurosynth_builds_the_vocabulary_chosen(tmp_path, repository, vocab, capsys):
    from pipeline.__main__ import main

    folder, labels = repository
    use_environment(tmp_path / "data")
    assert main(["reference", "build-neurosynth", str(folder), "--vocab", vocab]) == 0
    out = capsys.readouterr().out
    name = f"Neurosynth v7 {vocab}"
    assert f"reference set {name!r}:" in out
    data = ns.load_neurosynth(folder, vocab)
    with session_scope() as session:
        ref = session.scalar(select(ReferenceSet).where(ReferenceSet.name == name))
        built = list(session.scalars(select(Term.name).where(Term.reference_set_id == ref.id).order_by(Term.column)))
        assert ref.source == "neurosynth-v7"
        threshold = 0.05 if vocab != "terms" else 0.001
        assert f">= {threshold:g}" in ref.description
    assert built and set(built) <= set(data.terms)
    # Built in vocabulary order; the labels kept are exactly those some (not all) studies have at the threshold.
    values = data.tfidf.toarray() >= threshold
    present = [t for t, n in zip(data.terms, values.sum(axis=0), strict=True) if 0 < n < data.n_studies]
    assert built == [t for t in present if t in built] and len(built) <= len(present)
    assert main(["reference", "list", "--studies"]) == 0
    listing = capsys.readouterr().out
    for term in built:
        n = int(values[:, data.terms.index(term)].sum())
        assert f"{n:>7} studies  {term}" in listing


def test_a_folder_with_several_vocabularies_needs_vocab(data_dir, repository, capsys):
    from pipeline.__main__ import main

    folder, _ = repository
    assert main(["reference", "build-neurosynth", str(folder), "--name", "X"]) == 1
    err = capsys.readouterr().err
    assert "choose one with --vocab: terms (v7), LDA50 (v7), LDA100 (v7)" in err
    assert main(["reference", "build-neurosynth", str(folder), "--vocab", "LDA200"]) == 1
    assert "no vocabulary 'LDA200'" in capsys.readouterr().err
    with session_scope() as session:
        assert session.scalar(select(ReferenceSet).where(ReferenceSet.name == "X")) is None


def test_threshold_changes_which_studies_count(repository):
    folder, _ = repository
    data = ns.load_neurosynth(folder, "terms")
    column = data.tfidf[:, data.term_index("10")].toarray().ravel()
    assert sorted(column[column > 0].round(4).tolist()) == [0.0634, 0.0945]  # two studies have "10"
    low: dict[str, int] = {}
    high: dict[str, int] = {}
    maps_low = dict(ns.association_z_maps(data, ["10"], study_counts=low))
    maps_high = dict(ns.association_z_maps(data, ["10"], tfidf_threshold=0.08, study_counts=high))
    assert low == {"10": 2} and high == {"10": 1}
    assert not np.array_equal(maps_low["10"], maps_high["10"])


def test_topic_weights_default_to_their_own_threshold(repository):
    """Topic weights are never 0: at tf-idf's 0.001 every study has every topic and no map is left; the topic
    default (0.05) keeps the topics studies load on."""
    folder, _ = repository
    data = ns.load_neurosynth(folder, "LDA50")
    assert data.vocabulary.default_threshold() == ns.DEFAULT_TOPIC_THRESHOLD == 0.05
    left_out: list[str] = []
    counts: dict[str, int] = {}
    assert list(ns.association_z_maps(data, tfidf_threshold=0.001, left_out=left_out, study_counts=counts)) == []
    assert len(left_out) == 50 and set(counts.values()) == {20}
    counts.clear()
    kept = dict(ns.association_z_maps(data, study_counts=counts))
    weights = data.tfidf.toarray()
    for name in kept:
        assert counts[name] == int((weights[:, data.term_index(name)] >= 0.05).sum())
        assert 0 < counts[name] < 20


def test_tal2mni_brainmap_reproduces_nimare_on_a_talairach_study(repository):
    folder, _ = repository
    coords = pd.read_csv(SAMPLE_DIR / "data-neurosynth_version-7_coordinates.tsv.gz", sep="\t", dtype={"id": str})
    talairach = coords.loc[coords["id"] == SAMPLE_TAL_STUDY, ["x", "y", "z"]].to_numpy(float)
    assert len(talairach) > 3
    # NiMARE's procedure: invert icbm_other, apply to homogeneous column vectors.
    expected = (np.linalg.inv(NIMARE_ICBM_OTHER) @ np.c_[talairach, np.ones(len(talairach))].T)[:3].T

    for tal2mni in ("brainmap", "lancaster"):
        data = ns.load_neurosynth(folder, "terms", tal2mni=tal2mni)
        study = data.study_ids.index(SAMPLE_TAL_STUDY)
        peaks = data.peaks_mni[data.peak_study == study]
        assert data.peak_talairach[data.peak_study == study].all()
        if tal2mni == "brainmap":
            np.testing.assert_allclose(peaks, expected, atol=1e-9)
        else:  # Neurosynth's own transform differs by millimetres
            assert np.abs(peaks - expected).max() > 1.0
            np.testing.assert_allclose(peaks, ns.tal_to_mni(talairach, "lancaster"), atol=1e-9)
    with pytest.raises(ValueError, match="unknown Talairach transform 'spm'"):
        ns.load_neurosynth(folder, "terms", tal2mni="spm")


def test_cli_tal2mni_is_recorded_and_checked(tmp_path, repository, capsys):
    from pipeline.__main__ import main

    folder, _ = repository
    use_environment(tmp_path / "data")
    args = ["reference", "build-neurosynth", str(folder), "--vocab", "terms", "--terms", "10,action"]
    assert main([*args, "--tal2mni", "brainmap", "--threshold", "0.08", "--name", "B"]) == 0
    assert "threshold 0.08, Talairach transform brainmap" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--tal2mni", "spm", "--name", "C"])
    assert main([*args, "--threshold", "0", "--name", "D"]) == 1
    assert "--threshold must be a number > 0" in capsys.readouterr().err
    with session_scope() as session:
        assert "brainmap transform" in session.scalar(select(ReferenceSet.description).where(ReferenceSet.name == "B"))
        assert session.scalar(select(ReferenceSet).where(ReferenceSet.name == "D")) is None
