"""WCAG 2.1 AA in a real browser: axe-core on every page type, and a keyboard-only journey.

One app on a copy of the demo data, one Chromium (Debian's, through Playwright), each page visited once. axe-core
comes with the ``axe-playwright-python`` package and is injected into the page by script, so the test contexts
(only they) bypass the site's Content-Security-Policy. Any *serious* or *critical* violation fails the test, with
every rule, its impact and the offending elements in the failure message; moderate and minor ones are reported by
``INCDB_AXE_VERBOSE=1`` but do not fail.

The keyboard test uses Tab, Shift+Tab, Enter, Space and the arrow keys only: sign in, open a component, change a
threshold in the viewer, reach the download links.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.browser import CHROMIUM, launch_browser, serve_wsgi_in_thread
from tests.conftest import need_service, use_environment

LOAD_TIMEOUT_MS = 60_000
PASSWORD = "an accessible password"
ADMIN = "ada@example.org"
FAILING = ("serious", "critical")
# WCAG 2.0/2.1 A and AA rules, and axe's best practices (landmarks, regions, headings).
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
    "resultTypes": ["violations"],
}
# Blocked: the demo makes no request to other sites, and a test machine cannot reach them anyway.
_OFFSITE = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")


@pytest.fixture(scope="module")
def site(tmp_path_factory, demo_template) -> Iterator[dict]:
    """The app on a demo copy with an administrator who owns one collection, and a decoded map; the URLs to visit."""
    need_service(CHROMIUM.exists(), f"Chromium at {CHROMIUM}")
    path = tmp_path_factory.mktemp("a11y") / "data"
    shutil.copytree(demo_template, path)
    use_environment(path)
    ids = _fixtures(path)
    from app import server  # after the environment: settings are read lazily

    with serve_wsgi_in_thread(server) as url:
        yield {"url": url, "data": path, **ids}


def _fixtures(data: Path) -> dict:
    from accounts.users import create_user
    from pipeline.curation.catalog import create_collection
    from pipeline.decoding import visitors
    from store.db import session_scope
    from store.models import Collection, Component, Movie, TemporalDecoding
    from store.storage import get_storage

    with session_scope() as session:
        admin = create_user(session, ADMIN, PASSWORD, role="admin", first_name="Ada", last_name="Admin")
        movie = session.scalar(select(Movie).order_by(Movie.id))
        mine = create_collection(session, admin, movie, "Accessible collection", visibility="private")
        comp = session.scalar(
            select(Component).join(Collection).where(Collection.visibility == "public").order_by(Component.id)
        )
        label = session.scalar(select(TemporalDecoding.label).order_by(TemporalDecoding.id))
        timed = session.scalar(
            select(Movie.slug)
            .join(Collection)
            .join(Component)
            .join(TemporalDecoding, TemporalDecoding.component_id == Component.id)
        )
        ids = {
            "movie": movie.slug,
            "timed_movie": timed or movie.slug,
            "component": comp.uuid,
            "label": label,
            "collection": mine.slug,
            "public_collection": comp.collection.slug,
            "key": comp.storage_key,
        }
    sample = data / "visitor-map.nii.gz"
    sample.write_bytes(get_storage().read_bytes(ids["key"]))
    accepted = visitors.accept(sample, "visitor-map.nii.gz", sample.stat().st_size, None, "a11y-test")
    visitors.run_decode(accepted.result_id)
    ids["token"] = accepted.token
    return ids


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, base_url=site["url"], bypass_csp=True
    )  # axe is injected by script: only this test context allows it
    context.route(_OFFSITE, lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    yield page
    context.close()


def open_page(page, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#_pages_content > *", timeout=LOAD_TIMEOUT_MS)
    settle(page)


def settle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('._dash-loading, [data-dash-is-loading=\"true\"]')", timeout=LOAD_TIMEOUT_MS
    )


def axe_violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    return Axe().run(page, options=AXE_OPTIONS).response["violations"]


def describe(where: str, violations: list[dict]) -> list[str]:
    lines = []
    for v in violations:
        targets = ", ".join(" ".join(map(str, n["target"])) for n in v["nodes"][:4])
        more = f" (+{len(v['nodes']) - 4} more)" if len(v["nodes"]) > 4 else ""
        lines.append(f"{where}: {v['id']} ({v['impact']}, {len(v['nodes'])} node(s)): {v['help']} — {targets}{more}")
    return lines


def sign_in_with_the_form(page, email: str, password: str) -> None:
    open_page(page, "/account/sign-in?next=/contribute")
    page.fill("#signin-email", email)
    page.fill("#signin-password", password)
    page.click("#signin-submit")
    page.wait_for_url("**/contribute")
    page.wait_for_selector("#nav-user-name")


def public_pages(site: dict) -> list[tuple[str, str]]:
    movie, comp = site["movie"], site["component"]
    return [
        ("home", "/"),
        ("movies", "/movies"),
        ("terms", "/terms"),
        ("term", "/terms/visual"),
        ("movie", f"/movies/{movie}"),
        ("movie timeline", f"/movies/{site['timed_movie']}?tab=timeline"),
        # The movie x term page is left out: the term page has the same parts (viewer, clusters, tables).
        ("movie annotations", f"/movies/{movie}/annotations"),
        ("component", f"/components/{comp}"),
        ("collection", f"/collections/{site['public_collection']}"),
        ("label", f"/labels/{site['label']}"),
        ("decode", "/decode"),
        ("decode result", f"/decode/{site['token']}"),
        ("about", "/about"),
        ("sign-in", "/account/sign-in"),
        ("register", "/account/register"),
        ("forgot password", "/account/forgot-password"),
        ("not found", "/no-such-page"),
    ]


def signed_in_pages(site: dict) -> list[tuple[str, str]]:
    return [
        ("contribute", "/contribute"),
        ("new collection", "/contribute/new"),
        ("collection form and upload panel", f"/contribute/{site['collection']}"),
        ("profile", "/account/profile"),
        ("password", "/account/password"),
        ("admin", "/admin"),
        ("admin system", "/admin/system"),
    ]


def test_every_page_type_passes_axe(page, site) -> None:
    failing, reported = [], []
    for signed_in, pages in ((False, public_pages(site)), (True, signed_in_pages(site))):
        if signed_in:
            sign_in_with_the_form(page, ADMIN, PASSWORD)
        for where, path in pages:
            started = time.monotonic()
            open_page(page, path)
            if where == "component":
                page.wait_for_selector('#viewer[data-loaded="true"]', timeout=LOAD_TIMEOUT_MS)
            violations = axe_violations(page)
            failing += describe(where, [v for v in violations if v["impact"] in FAILING])
            reported += describe(where, [v for v in violations if v["impact"] not in FAILING])
            reported.append(f"{where}: {time.monotonic() - started:.1f} s")
    if os.environ.get("INCDB_AXE_VERBOSE") == "1":
        print("\n".join(failing + reported))
    assert not failing, "serious or critical accessibility violations:\n" + "\n".join(failing)


def tab_to(page, condition: str, limit: int = 250) -> dict:
    """Press Tab until the focused element satisfies ``condition`` (a JS expression over ``el``); its description.

    Every stop on the way must show a focus ring (WCAG 2.4.7)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        found = page.evaluate(f"""() => {{
            const el = document.activeElement;
            if (!el || el === document.body) return null;
            const style = getComputedStyle(el);
            const ring = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0
                || style.boxShadow !== "none";
            return {{match: Boolean({condition}), ring, what: el.outerHTML.slice(0, 160)}};
        }}""")
        if found is None:
            continue
        assert found["ring"], f"no visible focus ring on {found['what']}"
        if found["match"]:
            return found
    raise AssertionError(f"Tab never reached an element with {condition}")


def test_keyboard_only(page, site) -> None:
    # the skip link is the first stop and moves the focus into <main>
    open_page(page, f"/movies/{site['movie']}?tab=components")
    first = tab_to(page, "true", limit=1)
    assert "skip-link" in first["what"]
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main-content"

    # sign in from the navbar: Tab to "Sign in", Enter, type, Tab, type, Enter
    page.evaluate("() => document.activeElement.blur()")
    tab_to(page, "el.id === 'nav-sign-in'")
    page.keyboard.press("Enter")
    page.wait_for_selector("#signin-email")
    page.wait_for_function("() => document.activeElement && document.activeElement.id === 'signin-email'")
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#nav-user-name")
    settle(page)

    # open a component from the movie's Components tab (the tab list is reached and switched by keyboard)
    tab_to(page, "el.getAttribute('role') === 'tab' && el.getAttribute('aria-selected') === 'true'")
    page.keyboard.press("End")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")  # Terms -> Components
    page.wait_for_function(
        "() => document.activeElement.getAttribute('aria-selected') === 'true'"
        " && document.activeElement.textContent.startsWith('Components')"
    )
    tab_to(page, "el.matches('a[href^=\"/components/\"]')")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/components/[0-9a-f-]{36}$"))
    page.wait_for_selector('#viewer[data-loaded="true"]', timeout=LOAD_TIMEOUT_MS)
    settle(page)

    # change the positive threshold: Tab to its handle, then the arrow keys
    tab_to(page, "el.getAttribute('role') === 'slider' && el.getAttribute('aria-label') === 'Positive threshold'")
    before = float(page.evaluate("() => document.activeElement.getAttribute('aria-valuenow')"))
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("(v) => parseFloat(document.activeElement.getAttribute('aria-valuenow')) > v", arg=before)
    page.wait_for_function("() => location.search.includes('v_')", timeout=15_000)  # the viewer took it

    # the downloads are reachable too
    found = tab_to(page, 'el.matches(\'a[href*=".nii.gz"], a[href$=".csv"]\')')
    assert "download" in found["what"] or ".nii.gz" in found["what"] or ".csv" in found["what"]
