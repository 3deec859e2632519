"""What a browser shows of two attacks (Playwright + Debian's Chromium on the embedded app): a ``next=`` link
that a browser would read as another site sends the curator nowhere else after sign-in, and a cross-site
navigation to /account/sign-out signs nobody out (signing out is a button that posts with the CSRF token)."""

from __future__ import annotations

import pytest

from accounts.users import create_user
from store.db import session_scope
from tests.browser import launch_browser, require_chromium, serve_wsgi_in_thread

TIMEOUT_MS = 30_000
PASSWORD = "a long browser password"


@pytest.fixture
def base_url(data_dir):
    require_chromium()
    import app as app_module

    with session_scope() as session:
        create_user(session, "brie@example.org", PASSWORD, first_name="Brie", last_name="Owser")
    with serve_wsgi_in_thread(app_module.server) as url:
        yield url


@pytest.fixture
def page(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context()
        # Nothing may leave the machine: a request to evil.example is recorded and answered here.
        visited: list[str] = []

        def intercept(route):
            visited.append(route.request.url)
            route.fulfill(status=200, body="<h1>phished</h1>", content_type="text/html")

        context.route("**/*evil.example*", intercept)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.visited_evil = visited
        yield page
        context.close()
        browser.close()


def _sign_in(page, base_url: str, query: str = "") -> None:
    page.goto(base_url + "/account/sign-in" + query)
    page.fill("#signin-email", "brie@example.org")
    page.fill("#signin-password", PASSWORD)
    page.click("#signin-submit")


@pytest.mark.parametrize(
    "query", ["?next=/%09%5Cevil.example/phish", "?next=/%0D%5Cevil.example/phish", "?next=%09/%5C/evil.example/phish"]
)
def test_sign_in_does_not_redirect_to_another_site(page, base_url, query):
    _sign_in(page, base_url, query)
    page.wait_for_url(base_url + "/contribute")
    page.wait_for_selector("#nav-user-name:has-text('Brie Owser')")
    assert page.url.startswith(base_url) and not page.visited_evil


def test_sign_in_follows_a_same_site_next(page, base_url):
    _sign_in(page, base_url, "?next=/movies")
    page.wait_for_url(base_url + "/movies")


def test_a_cross_site_link_to_sign_out_signs_nobody_out(page, base_url):
    _sign_in(page, base_url)
    page.wait_for_selector("#nav-user-name:has-text('Brie Owser')")
    # What a hostile page can do: send the browser to the sign-out address (a top-level GET with the cookies).
    page.goto(base_url + "/account/sign-out")
    page.wait_for_selector("#signout-submit")
    page.wait_for_timeout(1500)  # time for any load-time callback to have run
    page.goto(base_url + "/contribute")
    page.wait_for_selector("#nav-user-name:has-text('Brie Owser')")
    # The curator's own click does sign out.
    page.goto(base_url + "/account/sign-out")
    page.click("#signout-submit")
    page.wait_for_url(base_url + "/")
    page.wait_for_selector("#nav-sign-in")


def test_sign_out_from_the_navbar_menu(page, base_url):
    _sign_in(page, base_url)
    page.wait_for_url(base_url + "/contribute")
    page.click("#nav-account-menu")
    page.click("#nav-sign-out")
    page.click("#signout-submit")
    page.wait_for_url(base_url + "/")
    page.wait_for_selector("#nav-sign-in")
