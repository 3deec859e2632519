"""The Timeline tab's label chooser and zoom in headless Chromium on the demo data: choosing a label draws its track
and writes the choice into the address, a reload restores it, and zooming brings finer heatmap columns for the
range in view."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from store.db import session_scope
from store.models import Movie
from tests.browser import CHROMIUM, browser_page, save_artifact, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

TIMEOUT_MS = 60_000
PLOT = "#movie-timeline .js-plotly-plot"


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    path = tmp_path_factory.mktemp("timeline-chooser") / "data"
    shutil.copytree(demo_template, path)
    return path


@pytest.fixture(scope="module")
def base_url(data_path) -> Iterator[str]:
    use_environment(data_path)
    from app import server

    with serve_wsgi_in_thread(server) as url:
        yield url


@pytest.fixture
def page(base_url, data_path):
    use_environment(data_path)
    with browser_page(base_url, height=1100, timeout_ms=TIMEOUT_MS, bypass_csp=True) as page:
        yield page


def _tracks(page) -> list[str]:
    return page.eval_on_selector(PLOT, "el => (el.layout.yaxis2.ticktext || []).map(String)")


def test_choose_a_label_keep_it_in_the_address_and_zoom(page):
    with session_scope() as session:
        slug = session.scalar(select(Movie.slug).where(Movie.title == "Forrest Gump"))
    page.goto(f"/movies/{slug}?tab=timeline")
    page.wait_for_selector(f"{PLOT} .barlayer .point")
    note = page.text_content("#timeline-labels-note")
    assert " of " in note and "labels shown" in note, note
    # Deselect the defaults, then search for one label and choose it.
    page.locator("#timeline-labels").click()
    page.get_by_role("button", name="Deselect All").click()
    page.keyboard.press("Escape")  # the chooser sends its value when it closes (one redraw for several changes)
    page.wait_for_function("document.querySelector('#timeline-labels-note').textContent.startsWith('0 of')")
    assert "labels=%5B%5D" in page.url  # an empty choice is a choice: kept in the address
    page.locator("#timeline-labels").click()
    page.locator(".dash-dropdown-search").fill("music")
    page.locator("[role=listbox] [role=option]", has_text="music").first.click()
    page.keyboard.press("Escape")
    page.wait_for_function("document.querySelector('#timeline-labels-note').textContent.startsWith('1 of')")
    page.wait_for_function(f"document.querySelector('{PLOT}').layout.yaxis2.ticktext.length === 1")
    assert _tracks(page) == ["music"] or _tracks(page)[0].endswith("music"), _tracks(page)
    save_artifact("timeline-chooser.png", page.screenshot(full_page=True))
    url = page.url
    assert "labels=" in url and "music" in url
    # A reload restores the same choice from the address.
    page.goto(url)
    page.wait_for_selector(f"{PLOT} .barlayer .point")
    page.wait_for_function(f"document.querySelector('{PLOT}').layout.yaxis2.ticktext.length === 1")
    assert page.text_content("#timeline-labels-note").startswith("1 of")
    # Zooming brings the finer columns of the range in view into the second heatmap.
    # (asked again at each poll until answered: a relayout made before the graph listens would be lost)
    page.wait_for_function(
        f"() => {{ const el = document.querySelector('{PLOT}'), d = el.data[1];"
        " if (d.visible === true && d.x.length > 0) { return d.x.every(x => x >= 60 && x <= 180); }"
        " window.Plotly.relayout(el, {'xaxis.range': [60, 180]}); return false; }",
        polling=1000,
    )
    save_artifact("timeline-zoomed.png", page.screenshot(full_page=True))
