"""Browse queries on the demo data: pagination, sorting, search, and what each kind of user may see.

The expected numbers are computed here with plain SQL over the tables, independently of ``store.queries``.
One module-wide copy of the demo data set is used (the tests only read, except the users made once below); an
extra private collection of a movie that has no public collection is added, so a movie itself can be private.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import use_environment

PRIVATE_SLUG = "demo-sherlock-private"
HIDDEN_MOVIE = "A Film Nobody Has Seen"
HIDDEN_MOVIE_SLUG = "a-film-nobody-has-seen"
HIDDEN_COLLECTION = "hidden-film-pilot"


@dataclass(frozen=True)
class World:
    path: Path
    owner_id: int
    admin_id: int
    stranger_id: int
    private_uuids: frozenset[str]
    public_uuids: frozenset[str]


def build_world(path: Path) -> World:
    """Users (owner of the private data, an admin, an unrelated curator) and a movie only the owner may see."""
    from accounts.users import create_user
    from pipeline.curation.catalog import create_collection, get_or_create_movie
    from store.db import session_scope
    from store.models import Collection, Component, User

    with session_scope() as session:
        owner = session.query(User).filter(User.email == "demo-private@incdb.example").one()
        admin = create_user(session, "admin@incdb.example", "admin-password-1", role="admin")
        stranger = create_user(session, "stranger@incdb.example", "stranger-password-1")
        private = session.query(Collection).filter(Collection.slug == PRIVATE_SLUG).one()
        template = private.components[0]
        movie = get_or_create_movie(session, HIDDEN_MOVIE, 2001)
        hidden = create_collection(session, owner, movie, "Hidden film pilot", visibility="private", is_demo=True)
        hidden.slug = HIDDEN_COLLECTION
        session.add(
            Component(
                collection=hidden,
                source_file="hidden.nii.gz",
                volume_index=0,
                storage_key=template.storage_key,
                best_term_id=template.best_term_id,
                best_r=0.5,
                decodings_key=template.decodings_key,
                qc_warnings=["looks thresholded"],
            )
        )
        session.flush()
        ids = (owner.id, admin.id, stranger.id)
    with session_scope() as session:
        rows = session.execute(
            text("SELECT c.uuid, col.visibility FROM components c JOIN collections col ON col.id = c.collection_id")
        )
        private_uuids = frozenset(u for u, v in rows if v == "private")
        public_uuids = frozenset(
            session.scalars(
                text(
                    "SELECT c.uuid FROM components c JOIN collections col ON col.id = c.collection_id "
                    "WHERE col.visibility = 'public'"
                )
            )
        )
    return World(path, *ids, private_uuids, public_uuids)


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_template) -> Iterator[World]:
    path = tmp_path_factory.mktemp("queries") / "data"
    shutil.copytree(demo_template, path)
    use_environment(path)
    yield build_world(path)


@pytest.fixture(autouse=True)
def _use_world(world):
    use_environment(world.path)  # conftest restores the environment after every test


def user(uid: int):
    from store.db import session_scope
    from store.models import User

    with session_scope() as session:
        u = session.get(User, uid)
        session.expunge(u)
        return u


def q(fn, who, *args, **kwargs):
    from store.db import session_scope

    with session_scope() as session:
        return fn(session, who, *args, **kwargs)


def sql(query: str, **params):
    from store.db import session_scope

    with session_scope() as session:
        return session.execute(text(query), params).all()


# ----------------------------------------------------------------------------------------------- counts


def public_counts() -> dict[str, int]:
    pub = "FROM collections col WHERE col.visibility = 'public'"
    return {
        "movies": sql(f"SELECT COUNT(DISTINCT col.movie_id) {pub}")[0][0],
        "collections": sql(f"SELECT COUNT(*) {pub}")[0][0],
        "components": sql(
            "SELECT COUNT(*) FROM components c JOIN collections col ON col.id = c.collection_id "
            "WHERE col.visibility = 'public'"
        )[0][0],
        "terms": sql("SELECT COUNT(*) FROM terms t JOIN reference_sets r ON r.id = t.reference_set_id WHERE r.active")[
            0
        ][0],
    }


def test_demo_world_has_private_data(world) -> None:
    assert len(world.private_uuids) == 9  # 8 demo components + the hidden movie's one
    assert len(world.public_uuids) == 52


def test_counts_per_user(world) -> None:
    from store import queries

    expected = public_counts()
    assert expected == {"movies": 4, "collections": 5, "components": 52, "terms": 22}
    assert q(queries.counts, None) == expected
    assert q(queries.counts, user(world.stranger_id)) == expected
    mine = q(queries.counts, user(world.owner_id))
    assert mine == {"movies": 5, "collections": 7, "components": 61, "terms": 22}
    assert q(queries.counts, user(world.admin_id)) == mine


def test_counts_ignore_inactive_users(world) -> None:
    from store import queries

    owner = user(world.owner_id)
    owner.active = False
    assert q(queries.counts, owner) == public_counts()


# ----------------------------------------------------------------------------------------------- terms


def test_list_terms_pagination(world) -> None:
    from store import queries

    first = q(queries.list_terms, None, per_page=5)
    assert (first.total, first.pages, len(first.items)) == (22, 5, 5)
    last = q(queries.list_terms, None, page=5, per_page=5)
    assert len(last.items) == 2
    beyond = q(queries.list_terms, None, page=6, per_page=5)
    assert beyond.items == [] and beyond.total == 22
    names = [t["name"] for p in range(1, 6) for t in q(queries.list_terms, None, page=p, per_page=5).items]
    assert names == sorted(names) and len(set(names)) == 22


def test_list_terms_sort_and_search(world) -> None:
    from store import queries

    by_components = q(queries.list_terms, None, sort="components", descending=True, per_page=100).items
    counts = [t["n_components"] for t in by_components]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    expected = dict(
        sql(
            "SELECT t.slug, COUNT(c.id) FROM terms t JOIN components c ON c.best_term_id = t.id "
            "JOIN collections col ON col.id = c.collection_id WHERE col.visibility = 'public' "
            "GROUP BY t.slug"
        )
    )
    assert {t["slug"]: t["n_components"] for t in by_components if t["n_components"]} == expected
    assert [t["name"] for t in q(queries.list_terms, None, search="MEMO").items] == ["memory", "working memory"]
    assert q(queries.list_terms, None, search="no such term").total == 0


def test_term_detail_hides_private_components(world) -> None:
    from store import queries

    public = q(queries.term_detail, None, "memory")
    owner = q(queries.term_detail, user(world.owner_id), "memory")
    expected = sql(
        "SELECT COUNT(*) FROM components c JOIN terms t ON t.id = c.best_term_id "
        "JOIN collections col ON col.id = c.collection_id WHERE t.slug = 'memory' "
        "AND col.visibility = 'public'"
    )[0][0]
    assert sum(m["n_components"] for m in public["movies"]) == expected
    assert sum(m["n_components"] for m in owner["movies"]) > expected
    assert HIDDEN_MOVIE not in [m["title"] for m in public["movies"]]
    assert q(queries.term_detail, None, "no-such-term") is None


# ----------------------------------------------------------------------------------------------- movies


def test_list_movies_sorts(world) -> None:
    from store import queries

    titles = [m["title"] for m in q(queries.list_movies, None, sort="title").items]
    assert titles == sorted(titles, key=str.lower) and HIDDEN_MOVIE not in titles
    by_components = q(queries.list_movies, None, sort="components").items
    assert [m["n_components"] for m in by_components] == sorted(
        (m["n_components"] for m in by_components), reverse=True
    )
    assert by_components[0]["title"] == "Forrest Gump" and by_components[0]["n_components"] == 22
    newest = [m["slug"] for m in q(queries.list_movies, None, sort="newest").items]
    expected = [
        s
        for (s,) in sql(
            "SELECT m.slug FROM movies m JOIN collections col ON col.movie_id = m.id "
            "WHERE col.visibility = 'public' GROUP BY m.id ORDER BY MAX(col.created) DESC"
        )
    ]
    assert newest == expected
    assert [m["slug"] for m in q(queries.recent_movies, None, 2)] == expected[:2]
    assert q(queries.list_movies, user(world.owner_id), sort="newest").items[0]["slug"] == HIDDEN_MOVIE_SLUG


def test_list_movies_search_and_pages(world) -> None:
    from store import queries

    assert [m["slug"] for m in q(queries.list_movies, None, search="sherl").items] == ["sherlock-a-study-in-pink"]
    assert q(queries.list_movies, None, search="nobody").total == 0
    assert q(queries.list_movies, user(world.owner_id), search="nobody").total == 1
    page2 = q(queries.list_movies, None, page=2, per_page=3)
    assert (page2.total, page2.pages, len(page2.items)) == (4, 2, 1)


def test_movie_detail_per_user(world) -> None:
    from store import queries

    anon = q(queries.movie_detail, None, "sherlock-a-study-in-pink")
    assert [c["slug"] for c in anon["collections"]] == ["demo-sherlock-episode"]
    assert anon["n_components"] == 10
    assert sum(t["n_components"] for t in anon["terms"]) == 10
    assert abs(sum(t["share"] for t in anon["terms"]) - 1.0) < 1e-9
    for t in anon["terms"]:
        assert t["score"] == pytest.approx(t["mean_r"] * t["n_components"] / 10)
    scores = [t["score"] for t in anon["terms"]]
    assert scores == sorted(scores, reverse=True)
    owner = q(queries.movie_detail, user(world.owner_id), "sherlock-a-study-in-pink")
    assert {c["slug"] for c in owner["collections"]} == {"demo-sherlock-episode", PRIVATE_SLUG}
    assert owner["n_components"] == 18
    assert q(queries.movie_detail, None, HIDDEN_MOVIE_SLUG) is None
    assert q(queries.movie_detail, user(world.stranger_id), HIDDEN_MOVIE_SLUG) is None
    assert q(queries.movie_detail, user(world.admin_id), HIDDEN_MOVIE_SLUG)["n_components"] == 1


def test_movie_term(world) -> None:
    from store import queries

    anon = q(queries.movie_term, None, "sherlock-a-study-in-pink", "memory")
    assert anon["has_merged_map"] and anon["n_merged"] == anon["n_components"] == 2
    assert all(c["visibility"] == "public" for c in anon["components"])
    owner = q(queries.movie_term, user(world.owner_id), "sherlock-a-study-in-pink", "memory")
    assert owner["n_components"] > anon["n_components"]
    assert owner["n_merged"] == anon["n_merged"]  # merged maps only ever hold public components
    assert q(queries.movie_term, None, "forrest-gump", "no-such-term") is None
    assert q(queries.movie_term, None, HIDDEN_MOVIE_SLUG, "memory") is None


# ----------------------------------------------------------------------------------------------- components


def all_component_uuids(who, **filters) -> list[str]:
    from store import queries

    out, page = [], 1
    while True:
        p = q(queries.list_components, who, page=page, per_page=7, **filters)
        out += [c["uuid"] for c in p.items]
        if page >= p.pages:
            return out
        page += 1


def test_list_components_visibility(world) -> None:
    anon = all_component_uuids(None)
    assert len(anon) == len(set(anon)) == 52
    assert set(anon) == world.public_uuids
    assert set(all_component_uuids(user(world.stranger_id))) == world.public_uuids
    assert set(all_component_uuids(user(world.owner_id))) == world.public_uuids | world.private_uuids
    assert set(all_component_uuids(user(world.admin_id))) == world.public_uuids | world.private_uuids
    assert all_component_uuids(None, collection_slug=PRIVATE_SLUG) == []
    assert len(all_component_uuids(user(world.owner_id), collection_slug=PRIVATE_SLUG)) == 8


def test_list_components_filters_and_sort(world) -> None:
    from store import queries

    page = q(queries.list_components, None, term_slug="visual", per_page=100)
    assert page.total == 10 and {c["best_term_slug"] for c in page.items} == {"visual"}
    rs = [c["best_r"] for c in page.items]
    assert rs == sorted(rs, reverse=True)
    by_file = q(queries.list_components, None, movie_slug="forrest-gump", sort="file", per_page=100).items
    assert [(c["source_file"], c["volume"]) for c in by_file] == sorted(
        (c["source_file"], c["volume"]) for c in by_file
    )
    assert {c["movie_slug"] for c in by_file} == {"forrest-gump"} and len(by_file) == 22


def test_component_detail_and_profile(world) -> None:
    from store import queries
    from store.db import session_scope

    uuid = min(world.public_uuids)
    detail = q(queries.component_detail, None, uuid)
    assert detail["uuid"] == uuid and detail["is_demo"] and detail["decodings"][0]["rank"] == 1
    assert detail["best_term_slug"] == detail["decodings"][0]["slug"]
    with session_scope() as session:
        comp = queries.get_visible_component(session, None, uuid)
        profile = queries.full_decoding_profile(session, comp)
    assert len(profile) == 22 and [p["rank"] for p in profile] == list(range(1, 23))
    assert [p["r"] for p in profile] == sorted((p["r"] for p in profile), reverse=True)
    assert profile[0]["slug"] == detail["best_term_slug"] and any(p["r"] < 0 for p in profile)
    private = min(world.private_uuids)
    assert q(queries.component_detail, None, private) is None
    assert q(queries.component_detail, user(world.stranger_id), private) is None
    assert q(queries.component_detail, user(world.owner_id), private)["visibility"] == "private"
    assert q(queries.component_detail, user(world.admin_id), private) is not None


# ----------------------------------------------------------------------------------------------- home


def test_heatmap_counts_public_components(world) -> None:
    from store import queries

    heat = q(queries.heatmap, None)
    assert sum(map(sum, heat["count"])) == 52
    assert HIDDEN_MOVIE not in heat["movies"]
    i, j = heat["term_slugs"].index("memory"), heat["movie_slugs"].index("sherlock-a-study-in-pink")
    assert heat["count"][i][j] == 2
    owner = q(queries.heatmap, user(world.owner_id))
    assert sum(map(sum, owner["count"])) == 61 and HIDDEN_MOVIE in owner["movies"]


def test_search(world) -> None:
    from store import queries

    assert q(queries.search, None, "v") == []  # one letter suggests nothing
    hits = q(queries.search, None, "vi")
    assert hits[0] == {"kind": "term", "label": "visual", "href": "/terms/visual"}
    assert q(queries.search, None, "forr") == [
        {"kind": "movie", "label": "Forrest Gump", "href": "/movies/forrest-gump"}
    ]
    assert q(queries.search, None, "nobody") == []
    assert q(queries.search, user(world.owner_id), "nobody")[0]["href"] == f"/movies/{HIDDEN_MOVIE_SLUG}"
    assert q(queries.search, None, "%") == [] and q(queries.search, None, "__") == []


def test_collections_and_demo_count(world) -> None:
    from store import queries

    slugs = [c["slug"] for c in q(queries.list_collections, None, per_page=100).items]
    assert len(slugs) == 5 and PRIVATE_SLUG not in slugs and HIDDEN_COLLECTION not in slugs
    assert q(queries.demo_collection_count, None) == 5
    assert q(queries.demo_collection_count, user(world.owner_id)) == 7
    assert q(queries.get_visible_collection, None, PRIVATE_SLUG) is None
    assert q(queries.get_visible_collection, user(world.owner_id), PRIVATE_SLUG) is not None
