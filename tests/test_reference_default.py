"""The embedded default reference: the shipped Neurosynth v7 LDA-50 files, built and activated by ``pipeline
init``; the tests' data directories keep the synthetic 22-term set."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from pipeline.decoding import neurosynth as ns
from pipeline.decoding.reference import (
    BUILTIN_NAME,
    INIT_REFERENCE_FILE,
    NEUROSYNTH_TOPICS_NAME,
    SHIPPED_NEUROSYNTH_DIR,
    reference_term_notes,
)
from store.db import session_scope
from store.models import ReferenceSet, Term
from tests.conftest import use_environment
from tests.neurosynth_files import write_neurosynth_repository


@pytest.fixture
def no_atlases(monkeypatch):
    """``init`` also resamples the atlases; not what these tests are about."""
    monkeypatch.setattr("pipeline.anatomy.atlas.build_caches", lambda progress=None: [])


def test_the_shipped_folder_holds_the_v7_topics_with_their_licence() -> None:
    names = {p.name for p in SHIPPED_NEUROSYNTH_DIR.iterdir()}
    assert "LICENSE.txt" in names and "README.md" in names
    assert "Open Database License" in (SHIPPED_NEUROSYNTH_DIR / "LICENSE.txt").read_text(encoding="utf-8")
    assert "ODbL" in (SHIPPED_NEUROSYNTH_DIR / "README.md").read_text(encoding="utf-8")
    assert [v.label for v in ns.find_vocabularies(SHIPPED_NEUROSYNTH_DIR)] == ["LDA50 (v7)"]
    data = ns.load_neurosynth(SHIPPED_NEUROSYNTH_DIR)
    assert (data.n_studies, data.n_peaks, len(data.terms)) == (14371, 507891, 50)
    assert "17 · motor cortex hand" in data.terms
    assert data.term_keys["17 · motor cortex hand"].startswith("motor cortex hand ")
    assert sum(p.stat().st_size for p in SHIPPED_NEUROSYNTH_DIR.iterdir()) < 8_000_000


def test_init_on_a_fresh_data_dir_activates_the_topic_reference(tmp_path, monkeypatch, no_atlases, capsys) -> None:
    from pipeline.__main__ import main

    folder = tmp_path / "shipped"
    write_neurosynth_repository(folder, topics=(50,))
    for path in folder.glob("*vocab-terms*"):
        path.unlink()  # as shipped: the LDA-50 files only
    monkeypatch.delenv("INCDB_INIT_REFERENCE", raising=False)
    monkeypatch.setenv("INCDB_REFERENCE_DATA", str(folder))
    use_environment(tmp_path / "data")
    assert main(["init"]) == 0
    captured = capsys.readouterr()
    assert f"active reference set: {NEUROSYNTH_TOPICS_NAME}" in captured.out
    assert "building the reference maps: 50/50" in captured.err
    with session_scope() as session:
        ref = session.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        assert ref.name == NEUROSYNTH_TOPICS_NAME and ref.source == "neurosynth-v7"
        assert "Open Database License" in ref.description and "same licence" in ref.description
        names = list(session.scalars(select(Term.name).where(Term.reference_set_id == ref.id).order_by(Term.column)))
        notes = reference_term_notes(ref.description)
        assert list(notes) == names and all(0 < n < 20 for n, _ in notes.values())
        assert session.scalar(select(func.count(ReferenceSet.id))) == 1  # no synthetic set
    # Running it again builds nothing new.
    assert main(["init"]) == 0
    with session_scope() as session:
        assert session.scalar(select(func.count(ReferenceSet.id))) == 1


def test_init_replaces_an_active_builtin_set_by_the_topics(data_dir, tmp_path, monkeypatch, no_atlases) -> None:
    from pipeline.__main__ import main

    folder = tmp_path / "shipped"
    write_neurosynth_repository(folder, topics=(50,))
    for path in folder.glob("*vocab-terms*"):
        path.unlink()
    with session_scope() as session:
        assert session.scalar(select(ReferenceSet.name).where(ReferenceSet.active.is_(True))) == BUILTIN_NAME
    monkeypatch.setenv("INCDB_INIT_REFERENCE", "neurosynth")
    monkeypatch.setenv("INCDB_REFERENCE_DATA", str(folder))
    assert main(["init"]) == 0
    with session_scope() as session:
        assert session.scalar(select(ReferenceSet.name).where(ReferenceSet.active.is_(True))) == NEUROSYNTH_TOPICS_NAME


def test_tests_init_the_synthetic_set(tmp_path, monkeypatch, no_atlases, capsys) -> None:
    """By the environment (tests' own processes) or by the data directory's file (commands a test runs without
    its environment)."""
    from pipeline.__main__ import main

    use_environment(tmp_path / "data")
    assert main(["init"]) == 0
    assert f"active reference set: {BUILTIN_NAME} (22 terms" in capsys.readouterr().out

    monkeypatch.delenv("INCDB_INIT_REFERENCE")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / INIT_REFERENCE_FILE).write_text("builtin\n")
    use_environment(tmp_path / "other")
    assert main(["init"]) == 0
    assert f"active reference set: {BUILTIN_NAME} (22 terms" in capsys.readouterr().out


def test_a_bad_init_setting_is_refused(tmp_path, monkeypatch, no_atlases, capsys) -> None:
    from pipeline.__main__ import main

    monkeypatch.setenv("INCDB_INIT_REFERENCE", "synthetic")
    use_environment(tmp_path / "data")
    assert main(["init"]) == 1
    assert "INCDB_INIT_REFERENCE must be 'neurosynth' or 'builtin', not 'synthetic'" in capsys.readouterr().err


def test_a_topic_page_shows_its_studies_and_its_top_words(web, tmp_path, monkeypatch, no_atlases) -> None:
    from pipeline.__main__ import main
    from tests.services import Client

    folder = tmp_path / "shipped"
    write_neurosynth_repository(folder, topics=(50,))
    monkeypatch.setenv("INCDB_INIT_REFERENCE", "neurosynth")
    monkeypatch.setenv("INCDB_REFERENCE_DATA", str(folder))
    assert main(["init"]) == 0
    data = ns.load_neurosynth(folder, "LDA50")
    with session_scope() as session:
        ref = session.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        term = session.scalar(select(Term).where(Term.reference_set_id == ref.id).order_by(Term.column))
        name, slug = term.name, term.slug
    studies = int((data.tfidf[:, data.term_index(name)].toarray() >= 0.05).sum())
    text = Client(flask_app=web.server).page_layout(f"/terms/{slug}")
    assert f"The reference map rests on {studies:,} studies. Top words of the topic: {data.term_keys[name]}." in text


def test_init_without_the_shipped_files_says_what_to_do(tmp_path, monkeypatch, no_atlases, capsys) -> None:
    from pipeline.__main__ import main

    monkeypatch.setenv("INCDB_INIT_REFERENCE", "neurosynth")
    monkeypatch.setenv("INCDB_REFERENCE_DATA", str(tmp_path / "missing"))
    use_environment(tmp_path / "data")
    assert main(["init"]) == 1
    err = capsys.readouterr().err
    assert "Neurosynth data directory not found" in err and "INCDB_INIT_REFERENCE=builtin" in err
    with session_scope() as session:
        assert session.scalar(select(func.count(ReferenceSet.id))) == 0
