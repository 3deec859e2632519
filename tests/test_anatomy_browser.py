"""The viewer's anatomy and sharing features in headless Chromium, on a component page of the demo data.

One test, two page loads: the region readout after clicks and arrow keys, the cluster table (a row moves the
crosshair to its peak), a threshold and a colormap changed, "Copy link", "Save image", and the copied link opened
in a fresh page, which must show the same picture.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from tests.browser import CHROMIUM, decode_png, launch_browser, save_artifact, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

LOAD_TIMEOUT_MS = 60_000
VIEWER = "viewer"


@pytest.fixture(scope="module")
def data_path(tmp_path_factory, demo_template) -> Path:
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    path = tmp_path_factory.mktemp("anatomy") / "data"
    shutil.copytree(demo_template, path)
    return path


@pytest.fixture(scope="module")
def base_url(data_path) -> Iterator[str]:
    use_environment(data_path)
    from app import server  # after the environment: settings are read lazily

    with serve_wsgi_in_thread(server) as url:
        yield url


def new_page(browser, base_url, errors: list[str]):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, device_scale_factor=1, base_url=base_url, accept_downloads=True
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    # The Bootstrap theme and fonts come from a CDN the test machine cannot reach: fail those requests at once.
    context.route(re.compile(r"^https://"), lambda route: route.abort())
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "Failed to load resource" not in msg.text else None
        ),
    )
    return context, page


def wait_viewer(page) -> None:
    page.wait_for_selector(f'#{VIEWER}[data-loaded="true"][data-nvols="2"]', timeout=LOAD_TIMEOUT_MS)
    # The cluster table is a lazy section (drawn once in view): scroll to it, then back.
    page.locator(".incdb-lazy:has(.incdb-clusters)").scroll_into_view_if_needed()
    page.wait_for_selector("#cluster-table", timeout=LOAD_TIMEOUT_MS)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function(
        "() => !document.querySelector('._dash-loading, [data-dash-is-loading=\"true\"]')", timeout=LOAD_TIMEOUT_MS
    )
    page.wait_for_timeout(500)  # NiiVue draws the frame after the last callback


def crosshair(page) -> list[float]:
    return page.evaluate(f"() => window.incdbViewer.crosshairMM('{VIEWER}')")


def region_after_move(page, before: str | None) -> str:
    """The region label the readout shows once it has answered for the new crosshair position."""
    page.wait_for_function(
        f"""([before]) => {{ const el = document.querySelector('#{VIEWER} .incdb-region-label');
            return el !== null && el.dataset.mm !== before; }}""",
        arg=[before],
        timeout=20_000,
    )
    return page.locator(f"#{VIEWER} .incdb-region-label").get_attribute("data-label")


def test_region_readout_clusters_and_a_shared_link_that_shows_the_same_picture(browser_pair, base_url):
    from pipeline.anatomy.atlas import grid_voxel, lookup
    from pipeline.maps.grid import voxel_to_mni
    from store.db import session_scope
    from store.models import Collection, Component

    browser, errors = browser_pair
    with session_scope() as session:
        uuid = session.scalars(
            select(Component.uuid).join(Collection).where(Collection.visibility == "public").order_by(Component.uuid)
        ).first()
    context, page = new_page(browser, base_url, errors)
    page.goto(f"/components/{uuid}")
    wait_viewer(page)
    canvas = page.locator(f"#{VIEWER}-canvas")
    box = canvas.bounding_box()

    # Clicks in the axial slice: the readout names the Harvard-Oxford region at the crosshair's grid voxel.
    named = []
    for fx, fy in ((0.16, 0.45), (0.2, 0.3), (0.1, 0.55), (0.24, 0.6), (0.13, 0.25)):
        label = page.locator(f"#{VIEWER} .incdb-region-label")
        before = label.get_attribute("data-mm") if label.count() else None
        canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        shown = region_after_move(page, before)
        mm = voxel_to_mni(grid_voxel(*crosshair(page)))
        expected = lookup(*mm, atlas="harvard_oxford")[0]["label"]
        assert (shown or None) == expected, f"click at {mm}"
        named += [shown] if shown else []
    assert named, "no click landed in a named region"
    assert page.locator(f"#{VIEWER} .incdb-region-source").inner_text().count("Harvard-Oxford") == 1

    # Arrow keys move the crosshair one voxel (2 mm) and the readout follows.
    start = np.round(np.asarray(crosshair(page)) / 2) * 2
    canvas.press("ArrowRight")
    page.wait_for_function(
        f"(x) => Math.abs(window.incdbViewer.crosshairMM('{VIEWER}')[0] - x) < 0.1",
        arg=float(start[0] + 2),
        timeout=10_000,
    )
    page.wait_for_function(
        f"""(x) => document.querySelector('#{VIEWER} .incdb-readout-coords')
        .dataset.mm.split(',')[0] === String(x)""",
        arg=int(start[0] + 2),
        timeout=10_000,
    )

    # A cluster row moves the crosshair to its peak.
    row = page.locator("#cluster-table tbody tr").nth(1)
    peak = [float(v) for v in row.get_attribute("data-mm").split(",")]
    row.click()
    page.wait_for_function(
        f"""(peak) => window.incdbViewer.crosshairMM('{VIEWER}')
        .every((v, i) => Math.abs(v - peak[i]) < 0.1)""",
        arg=peak,
        timeout=10_000,
    )

    # A higher threshold and another colormap: the cluster table follows the threshold.
    # The summary counts every cluster (the table lists the largest 50).
    count_js = "parseInt(document.querySelector('#cluster-summary').textContent.replace(/,/g, ''))"
    rows_before = page.evaluate(count_js)
    box_input = page.locator(f"#{VIEWER} .incdb-viewer-settings input.dash-range-slider-input").first
    box_input.fill("4")
    box_input.press("Enter")
    page.locator(f"#{VIEWER} .incdb-viewer-settings select").first.select_option("viridis")
    page.wait_for_function(
        f"""() => {{ const v = window.incdbViewer.volume('{VIEWER}', 'component');
        return v.colormap === 'viridis' && v.cal_min > 3; }}""",
        timeout=10_000,
    )
    page.wait_for_function(f"(n) => {count_js} < n", arg=rows_before, timeout=20_000)
    threshold = page.evaluate(f"() => window.incdbViewer.volume('{VIEWER}', 'component').cal_min")
    page.wait_for_timeout(500)

    page.get_by_role("button", name="Copy link").click()
    page.wait_for_function(f"() => document.getElementById('{VIEWER}').dataset.link", timeout=10_000)
    link = page.evaluate("() => navigator.clipboard.readText()")
    assert link == page.evaluate(f"() => document.getElementById('{VIEWER}').dataset.link") == page.url
    assert "v_component=1," in link and ",viridis," in link and "v_xyz=" in link
    first = decode_png(canvas.screenshot())

    with page.expect_download() as download:
        page.get_by_role("button", name="Save image").click()
    saved = Path(download.value.path()).read_bytes()
    save_artifact("viewer-saved.png", saved)
    image = decode_png(saved)
    size = page.evaluate(
        f"() => [document.getElementById('{VIEWER}-canvas').width, document.getElementById('{VIEWER}-canvas').height]"
    )
    assert [image.width, image.height] == size
    assert download.value.suggested_filename.endswith(".png") and "melodic" in download.value.suggested_filename
    assert image.count(lambda r, g, b: r + g + b > 60) > 0.05 * image.width * image.height

    # The link in a fresh browser context shows the same picture.
    context2, page2 = new_page(browser, base_url, errors)
    page2.goto(link)
    wait_viewer(page2)
    second = decode_png(page2.locator(f"#{VIEWER}-canvas").screenshot())
    save_artifact("viewer-shared-link.png", page2.locator(f"#{VIEWER}").screenshot())
    assert page2.evaluate(f"() => window.incdbViewer.volume('{VIEWER}', 'component').cal_min") == threshold
    assert np.allclose(crosshair(page2), peak, atol=0.1)
    differing = first.differing_pixels(second)
    assert differing < 0.002 * first.width * first.height, f"{differing} pixels differ"
    assert page2.locator("#cluster-table tbody tr").count() < rows_before
    context2.close()
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def browser_pair(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        yield browser, []
        browser.close()
