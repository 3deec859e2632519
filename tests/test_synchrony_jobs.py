"""The synchrony job end to end: a 3-subject MELODIC collection gets ISC rows after its ingest, the ISFC and the
windowed ISC as artifacts, rows by annotation label and moments; a one-subject collection gets a plain note and
no NaN; ``python -m pipeline isc`` recomputes.

The arithmetic is ``pipeline.synchrony.isc``, tested in its own files; these tests check what is stored and served.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from pipeline.temporal.timing import Timing
from store.db import session_scope
from store.models import (
    Collection,
    CollectionStatus,
    CollectionSynchrony,
    Component,
    ComponentISC,
    Job,
    SynchronyLabel,
    SynchronyMoment,
)

SYNC_TIMING = Timing.parse(2.0, "0:60,116:60", 3)  # two runs, three subjects: 360 rows
ONE_TIMING = Timing.parse(2.0, "0:60,116:60", 1)
SHARED = (1.5, 0.0, 0.6, 1.0)  # shared signal of each component, in units of its noise
SYNC_EVENTS = "onset\tduration\ttrial_type\n" + "".join(
    f"{t}\t{d}\tspeech\n" for t, d in [(10, 20), (60, 20), (130, 20), (190, 20)]
)


# --- data --------------------------------------------------------------------------------------------------------


def shared_mix(timing: Timing = SYNC_TIMING, shared=SHARED, seed: int = 11) -> np.ndarray:
    """(rows, components) time courses: each component is a signal common to every subject times ``shared``,
    plus independent noise per subject (subject-major blocks, as MELODIC's temporal concatenation)."""
    rng = np.random.default_rng(seed)
    t = timing.rows_per_subject
    common = rng.standard_normal((t, len(shared)))
    blocks = [common * np.asarray(shared) + rng.standard_normal((t, len(shared))) for _ in range(timing.subjects)]
    return np.concatenate(blocks).astype(np.float32)


def make_collection(tmp_path: Path, timing: Timing, mix: np.ndarray, movie: str = "Sync Movie") -> tuple[int, int]:
    from tests.test_timeline import melodic_zip, new_collection

    return new_collection(
        [melodic_zip(tmp_path, n=mix.shape[1], mix=mix)], timing=timing, movie=movie, annotations=SYNC_EVENTS
    )


def isc_rows(collection_id: int) -> list[ComponentISC]:
    with session_scope() as session:
        rows = session.scalars(
            select(ComponentISC)
            .join(Component, Component.id == ComponentISC.component_id)
            .where(ComponentISC.collection_id == collection_id)
            .order_by(Component.volume_index)
        ).all()
        session.expunge_all()
        return list(rows)


# --- tests ---------------------------------------------------------------------------------------------------


def test_ingest_of_a_three_subject_collection_computes_and_stores_its_synchrony(data_dir, tmp_path):
    from pipeline.jobs.tasks import run_job
    from store.artifacts import load_vector

    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, shared_mix())
    run_job(job_id)
    with session_scope() as session:
        jobs = session.scalars(select(Job).where(Job.collection_id == collection_id).order_by(Job.id)).all()
        assert [(j.kind, str(j.status)) for j in jobs] == [("ingest", "succeeded"), ("synchrony", "succeeded")]
        assert session.get(Collection, collection_id).status == CollectionStatus.READY
        summary = session.get(CollectionSynchrony, collection_id)
        n_components = len(summary.components)
        isfc_key, windowed_key, window_s = summary.isfc_key, summary.windowed_key, summary.window_s
        n_labels = session.query(SynchronyLabel).filter_by(collection_id=collection_id).count()
        n_moments = session.query(SynchronyMoment).filter_by(collection_id=collection_id).count()
    rows = isc_rows(collection_id)
    assert n_components == len(rows) == 4
    loo = [r.isc for r in rows]
    assert all(r.n_subjects == 3 and len(r.subjects) == 3 and r.n_resamples >= 1000 for r in rows)
    assert loo[0] > loo[3] > loo[2] > loo[1], loo  # the designed shared fractions, in order
    assert rows[0].p < 0.01 and rows[0].q < 0.05 and rows[1].p > 0.01
    assert all(r.isc_pairwise is not None and -1 <= r.isc_pairwise <= 1 for r in rows)
    isfc = load_vector(isfc_key)
    assert isfc.shape == (4, 4) and np.allclose(isfc, isfc.T, atol=1e-6)
    windowed = load_vector(windowed_key)
    assert window_s == 30.0 and windowed.shape[1] == 5  # column 0: movie time of each window's centre
    assert windowed[0, 0] == pytest.approx(14.0)  # a 15-volume window of run 1 centred on its 8th volume
    assert windowed[:, 0].max() < SYNC_TIMING.end_s and windowed[:, 0].min() >= 0
    assert n_labels == 4  # "speech" for each component
    assert n_moments < 10


def test_a_one_subject_collection_says_so_plainly_and_has_no_nan(data_dir, tmp_path):
    from pipeline.jobs.tasks import run_job
    from pipeline.synchrony.jobs import ONE_SUBJECT_NOTE, compute_collection_synchrony

    collection_id, job_id = make_collection(tmp_path, ONE_TIMING, shared_mix(ONE_TIMING))
    run_job(job_id)
    with session_scope() as session:  # no synchrony job for one subject
        kinds = session.scalars(select(Job.kind).where(Job.collection_id == collection_id)).all()
        assert kinds == ["ingest"]
    assert compute_collection_synchrony(collection_id) == 4
    rows = isc_rows(collection_id)
    assert all(r.isc is None and r.isc_pairwise is None and r.p is None and r.note == ONE_SUBJECT_NOTE for r in rows)


def test_a_constant_subject_gives_a_note_not_nan(data_dir, tmp_path):
    from pipeline.synchrony.jobs import compute_collection_synchrony

    mix = shared_mix()
    mix[SYNC_TIMING.rows_per_subject : 2 * SYNC_TIMING.rows_per_subject, 2] = 0.5  # subject 2, component 3
    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, mix)
    from pipeline.curation.ingest import ingest

    ingest(job_id)
    compute_collection_synchrony(collection_id, n_resamples=50)
    rows = isc_rows(collection_id)
    assert "Subject 2" in rows[2].note and "constant" in rows[2].note
    assert rows[2].subjects[1] is None
    stored = [r.isc for r in rows] + [r.isc_pairwise for r in rows] + [v for r in rows for v in r.subjects]
    assert not any(isinstance(v, float) and np.isnan(v) for v in stored)
    assert rows[0].note == ""


def test_the_command_line_recomputes_one_collection_or_all(data_dir, tmp_path):
    from pipeline.__main__ import main
    from pipeline.curation.ingest import ingest

    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, shared_mix())
    ingest(job_id)  # ingest alone: no synchrony yet
    assert isc_rows(collection_id) == []
    with session_scope() as session:
        slug = session.get(Collection, collection_id).slug
    assert main(["isc", "--collection", slug, "--resamples", "20", "--window", "20"]) == 0
    rows = isc_rows(collection_id)
    assert len(rows) == 4 and all(r.n_resamples == 20 for r in rows)
    with session_scope() as session:
        assert session.get(CollectionSynchrony, collection_id).window_s == 20.0
        kinds = session.scalars(select(Job.kind).where(Job.collection_id == collection_id)).all()
        assert kinds == ["ingest", "synchrony"]
    assert main(["isc", "--resamples", "20"]) == 0  # every collection with time courses: the same rows again
    assert [r.isc for r in isc_rows(collection_id)] == pytest.approx([r.isc for r in rows])


def test_the_command_line_refuses_bad_input_and_changes_nothing(data_dir, tmp_path, capsys):
    from pipeline.__main__ import main

    assert main(["isc", "--collection", "no-such-collection"]) == 1
    assert 'No collection has the slug "no-such-collection"' in capsys.readouterr().err
    assert main(["isc", "--resamples", "0"]) == 1
    assert "--resamples" in capsys.readouterr().err
    with session_scope() as session:
        assert session.query(Job).filter_by(kind="synchrony").count() == 0


def test_a_failed_synchrony_run_leaves_the_collection_ready(data_dir, tmp_path, monkeypatch):
    from pipeline.jobs.tasks import run_job
    from pipeline.synchrony import jobs

    def broken(*args, **kwargs):
        raise ValueError("the arithmetic broke")

    monkeypatch.setattr(jobs, "compute_collection_synchrony", broken)
    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, shared_mix())
    run_job(job_id)
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.collection_id == collection_id, Job.kind == "synchrony"))
        assert str(job.status) == "failed" and "the arithmetic broke" in job.error
        assert session.get(Collection, collection_id).status == CollectionStatus.READY


def test_json_of_the_stored_rows_has_no_nan(data_dir, tmp_path):
    from pipeline.synchrony.jobs import compute_collection_synchrony

    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, shared_mix())
    from pipeline.curation.ingest import ingest

    ingest(job_id)
    compute_collection_synchrony(collection_id, n_resamples=20)
    for row in isc_rows(collection_id):
        json.dumps([row.isc, row.isc_pairwise, row.p, row.q, row.subjects], allow_nan=False)


def test_a_stretch_shared_by_every_component_is_a_moment_with_the_labels_active_then(data_dir, tmp_path):
    from pipeline.curation.ingest import ingest
    from pipeline.synchrony.jobs import compute_collection_synchrony

    rng = np.random.default_rng(5)
    t = SYNC_TIMING.rows_per_subject
    common = rng.standard_normal((t, 4))
    stretch = np.zeros((t, 1))
    stretch[25:45] = 3.0  # volumes 25-44 of run 1: movie time 50-88 s, where "speech" runs from 60 to 80 s
    mix = np.concatenate([common * stretch + rng.standard_normal((t, 4)) for _ in range(3)]).astype(np.float32)
    collection_id, job_id = make_collection(tmp_path, SYNC_TIMING, mix)
    ingest(job_id)
    compute_collection_synchrony(collection_id, n_resamples=50)
    with session_scope() as session:
        moments = session.scalars(select(SynchronyMoment).where(SynchronyMoment.collection_id == collection_id)).all()
        found = [(m.time_s, m.labels) for m in moments]
    assert found, "no moment of synchrony found"
    assert all(50 <= time_s <= 88 for time_s, _ in found), found
    assert all(labels == (["speech"] if 60 <= time_s < 80 else []) for time_s, labels in found), found


# --- rows, files and inputs stay together ------------------------------------------------------------------------


def ingested(tmp_path, timing: Timing = SYNC_TIMING, movie: str = "Sync Movie", n_resamples: int = 20) -> int:
    """A processed collection with its synchrony computed; its id."""
    from pipeline.curation.ingest import ingest
    from pipeline.synchrony.jobs import compute_collection_synchrony

    collection_id, job_id = make_collection(tmp_path, timing, shared_mix(timing), movie=movie)
    ingest(job_id)
    compute_collection_synchrony(collection_id, n_resamples=n_resamples)
    return collection_id


def stored_labels(collection_id: int) -> tuple[set[str], list[list[str]]]:
    with session_scope() as session:
        labels = set(session.scalars(select(SynchronyLabel.label).where(SynchronyLabel.collection_id == collection_id)))
        moments = session.scalars(select(SynchronyMoment.labels).where(SynchronyMoment.collection_id == collection_id))
        return labels, [list(m or []) for m in moments]


def rename_events(movie_id: int, label: str) -> None:
    from sqlalchemy import update

    from store.models import AnnotationEvent, AnnotationSet

    with session_scope() as session:
        sets = select(AnnotationSet.id).where(AnnotationSet.movie_id == movie_id)
        session.execute(update(AnnotationEvent).where(AnnotationEvent.set_id.in_(sets)).values(label=label))


def test_a_run_that_fails_before_its_rows_leaves_the_rows_and_their_files_as_they_were(data_dir, tmp_path, monkeypatch):
    from pipeline.synchrony import jobs
    from store.artifacts import load_vector

    collection_id = ingested(tmp_path)
    with session_scope() as session:
        summary = session.get(CollectionSynchrony, collection_id)
        keys = (summary.isfc_key, summary.windowed_key)
    before = [np.array(load_vector(key)) for key in keys]

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(jobs, "_replace", broken)
    with pytest.raises(RuntimeError):
        jobs.compute_collection_synchrony(collection_id, n_resamples=20, window_s=20.0)  # other windows
    with session_scope() as session:
        summary = session.get(CollectionSynchrony, collection_id)
        assert (summary.isfc_key, summary.windowed_key) == keys and summary.window_s == 30.0
    after = [np.array(load_vector(key)) for key in keys]
    assert [a.shape for a in after] == [b.shape for b in before]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(after, before))


def test_a_new_run_names_new_files_and_leaves_the_old_ones_to_the_sweep(data_dir, tmp_path):
    from pipeline.jobs.sweep import referenced_keys
    from pipeline.synchrony.jobs import compute_collection_synchrony

    collection_id = ingested(tmp_path)
    with session_scope() as session:
        first = session.get(CollectionSynchrony, collection_id).windowed_key
    compute_collection_synchrony(collection_id, n_resamples=20, window_s=20.0)
    with session_scope() as session:
        second = session.get(CollectionSynchrony, collection_id).windowed_key
        referenced = referenced_keys(session)
    assert first != second and second in referenced and first not in referenced
    assert first.startswith("synchrony/")


def test_rows_by_label_use_the_events_as_they_are_when_the_rows_are_written(data_dir, tmp_path, monkeypatch):
    from pipeline.synchrony import jobs

    collection_id = ingested(tmp_path)
    with session_scope() as session:
        movie_id = session.get(Collection, collection_id).movie_id
    windowed = jobs._windowed

    def annotations_change_meanwhile(*args, **kwargs):
        found = windowed(*args, **kwargs)
        rename_events(movie_id, "dialogue")  # an annotation change committed while the ISC is computed
        return found

    monkeypatch.setattr(jobs, "_windowed", annotations_change_meanwhile)
    jobs.compute_collection_synchrony(collection_id, n_resamples=20)
    labels, moments = stored_labels(collection_id)
    assert labels == {"dialogue"}
    assert all(set(m) <= {"dialogue"} for m in moments), moments


def test_an_ingest_after_which_the_collection_has_no_isc_removes_the_rows_of_before(data_dir, tmp_path):
    from pipeline.jobs.lifecycle import create_job
    from pipeline.synchrony.jobs import run_after_ingest

    collection_id = ingested(tmp_path)
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        collection.timing = ONE_TIMING.to_dict()  # one subject now
        job = create_job(session, "ingest", collection_id)
        job.status = "succeeded"
        job_id = job.id
    assert run_after_ingest(job_id) is None
    assert isc_rows(collection_id) == []
    with session_scope() as session:
        for model in (CollectionSynchrony, SynchronyLabel, SynchronyMoment):
            assert session.query(model).filter_by(collection_id=collection_id).count() == 0, model


def test_a_new_timing_clears_the_synchrony_and_a_new_movie_takes_it_along(data_dir, tmp_path):
    from pipeline.curation.catalog import get_or_create_movie, update_collection
    from pipeline.synchrony.reads import movie_synchrony

    collection_id = ingested(tmp_path, movie="Old Sync Movie")
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        old_slug = collection.movie.slug
        n_moments = session.query(SynchronyMoment).filter_by(collection_id=collection_id).count()
        new_movie = get_or_create_movie(session, "New Sync Movie")
        update_collection(session, collection, movie=new_movie)
        new_id, new_slug = new_movie.id, new_movie.slug
    with session_scope() as session:
        old = movie_synchrony(session, None, old_slug)
        new = movie_synchrony(session, None, new_slug)
        moved = session.scalars(select(SynchronyMoment).where(SynchronyMoment.collection_id == collection_id)).all()
        assert moved and all(m.movie_id == new_id and m.labels == [] for m in moved)
    assert old is None or (old["moments"] == [] and old["by_label"] == [])  # nothing of it left on the old movie
    assert new["by_label"] == [] and len(new["moments"]) == n_moments  # the new movie has no annotations
    assert len(isc_rows(collection_id)) == 4  # the ISC itself does not depend on the movie

    with session_scope() as session:
        update_collection(
            session, session.get(Collection, collection_id), timing=Timing.parse(2.0, "0:120", 3).to_dict()
        )
    assert isc_rows(collection_id) == []
    with session_scope() as session:
        assert session.get(CollectionSynchrony, collection_id) is None
        assert session.query(SynchronyMoment).filter_by(collection_id=collection_id).count() == 0


def test_a_synchrony_job_is_not_the_collections_active_job(data_dir, tmp_path):
    from pipeline.jobs.lifecycle import active_job, create_job, start_ingest_job
    from store.models import User

    collection_id, ingest_id = make_collection(tmp_path, SYNC_TIMING, shared_mix())
    with session_scope() as session:
        session.get(Job, ingest_id).status = "succeeded"
        collection = session.get(Collection, collection_id)
        collection.license_confirmed_at = collection.created
        synchrony = create_job(session, "synchrony", collection_id).id
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        assert active_job(session, collection_id) is None
        job = start_ingest_job(session, session.get(User, collection.owner_id), collection)
        assert job.id != synchrony and job.kind == "ingest"


def test_rows_by_label_follow_the_events_when_the_temporal_decoding_fails(data_dir, tmp_path, monkeypatch):
    from pipeline.jobs.lifecycle import create_job
    from pipeline.jobs.tasks import run_job
    from pipeline.temporal import annotations

    collection_id = ingested(tmp_path)
    with session_scope() as session:
        movie_id = session.get(Collection, collection_id).movie_id
        job = create_job(session, "temporal")
        job.movie_id = movie_id
        job_id = job.id
    rename_events(movie_id, "dialogue")

    def broken(*args, **kwargs):
        raise ValueError("temporal decoding broke")

    monkeypatch.setattr(annotations, "decode_collection_in_time", broken)
    with pytest.raises(ValueError):
        run_job(job_id)
    labels, _ = stored_labels(collection_id)
    assert labels == {"dialogue"}


def test_a_moment_is_labelled_as_the_rows_by_label_count_a_window_in_an_event_even_a_zero_length_one():
    from pipeline.synchrony import isc, jobs

    times = np.arange(0.0, 40.0, 2.0)
    spans = [(21.0, 0.0), (5.0, 4.0)]  # a cut at 21 s; a 4 s event from 5 s
    step = jobs._window_step(times)
    marked = [bool(jobs._active_labels({(1, "cut"): spans}, float(t), step)) for t in times]
    assert marked == [bool(v) for v in isc._event_mask(times, spans)]
    assert marked[11]  # the window centred at 22 s sees the cut
