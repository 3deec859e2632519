"""Synchrony in headless Chromium on a three-subject collection whose components synchronise in one stretch of the
film: the Timeline switches to synchrony (the windowed ISC heatmap with its "ISC (r)" colourbar, the view kept in
the address), a moment of synchrony zooms the timeline there, and a cell of the collection's ISFC heatmap opens its
two components."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.browser import CHROMIUM, launch_browser, save_artifact, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

TIMEOUT_MS = 60_000
PLOT = "#movie-timeline .js-plotly-plot"


@pytest.fixture(scope="module")
def study(tmp_path_factory, reference_template) -> dict:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    from tests.test_timeline_synchrony import computed, stretch_mix

    path = tmp_path_factory.mktemp("synchrony-browser") / "data"
    shutil.copytree(reference_template, path)
    use_environment(path)
    found = computed(tmp_path_factory.mktemp("synchrony-files"), mix=stretch_mix())
    return {**found, "path": path}


@pytest.fixture(scope="module")
def base_url(study) -> Iterator[str]:
    use_environment(study["path"])
    from app import server

    with serve_wsgi_in_thread(server) as url:
        yield url


@pytest.fixture
def page(base_url, study):
    use_environment(study["path"])
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        # bypass_csp: the CSP refuses Playwright's string predicates (eval), not anything the app does
        context = browser.new_context(viewport={"width": 1280, "height": 1100}, base_url=base_url, bypass_csp=True)
        context.route("https://**/*", lambda route: route.abort())
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        context.close()
        browser.close()
        assert not errors, errors


def _title(page) -> str:
    return page.eval_on_selector(PLOT, "el => String(((el.data[0].colorbar || {}).title || {}).text || '')")


def test_switch_the_timeline_to_synchrony_and_zoom_to_a_moment(page, study):
    page.goto(f"/movies/{study['movie']}?tab=timeline")
    page.wait_for_selector(f"{PLOT} .heatmaplayer")
    assert _title(page) == "z"
    page.locator("#timeline-view label", has_text="synchrony").click()
    page.wait_for_function(
        f"() => ((document.querySelector('{PLOT}').data[0].colorbar || {{}}).title || {{}}).text === 'ISC (r)'"
    )
    page.wait_for_function("() => window.location.search.includes('view=synchrony')")
    # The colourbar is drawn with its title, and the note gives the window length.
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{PLOT} .cbtitle')].some(t => t.textContent === 'ISC (r)')"
    )
    assert "30 s" in page.text_content("#timeline-view-note")
    rows = page.eval_on_selector(PLOT, "el => el.data[0].y.length")
    assert rows == 4
    save_artifact("timeline-synchrony.png", page.screenshot(full_page=True))
    # A moment of synchrony zooms the timeline to it (the moments lie in 50-88 s of a 234 s movie).
    moment = page.locator(".incdb-moment").first
    moment.scroll_into_view_if_needed()
    text = moment.text_content()
    seconds = sum(int(part) * 60**i for i, part in enumerate(reversed(text.split(":"))))
    assert 50 <= seconds <= 88, text
    moment.click()
    page.wait_for_function(
        f"() => {{ const r = document.querySelector('{PLOT}').layout.xaxis.range;"
        f" return r && r[0] < {seconds} && {seconds} < r[1] && r[1] - r[0] < 200; }}"
    )
    # A reload keeps the synchrony view from the address.
    page.goto(page.url)
    page.wait_for_selector(f"{PLOT} .heatmaplayer")
    assert _title(page) == "ISC (r)"
    assert page.is_checked("#timeline-view input[value=synchrony]")


def test_the_isfc_heatmap_opens_the_two_components_of_a_cell(page, study):
    page.goto(f"/collections/{study['slug']}")
    graph = page.locator("[id*='incdb-isfc-graph'] .js-plotly-plot, .js-plotly-plot[id*='incdb-isfc-graph']").first
    heading = page.get_by_text("Networks that move together (ISFC)").first
    heading.scroll_into_view_if_needed()
    graph.wait_for()
    page.wait_for_function(
        "() => { const el = document.querySelector(\"[id*='incdb-isfc-graph'] .js-plotly-plot\");"
        " return el && el._fullLayout && el.data && el.data[0].z.length === 4; }"
    )
    pair = page.locator("[id*='incdb-isfc-pair'] a")
    for _ in range(3):  # the page may still move as the sections below load: click until a cell answers
        graph.scroll_into_view_if_needed()
        box = graph.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
        page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
        try:
            pair.first.wait_for(timeout=3000)
            break
        except Exception:  # noqa: BLE001 - Playwright's timeout: click again
            continue
    pair.first.wait_for()
    hrefs = [pair.nth(i).get_attribute("href") for i in range(pair.count())]
    assert len(hrefs) == 2 and all(h.startswith("/components/") for h in hrefs), hrefs
    assert {h.rsplit("/", 1)[-1] for h in hrefs} <= set(study["uuids"])
    save_artifact("collection-isfc.png", page.screenshot(full_page=True))
