"""A study of real shape through the browser (``tests/realstudy.py`` at :data:`SMALL` size: 4 overlapping runs, 3
subjects, 8 components zipped as a whole MELODIC ``.gica`` folder, three annotation sets with 520 labels that carry
every awkward character class): a curator creates the collection with its timing, uploads the archive through the
contribute panel, processing runs by itself, the three annotation sets are added on the movie's annotations page;
then the movie's Timeline tab draws, and the label page opened through the app's own link from a linked component's
decoding table lists the component."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from tests.browser import browser_page, require_chromium, save_artifact, serve_wsgi_in_thread
from tests.conftest import CURATOR_PASSWORD
from tests.realstudy import (
    SMALL,
    Study,
    add_annotation_sets,
    create_collection,
    scroll_until,
    sign_in,
    upload_and_process,
    write_study,
)

TIMEOUT_MS = 120_000
MOVIE = "Forrest Gump (real shape)"


@pytest.fixture
def study(tmp_path) -> Study:
    return write_study(tmp_path / "study", SMALL)


@pytest.fixture
def base_url(data_dir, curator) -> Iterator[str]:
    require_chromium()
    import app as app_module

    with serve_wsgi_in_thread(app_module.server) as url:
        yield url


@pytest.fixture
def page(base_url):
    with browser_page(base_url, timeout_ms=TIMEOUT_MS, offline=False) as page:
        yield page


def _wait(predicate, timeout: float, what: str, state=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s: {state()}")


def _temporal_jobs_done(movie_title: str) -> bool:
    from store.db import session_scope
    from store.models import ACTIVE_JOB_STATUSES, Job, Movie

    with session_scope() as session:
        movie_id = session.scalar(select(Movie.id).where(Movie.title == movie_title))
        active = session.scalar(
            select(Job.id).where(Job.kind == "temporal", Job.movie_id == movie_id, Job.status.in_(ACTIVE_JOB_STATUSES))
        )
        ran = session.scalar(select(Job.id).where(Job.kind == "temporal", Job.movie_id == movie_id))
        return bool(ran) and active is None


def _jobs() -> list[tuple]:
    from store.db import session_scope
    from store.models import Job

    with session_scope() as session:
        return [tuple(r) for r in session.execute(select(Job.id, Job.kind, Job.status, Job.message, Job.error))]


def _movie_slug(title: str) -> str:
    from store.db import session_scope
    from store.models import Movie

    with session_scope() as session:
        return session.scalar(select(Movie.slug).where(Movie.title == title))


def _component_following(study: Study, label: str) -> tuple[str, int]:
    """(uuid, volume index) of the component designed to follow ``label``."""
    from store.db import session_scope
    from store.models import Collection, Component

    index = next(i for i, name in study.links.items() if name == label)
    with session_scope() as session:
        uuid = session.scalar(
            select(Component.uuid)
            .join(Collection)
            .where(Collection.name == "Real-shape study", Component.volume_index == index)
        )
    return uuid, index


def _poll(page, expression: str, timeout: float = 60):
    """The value of ``expression`` once truthy, evaluated in the page (the app's CSP refuses the ``eval`` that
    Playwright's own polling needs)."""
    return _wait(lambda: page.evaluate(expression), timeout, f"{expression} never held")


def _choose_a_label_and_zoom(page, plot: str) -> None:
    """Clear the chooser, find a label by a search with awkward characters, draw it alone; then zoom to a tenth of
    the film by a drag and see the finer heatmap columns arrive for the range in view."""
    note = page.inner_text("#timeline-labels-note")
    match = re.match(r"(\d+) of (\d+) labels shown", note)
    assert match and int(match[2]) == SMALL.labels, note  # every label of the three sets can be chosen
    page.click("#timeline-labels .dash-dropdown-clear")
    page.wait_for_selector(f"#timeline-labels-note:has-text('0 of {SMALL.labels} labels shown')")
    label = "100% cotton"
    page.click("#timeline-labels")
    page.keyboard.type(label)
    page.locator("[role=listbox] [role=option]", has_text=label).first.click()
    page.keyboard.press("Escape")
    page.wait_for_selector(f"#timeline-labels-note:has-text('1 of {SMALL.labels} labels shown')")
    assert "labels=" in page.url, page.url  # the choice is kept in the address
    ticks = _poll(page, f"[...document.querySelectorAll('{plot} .y2tick text')].map(e => e.textContent).join('|')")
    assert label in ticks, ticks

    from dashboard.components.timeline import FINE  # the heatmap trace of the zoomed range's finer columns

    graph = f"document.querySelector('{plot}')"
    span = page.evaluate(f"{graph}.layout.xaxis.range.map(Number)")
    box = page.locator(f"{plot} .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=4)
    page.mouse.up()
    zoomed = _poll(page, f"(r => r[1] - r[0] < {(span[1] - span[0]) / 2} && r)({graph}.layout.xaxis.range.map(Number))")
    assert span[0] < zoomed[0] < zoomed[1] < span[1], (span, zoomed)
    fine = _poll(page, f"(d => d && d.x && d.x.length > 0 && [d.x[0], d.x[d.x.length - 1]])({graph}.data[{FINE}])")
    assert fine[0] <= zoomed[1] and fine[1] >= zoomed[0], (fine, zoomed)  # finer columns for the range in view


def test_a_study_of_real_shape_uploads_decodes_and_browses(page, base_url, study):
    # sign in and create the collection with the study's timing
    sign_in(page, "cora@example.org", CURATOR_PASSWORD)
    address = create_collection(page, study, "Real-shape study", MOVIE)
    assert address.endswith("/contribute/real-shape-study"), address

    # confirm the licence, upload the zipped .gica folder through the panel; processing starts by itself
    upload_and_process(page, study, timeout_ms=600_000)
    runner = page.inner_text("#proc-runner")
    assert f"{SMALL.components} component(s) decoded" in runner, runner
    page.wait_for_selector(f"#coll-component-count:has-text('{SMALL.components} component(s).')")
    assert "mask" not in page.inner_text("#coll-component-table")  # MELODIC's helper images are no components

    # the three annotation sets, one right after the other, on the movie's annotations page
    slug = _movie_slug(MOVIE)
    for message in add_annotation_sets(page, slug, study):
        assert "Added" in message, message
    _wait(lambda: _temporal_jobs_done(MOVIE), 300, "the temporal decoding did not finish", _jobs)
    page.reload()
    page.wait_for_selector("#annot-sets")
    for name, _ in study.annotations:
        assert name in page.inner_text("#annot-sets")

    # the movie's Timeline tab draws its heatmap and annotation tracks
    page.goto(f"/movies/{slug}?tab=timeline")
    plot = "#movie-timeline .js-plotly-plot"
    page.wait_for_selector(plot)
    assert page.locator(f"{plot} .heatmaplayer image, {plot} .hm image").count() >= 1
    assert page.locator(f"{plot} .barlayer .point, {plot} .scatterlayer .trace").count() >= 1
    _choose_a_label_and_zoom(page, plot)
    save_artifact("real-study-timeline.png", page.screenshot(full_page=True))

    # a component designed to follow "FORREST (V.O.)": its decoding table links the label's page
    label = "FORREST (V.O.)"
    uuid, _ = _component_following(study, label)
    page.goto(f"/components/{uuid}")
    scroll_until(page, "#temporal-table")  # the Time course section loads when it comes into view
    link = page.locator("#temporal-table a", has_text=label).first
    link.wait_for()
    href = link.get_attribute("href")
    assert unquote(href.removeprefix("/labels/")) == label, href
    link.click()
    page.wait_for_url(re.compile(r".*/labels/.*"))
    heading = page.locator("h1").first
    heading.wait_for()
    assert label in heading.inner_text() and "%" not in heading.inner_text(), heading.inner_text()
    page.wait_for_selector(f"a[href='/components/{uuid}']")
    rows = page.locator("table tbody tr")
    assert rows.count() >= 1
    assert "Real-shape study" in page.inner_text("table")
    save_artifact("real-study-label.png", page.screenshot(full_page=True))


def test_the_generator_gives_the_shape_it_promises(tmp_path):
    """The full-size parameters, and the small study's labels, sets and links (cheap: no maps for the full size)."""
    from pipeline.temporal.events import read_events
    from tests.realstudy import FULL, timing_of

    full = timing_of(FULL)
    assert (full.rows, len(full.runs), full.subjects, full.tr) == (53_985, 8, 15, 2.0)
    starts = [r.start_s for r in full.runs]
    ends = [r.start_s + r.volumes * full.tr for r in full.runs]
    assert all(ends[i] - starts[i + 1] == 16.0 for i in range(7))  # 16 s overlaps
    assert 7000 < ends[-1] <= 7200  # a 2-hour film

    study = write_study(tmp_path / "s", SMALL)
    events = [e for _, path in study.annotations for e in read_events(path.read_bytes(), path.name)]
    labels = {e.label for e in events}
    assert len(labels) == SMALL.labels >= 500 and len(events) == study.events >= 2000
    text = "".join(labels)
    for ch in " ().'/#?%&+":
        assert ch in text, ch
    assert any(label.isdigit() for label in labels)
    assert any(any(ord(c) > 0x400 for c in label) for label in labels)  # Cyrillic, Japanese, Arabic
    assert len(study.annotations) == 3 and len(study.links) == SMALL.links
    import zipfile

    names = zipfile.ZipFile(study.archive).namelist()
    ica = "forrest_groupICA.gica/groupmelodic.ica/"
    for member in ("melodic_IC.nii.gz", "melodic_mix", "melodic_FTmix", "mask.nii.gz", "mean.nii.gz", "log.txt"):
        assert ica + member in names, member
    assert any(n.startswith(ica + "stats/") for n in names) and any(n.startswith(ica + "report/") for n in names)
    assert not list(Path(tmp_path / "s").glob("*-work"))  # scratch files removed
