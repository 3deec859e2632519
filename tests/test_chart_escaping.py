"""Movie titles and term names reach Plotly figures as text, never as markup.

Plotly draws labels and hover text through a subset of HTML, so a movie titled
``<a href="https://evil.example/">Evil</a>`` would become a link on the public home page. The unit tests check the
figure dicts; the browser tests load the demo data with such a movie and term in headless Chromium and check what
Plotly actually drew (and that clicking the cell of that movie still opens its page).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, launch_browser, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

EVIL_MOVIE = '<a href="https://evil.example/">Evil</a> & <b>bold</b>'
EVIL_TERM = '<a href="https://evil.example/term">Evil term</a>'
LOAD_TIMEOUT_MS = 60_000


def _strings(node) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def _data_strings(figure) -> list[str]:
    """Every string of the figure's traces except the hover templates, which are the app's own markup."""
    traces = [{k: v for k, v in trace.items() if k != "hovertemplate"} for trace in figure.to_plotly_json()["data"]]
    return list(_strings(traces)) + list(_strings(figure.to_plotly_json()["layout"]))


# ----------------------------------------------------------------------------------------------- figure dicts


def test_heatmap_figure_escapes_titles_and_terms() -> None:
    from dashboard.components.charts import heatmap_figure, heatmap_links

    data = {
        "terms": [EVIL_TERM, "visual"],
        "term_slugs": ["evil", "visual"],
        "movies": [EVIL_MOVIE, "Forrest Gump"],
        "movie_slugs": ["evil-bold", "forrest-gump"],
        "count": [[2, 0], [1, 3]],
        "mean_r": [[0.4, None], [0.2, 0.5]],
    }
    figure = heatmap_figure(data)
    texts = _data_strings(figure)
    assert not [t for t in texts if "<" in t or ">" in t], texts
    trace = figure.data[0]
    assert list(trace.x) == [
        '&lt;a href="https://evil.example/"&gt;Evil&lt;/a&gt; &amp; &lt;b&gt;bold&lt;/b&gt;',
        "Forrest Gump",
    ]
    assert list(trace.y) == ['&lt;a href="https://evil.example/term"&gt;Evil term&lt;/a&gt;', "visual"]
    # Clicks are resolved by the labels the browser reports, which are the escaped ones.
    links = heatmap_links(data)
    assert links[f"{trace.x[0]}\n{trace.y[0]}"] == "/movies/evil-bold/evil"
    assert links[f"{trace.x[1]}\n{trace.y[1]}"] == "/movies/forrest-gump/visual"


def test_decoding_figure_escapes_term_names() -> None:
    from dashboard.components.charts import decoding_figure, profile_links

    profile = [
        {"term": EVIL_TERM, "slug": "evil", "r": 0.6, "rank": 1},
        {"term": "a & b < c", "slug": "ab", "r": -0.2, "rank": 2},
    ]
    figure = decoding_figure(profile)
    texts = _data_strings(figure)
    assert not [t for t in texts if "<" in t or ">" in t], texts
    assert "a &amp; b &lt; c" in figure.data[0].y
    assert profile_links(profile)['&lt;a href="https://evil.example/term"&gt;Evil term&lt;/a&gt;'] == "/terms/evil"


# ----------------------------------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    """The demo data with Forrest Gump retitled and the term "auditory" renamed to markup."""
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    from sqlalchemy import update

    from store.db import dispose_engine, session_scope
    from store.models import Movie, Term

    path = tmp_path_factory.mktemp("escaping") / "data"
    shutil.copytree(demo_template, path)
    use_environment(path)
    with session_scope() as session:
        session.execute(update(Movie).where(Movie.slug == "forrest-gump").values(title=EVIL_MOVIE))
        session.execute(update(Term).where(Term.slug == "auditory").values(name=EVIL_TERM))
    dispose_engine()
    return path


@pytest.fixture(autouse=True)
def _use_data(request):
    if "data_path" in request.fixturenames:
        use_environment(request.getfixturevalue("data_path"))


@pytest.fixture(scope="module")
def page(data_path):
    from playwright.sync_api import sync_playwright

    use_environment(data_path)
    from app import server

    with serve_wsgi_in_thread(server) as url, sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, f"JavaScript errors: {errors}"


EVIL_LINKS_JS = """(selector) => {
    const root = document.querySelector(selector);
    const xlink = 'http://www.w3.org/1999/xlink';
    return Array.from(root.querySelectorAll('a')).map(a => (a.getAttribute('href') || '') + ' '
        + (a.getAttributeNS(xlink, 'href') || '')).filter(h => h.includes('evil.example')).length;
}"""


def open_page(page, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#_pages_content > *", timeout=LOAD_TIMEOUT_MS)


def texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_text_contents()


def hover_text(page, graph: str, x_label: str | None, y_label: str) -> str:
    """Hover the mark at the given labels (as Plotly stores them) and return the hover box's text."""
    x, y = page.evaluate(
        """([graph, xl, yl]) => {
        const gd = document.querySelector(graph + ' .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, t = gd.data[0];
        const row = t.y.indexOf(yl);
        const col = xl === null ? null : t.x.indexOf(xl);
        const px = xa._offset + (xl === null ? xa.l2p(t.x[row] / 2) : xa.l2p(col));  // a bar: its middle
        return [px, ya._offset + ya.l2p(row)];
    }""",
        [graph, x_label, y_label],
    )
    plot = page.locator(f"{graph} .js-plotly-plot")
    plot.hover(position={"x": x, "y": y})
    page.wait_for_selector(f"{graph} .hoverlayer .hovertext", timeout=10_000)
    return page.locator(f"{graph} .hoverlayer .hovertext").first.text_content()


def test_home_page_heatmap_shows_the_title_as_text(page) -> None:
    open_page(page, "/")
    page.wait_for_selector("#graph-heatmap .main-svg .hm", timeout=LOAD_TIMEOUT_MS)
    assert page.evaluate(EVIL_LINKS_JS, "#graph-heatmap") == 0
    assert EVIL_MOVIE in texts(page, "#graph-heatmap .xtick text")
    assert EVIL_TERM in texts(page, "#graph-heatmap .ytick text")
    label = page.evaluate(
        "() => document.querySelector('#graph-heatmap .js-plotly-plot').data[0].x.find(x => x.includes('Evil'))"
    )
    hover = hover_text(page, "#graph-heatmap", label, "visual")
    assert EVIL_MOVIE in hover
    assert page.evaluate(EVIL_LINKS_JS, "#graph-heatmap") == 0
    # The cell of that movie still opens its page (the click key is the label Plotly reports).
    page.locator("#graph-heatmap .js-plotly-plot").click(position=_cell(page, label, "visual"))
    page.wait_for_url("**/movies/forrest-gump/visual", timeout=15_000)
    page.wait_for_selector("text=Components that were merged", timeout=LOAD_TIMEOUT_MS)
    assert page.evaluate(EVIL_LINKS_JS, "body") == 0
    assert EVIL_MOVIE in page.locator("h1").inner_text()


def _cell(page, x_label: str, y_label: str) -> dict[str, float]:
    x, y = page.evaluate(
        """([xl, yl]) => {
        const gd = document.querySelector('#graph-heatmap .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return [xa._offset + xa.l2p(gd.data[0].x.indexOf(xl)), ya._offset + ya.l2p(gd.data[0].y.indexOf(yl))];
    }""",
        [x_label, y_label],
    )
    return {"x": x, "y": y}


def test_movie_page_shows_the_title_as_text(page) -> None:
    open_page(page, "/movies/forrest-gump")
    page.wait_for_selector("#movie-terms-table")
    assert page.evaluate(EVIL_LINKS_JS, "body") == 0
    assert EVIL_MOVIE in page.locator("h1").inner_text()
    assert EVIL_TERM in page.locator("#movie-terms-table").inner_text()
    page.wait_for_function("() => document.title.endsWith('Movies · INcDb')")
    assert page.title() == f"{EVIL_MOVIE} · Movies · INcDb"


def test_component_profile_shows_the_term_as_text(page) -> None:
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Collection, Component, Movie, Term

    with session_scope() as session:
        uuid = session.scalar(
            select(Component.uuid)
            .join(Collection)
            .join(Movie)
            .join(Term, Component.best_term_id == Term.id)
            .where(Movie.slug == "forrest-gump", Term.slug == "auditory", Collection.visibility == "public")
            .limit(1)
        )
    open_page(page, f"/components/{uuid}")
    page.wait_for_selector("#graph-profile .main-svg .bars path", timeout=LOAD_TIMEOUT_MS)
    assert page.evaluate(EVIL_LINKS_JS, "#graph-profile") == 0
    assert EVIL_TERM in texts(page, "#graph-profile .ytick text")
    label = page.evaluate(
        "() => document.querySelector('#graph-profile .js-plotly-plot').data[0].y.find(y => y.includes('Evil'))"
    )
    assert EVIL_TERM in hover_text(page, "#graph-profile", None, label)
    assert page.evaluate(EVIL_LINKS_JS, "#graph-profile") == 0
    assert EVIL_TERM not in page.content()  # nowhere as markup in the document (text nodes are serialised escaped)
