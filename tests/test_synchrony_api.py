"""The synchrony routes: shapes of the JSON, the CSV downloads, and the visibility rule (a private collection's ISC,
ISFC and movie synchrony are 404 to strangers and anonymous visitors, and served to their owner)."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from pipeline.curation.ingest import ingest
from store.db import session_scope
from store.models import Collection, Component, User
from tests.test_synchrony_jobs import ONE_TIMING, SYNC_TIMING, make_collection, shared_mix


def client_for(server, user_id: int | None):
    client = server.test_client()
    if user_id is None:
        return client
    with session_scope() as db:
        version = db.get(User, user_id).session_version
    with client.session_transaction() as session:
        session["_user_id"] = f"{user_id}:{version}"
        session["_fresh"] = True
    return client


def computed_collection(tmp_path, timing=SYNC_TIMING, movie="Sync Movie", private=False) -> dict:
    from pipeline.synchrony.jobs import compute_collection_synchrony

    collection_id, job_id = make_collection(tmp_path, timing, shared_mix(timing), movie=movie)
    ingest(job_id)
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
        if private:
            collection.visibility = "private"
        uuids = session.scalars(
            select(Component.uuid).where(Component.collection_id == collection_id).order_by(Component.volume_index)
        ).all()
        info = {"id": collection_id, "slug": collection.slug, "movie": collection.movie.slug, "uuids": list(uuids)}
        info["owner"] = collection.owner_id
    compute_collection_synchrony(collection_id, n_resamples=50)
    return info


@pytest.fixture
def server(data_dir):
    """The Flask side alone (the routes under test need no Dash page)."""
    import flask

    import web
    from store.config import get_settings

    server = flask.Flask("synchrony-test")
    server.config.update(TESTING=True, SECRET_KEY=get_settings().secret_key)
    web.register(server)
    return server


def test_component_isc_collection_isfc_and_movie_synchrony_have_their_shapes(server, tmp_path):
    c = computed_collection(tmp_path)
    anon = client_for(server, None)
    body = anon.get(f"/api/components/{c['uuids'][0]}/isc").get_json()
    keys = {"isc", "isc_pairwise", "p", "q", "subjects", "window_s", "movie_time_s", "windowed", "note"}
    assert keys <= set(body)
    assert body["isc"] > 0.3 and 0 < body["p"] <= 1 and 0 < body["q"] <= 1 and len(body["subjects"]) == 3
    assert body["window_s"] == 30.0 and len(body["movie_time_s"]) == len(body["windowed"]) > 0
    assert body["movie_time_s"] == sorted(body["movie_time_s"][:40]) + body["movie_time_s"][40:]

    isfc = anon.get(f"/api/collections/{c['slug']}/isfc").get_json()
    assert isfc["components"] == c["uuids"]
    assert len(isfc["matrix"]) == 4 and all(len(row) == 4 for row in isfc["matrix"])
    assert isfc["matrix"][0][1] == pytest.approx(isfc["matrix"][1][0])

    movie = anon.get(f"/api/movies/{c['movie']}/synchrony").get_json()
    assert set(movie) >= {"moments", "by_label"}
    speech = [r for r in movie["by_label"] if r["label"] == "speech"]
    assert {r["component"] for r in speech} == set(c["uuids"])
    assert all({"inside", "outside", "p", "annotation", "collection"} <= set(r) for r in speech)


def test_csv_downloads_carry_the_same_numbers(server, tmp_path):
    c = computed_collection(tmp_path)
    anon = client_for(server, None)
    uuid = c["uuids"][0]
    body = anon.get(f"/api/components/{uuid}/isc").get_json()
    response = anon.get(f"/api/components/{uuid}/isc.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    lines = [line for line in response.get_data(as_text=True).splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    subjects = [float(r["r"]) for r in rows if r["part"] == "subject"]
    windows = [r for r in rows if r["part"] == "window"]
    assert subjects == pytest.approx(body["subjects"], abs=1e-5)
    assert len(windows) == len(body["windowed"]) and float(windows[0]["movie_time_s"]) == body["movie_time_s"][0]

    isfc = anon.get(f"/api/collections/{c['slug']}/isfc.csv").get_data(as_text=True).splitlines()
    table = list(csv.reader(isfc))
    assert table[0] == ["component", *c["uuids"]] and len(table) == 5
    matrix = anon.get(f"/api/collections/{c['slug']}/isfc").get_json()["matrix"]
    assert [float(x) for x in table[1][1:]] == pytest.approx(matrix[0], abs=1e-5)

    movie = anon.get(f"/api/movies/{c['movie']}/synchrony.csv").get_data(as_text=True).splitlines()
    rows = list(csv.DictReader(io.StringIO("\n".join(movie))))
    assert sum(r["part"] == "label" for r in rows) == 4 and all(
        r["label"] == "speech" for r in rows if r["part"] == "label"
    )


def test_a_private_collections_synchrony_is_404_to_strangers_and_served_to_its_owner(server, tmp_path):
    from accounts.users import create_user

    c = computed_collection(tmp_path, movie="Private Sync Movie", private=True)
    with session_scope() as session:
        stranger = create_user(session, "stranger@example.org", "a long password 1").id
    uuid = c["uuids"][0]
    urls = [
        f"/api/components/{uuid}/isc",
        f"/api/components/{uuid}/isc.csv",
        f"/api/collections/{c['slug']}/isfc",
        f"/api/collections/{c['slug']}/isfc.csv",
        f"/api/movies/{c['movie']}/synchrony",
        f"/api/movies/{c['movie']}/synchrony.csv",
    ]
    for who in (None, stranger):
        client = client_for(server, who)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 404, (who, url)
            assert uuid not in response.get_data(as_text=True)
    owner = client_for(server, c["owner"])
    for url in urls:
        assert owner.get(url).status_code == 200, url
    assert owner.get(urls[0]).get_json()["isc"] is not None


def test_a_one_subject_component_answers_with_a_note_and_nulls(server, tmp_path):
    from pipeline.synchrony.jobs import ONE_SUBJECT_NOTE

    c = computed_collection(tmp_path, timing=ONE_TIMING, movie="Solo Movie")
    anon = client_for(server, None)
    response = anon.get(f"/api/components/{c['uuids'][0]}/isc")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "NaN" not in text
    body = response.get_json()
    assert body["note"] == ONE_SUBJECT_NOTE
    assert body["isc"] is None and body["isc_pairwise"] is None and body["subjects"] == [] and body["windowed"] == []
    assert anon.get(f"/api/collections/{c['slug']}/isfc").get_json()["matrix"] == []


def test_unknown_things_are_404(server):
    anon = client_for(server, None)
    for url in (
        "/api/components/not-a-uuid/isc",
        "/api/collections/nothing/isfc",
        "/api/movies/nothing/synchrony",
        "/api/movies/nothing/synchrony.csv",
    ):
        assert anon.get(url).status_code == 404


def test_a_movies_windowed_isc_for_the_timeline_is_bounded_and_follows_visibility(data_dir, tmp_path):
    from pipeline.synchrony.reads import movie_windowed

    (tmp_path / "public").mkdir()
    (tmp_path / "private").mkdir()
    c = computed_collection(tmp_path / "public", movie="Windowed Movie")
    hidden = computed_collection(tmp_path / "private", movie="Hidden Windowed Movie", private=True)
    with session_scope() as session:
        found = movie_windowed(session, None, c["movie"])
        small = movie_windowed(session, None, c["movie"], max_windows=10)
        assert movie_windowed(session, None, hidden["movie"]) is None
    assert len(found) == 1 and found[0]["components"] == c["uuids"] and found[0]["window_s"] == 30.0
    assert len(found[0]["values"]) == len(found[0]["movie_time_s"]) > 10
    assert all(len(row) == 4 for row in found[0]["values"])
    assert len(small[0]["values"]) <= 10 and small[0]["movie_time_s"][0] == found[0]["movie_time_s"][0]


def test_csv_rows_have_the_headers_cells_and_a_window_without_a_time_is_an_empty_cell(server, tmp_path):
    from store.artifacts import load_vector, save_vector
    from store.models import CollectionSynchrony, SynchronyMoment

    c = computed_collection(tmp_path, movie="Csv Sync Movie")
    with session_scope() as session:
        key = session.get(CollectionSynchrony, c["id"]).windowed_key
        if not session.query(SynchronyMoment).filter_by(collection_id=c["id"]).count():
            session.add(
                SynchronyMoment(
                    collection_id=c["id"],
                    movie_id=session.get(Collection, c["id"]).movie_id,
                    time_s=20.0,
                    value=0.5,
                    labels=["speech"],
                )
            )
    table = load_vector(key).copy()
    table[0, 0] = float("nan")  # a window whose movie time is not known
    save_vector(key, table)
    anon = client_for(server, None)

    response = anon.get(f"/api/components/{c['uuids'][0]}/isc.csv")
    assert response.status_code == 200
    lines = [line for line in response.get_data(as_text=True).splitlines() if not line.startswith("#")]
    windows = [r for r in csv.DictReader(io.StringIO("\n".join(lines))) if r["part"] == "window"]
    assert windows[0]["movie_time_s"] == "" and windows[1]["movie_time_s"] != ""

    movie = list(csv.reader(io.StringIO(anon.get(f"/api/movies/{c['movie']}/synchrony.csv").get_data(as_text=True))))
    header, rows = movie[0], movie[1:]
    assert any(r[0] == "moment" for r in rows) and any(r[0] == "label" for r in rows)
    assert all(len(r) == len(header) for r in rows), [len(r) for r in rows]
    moment = dict(zip(header, next(r for r in rows if r[0] == "moment")))
    assert moment["inside"] == moment["outside"] == moment["p"] == ""


def test_the_most_synchronising_films_rank_by_their_collections_stored_median(data_dir, tmp_path):
    from pipeline.synchrony.reads import most_synchronising_movies
    from store.models import CollectionSynchrony

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = computed_collection(tmp_path / "a", movie="Alpha Sync Film")
    second = computed_collection(tmp_path / "b", movie="Beta Sync Film")
    with session_scope() as session:
        session.get(CollectionSynchrony, first["id"]).median_isc = 0.1
        session.get(CollectionSynchrony, second["id"]).median_isc = 0.9
    with session_scope() as session:
        found = most_synchronising_movies(session, None)
    assert [m["movie_slug"] for m in found] == [second["movie"], first["movie"]]
    assert [m["median_isc"] for m in found] == [0.9, 0.1] and [m["n_components"] for m in found] == [4, 4]
