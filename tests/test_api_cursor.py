"""Keyset paging of the deep lists (``cursor`` and ``next_cursor`` of /api/components and /api/collections).

A cursor names the last row of a page by its sort key and id, so the next page starts right after it: the pages
of a cursor chain hold the same rows, in the same order, as the numbered pages; rows added between two requests
neither repeat nor hide a row; and a cursor the listing did not give out is a 400 with a message. The best r may
be NULL (a component not decoded yet), and SQLite and PostgreSQL sort NULL at opposite ends, so the listing is
checked on both.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from store import queries
from store.db import session_scope, upgrade_database
from store.models import Collection, Component, Movie, User
from tests.conftest import use_environment

PER_PAGE = 7
# Ties and NULLs on purpose: the id breaks ties, and NULL sorts first (PostgreSQL) or last (SQLite) in DESC.
R_VALUES = [0.5, 0.5, 0.5, None, 0.9, -0.2, None, 0.31, 0.5, 0.7, None, 0.1, 0.1, 0.05, 0.88, -0.5, 0.5, None]


def seed(n_collections: int = 9) -> None:
    """A public movie with collections (the first holds every component) and components of R_VALUES."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with session_scope() as s:
        owner = User(email="cursor@example.org", role="curator")
        movie = Movie(title="Cursor film", slug="cursor-film")
        s.add_all([owner, movie])
        s.flush()
        collections = []
        for i in range(n_collections):
            # two pairs share their creation time: the id breaks the tie
            created = start + timedelta(days=i - (i % 4 == 1))
            collections.append(
                Collection(
                    owner_id=owner.id,
                    movie_id=movie.id,
                    name=f"Cursor set {i}",
                    slug=f"cursor-set-{i}",
                    created=created,
                    visibility="private" if i == 3 else "public",
                )
            )
        s.add_all(collections)
        s.flush()
        add_components(s, collections[0], R_VALUES, prefix="a")


def add_components(s, collection: Collection, values: list[float | None], prefix: str) -> None:
    for i, r in enumerate(values):
        s.add(
            Component(
                collection_id=collection.id,
                source_file=f"{prefix}{i % 3}.nii.gz",
                volume_index=i,
                storage_key=f"components/{prefix}{i}.nii.gz",
                best_r=r,
            )
        )


def cursor_chain(list_fn, **kwargs) -> list[dict]:
    out, cursor = [], None
    for _ in range(100):
        with session_scope() as s:
            page = list_fn(s, None, per_page=PER_PAGE, cursor=cursor, **kwargs)
        out.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return out
        assert page.page is None or page.page == 1
    raise AssertionError("the cursor chain did not end")


def page_chain(list_fn, **kwargs) -> list[dict]:
    out = []
    for number in range(1, 100):
        with session_scope() as s:
            page = list_fn(s, None, per_page=PER_PAGE, page=number, **kwargs)
        out.extend(page.items)
        if len(page.items) < PER_PAGE:
            return out
    raise AssertionError("the page chain did not end")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    if request.param == "postgresql":
        use_environment(data, database_url=request.getfixturevalue("postgres_url"))
    else:
        use_environment(data)
    upgrade_database()
    seed()
    return request.param


@pytest.mark.parametrize("sort", ["r", "file"])
def test_cursor_pages_hold_the_rows_of_the_numbered_pages(database, sort):
    by_page = page_chain(queries.list_components, sort=sort, collection_slug="cursor-set-0")
    by_cursor = cursor_chain(queries.list_components, sort=sort, collection_slug="cursor-set-0")
    assert len(by_page) == len(R_VALUES)
    assert [c["uuid"] for c in by_cursor] == [c["uuid"] for c in by_page]
    if sort == "r":
        known = [c["best_r"] for c in by_cursor if c["best_r"] is not None]
        assert known == sorted(known, reverse=True)


def test_collection_cursor_pages_hold_the_rows_of_the_numbered_pages(database):
    by_page = page_chain(queries.list_collections)
    by_cursor = cursor_chain(queries.list_collections)
    assert len(by_page) == 8  # one of the nine is private
    assert [c["slug"] for c in by_cursor] == [c["slug"] for c in by_page]


def test_rows_added_between_requests_neither_repeat_nor_hide_a_row(database):
    with session_scope() as s:
        first = queries.list_components(s, None, per_page=PER_PAGE, collection_slug="cursor-set-0")
    before = {c["uuid"] for c in first.items}
    # New rows before the cursor (a higher r: numbered pages would shift and repeat rows), at it and after it.
    with session_scope() as s:
        collection = s.query(Collection).filter_by(slug="cursor-set-0").one()
        add_components(s, collection, [0.99, 0.98, 0.5, 0.2, None], prefix="b")
    rest, cursor = [], first.next_cursor
    while cursor:
        with session_scope() as s:
            page = queries.list_components(s, None, per_page=PER_PAGE, cursor=cursor, collection_slug="cursor-set-0")
        rest.extend(c["uuid"] for c in page.items)
        cursor = page.next_cursor
    seen = [*(c["uuid"] for c in first.items), *rest]
    assert len(seen) == len(set(seen)), "a row came twice"
    with session_scope() as s:
        original = {c.uuid for c in s.query(Component).filter(~Component.storage_key.like("components/b%")).all()}
    assert original <= set(seen), "a row that was there all along was never shown"
    assert not before & set(rest)


def cursor_of(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def test_the_api_pages_by_cursor_and_refuses_a_bad_cursor(data_dir, web):
    upgrade_database()
    seed()
    client = web.server.test_client()
    answer = client.get("/api/components?collection=cursor-set-0&per_page=5").get_json()
    assert answer["page"] == 1 and len(answer["items"]) == 5 and answer["next_cursor"]
    second = client.get(f"/api/components?collection=cursor-set-0&per_page=5&cursor={answer['next_cursor']}")
    assert second.status_code == 200
    body = second.get_json()
    assert body["page"] is None and len(body["items"]) == 5
    assert not {c["uuid"] for c in body["items"]} & {c["uuid"] for c in answer["items"]}
    by_page = client.get("/api/components?collection=cursor-set-0&per_page=5&page=2").get_json()
    assert [c["uuid"] for c in body["items"]] == [c["uuid"] for c in by_page["items"]]
    last = client.get("/api/components?collection=cursor-set-0&per_page=100").get_json()
    assert last["next_cursor"] is None
    nothing = client.get("/api/components?collection=no-such-collection").get_json()
    assert nothing["items"] == [] and "next_cursor" in nothing and nothing["next_cursor"] is None

    collections = client.get("/api/collections?per_page=3").get_json()
    after = client.get(f"/api/collections?per_page=3&cursor={collections['next_cursor']}").get_json()
    assert after["items"] and after["items"][0]["slug"] not in {c["slug"] for c in collections["items"]}

    r_cursor = answer["next_cursor"]
    bad = {
        "/api/components?cursor=not-a-cursor!": "not a cursor",
        "/api/components?cursor=" + "A" * 2000: "not a cursor",
        f"/api/components?sort=file&cursor={r_cursor}": "not a cursor of this listing",
        f"/api/collections?cursor={r_cursor}": "not a cursor of this listing",
        f"/api/components?cursor={cursor_of('components.r', 'high', 3)}": "not valid",
        f"/api/components?cursor={cursor_of('components.r', 0.5)}": "not a cursor of this listing",
        f"/api/components?cursor={cursor_of('components.r', 0.5, True)}": "not valid",
        f"/api/collections?cursor={cursor_of('collections', 'yesterday', 1)}": "not valid",
        f"/api/components?sort=file&cursor={cursor_of('components.file', 'a.nii.gz', 1, 2**70)}": "not valid",
    }
    for url, message in bad.items():
        response = client.get(url)
        assert response.status_code == 400, url
        error = response.get_json()["error"]
        assert error.startswith("cursor:") and message in error, (url, error)


def test_cursor_round_trip_and_refusals_at_the_query_level():
    key = [0.123456789012345, 42]
    assert queries.decode_cursor(queries.encode_cursor("components.r", key), "components.r", ("real?", "id")) == key
    assert queries.decode_cursor(cursor_of("components.r", None, 7), "components.r", ("real?", "id")) == [None, 7]
    for cursor in ("", None, 5, "%%%", cursor_of("components.r", float("nan"), 1).replace("NaN", "1e999")):
        with pytest.raises(queries.CursorError):
            queries.decode_cursor(cursor, "components.r", ("real?", "id"))
