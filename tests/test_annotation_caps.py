"""Annotation sets have caps (file size, events and labels per set, sets per movie and per curator), checked before
the file is parsed or stored; the API pages through a set's events instead of sending every event of every set;
the timeline of a page reads only the events of the tracks it draws."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from accounts.users import create_user
from pipeline.curation.catalog import create_collection, get_or_create_movie
from pipeline.temporal import annotations
from pipeline.temporal.annotations import AnnotationError, add_annotation_set
from store import timeline
from store.config import get_settings, reset_settings
from store.db import session_scope
from store.models import AnnotationEvent, AnnotationSet


def events_tsv(n_events: int, n_labels: int) -> str:
    rows = [f"{2.0 * i:.1f}\t1.5\tlabel{i % n_labels:04d}" for i in range(n_events)]
    return "onset\tduration\ttrial_type\n" + "\n".join(rows) + "\n"


@pytest.fixture
def movie(data_dir) -> dict:
    """A movie with a public collection, and two curators (ids) and an administrator."""
    with session_scope() as session:
        cora = create_user(session, "cora@example.org", "a long password 1")
        dave = create_user(session, "dave@example.org", "a long password 2")
        admin = create_user(session, "ada@example.org", "a long password 3", role="admin")
        film = get_or_create_movie(session, "Capped Movie")
        create_collection(session, cora, film, "Capped collection")
        return {"id": film.id, "slug": film.slug, "cora": cora.id, "dave": dave.id, "admin": admin.id}


def add(movie: dict, who: str, name: str, tsv: str) -> int:
    with session_scope() as session:
        from store.models import Movie, User

        return add_annotation_set(
            session, session.get(User, movie[who]), session.get(Movie, movie["id"]), name, tsv, "events.tsv"
        ).id


def set_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count(AnnotationSet.id)))


def test_defaults_are_generous_for_a_real_film(data_dir):
    s = get_settings()
    assert (
        s.annotation_max_events,
        s.annotation_max_labels,
        s.annotation_sets_per_movie,
        s.annotation_sets_per_user,
    ) == (20_000, 1000, 50, 200)
    assert s.annotation_max_bytes >= 4 * 1024**2


def test_events_labels_and_bytes_over_the_caps_are_refused_before_parsing(movie, monkeypatch):
    monkeypatch.setenv("INCDB_ANNOTATION_MAX_EVENTS", "100")
    monkeypatch.setenv("INCDB_ANNOTATION_MAX_LABELS", "10")
    monkeypatch.setenv("INCDB_ANNOTATION_MAX_BYTES", "20000")
    reset_settings()
    add(movie, "cora", "Within the caps", events_tsv(100, 10))
    parsed = []
    real = annotations.read_events
    monkeypatch.setattr(annotations, "read_events", lambda *a: parsed.append(1) or real(*a))
    with pytest.raises(AnnotationError, match=r"101 events, more than the 100"):
        add(movie, "cora", "Too many events", events_tsv(101, 10))
    with pytest.raises(AnnotationError, match=r"more than the 19.5 KiB"):
        add(movie, "cora", "Too large", events_tsv(90, 10) + "\n" * 20000)
    assert parsed == []  # refused on its size and line count alone
    with pytest.raises(AnnotationError, match=r"11 different labels, more than the 10"):
        add(movie, "cora", "Too many labels", events_tsv(50, 11))
    assert set_count() == 1
    with session_scope() as session:
        assert session.scalar(select(func.count(AnnotationEvent.id))) == 100


def test_sets_per_movie_and_per_curator(movie, monkeypatch):
    monkeypatch.setenv("INCDB_ANNOTATION_SETS_PER_MOVIE", "3")
    monkeypatch.setenv("INCDB_ANNOTATION_SETS_PER_USER", "2")
    reset_settings()
    small = events_tsv(4, 2)
    add(movie, "cora", "One", small)
    add(movie, "cora", "Two", small)
    with pytest.raises(AnnotationError, match="You have 2 annotation sets, the most one curator may have"):
        add(movie, "cora", "Three", small)
    add(movie, "dave", "Three", small)
    with pytest.raises(AnnotationError, match="Capped Movie has 3 annotation sets, the most a movie may have"):
        add(movie, "admin", "Four", small)  # administrators have no per-user cap, but the movie's cap holds
    assert set_count() == 3


def test_the_api_pages_through_a_sets_events(movie, web):
    set_id = add(movie, "cora", "Many events", events_tsv(2500, 7))
    client = web.server.test_client()
    listing = client.get(f"/api/movies/{movie['slug']}/annotations").get_json()["items"]
    assert len(listing) == 1 and "events" not in listing[0]
    assert listing[0]["n_events"] == 2500 and len(listing[0]["labels"]) == 7
    url = listing[0]["events_url"]
    assert url == f"/api/movies/{movie['slug']}/annotations/{set_id}/events"
    first = client.get(url).get_json()
    assert (first["page"], first["per_page"], first["total"], first["pages"]) == (1, 1000, 2500, 3)
    assert [e["onset"] for e in first["items"][:2]] == [0.0, 2.0]
    last = client.get(f"{url}?page=3").get_json()
    assert len(last["items"]) == 500 and last["items"][-1]["onset"] == 4998.0
    assert client.get(f"{url}?per_page=1000000").get_json()["per_page"] == timeline.MAX_EVENTS_PER_PAGE
    assert client.get(f"/api/movies/{movie['slug']}/annotations/{set_id + 1}/events").status_code == 404
    csv_lines = client.get(f"/movies/{movie['slug']}/annotations/{set_id}.csv").get_data(as_text=True).splitlines()
    assert len(csv_lines) == 2501  # the download has every event


def test_the_timeline_reads_only_the_events_of_its_tracks(movie, monkeypatch):
    monkeypatch.setattr(timeline, "MAX_TIMELINE_EVENTS", 120)
    first = add(movie, "cora", "A set", events_tsv(600, 30))  # 30 labels x 20 events
    second = add(movie, "cora", "B set", events_tsv(600, 30))
    with session_scope() as session:
        from store.models import Movie

        film = session.get(Movie, movie["id"])
        sets = timeline.movie_annotations(session, film)
        with_best = timeline.movie_annotations(session, film, include=[(second, "label0029")])
    a, b = sets
    assert (a["id"], b["id"]) == (first, second) and a["n_events"] == b["n_events"] == 600
    assert len(a["labels"]) == len(b["labels"]) == 30
    # The first 40 tracks (30 of A, 10 of B), an equal share of 120 events each: the earliest 3.
    assert {e["label"] for e in a["events"]} == {f"label{i:04d}" for i in range(30)}
    assert {e["label"] for e in b["events"]} == {f"label{i:04d}" for i in range(10)}
    assert len(a["events"]) + len(b["events"]) <= 120 and not a["events_complete"]
    assert [e["onset"] for e in a["events"] if e["label"] == "label0001"] == [2.0, 62.0, 122.0]
    # A component page's best label beyond the first 40 tracks is read too.
    assert "label0029" in {e["label"] for e in with_best[1]["events"]}
