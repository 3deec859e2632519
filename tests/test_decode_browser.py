"""The public decoder in a real browser (Playwright + Debian's Chromium), anonymously: choose a map on /decode, see
the byte progress, land on its result with the profile and the similar components, open the best one, whose own
page lists similar components too."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from store.db import session_scope
from store.models import Collection, Component
from store.storage import get_storage
from tests.browser import launch_browser, require_chromium, save_artifact, serve_wsgi_in_thread

TIMEOUT_MS = 60_000


@pytest.fixture
def base_url(demo_dir):
    require_chromium()
    import app as app_module

    with serve_wsgi_in_thread(app_module.server) as url:
        yield url


def test_decode_a_map_and_open_a_similar_component(base_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with session_scope() as session:
        comp = session.scalar(
            select(Component).join(Collection).where(Collection.visibility == "public").order_by(Component.id)
        )
        cuuid, key = comp.uuid, comp.storage_key
    path = tmp_path / "my-map.nii.gz"
    path.write_bytes(get_storage().read_bytes(key))
    with sync_playwright() as p:
        browser = launch_browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(base_url + "/decode")
            page.wait_for_selector("#decode-dropzone")
            with page.expect_file_chooser() as chooser:
                page.click("#decode-choose")
            chooser.value.set_files(str(path))
            page.wait_for_url(re.compile(r".*/decode/[A-Za-z0-9_-]{32}$"))
            page.wait_for_selector("#decres-profile .main-svg")
            page.wait_for_selector("#similar-table tbody tr")
            log = page.evaluate("window.incdbUploadLog")
            assert log and log[-1][0] == "my-map.nii.gz" and log[-1][1] == log[-1][2] == path.stat().st_size
            first = page.locator("#similar-table tbody tr").first
            assert first.locator("td").last.inner_text() in ("1.000", "0.999")
            save_artifact("decode-result.png", page.screenshot(full_page=True))
            first.locator("a").first.click()
            page.wait_for_url(base_url + f"/components/{cuuid}")
            # the component page's own similar section, a lazy section: drawn once scrolled to
            page.wait_for_selector('.incdb-viewer[data-loaded="true"]')
            page.locator(".incdb-lazy:has(#similar-body)").scroll_into_view_if_needed()
            page.wait_for_selector("#similar-table tbody tr")
            assert errors == []
        finally:
            browser.close()
