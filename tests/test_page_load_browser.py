"""What each page type asks of the server on load, in headless Chromium on the demo data (no timed assertions).

A page's browser cost grows with what its callbacks send (Dash's renderer mounts every component of every answer),
so these tests count, on a fresh load of each page type, the ``_dash-update-component`` requests and the bytes of
their answers, and hold them under bounds set from the demo data with headroom; no single answer on load may
exceed ``MAX_ANSWER_BYTES``. On the component page the viewer must ask for its NIfTI files before any section below
the fold (clusters, time course, ranked terms, similar components) has been answered: those load when scrolled to
(``assets/incdb-lazy.js``), and they do load then.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.browser import CHROMIUM, launch_browser, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

LOAD_TIMEOUT_MS = 60_000
QUIET_MS = 1500  # after the page is ready and the network idle: anything asked later is not "on load"
MAX_ANSWER_BYTES = 100_000  # no callback answer on load over about 100 KB
# Per page type: (callback requests, bytes of their answers) on load. The demo data gives two requests on every page
# (the navbar's account links and the page content) and home 27 KB, movie 66 KB, term 52 KB, component 46 KB, label
# 30 KB, collection 31 KB; the bounds leave room for small changes of the layouts, not for another round of callbacks.
BOUNDS = {
    "home": (3, 45_000),
    "movie": (3, 100_000),
    "term": (3, 80_000),
    "component": (3, 70_000),
    "label": (3, 50_000),
    "collection": (3, 45_000),
}
# Outputs of the sections below the component page's fold.
LAZY_OUTPUTS = ("incdb-lazy-body", "similar-body", "incdb-clusters-body")


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    path = tmp_path_factory.mktemp("page-load") / "data"
    shutil.copytree(demo_template, path)
    return path


@pytest.fixture(autouse=True)
def _use_data(data_path):
    use_environment(data_path)


@pytest.fixture(scope="module")
def base_url(data_path) -> Iterator[str]:
    use_environment(data_path)
    from app import server

    with serve_wsgi_in_thread(server) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def addresses(base_url) -> dict[str, str]:
    """One address of each page type, found through the API so the test follows the demo data."""

    def first(path: str, key: str) -> str:
        return requests.get(base_url + path, timeout=60).json()["items"][0][key]

    component = first("/api/components?term=auditory&per_page=1", "uuid")
    temporal = requests.get(f"{base_url}/api/components/{component}/temporal", timeout=60).json()
    label = temporal[0]["label"] if isinstance(temporal, list) and temporal else "faces"
    return {
        "home": "/",
        "movie": "/movies/forrest-gump",
        "term": "/terms/visual",
        "component": f"/components/{component}",
        "label": f"/labels/{quote(label, safe='')}",
        "collection": f"/collections/{first('/api/collections', 'slug')}",
    }


@dataclass
class Load:
    """What happened during a page load, in order."""

    events: list[tuple[str, str]] = field(default_factory=list)  # ("nifti", url) or ("answer", outputs)
    answers: list[tuple[str, int]] = field(default_factory=list)  # (outputs, bytes) of callback answers
    errors: list[str] = field(default_factory=list)


def _outputs(request) -> str:
    try:
        return str(json.loads(request.post_data or "{}").get("output", ""))
    except ValueError:
        return ""


def open_fresh(browser, base_url: str, path: str) -> tuple[object, object, Load]:
    # bypass_csp: the app's CSP forbids eval, which Playwright's polling predicates need.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url, bypass_csp=True)
    context.route("https://**/*", lambda route: route.abort())  # the CDN theme is not reachable in tests
    page = context.new_page()
    load = Load()
    pending: list = []

    def on_request(request) -> None:
        if "/files/" in request.url and ".nii" in request.url:
            load.events.append(("nifti", request.url))

    def on_response(response) -> None:
        if "_dash-update-component" in response.url:
            load.events.append(("answer", _outputs(response.request)))
            pending.append(response)

    page.on("request", on_request)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: load.errors.append(str(exc)))
    page.goto(path)
    page.wait_for_function("document.body && document.body.dataset.ready === '1'", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_timeout(QUIET_MS)
    page.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT_MS)
    for response in pending:
        load.answers.append((_outputs(response.request), len(response.body())))
    return context, page, load


@pytest.mark.parametrize("kind", list(BOUNDS))
def test_callbacks_on_load_stay_under_their_bounds(browser, base_url, addresses, kind):
    context, _page, load = open_fresh(browser, base_url, addresses[kind])
    context.close()
    assert not load.errors, load.errors
    n_bound, bytes_bound = BOUNDS[kind]
    total = sum(size for _, size in load.answers)
    summary = f"{kind}: {len(load.answers)} callback answers, {total:,} bytes: {load.answers}"
    assert 1 <= len(load.answers) <= n_bound, summary
    assert total <= bytes_bound, summary
    assert max(size for _, size in load.answers) <= MAX_ANSWER_BYTES, summary


def test_the_component_viewer_loads_before_any_section_below_the_fold(browser, base_url, addresses):
    context, page, load = open_fresh(browser, base_url, addresses["component"])
    try:
        niftis = [i for i, (kind, _) in enumerate(load.events) if kind == "nifti"]
        assert len(niftis) >= 2, load.events  # the component's map and the template
        lazy = [
            i for i, (kind, what) in enumerate(load.events) if kind == "answer" and any(o in what for o in LAZY_OUTPUTS)
        ]
        assert all(i > max(niftis) for i in lazy), load.events
        assert page.locator("#decodings-table").count() == 0  # not drawn before it is scrolled to

        # Scrolled into view, every section below the fold loads.
        page.locator(".incdb-lazy:has(.incdb-clusters)").scroll_into_view_if_needed()
        page.locator(".incdb-lazy", has_text="All terms, ranked").scroll_into_view_if_needed()
        page.locator(".incdb-lazy:has(#similar-body)").scroll_into_view_if_needed()
        page.wait_for_selector("#decodings-table", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_selector(".incdb-cluster-row", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_selector("#similar-body table", timeout=LOAD_TIMEOUT_MS)
        answered = [what for kind, what in load.events if kind == "answer"]
        for output in LAZY_OUTPUTS:
            assert any(output in what for what in answered), (output, answered)
        assert not load.errors, load.errors
    finally:
        context.close()
