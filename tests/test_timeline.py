"""The movie as time, end to end: MELODIC time courses through ingest (archives and separate files), the
collection's timing, annotation sets, temporal decoding stored and served (API, CSV), the label page's data, the
command line, and the demo's designed links recovered."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from accounts.users import create_user
from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
from pipeline.curation.demo import DEMO_COLLECTIONS, DEMO_LINKS
from pipeline.curation.ingest import ingest
from pipeline.jobs.lifecycle import create_job
from pipeline.temporal.annotations import AnnotationError, add_annotation_set, decode_collection_in_time
from pipeline.temporal.decoding import label_regressors
from pipeline.temporal.events import events_by_label, read_events
from pipeline.temporal.timing import Timing
from store.db import session_scope
from store.models import AnnotationEvent, AnnotationSet, Collection, Component, Job, TemporalDecoding, TimeCourse
from tests.conftest import ROOT, use_environment
from tests.services import component_maps, write_nifti

TIMING = Timing.parse(2.0, "0:60,116:60", 2)  # two runs overlapping by 4 s, two subjects: 240 rows
EVENTS = "onset\tduration\ttrial_type\n" + "".join(
    f"{t}\t{d}\t{label}\n"
    for t, d, label in [
        (10, 8, "speech"),
        (40, 6, "speech"),
        (70, 10, "speech"),
        (130, 8, "speech"),
        (170, 6, "speech"),
        (200, 8, "speech"),
        (25, 4, "faces"),
        (95, 5, "faces"),
        (150, 4, "faces"),
        (215, 6, "faces"),
    ]
)


def speech_course(n_components: int, seed: int = 3) -> np.ndarray:
    """(rows, components): component 0 follows 'speech' through the HRF (plus noise), the rest are noise."""
    rng = np.random.default_rng(seed)
    names, x = label_regressors(
        events_by_label(read_events(EVENTS, "e")), TIMING.tr, [(r.start_s, r.volumes) for r in TIMING.runs]
    )
    speech = x[:, names.index("speech")]
    courses = rng.standard_normal((TIMING.rows, n_components)).astype(np.float32)
    courses[:, 0] += np.tile((speech - speech.mean()) / speech.std(), TIMING.subjects) * 1.5
    return courses


def melodic_zip(tmp_path: Path, n: int = 4, mix: np.ndarray | None = None, ftmix: bool = True) -> Path:
    ica = tmp_path / "ica"
    ica.mkdir(exist_ok=True)
    write_nifti(ica / "melodic_IC.nii.gz", component_maps(n, seed=5))
    np.savetxt(ica / "melodic_mix", speech_course(n) if mix is None else mix, fmt="%.7e", delimiter="  ")
    if ftmix:
        np.savetxt(ica / "melodic_FTmix", np.abs(np.random.default_rng(1).standard_normal((30, n))), fmt="%.7e")
    path = tmp_path / "group.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for member in sorted(ica.iterdir()):
            zf.write(member, f"study/groupICA.ica/{member.name}")
    return path


def new_collection(
    files: list[Path], timing: Timing | None = TIMING, movie: str = "Time Movie", annotations: str | None = EVENTS
) -> tuple[int, int]:
    """(collection id, ingest job id) of a new collection with these uploads (and the movie's annotations)."""
    with session_scope() as session:
        user = create_user(session, f"tc{np.random.default_rng().integers(1e9)}@example.org", "a long password 1")
        film = get_or_create_movie(session, movie)
        if annotations and not session.scalar(select(AnnotationSet.id).where(AnnotationSet.movie_id == film.id)):
            add_annotation_set(session, user, film, "Test events", annotations, "events.tsv")
        collection = create_collection(session, user, film, f"Collection {np.random.default_rng().integers(1e9)}")
        collection.timing = timing.to_dict() if timing else None
        for path in files:
            add_upload(session, collection, path, path.name)
        return collection.id, create_job(session, "ingest", collection.id, user.id).id


def test_a_melodic_archive_gives_linked_time_courses_and_temporal_decodings(data_dir, tmp_path):
    collection_id, job_id = new_collection([melodic_zip(tmp_path)])
    result = ingest(job_id)
    assert result.components == 4 and not result.errors, result.errors
    with session_scope() as session:
        course = session.scalar(select(TimeCourse).where(TimeCourse.collection_id == collection_id))
        assert (course.rows, course.columns, course.mix_file) == (240, 4, "group.zip/study/groupICA.ica/melodic_mix")
        assert course.spectra_key is not None
        comps = session.scalars(
            select(Component).where(Component.collection_id == collection_id).order_by(Component.volume_index)
        ).all()
        assert all(c.timecourse_id == course.id for c in comps)
        first = comps[0]
        top = session.scalars(
            select(TemporalDecoding).where(TemporalDecoding.component_id == first.id).order_by(TemporalDecoding.rank)
        ).all()
        assert [t.label for t in top] == ["speech", "faces"] and top[0].q < 0.05 and top[0].r > 0.3
        others = session.scalars(
            select(TemporalDecoding).where(
                TemporalDecoding.component_id.in_([c.id for c in comps[1:]]), TemporalDecoding.label == "speech"
            )
        ).all()
        assert max(t.r for t in others) < top[0].r
        uuid = first.uuid

    import app as app_module

    client = app_module.server.test_client()
    body = client.get(f"/api/components/{uuid}/timecourse").get_json()
    assert body["subjects"] == 2 and body["tr"] == 2.0 and len(body["values"]) == 120
    assert body["movie_time_s"][:2] == [0.0, 2.0] and body["movie_time_s"][60] == 116.0  # run 2 overlaps run 1
    mix = np.loadtxt(tmp_path / "ica" / "melodic_mix")[:, 0]
    assert np.allclose(body["values"], mix.reshape(2, -1).mean(axis=0), atol=1e-5)
    assert np.allclose(body["sd"], mix.reshape(2, -1).std(axis=0), atol=1e-5)
    temporal = client.get(f"/api/components/{uuid}/temporal").get_json()["items"]
    assert temporal[0]["label"] == "speech" and temporal[0]["annotation"] == "Test events"
    csv_rows = client.get(f"/components/{uuid}/timecourse.csv").get_data(as_text=True).splitlines()
    assert csv_rows[0] == "subject,movie_time_s,value" and len(csv_rows) == 241
    labelled = client.get("/api/labels/speech").get_json()["items"]
    assert uuid in [r["uuid"] for r in labelled]
    assert client.get("/files/labels/speech.nii.gz").status_code == 200
    assert client.get("/api/labels/nothing-like-this").get_json()["items"] == []


def test_separately_uploaded_files_and_a_table_are_matched(data_dir, tmp_path):
    maps = write_nifti(tmp_path / "task.nii.gz", component_maps(3, seed=8))
    table = tmp_path / "task_timecourses.tsv"
    np.savetxt(table, speech_course(3), delimiter="\t", header="\t".join(["a", "b", "c"]), comments="", fmt="%.5f")
    collection_id, job_id = new_collection([maps, table])
    result = ingest(job_id)
    assert not result.errors, result.errors
    with session_scope() as session:
        assert (
            session.scalar(
                select(func.count(Component.id)).where(
                    Component.collection_id == collection_id, Component.timecourse_id.is_not(None)
                )
            )
            == 3
        )


def test_mismatched_columns_are_refused_by_name_and_change_nothing(data_dir, tmp_path):
    collection_id, job_id = new_collection([melodic_zip(tmp_path, n=4, mix=speech_course(3))])
    result = ingest(job_id)
    assert result.components == 4  # the maps are kept
    message = "\n".join(result.errors)
    assert "melodic_mix" in message and "3 columns" in message and "4 volumes" in message
    with session_scope() as session:
        assert session.scalar(select(func.count(TimeCourse.id)).where(TimeCourse.collection_id == collection_id)) == 0
        assert session.get(Job, job_id).error == message


def test_rows_that_do_not_fit_the_timing_are_refused(data_dir, tmp_path):
    wrong = Timing.parse(2.0, "0:60,116:60", 3)  # 360 rows expected, the file has 240
    _, job_id = new_collection([melodic_zip(tmp_path)], timing=wrong)
    message = "\n".join(ingest(job_id).errors)
    assert "240 rows" in message and "360" in message


def test_time_courses_need_a_timing(data_dir, tmp_path):
    _, job_id = new_collection([melodic_zip(tmp_path)], timing=None)
    assert any("no timing yet" in e for e in ingest(job_id).errors)


def test_a_non_numeric_melodic_mix_is_refused_at_upload(data_dir, tmp_path):
    import app as app_module
    from tests.services import Client

    bad = tmp_path / "melodic_mix"
    bad.write_text("1.0  2.0\n3.0  abc\n")
    with session_scope() as session:
        user = create_user(session, "up@example.org", "a long password 1")
        collection = create_collection(session, user, get_or_create_movie(session, "Up"), "Uploads")
        from pipeline.curation.catalog import confirm_license

        confirm_license(session, collection, user)
        slug = collection.slug
    client = Client(flask_app=app_module.server)
    client.sign_in("up@example.org", "a long password 1")
    response = client.upload(slug, bad)
    assert response.status_code == 422 and "line 2" in response.json()["error"], response.text
    good = tmp_path / "x" / "melodic_mix"
    good.parent.mkdir()
    np.savetxt(good, speech_course(2), fmt="%.7e")
    response = client.upload(slug, good)
    assert response.status_code == 200 and response.json()["maps"] == 0
    assert "240 rows" in json.dumps(response.json()["warnings"])


@pytest.mark.parametrize(
    "tsv, fragment",
    [
        ("onset\tduration\ttrial_type\n1\t-2\tspeech\n", "line 2"),
        ("duration\ttrial_type\n1\tspeech\n", "onset"),
        ("", "empty"),
    ],
)
def test_bad_annotation_files_get_messages_and_change_nothing(data_dir, tsv, fragment):
    with session_scope() as session:
        movie = get_or_create_movie(session, "Annotated")
        with pytest.raises(AnnotationError, match=fragment):
            add_annotation_set(session, None, movie, "Bad", tsv, "bad.tsv")
    with session_scope() as session:
        assert session.scalar(select(func.count(AnnotationSet.id))) == 0
        assert session.scalar(select(func.count(AnnotationEvent.id))) == 0


def test_annotation_names_are_unique_per_movie(data_dir):
    with session_scope() as session:
        movie = get_or_create_movie(session, "Annotated")
        add_annotation_set(session, None, movie, "Events", EVENTS, "e.tsv")
        with pytest.raises(AnnotationError, match="already"):
            add_annotation_set(session, None, movie, "Events", EVENTS, "e.tsv")


def test_deleting_a_set_removes_its_decodings(data_dir, tmp_path):
    from pipeline.temporal.annotations import delete_annotation_set

    collection_id, job_id = new_collection([melodic_zip(tmp_path)])
    ingest(job_id)
    with session_scope() as session:
        admin = create_user(session, "root@example.org", "a long password 1", role="admin")
        set_id = session.scalar(select(AnnotationSet.id))
        delete_annotation_set(session, admin, set_id)
    assert decode_collection_in_time(collection_id) == 0  # no annotations left
    with session_scope() as session:
        assert session.scalar(select(func.count(TemporalDecoding.id))) == 0


def test_the_demo_recovers_its_designed_links(demo_dir):
    specs = {s.slug: s for s in DEMO_COLLECTIONS}
    recovered = missed = false_hits = unlinked = 0
    with session_scope() as session:
        for comp_id, slug, volume in session.execute(
            select(Component.id, Collection.slug, Component.volume_index).join(Collection)
        ):
            spec = specs[slug]
            wanted = DEMO_LINKS.get(spec.terms[volume % len(spec.terms)])
            top = session.scalar(
                select(TemporalDecoding).where(TemporalDecoding.component_id == comp_id, TemporalDecoding.rank == 1)
            )
            if wanted:
                recovered += top.label == wanted and top.q < 0.05
                missed += not (top.label == wanted and top.q < 0.05)
            else:
                unlinked += 1
                false_hits += top.q < 0.05
    assert recovered >= 30 and missed == 0
    assert unlinked >= 20 and false_hits <= unlinked // 5


def test_command_line_timing_and_annotations(tmp_path, reference_template):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(reference_template, data)
    use_environment(data)
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("INCDB_")},
        "INCDB_DATA_DIR": str(data),
        "INCDB_PASSWORD": "a long password 1",
    }

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )

    assert cli("user", "create", "admin@example.org", "--admin").returncode == 0
    archive = melodic_zip(tmp_path)
    refused = cli(
        "ingest", str(archive), "--movie", "Cli Movie", "--collection", "C", "--tr", "2", "--runs", "0:60,abc:60"
    )
    assert refused.returncode == 1 and "Run 2" in refused.stderr
    done = cli(
        "ingest",
        str(archive),
        "--movie",
        "Cli Movie",
        "--collection",
        "C",
        "--tr",
        "2",
        "--runs",
        "0:60,116:60",
        "--subjects",
        "2",
    )
    assert done.returncode == 0, done.stderr
    events = tmp_path / "events.tsv"
    events.write_text(EVENTS)
    added = cli("annotations", "import", "Cli Movie", str(events), "--name", "Speech and faces")
    assert added.returncode == 0, added.stderr
    assert "10 events, 2 label(s)" in added.stdout and "4 component(s) decoded" in added.stdout
    bad = tmp_path / "bad.tsv"
    bad.write_text("onset\tduration\ttrial_type\n1\t-2\tspeech\n")
    refused = cli("annotations", "import", "Cli Movie", str(bad), "--name", "Bad")
    assert refused.returncode == 1 and "line 2" in refused.stderr


def test_adding_a_set_runs_a_temporal_job_on_the_shared_lifecycle(data_dir, tmp_path):
    from pipeline.jobs.tasks import run_authorized_job
    from pipeline.temporal.annotations import start_temporal_job

    collection_id, job_id = new_collection([melodic_zip(tmp_path)], annotations=None)
    ingest(job_id)
    with session_scope() as session:
        assert session.scalar(select(func.count(TemporalDecoding.id))) == 0  # no annotations yet
        collection = session.get(Collection, collection_id)
        owner = collection.owner
        add_annotation_set(session, owner, collection.movie, "Later events", EVENTS, "later.tsv")
        job = start_temporal_job(session, owner, collection.movie)
        token, owner_id = job.token, owner.id
        assert start_temporal_job(session, owner, collection.movie).token == token  # a queued one is reused
    summary = run_authorized_job(token, owner_id)
    assert (summary["kind"], summary["status"]) == ("temporal", "succeeded"), summary
    assert "4 component(s)" in summary["message"]
    with session_scope() as session:
        assert session.scalar(select(func.count(TemporalDecoding.id))) == 4 * 2  # 4 components x 2 labels
