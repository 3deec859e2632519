"""Response headers: security headers everywhere, JSON and plain 404s where Dash would answer with its HTML page,
and caching that cannot keep a map public after its collection became private.

The last test loads pages in headless Chromium under the Content-Security-Policy and checks that nothing is
refused: Dash renders, Plotly draws and the NiiVue viewer loads its maps.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, launch_browser, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment
from tests.services import Client

ADMIN = "headers-admin@example.org"
PASSWORD = "headers-password-1"
LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    from accounts.users import create_user
    from store.db import dispose_engine, session_scope

    path = tmp_path_factory.mktemp("headers") / "data"
    shutil.copytree(demo_template, path)
    use_environment(path)
    with session_scope() as session:
        create_user(session, ADMIN, PASSWORD, role="admin")
    dispose_engine()
    return path


@pytest.fixture(autouse=True)
def _use_data(data_path):
    use_environment(data_path)


@pytest.fixture(scope="module")
def server(data_path):
    use_environment(data_path)
    from app import server

    return server


@pytest.fixture
def anon(server) -> Client:
    return Client(flask_app=server)


def public_component() -> tuple[str, str]:
    """(uuid, collection slug) of a component of a public collection."""
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Collection, Component

    with session_scope() as session:
        uuid, slug = session.execute(
            select(Component.uuid, Collection.slug)
            .join(Collection)
            .where(Collection.visibility == "public")
            .order_by(Component.uuid)
            .limit(1)
        ).one()
    return uuid, slug


def policy(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy", "")
    return {
        part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
        for part in (p.strip() for p in header.split(";"))
        if part
    }


def assert_security_headers(response, what: str) -> None:
    csp = policy(response)
    assert csp.get("frame-ancestors") == "'none'", (what, csp)
    assert csp.get("object-src") == "'none'", (what, csp)
    assert csp.get("base-uri") == "'self'", (what, csp)
    assert csp.get("default-src") == "'self'", (what, csp)
    assert "'unsafe-eval'" not in csp.get("script-src", "") and "'unsafe-inline'" not in csp.get("script-src", "")
    assert response.headers.get("X-Frame-Options") == "DENY", what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("Referrer-Policy") in ("same-origin", "strict-origin-when-cross-origin"), what


# ----------------------------------------------------------------------------------------------- headers


def test_every_kind_of_response_has_the_security_headers(anon) -> None:
    uuid, slug = public_component()
    anon.open_page("/")
    for path in (
        "/",
        "/terms/visual",
        "/no-such-page",
        "/api/",
        "/api/stats",
        "/api/no-such-route",
        f"/files/components/{uuid}.nii.gz",
        "/files/no-such-file",
        "/files/underlay.nii.gz",
        f"/components/{uuid}/decodings.csv",
        "/_dash-layout",
        "/_dash-dependencies",
        "/vendor/niivue.umd.js",
        "/assets/incdb.css",
    ):
        assert_security_headers(anon.get(path), path)
    callback = anon.post(
        "/_dash-update-component",
        json_body={
            "output": "nav-account.children",
            "outputs": {"id": "nav-account", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
            "changedPropIds": ["url.pathname"],
        },
    )
    assert callback.status_code == 200
    assert_security_headers(callback, "a callback")
    assert_security_headers(anon.post("/api/stats"), "a refused method")


def assert_inline_scripts_admitted(response) -> None:
    html = re.sub(r"<!--.*?-->", "", response.text, flags=re.DOTALL)  # e.g. Dash's IE notice, never run
    scripts = [
        body
        for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
        if "src=" not in attrs and "application/json" not in attrs
    ]
    assert len(scripts) >= 2  # clientside callbacks and the renderer's start
    allowed = set(policy(response)["script-src"].split())
    for body in scripts:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed, body[:200]
    assert "'unsafe-inline'" not in allowed


def test_page_policy_admits_exactly_the_pages_inline_scripts(anon) -> None:
    """Dash's start-up script and clientside callbacks are inline: each needs its hash in script-src (and
    nothing else may run inline)."""
    assert_inline_scripts_admitted(anon.get("/"))
    assert_inline_scripts_admitted(anon.get("/terms/visual"))


def test_policy_is_the_serving_apps_with_another_dash_app_in_the_process(anon) -> None:
    """``dash.get_app()`` names the newest app of the process (tests build small ones): the hashes must still
    be those of the app on this server."""
    import dash
    import flask

    other = dash.Dash("another", server=flask.Flask("another"))
    other.clientside_callback("function(x) { return x; }", dash.Output("a", "children"), dash.Input("b", "id"))
    assert_inline_scripts_admitted(anon.get("/"))


# ----------------------------------------------------------------------------------------------- unknown paths


def test_unknown_api_paths_answer_json(anon) -> None:
    for path in ("/api/no-such-route", "/api/terms/visual/extra", "/api/movies/a/b/c"):
        response = anon.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"].startswith("application/json"), path
        assert "error" in response.json() and "<html" not in response.text.lower()
    refused = anon.post("/api/stats")
    assert refused.status_code == 405 and "error" in refused.json()


def test_refusals_in_front_of_dash_answer_json_with_the_security_headers(anon) -> None:
    """A script Dash does not serve (404), a callback request that is not the callback's (400), and a body over
    its limit (413): JSON with a message, never Dash's 500 page, and the headers of every other answer."""
    nav = {
        "output": "nav-account.children",
        "outputs": {"id": "nav-account", "property": "children"},
        "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
        "changedPropIds": ["url.pathname"],
    }
    answers = {
        404: anon.get("/_dash-component-suites/dash/nothere.js"),
        400: anon.post("/_dash-update-component", json_body={**nav, "inputs": []}),
        413: anon.post(
            "/_dash-update-component", data=b" " * (24 * 1024**2 + 1), headers={"Content-Type": "application/json"}
        ),
    }
    for status, response in answers.items():
        assert response.status_code == status
        assert response.headers["Content-Type"].startswith("application/json"), status
        assert response.json()["error"] and "Traceback" not in response.text
        assert_security_headers(response, str(status))


def test_unknown_file_paths_answer_a_plain_404(anon) -> None:
    for path in (
        "/files/no-such-file",
        "/files/components/not-a-map",
        "/files/terms/a/b/c/d.nii.gz",
        "/files/components/00000000-0000-0000-0000-000000000000.nii.gz",
    ):
        response = anon.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"].startswith("text/plain"), (path, response.headers["Content-Type"])
        assert "<html" not in response.text.lower() and "_dash-config" not in response.text


# ----------------------------------------------------------------------------------------------- caching


def _directives(response) -> set[str]:
    return {d.strip().split("=")[0] for d in response.headers.get("Cache-Control", "").split(",") if d.strip()}


def test_component_file_is_not_cached_publicly_and_goes_private_at_once(server, anon) -> None:
    from sqlalchemy import update

    from store.db import session_scope
    from store.models import Collection

    uuid, slug = public_component()
    url = f"/files/components/{uuid}.nii.gz"
    first = anon.get(url)
    assert first.status_code == 200
    assert "public" not in _directives(first) and {"private", "no-cache"} <= _directives(first)
    etag = first.headers.get("ETag")
    assert etag
    again = anon.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    display = anon.get(url + "?display=1")
    assert display.status_code == 200 and "public" not in _directives(display)
    assert anon.get(url + "?display=1", headers={"If-None-Match": display.headers["ETag"]}).status_code == 304
    csv = anon.get(f"/components/{uuid}/decodings.csv")
    assert csv.status_code == 200 and "public" not in _directives(csv)

    with session_scope() as session:
        session.execute(update(Collection).where(Collection.slug == slug).values(visibility="private"))
    try:
        assert anon.get(url).status_code == 404
        assert anon.get(url, headers={"If-None-Match": etag}).status_code == 404  # no 304 for the old copy
        admin = Client(flask_app=server)
        admin.sign_in(ADMIN, PASSWORD)
        mine = admin.get(url)
        assert mine.status_code == 200 and "public" not in _directives(mine)
    finally:
        with session_scope() as session:
            session.execute(update(Collection).where(Collection.slug == slug).values(visibility="public"))


def test_term_and_merged_maps_stay_publicly_cacheable(anon) -> None:
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Movie, Term, TermMap

    with session_scope() as session:
        movie, term = session.execute(
            select(Movie.slug, Term.slug)
            .join(TermMap, TermMap.movie_id == Movie.id)
            .join(Term, TermMap.term_id == Term.id)
            .limit(1)
        ).one()
    for url in (f"/files/terms/{term}.nii.gz", f"/files/movies/{movie}/{term}.nii.gz"):
        response = anon.get(url)
        assert response.status_code == 200 and "public" in _directives(response), url
        assert anon.get(url, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304


# ----------------------------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def page(server) -> Iterator:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with serve_wsgi_in_thread(server) as url, sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
        # Collected from the first script on: a refused script or style would never report otherwise.
        context.add_init_script("""
            window.__cspViolations = [];
            document.addEventListener('securitypolicyviolation',
                e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
        """)
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda msg: messages.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: messages.append(str(exc)))
        page.messages = messages
        yield page
        browser.close()


@pytest.mark.parametrize(
    "path, ready",
    [
        ("/", "#graph-heatmap .main-svg .hm"),
        ("/terms/visual", '#viewer[data-loaded="true"][data-nvols="3"]'),
        ("COMPONENT", '#viewer[data-loaded="true"][data-nvols="2"]'),
        ("/movies/forrest-gump", "#movie-terms-table"),
    ],
)
def test_pages_work_under_the_content_security_policy(page, path: str, ready: str) -> None:
    if path == "COMPONENT":
        path = f"/components/{public_component()[0]}"
    page.messages.clear()
    response = page.goto(path)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_selector(ready, timeout=LOAD_TIMEOUT_MS)
    page.wait_for_timeout(500)  # the viewer draws, Plotly lays out
    assert page.evaluate("() => window.__cspViolations") == []
    assert not [m for m in page.messages if "Content Security Policy" in m or "Refused" in m], page.messages
    if "viewer" in ready:  # every map fetched and handed to NiiVue, which drew on its WebGL canvas
        assert page.get_attribute("#viewer", "data-error") is None
        assert page.evaluate("() => document.querySelector('#viewer-canvas').width") > 0
