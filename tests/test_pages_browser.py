"""The browse pages in headless Chromium, served by the real app on the demo data (theme and fonts come from the
app itself, so the screenshots are styled)."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import pytest
import requests

from tests.browser import CHROMIUM, Pixels, decode_png, launch_browser, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

LOAD_TIMEOUT_MS = 60_000
VIEWER = "viewer"


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    path = tmp_path_factory.mktemp("pages") / "data"
    shutil.copytree(demo_template, path)
    return path


@pytest.fixture(autouse=True)
def _use_data(data_path):
    use_environment(data_path)  # conftest restores the environment after every test


@pytest.fixture(scope="module")
def base_url(data_path) -> Iterator[str]:
    use_environment(data_path)
    from app import server  # after the environment: settings are read lazily

    with serve_wsgi_in_thread(server) as url:
        yield url


@pytest.fixture(scope="module")
def browser(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1, base_url=base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "Failed to load resource" not in msg.text else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def open_page(page, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#_pages_content > *", timeout=LOAD_TIMEOUT_MS)
    settle(page)


def settle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('._dash-loading, [data-dash-is-loading=\"true\"]')", timeout=LOAD_TIMEOUT_MS
    )


def wait_viewer(page, nvols: int) -> None:
    page.wait_for_selector(f'#{VIEWER}[data-loaded="true"][data-nvols="{nvols}"]', timeout=LOAD_TIMEOUT_MS)
    settle(page)
    page.wait_for_timeout(300)  # NiiVue draws the frame after the load resolves


def canvas_pixels(page) -> Pixels:
    return decode_png(page.locator(f"#{VIEWER}-canvas").screenshot())


def is_colour(r: int, g: int, b: int) -> bool:
    return max(r, g, b) - min(r, g, b) > 60


def assert_brain_drawn(page) -> Pixels:
    pixels = canvas_pixels(page)
    total = pixels.width * pixels.height
    lit = pixels.count(lambda r, g, b: r + g + b > 60)
    assert lit > 0.1 * total, f"only {lit} of {total} canvas pixels differ from the black background"
    assert pixels.count(is_colour) > 500, "no coloured overlay pixels"
    return pixels


def wait_for_change(page, before: Pixels, min_pixels: int = 200) -> Pixels:
    after = before
    for _ in range(40):
        page.wait_for_timeout(150)
        after = canvas_pixels(page)
        if after.differing_pixels(before) >= min_pixels:
            break
    return after


def wait_query(page, fragment: str, present: bool = True) -> None:
    """The address bar follows table and tab state (written by a clientside callback after the update)."""
    page.wait_for_function(
        "([f, present]) => location.search.includes(f) === present", arg=[fragment, present], timeout=15_000
    )


def table_rows(page, table_id: str) -> list[str]:
    return page.locator(f"#{table_id} tbody tr").all_inner_texts()


def click_on(page, locator) -> None:
    """A real click at the middle of an element, whatever lies on top (a row's stretched link does)."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def screenshot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / name), full_page=True)


def mark_canvas(page) -> None:
    page.evaluate(f"() => {{ window.__incdbCanvas = document.getElementById('{VIEWER}-canvas'); }}")


def same_canvas(page) -> bool:
    return page.evaluate(f"() => document.getElementById('{VIEWER}-canvas') === window.__incdbCanvas")


# ----------------------------------------------------------------------------------------------- home


def test_home_page(page, artifacts) -> None:
    open_page(page, "/")
    assert page.title() == "INcDb: Internet Neurocinematics Database"
    assert page.locator("#count-movies").inner_text() == "4"
    assert page.locator("#count-collections").inner_text() == "5"
    assert page.locator("#count-components").inner_text() == "52"
    assert page.locator("#count-terms").inner_text() == "22"
    assert "synthetic" in page.locator("#demo-notice").inner_text().lower()
    recent = page.locator("#recent-movies li").all_inner_texts()
    assert len(recent) == 4 and recent[0].startswith("The Grand Budapest Hotel")  # the last demo collection added
    assert "Not sure where to start?" in page.inner_text("body")
    page.wait_for_selector("#graph-heatmap .main-svg .hm", timeout=LOAD_TIMEOUT_MS)
    cells = page.evaluate(
        "() => document.querySelector('#graph-heatmap .js-plotly-plot').data[0].z.flat().filter(Boolean).length"
    )
    assert cells >= 20
    screenshot(page, artifacts, "page-home.png")


def test_heatmap_click_opens_movie_term(page) -> None:
    open_page(page, "/")
    page.wait_for_selector("#graph-heatmap .main-svg .hm", timeout=LOAD_TIMEOUT_MS)
    x, y = page.evaluate("""() => {
        const gd = document.querySelector('#graph-heatmap .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const col = gd.data[0].x.indexOf('Forrest Gump'), row = gd.data[0].y.indexOf('visual');
        return [xa._offset + xa.l2p(col), ya._offset + ya.l2p(row)];
    }""")
    page.locator("#graph-heatmap .js-plotly-plot").click(position={"x": x, "y": y})  # scrolls it into view
    page.wait_for_url("**/movies/forrest-gump/visual", timeout=15_000)
    page.wait_for_selector("text=Components that were merged", timeout=LOAD_TIMEOUT_MS)
    assert page.locator("h1").inner_text().startswith("visual in Forrest Gump")


def test_search_suggests_and_navigates(page) -> None:
    open_page(page, "/")
    box = page.locator("#search-home input")
    box.click()
    box.press_sequentially("vi", delay=80)
    suggestion = page.locator("#search-home .incdb-suggestion").first
    suggestion.wait_for(timeout=15_000)
    assert suggestion.inner_text().startswith("visual")
    suggestion.click()
    page.wait_for_url("**/terms/visual", timeout=15_000)
    page.wait_for_selector("h1:has-text('visual')")
    open_page(page, "/")
    box = page.locator("#search-home input")
    box.fill("gump")
    page.locator("#search-home .incdb-suggestion").first.wait_for(timeout=15_000)
    box.press("Enter")
    page.wait_for_url("**/movies/forrest-gump", timeout=15_000)
    open_page(page, "/")
    page.locator("#search-home input").fill("zzzz")
    page.wait_for_selector("text=No movies or terms match “zzzz”.", timeout=15_000)


# ----------------------------------------------------------------------------------------------- lists


def test_terms_page_search_sort_pages(page) -> None:
    open_page(page, "/terms")
    assert page.title() == "Terms · INcDb"
    assert len(table_rows(page, "terms-table")) == 20
    assert page.locator(".incdb-table-summary").first.inner_text() == "1–20 of 22 terms"
    page.locator(".incdb-pagination").get_by_text("2", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#terms-table tbody tr').length === 2")
    wait_query(page, "page=2")
    page.locator(".incdb-table-sort select").select_option("components")
    page.wait_for_function("() => document.querySelectorAll('#terms-table tbody tr').length === 20")
    first = table_rows(page, "terms-table")[0].split("\t")
    assert first[0] == "visual" and first[2] == "10"
    wait_query(page, "sort=components")
    wait_query(page, "page=", present=False)
    page.locator(".incdb-table-search").fill("mem")
    page.wait_for_function("() => document.querySelectorAll('#terms-table tbody tr').length === 2")
    assert [r.split("\t")[0] for r in table_rows(page, "terms-table")] == ["memory", "working memory"]
    wait_query(page, "q=mem")
    # The address is shareable: opening it shows the same state.
    open_page(page, page.url)
    assert page.locator(".incdb-table-search").input_value() == "mem"
    assert len(table_rows(page, "terms-table")) == 2
    page.locator(".incdb-table-search").fill("qqqq")
    page.wait_for_selector("text=No terms match “qqqq”.")
    open_page(page, "/terms?page=99")  # past the end: the last page
    assert len(table_rows(page, "terms-table")) == 2


def test_movies_page_and_movie_tabs(page) -> None:
    open_page(page, "/movies?sort=components")
    rows = table_rows(page, "movies-table")
    assert len(rows) == 4 and rows[0].startswith("Forrest Gump")
    click_on(page, page.locator("#movies-table tbody tr").first.locator("td").nth(3))  # not on the link itself
    page.wait_for_url("**/movies/forrest-gump", timeout=15_000)
    page.wait_for_selector("#movie-terms-table")
    assert page.title() == "Forrest Gump · Movies · INcDb"
    terms = table_rows(page, "movie-terms-table")
    scores = [float(row.split("\t")[1]) for row in terms]  # term, score (mean r x share), mean r, share
    assert len(terms) == 8 and scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    page.locator("#score-help").hover()
    page.wait_for_selector(".tooltip:has-text('mean r × share')", timeout=10_000)
    page.get_by_role("tab", name="Components (22)").click()
    wait_query(page, "tab=components")
    assert len(table_rows(page, "components-table")) == 20
    page.get_by_role("tab", name="Collections (2)").click()
    zip_links = page.locator("a:has-text('Download all maps')")
    assert zip_links.count() == 2
    assert zip_links.first.get_attribute("href").endswith("/maps.zip")
    assert "Repetition time (TR)" in page.inner_text("body") and "2 s" in page.inner_text("body")


# ----------------------------------------------------------------------------------------------- viewer pages


def test_term_page(page, artifacts) -> None:
    open_page(page, "/terms/visual")
    assert page.title() == "visual · Terms · INcDb"
    wait_viewer(page, 3)  # underlay, reference map, mean over movies
    assert_brain_drawn(page)
    assert len(table_rows(page, "term-movies-table")) == 4
    screenshot(page, artifacts, "page-term.png")
    mark_canvas(page)
    page.get_by_role("tab", name="Components (10)").click()
    wait_query(page, "tab=components")
    rows = page.locator("#components-table tbody tr")
    assert rows.count() == 10
    page.locator(".incdb-table-sort select").select_option("file")
    wait_query(page, "sort=file")
    assert same_canvas(page), "a table update replaced the viewer"
    href = rows.first.locator("a.stretched-link").get_attribute("href")
    click_on(page, rows.first.locator("td").last)  # anywhere on the row opens the component
    page.wait_for_url(f"**{href}", timeout=15_000)
    wait_viewer(page, 2)
    page.locator(".incdb-lazy", has_text="All terms, ranked").scroll_into_view_if_needed()  # a lazy section
    page.wait_for_selector("#decodings-table", timeout=LOAD_TIMEOUT_MS)


def test_movie_term_page(page, artifacts) -> None:
    open_page(page, "/movies/forrest-gump/visual")
    assert page.title() == "visual in Forrest Gump · INcDb"
    wait_viewer(page, 3)
    assert_brain_drawn(page)
    layers = page.locator(f"#{VIEWER} .incdb-layer")
    assert layers.nth(0).get_attribute("data-layer") == "merged"
    hidden = page.locator(f"#{VIEWER} .incdb-layer[data-layer='reference']")
    assert "incdb-layer-hidden" in hidden.get_attribute("class")
    assert page.evaluate(f"() => window.incdbViewer.volume('{VIEWER}', 'reference').opacity") == 0
    assert len(table_rows(page, "components-table")) == 4
    screenshot(page, artifacts, "page-movie-term.png")


def test_component_page(page, artifacts) -> None:
    open_page(page, "/terms/auditory?tab=components")
    href = page.locator("#components-table tbody tr a.stretched-link").first.get_attribute("href")
    open_page(page, href)
    assert page.title().endswith("component of Forrest Gump · INcDb")
    wait_viewer(page, 2)
    before = assert_brain_drawn(page)
    assert page.locator("#demo-alert").count() == 1
    assert page.locator(".incdb-badge-demo").count() >= 1
    bars = page.evaluate("() => document.querySelector('#graph-profile .js-plotly-plot').data[0]")
    assert len(bars["x"]) == 20
    assert bars["y"][-1] == "auditory"  # best r on top
    colours = dict(zip(bars["y"], bars["marker"]["color"]))
    negative = [term for term, r in zip(bars["y"], bars["x"]) if r < 0]
    assert negative and len({colours[t] for t in negative}) == 1
    assert colours[negative[0]] != colours["auditory"]
    assert page.locator("#graph-profile .main-svg .bars path").count() == 20
    screenshot(page, artifacts, "page-component.png")

    # The full ranked table (a lazy section: drawn once scrolled to) pages without touching the viewer.
    mark_canvas(page)
    page.locator(".incdb-lazy", has_text="All terms, ranked").scroll_into_view_if_needed()
    page.wait_for_selector("#decodings-table", timeout=LOAD_TIMEOUT_MS)
    assert len(table_rows(page, "decodings-table")) == 20
    page.locator(".incdb-pagination").get_by_text("2", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#decodings-table tbody tr').length === 2")
    wait_query(page, "page=2")
    assert same_canvas(page)

    # Raising the threshold removes coloured voxels.
    handle = page.locator(f"#{VIEWER} .incdb-viewer-settings [role=slider]").first
    handle.focus()
    handle.press("End")
    after = wait_for_change(page, before)
    assert after.differing_pixels(before) >= 200, "moving the threshold did not change the picture"
    assert after.count(is_colour) < before.count(is_colour)

    # Downloads are full-precision NIfTI and the profile as CSV.
    map_url = page.locator("#download-map").get_attribute("href")
    response = requests.get(page.url.split("/components/")[0] + map_url, timeout=30)
    assert response.status_code == 200
    image = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    assert image.shape == (91, 109, 91) and image.get_data_dtype() == "float32"
    csv = page.request.get(page.locator("#download-csv").get_attribute("href"))
    assert csv.ok and csv.text().splitlines()[0] == "rank,term,r" and len(csv.text().splitlines()) == 23
    layer_download = page.locator(f"#{VIEWER} .incdb-layer[data-layer='component'] .incdb-layer-download")
    assert layer_download.get_attribute("href") == map_url


# ----------------------------------------------------------------------------------------------- not found


@pytest.mark.parametrize(
    "path, text",
    [
        ("/nope", "Page not found"),
        ("/components/not-a-uuid", "Component “not-a-uuid” was not found"),
        ("/movies/nope", "Movie “nope” was not found"),
        ("/movies/forrest-gump/nope", "Term “nope” was not found"),
        ("/terms/nope", "Term “nope” was not found"),
    ],
)
def test_not_found_pages(page, path: str, text: str) -> None:
    open_page(page, path)
    page.wait_for_selector("#not-found")
    assert text in page.locator("#not-found h1").inner_text()
    assert page.locator("#not-found a[href='/']").count() == 1
    assert page.locator(f"#{VIEWER}").count() == 0
    assert "not found" in page.title().lower()
