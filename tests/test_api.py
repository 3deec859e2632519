"""The JSON API, the file routes and the pages' server-side content, through Flask's test client.

The rule checked throughout: the private demo collection (and a private movie added here) appears nowhere for
an anonymous visitor or an unrelated curator, and does appear for its owner and for an administrator.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from store.db import session_scope
from tests.conftest import use_environment
from tests.test_queries import (
    HIDDEN_COLLECTION,
    HIDDEN_MOVIE,
    HIDDEN_MOVIE_SLUG,
    PRIVATE_SLUG,
    World,
    build_world,
    public_counts,
    sql,
)

PRIVATE_NAMES = (
    PRIVATE_SLUG,
    "Sherlock pilot",
    HIDDEN_MOVIE,
    HIDDEN_MOVIE_SLUG,
    HIDDEN_COLLECTION,
    "Hidden film pilot",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_template) -> Iterator[World]:
    path = tmp_path_factory.mktemp("api") / "data"
    shutil.copytree(demo_template, path)
    use_environment(path)
    yield build_world(path)


@pytest.fixture(autouse=True)
def _use_world(world):
    use_environment(world.path)


@pytest.fixture(scope="module")
def server(world):
    use_environment(world.path)
    from app import server  # imported after the environment is set; settings are read lazily

    server.config["TESTING"] = True
    return server


@pytest.fixture
def anon(server):
    return server.test_client()


def client_for(server, user_id: int):
    from store.models import User

    client = server.test_client()
    with session_scope() as db:  # the session names the user and the session version it was signed in with
        version = db.get(User, user_id).session_version
    with client.session_transaction() as session:
        session["_user_id"] = f"{user_id}:{version}"
        session["_fresh"] = True
    return client


@pytest.fixture
def owner(server, world):
    return client_for(server, world.owner_id)


@pytest.fixture
def admin(server, world):
    return client_for(server, world.admin_id)


@pytest.fixture
def stranger(server, world):
    return client_for(server, world.stranger_id)


def get_json(client, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.get_data(as_text=True)[:300])
    return response.get_json()


def assert_no_private(text: str, world: World, allow: str = "") -> None:
    if allow:
        text = text.replace(allow, "")
    for name in PRIVATE_NAMES:
        assert name not in text, f"private name {name!r} leaked"
    for uuid in world.private_uuids:
        assert uuid not in text, f"private component {uuid} leaked"


def all_pages(client, url: str) -> list[dict[str, Any]]:
    """Every item of a paginated API list, walking the pages the API reports."""
    sep = "&" if "?" in url else "?"
    first = get_json(client, f"{url}{sep}per_page=7")
    items = list(first["items"])
    for page in range(2, first["pages"] + 1):
        items += get_json(client, f"{url}{sep}per_page=7&page={page}")["items"]
    assert len(items) == first["total"]
    return items


# ----------------------------------------------------------------------------------------------- API


def test_index_lists_routes(anon) -> None:
    routes = get_json(anon, "/api/")["routes"]
    for route in ("/api/stats", "/api/terms", "/api/movies", "/api/components", "/api/collections", "/api/search"):
        assert route in routes


def test_stats_are_public_counts(anon, stranger, owner, admin) -> None:
    expected = public_counts()
    stats = get_json(anon, "/api/stats")
    assert {k: stats[k] for k in expected} == expected
    assert "synthetic" in stats["notice"]
    assert {k: get_json(stranger, "/api/stats")[k] for k in expected} == expected
    mine = get_json(owner, "/api/stats")
    assert mine["components"] == expected["components"] + 9 and mine["collections"] == expected["collections"] + 2
    assert {k: get_json(admin, "/api/stats")[k] for k in expected} == {k: mine[k] for k in expected}


def test_heatmap_route_shows_the_most_used_terms_and_movies(anon, owner, world) -> None:
    per_cell = {
        (t, m): n
        for t, m, n in sql(
            "SELECT t.name, mv.title, COUNT(*) FROM components c JOIN collections col ON col.id = c.collection_id "
            "JOIN movies mv ON mv.id = col.movie_id JOIN terms t ON t.id = c.best_term_id "
            "WHERE col.visibility = 'public' GROUP BY t.name, mv.title"
        )
    }
    per_term, per_movie = {}, {}
    for (t, m), n in per_cell.items():
        per_term[t] = per_term.get(t, 0) + n
        per_movie[m] = per_movie.get(m, 0) + n
    heat = get_json(anon, "/api/heatmap?terms=3&movies=2")
    assert len(heat["terms"]) == 3 and len(heat["movies"]) == 2
    assert heat["n_terms"] == len(per_term) and heat["n_movies"] == len(per_movie)
    # the three terms and two movies with most components (no other has more than the least of those shown)
    assert min(per_term[t] for t in heat["terms"]) >= max(n for t, n in per_term.items() if t not in heat["terms"])
    assert min(per_movie[m] for m in heat["movies"]) >= max(n for m, n in per_movie.items() if m not in heat["movies"])
    for i, t in enumerate(heat["terms"]):
        for j, m in enumerate(heat["movies"]):
            assert heat["count"][i][j] == per_cell.get((t, m), 0)
            assert (heat["mean_r"][i][j] is None) == ((t, m) not in per_cell)
    everything = get_json(anon, "/api/heatmap?terms=100&movies=100")
    assert sum(map(sum, everything["count"])) == public_counts()["components"]
    assert_no_private(json.dumps(everything), world)
    assert HIDDEN_MOVIE in get_json(owner, "/api/heatmap?terms=100&movies=100")["movies"]
    odd = get_json(anon, "/api/heatmap?terms=abc&movies=-5")  # not a number: the default; below 1: one
    assert len(odd["terms"]) == min(20, len(per_term)) and len(odd["movies"]) == 1


def test_terms_pagination(anon) -> None:
    first = get_json(anon, "/api/terms?per_page=5")
    assert (first["page"], first["per_page"], first["total"], first["pages"]) == (1, 5, 22, 5)
    last = get_json(anon, "/api/terms?per_page=5&page=5")
    assert len(last["items"]) == 2 and last["page"] == 5
    beyond = get_json(anon, "/api/terms?per_page=5&page=9")
    assert beyond["items"] == [] and beyond["total"] == 22
    capped = get_json(anon, "/api/terms?per_page=5000")
    assert capped["per_page"] == 100 and len(capped["items"]) == 22
    junk = get_json(anon, "/api/terms?per_page=abc&page=-3")
    assert (junk["page"], junk["per_page"]) == (1, 20) and len(junk["items"]) == 20
    names = [t["name"] for t in all_pages(anon, "/api/terms")]
    assert names == sorted(names) and len(set(names)) == 22


def test_terms_sort_and_search(anon) -> None:
    items = get_json(anon, "/api/terms?sort=components&order=desc&per_page=100")["items"]
    counts = [t["n_components"] for t in items]
    assert counts == sorted(counts, reverse=True) and sum(counts) == 52
    ascending = [t["n_movies"] for t in get_json(anon, "/api/terms?sort=movies&per_page=100")["items"]]
    assert ascending == sorted(ascending)
    found = get_json(anon, "/api/terms?search=vis")
    assert [t["slug"] for t in found["items"]] == ["visual"] and found["total"] == 1


def test_movies_list(anon, owner) -> None:
    movies = all_pages(anon, "/api/movies")
    assert [m["title"] for m in movies] == sorted((m["title"] for m in movies), key=str.lower)
    assert len(movies) == 4
    by_components = get_json(anon, "/api/movies?sort=components")["items"]
    assert by_components[0]["slug"] == "forrest-gump"
    newest = [m["slug"] for m in get_json(anon, "/api/movies?sort=newest")["items"]]
    expected = [
        s
        for (s,) in sql(
            "SELECT m.slug FROM movies m JOIN collections c ON c.movie_id = m.id WHERE "
            "c.visibility = 'public' GROUP BY m.id ORDER BY MAX(c.created) DESC"
        )
    ]
    assert newest == expected
    assert get_json(anon, "/api/movies?search=gump")["total"] == 1
    assert get_json(anon, "/api/movies?search=nobody")["total"] == 0
    assert get_json(owner, "/api/movies?search=nobody")["items"][0]["slug"] == HIDDEN_MOVIE_SLUG
    page2 = get_json(anon, "/api/movies?per_page=3&page=2")
    assert (page2["pages"], len(page2["items"])) == (2, 1)


def test_components_list_and_filters(anon, owner, world) -> None:
    anon_uuids = {c["uuid"] for c in all_pages(anon, "/api/components")}
    assert anon_uuids == world.public_uuids
    owner_uuids = {c["uuid"] for c in all_pages(owner, "/api/components")}
    assert owner_uuids == world.public_uuids | world.private_uuids
    visual = get_json(anon, "/api/components?term=visual&per_page=100")["items"]
    assert len(visual) == 10 and {c["best_term"] for c in visual} == {"visual"}
    assert [c["best_r"] for c in visual] == sorted((c["best_r"] for c in visual), reverse=True)
    assert get_json(anon, f"/api/components?collection={PRIVATE_SLUG}")["total"] == 0
    assert get_json(owner, f"/api/components?collection={PRIVATE_SLUG}")["total"] == 8
    by_file = get_json(anon, "/api/components?movie=partly-cloudy&sort=file&per_page=100")["items"]
    assert [c["volume"] for c in by_file] == list(range(1, 11))


def test_details_hide_private_data(anon, stranger, owner, admin, world) -> None:
    private = min(world.private_uuids)
    for client in (anon, stranger):
        assert get_json(client, f"/api/components/{private}", 404)["error"] == "component not found"
        assert get_json(client, f"/api/collections/{PRIVATE_SLUG}", 404)
        assert get_json(client, f"/api/movies/{HIDDEN_MOVIE_SLUG}", 404)
        sherlock = get_json(client, "/api/movies/sherlock-a-study-in-pink")
        assert_no_private(json.dumps(sherlock), world)
        assert sherlock["n_components"] == 10
        memory = get_json(client, "/api/terms/memory")
        assert_no_private(json.dumps(memory), world)
        merged = get_json(client, "/api/movies/sherlock-a-study-in-pink/memory")
        assert merged["n_components"] == 2
        assert_no_private(json.dumps(merged), world)
    for client in (owner, admin):
        detail = get_json(client, f"/api/components/{private}")
        assert detail["visibility"] == "private"
        assert len(get_json(client, f"/api/components/{private}?full=1")["decodings"]) == 22
        assert get_json(client, f"/api/collections/{PRIVATE_SLUG}")["visibility"] == "private"
        assert get_json(client, "/api/movies/sherlock-a-study-in-pink")["n_components"] == 18
        assert get_json(client, f"/api/movies/{HIDDEN_MOVIE_SLUG}")["n_components"] == 1


def test_lists_and_search_hide_private_data(anon, stranger, world) -> None:
    for client in (anon, stranger):
        for url in ("/api/terms", "/api/movies", "/api/components", "/api/collections"):
            assert_no_private(json.dumps(all_pages(client, url)), world)
        collections = all_pages(client, "/api/collections")
        assert len(collections) == 5
        for text in ("sherlock", "pilot", "nobody", "film", "hidden"):
            assert_no_private(json.dumps(get_json(client, f"/api/search?q={text}")), world)
    assert get_json(anon, "/api/search?q=vi")["items"][0]["href"] == "/terms/visual"


def test_unknown_things_are_404(anon) -> None:
    assert get_json(anon, "/api/terms/nope", 404)["error"] == "term not found"
    assert get_json(anon, "/api/movies/nope", 404)["error"] == "movie not found"
    assert get_json(anon, "/api/movies/forrest-gump/nope", 404)
    assert get_json(anon, "/api/components/not-a-uuid", 404)
    assert anon.get("/files/components/not-a-uuid.nii.gz").status_code == 404
    assert anon.get("/files/terms/nope.nii.gz").status_code == 404


# ----------------------------------------------------------------------------------------------- files


def load_nifti(data: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(data))


def test_file_routes_serve_public_maps(anon, world) -> None:
    uuid = min(world.public_uuids)
    full = anon.get(f"/files/components/{uuid}.nii.gz")
    assert full.status_code == 200
    img = load_nifti(full.data)
    assert img.shape == (91, 109, 91) and img.get_data_dtype() == "float32"
    display = anon.get(f"/files/components/{uuid}.nii.gz?display=1")
    assert display.status_code == 200 and len(display.data) < len(full.data)
    from pipeline.maps.display import decode_display

    shown = decode_display(display.data)
    assert shown.shape == (91, 109, 91) and shown.get_data_dtype() == np.uint8
    values = img.get_fdata()
    assert np.abs(shown.get_fdata() - values).max() <= 0.005 * (values.max() - values.min())
    for url in (
        "/files/terms/visual.nii.gz",
        "/files/terms/visual/mean.nii.gz",
        "/files/movies/forrest-gump/visual.nii.gz",
        "/files/underlay.nii.gz",
    ):
        response = anon.get(url)
        assert response.status_code == 200, url
        assert load_nifti(response.data).shape == (91, 109, 91)
    csv_lines = anon.get(f"/components/{uuid}/decodings.csv").get_data(as_text=True).strip().splitlines()
    assert csv_lines[0] == "rank,term,r" and len(csv_lines) == 23


def test_file_routes_hide_private_maps(anon, stranger, owner, admin, world) -> None:
    private = min(world.private_uuids)
    urls = (
        f"/files/components/{private}.nii.gz",
        f"/files/components/{private}.nii.gz?display=1",
        f"/components/{private}/decodings.csv",
        f"/collections/{PRIVATE_SLUG}/maps.zip",
        f"/collections/{HIDDEN_COLLECTION}/maps.zip",
    )
    for client in (anon, stranger):
        for url in urls:
            assert client.get(url).status_code == 404, url
        assert client.get(f"/files/movies/{HIDDEN_MOVIE_SLUG}/memory.nii.gz").status_code == 404
    for client in (owner, admin):
        assert load_nifti(client.get(urls[0]).data).shape == (91, 109, 91)
        assert client.get(urls[2]).get_data(as_text=True).startswith("rank,term,r")
    archive = owner.get(f"/collections/{PRIVATE_SLUG}/maps.zip")
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.data)) as zf:
        names = zf.namelist()
        assert len(names) == 8 and all(n.startswith(PRIVATE_SLUG + "/") for n in names)
        assert load_nifti(zf.read(names[0])).shape == (91, 109, 91)


# ----------------------------------------------------------------------------------------------- pages


@contextmanager
def as_user(server, user_id: int | None):
    """A request context in which ``web.auth.viewer()`` is the given user (None: anonymous)."""
    from flask_login import login_user

    from tests.test_queries import user

    with server.test_request_context("/"):
        if user_id is not None:
            login_user(user(user_id))
        yield


def page_layouts() -> dict[str, Any]:
    import dash

    return {module.rsplit(".", 1)[-1]: page["layout"] for module, page in dash.page_registry.items()}


def rendered(layout) -> str:
    import plotly

    return json.dumps(layout, cls=plotly.utils.PlotlyJSONEncoder)


def page_requests(world: World) -> list[tuple[str, dict[str, str]]]:
    """Every page with every visible or private path variable, and query strings that reach other states."""
    terms = [slug for (slug,) in sql("SELECT slug FROM terms")]
    movies = [slug for (slug,) in sql("SELECT slug FROM movies")]
    requests = [
        ("home", {}),
        ("terms", {}),
        ("terms", {"sort": "components", "page": "2"}),
        ("terms", {"q": "memory"}),
        ("movies", {}),
        ("movies", {"sort": "newest"}),
        ("movies", {"q": "film"}),
        ("not_found_404", {}),
    ]
    requests += [("term", {"term": t}) for t in terms] + [("term", {"term": "memory", "tab": "components"})]
    for m in movies:
        requests += [("movie", {"movie": m}), ("movie", {"movie": m, "sort": "file", "page": "2"})]
        requests += [("movie_term", {"movie": m, "term": t}) for t in ("memory", "emotion", "language", "visual")]
    requests += [("component", {"uuid": u}) for u in sorted(world.public_uuids)[:3]]
    return requests


def test_pages_hide_private_data_from_anonymous_and_strangers(server, world) -> None:
    layouts = page_layouts()
    for user_id in (None, world.stranger_id):
        with as_user(server, user_id):
            for name, args in page_requests(world):
                text = rendered(layouts[name](**args))
                assert "Traceback" not in text
                if args.get("movie") == HIDDEN_MOVIE_SLUG:
                    # Asked for by name: the not-found page repeats the name and says nothing more.
                    assert '"id": "not-found"' in text
                    assert_no_private(text, world, allow=HIDDEN_MOVIE_SLUG)
                else:
                    assert_no_private(text, world)


def test_pages_show_not_found_for_private_things(server, world) -> None:
    layouts = page_layouts()
    private = min(world.private_uuids)
    with as_user(server, None):
        secret = rendered(layouts["component"](uuid=private))
        unknown = rendered(layouts["component"](uuid="00000000-0000-0000-0000-000000000000"))
        # Same answer as for a uuid that never existed: the page does not even confirm it exists.
        assert secret.replace(private, "X") == unknown.replace("00000000-0000-0000-0000-000000000000", "X")
        assert '"id": "not-found"' in secret
        hidden = rendered(layouts["movie"](movie=HIDDEN_MOVIE_SLUG))
        assert '"id": "not-found"' in hidden and HIDDEN_MOVIE not in hidden
        assert '"id": "not-found"' in rendered(layouts["movie_term"](movie=HIDDEN_MOVIE_SLUG, term="memory"))
        assert '"id": "not-found"' in rendered(layouts["term"](term="no-such-term"))
        assert '"id": "not-found"' in rendered(layouts["movie_term"](movie="forrest-gump", term="no-such-term"))


def find(component, predicate) -> list:
    """Components of a layout tree for which ``predicate`` holds."""
    found = [component] if predicate(component) else []
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if hasattr(child, "to_plotly_json"):
            found += find(child, predicate)
    return found


def test_home_page_counts_and_heatmap(server, world) -> None:
    from dash import dcc

    layouts = page_layouts()
    for user_id, components in ((None, 52), (world.owner_id, 61), (world.admin_id, 61)):
        with as_user(server, user_id):
            home = layouts["home"]()
        count = find(home, lambda c: getattr(c, "id", None) == "count-components")
        assert [c.children for c in count] == [f"{components:,}"]
        graphs = find(home, lambda c: isinstance(c, dcc.Graph))
        assert len(graphs) == 1
        z = graphs[0].figure.data[0].z
        assert sum(n or 0 for row in z for n in row) == components
        assert ("synthetic" in rendered(home)) and find(home, lambda c: getattr(c, "id", None) == "demo-notice")


def test_owner_and_admin_see_private_data_on_pages(server, world) -> None:
    layouts = page_layouts()
    private = min(world.private_uuids)
    for user_id in (world.owner_id, world.admin_id):
        with as_user(server, user_id):
            sherlock = rendered(layouts["movie"](movie="sherlock-a-study-in-pink"))
            assert "Sherlock pilot, unpublished" in sherlock and f"/collections/{PRIVATE_SLUG}/maps.zip" in sherlock
            component = rendered(layouts["component"](uuid=private))
            assert '"id": "not-found"' not in component and f"/files/components/{private}.nii.gz" in component
            assert "private" in component
            assert HIDDEN_MOVIE in rendered(layouts["movie"](movie=HIDDEN_MOVIE_SLUG))
            ((hidden_uuid,),) = sql("SELECT uuid FROM components WHERE source_file = 'hidden.nii.gz'")
            flagged = rendered(layouts["component"](uuid=hidden_uuid))
            assert '"id": "qc-warnings"' in flagged and "looks thresholded" in flagged
            assert HIDDEN_MOVIE in rendered(layouts["movies"](sort="newest"))


def test_page_callbacks_respect_visibility(server, world) -> None:
    """Table and search callbacks run with the request's user, whatever context the browser sends."""
    from callbacks.components import search
    from dashboard.components import tables

    private = min(world.private_uuids)
    with as_user(server, None):
        data = tables._draw(tables.SOURCES["decodings"], {"uuid": private}, tables.TableState())
        assert data.total == 0
        data = tables._draw(tables.SOURCES["components"], {"collection": PRIVATE_SLUG}, tables.TableState())
        assert data.total == 0
        assert "No movies or terms match" in rendered(search._suggest("nobody"))
    with as_user(server, world.owner_id):
        data = tables._draw(tables.SOURCES["decodings"], {"uuid": private}, tables.TableState())
        assert data.total == 22
        assert HIDDEN_MOVIE in rendered(search._suggest("nobody"))


def test_page_titles_and_html(anon, owner) -> None:
    """The HTML shell of a page carries its title; a private movie's title is only in the owner's."""
    html = anon.get("/terms/visual").get_data(as_text=True)
    assert "visual · Terms · INcDb" in html
    hidden = anon.get(f"/movies/{HIDDEN_MOVIE_SLUG}").get_data(as_text=True)
    assert HIDDEN_MOVIE not in hidden and "Movie not found" in hidden
    assert f"{HIDDEN_MOVIE} · Movies · INcDb" in owner.get(f"/movies/{HIDDEN_MOVIE_SLUG}").get_data(as_text=True)


def test_pages_without_data_show_empty_states(server, reference_template, tmp_path) -> None:
    """A fresh site (reference maps, no collection): every page explains what is missing instead of failing."""
    path = tmp_path / "empty"
    shutil.copytree(reference_template, path)
    use_environment(path)
    layouts = page_layouts()
    with as_user(server, None):
        home = rendered(layouts["home"]())
        assert "No movies yet." in home and "No components yet." in home and '"id": "demo-notice"' not in home
        assert "No movies yet." in rendered(layouts["movies"]())
        term = rendered(layouts["term"](term="visual"))
        assert "No components yet." in term and "/files/terms/visual.nii.gz?display=1" in term
        assert "/mean.nii.gz" not in term  # no mean map to show yet
        assert "No terms match" in rendered(layouts["terms"](q="zzz"))
        assert '"id": "not-found"' in rendered(layouts["movie"](movie="forrest-gump"))
