"""The timeline in headless Chromium on the demo data: the movie page's Timeline tab draws the annotation tracks
and the heatmap of component time courses, and hovering gives the time; the component page's Time course panel
draws the course, the spectrum and the decoding table, and choosing a label overlays its regressor."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from store.db import session_scope
from store.models import Collection, Component, Movie, TemporalDecoding
from tests.browser import CHROMIUM, browser_page, save_artifact, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    path = tmp_path_factory.mktemp("timeline") / "data"
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
    with browser_page(base_url, timeout_ms=TIMEOUT_MS) as page:
        yield page


def _hover_centre(page, selector: str) -> None:
    box = page.locator(selector).first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)


def test_movie_timeline_tab(page):
    with session_scope() as session:
        slug = session.scalar(select(Movie.slug).where(Movie.title == "Forrest Gump"))
    page.goto(f"/movies/{slug}?tab=timeline")
    page.wait_for_selector("#movie-timeline .js-plotly-plot")
    plot = "#movie-timeline .js-plotly-plot"
    assert page.locator(f"{plot} .heatmaplayer image, {plot} .hm image").count() >= 1  # the heatmap is drawn
    assert page.locator(f"{plot} .barlayer .point").count() > 10  # annotation bars
    ticks = page.eval_on_selector_all(f"{plot} .xtick text", "els => els.map(e => e.textContent)")
    assert any(t.count(":") == 2 for t in ticks), ticks  # hh:mm:ss axis
    _hover_centre(page, f"{plot} .nsewdrag")
    page.wait_for_selector(".hoverlayer .hovertext")
    hover = page.eval_on_selector(".hoverlayer", "e => e.textContent")
    assert "movie time" in hover
    # The line above the figure names the time as h:mm:ss and the labels drawn then (read from the figure's tracks).
    page.wait_for_function(
        "/movie time \\d+:\\d\\d:\\d\\d/.test(document.querySelector('#timeline-readout').textContent)"
    )
    readout = page.text_content("#timeline-readout")
    assert "no label" in readout or "labels: " in readout, readout
    save_artifact("timeline-movie.png", page.screenshot(full_page=True))


def test_component_time_course_panel(page):
    with session_scope() as session:
        uuid = session.scalar(
            select(Component.uuid)
            .join(Collection)
            .join(TemporalDecoding, TemporalDecoding.component_id == Component.id)
            .where(Collection.visibility == "public", TemporalDecoding.rank == 1, TemporalDecoding.q < 0.05)
            .order_by(Component.id)
        )
    page.goto(f"/components/{uuid}")
    page.wait_for_selector('.incdb-viewer[data-loaded="true"]')
    page.locator(".incdb-lazy", has_text="Time course").scroll_into_view_if_needed()  # drawn once in view
    page.wait_for_selector("#course-panel .js-plotly-plot")
    course = page.locator("#course-panel .js-plotly-plot").first
    assert course.locator(".scatterlayer .trace").count() >= 2  # a line per run (and the band)
    assert page.locator("#course-spectrum .scatterlayer .trace").count() == 1
    assert page.locator("#temporal-table tbody tr").count() >= 1
    before = course.locator(".scatterlayer .trace").count()
    page.click("#course-label")
    page.locator("[role=listbox] [role=option]").first.click()  # in a popover outside the dropdown
    page.wait_for_function(
        f"document.querySelectorAll('#course-panel .js-plotly-plot .scatterlayer .trace').length > {before}"
    )
    box = course.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.wait_for_selector(".hoverlayer .hovertext")
    save_artifact("timeline-component.png", page.screenshot(full_page=True))
