"""The site works offline: no page, stylesheet or security policy names another host, the theme's Lato font is
served by the site itself, and the footer mentions synthetic demo data only while demo collections are shown."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.browser import launch_browser, serve_wsgi_in_thread
from tests.services import Client

PAGES = ("/", "/terms", "/movies", "/decode", "/contribute", "/about", "/account/sign-in", "/docs/user-guide")
# A reference to another host: an absolute or protocol-relative URL in an attribute, a CSS url() or an @import.
REMOTE_ATTR = re.compile(r"""\b(?:href|src|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
REMOTE_CSS = re.compile(r"""(?:url\(\s*["']?\s*(?:https?:)?//|@import\s+["']?\s*(?:https?:)?//)""", re.IGNORECASE)
LOCAL_URLS = re.compile(r"""url\(\s*["']?(/[^"')]+)""")
STYLESHEETS = re.compile(r"""<link[^>]+href="(/[^"]+)"[^>]*>""")
SYNTHETIC = "Demo data on this site is synthetic"


def _client(data_path) -> Client:
    from tests.conftest import use_environment

    use_environment(data_path)
    from app import server

    return Client(flask_app=server)


def _stylesheets(html: str) -> list[str]:
    return [href.replace("&amp;", "&") for href in STYLESHEETS.findall(html) if ".css" in href]


def _policy_hosts(policy: str) -> list[str]:
    """The sources of a Content-Security-Policy other than keywords and hashes ('self', 'sha256-...') and data:."""
    sources = [token for directive in policy.split(";") for token in directive.split()[1:]]
    return [token for token in sources if not token.startswith("'") and token != "data:"]


def test_no_page_stylesheet_or_policy_names_another_host(demo_dir):
    client = _client(demo_dir)
    sheets: set[str] = set()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert not REMOTE_ATTR.search(response.text), (path, REMOTE_ATTR.search(response.text))
        assert not REMOTE_CSS.search(response.text), path  # inline <style> blocks
        assert not _policy_hosts(response.headers["Content-Security-Policy"]), path
        sheets.update(_stylesheets(response.text))
    assert any("bootstrap" in s for s in sheets), sheets
    fonts: set[str] = set()
    for sheet in sorted(sheets):
        css = client.get(sheet)
        assert css.status_code == 200, sheet
        assert not REMOTE_CSS.search(css.text), (sheet, REMOTE_CSS.search(css.text))
        assert not _policy_hosts(css.headers["Content-Security-Policy"]), sheet
        fonts.update(u for u in LOCAL_URLS.findall(css.text) if ".woff" in u)
    assert len(fonts) >= 3  # Lato 400, 700 and 400 italic
    for font in sorted(fonts):
        response = client.get(font)
        assert response.status_code == 200, font
        assert response.content[:4] == b"wOF2", font
        assert "max-age" in response.headers.get("Cache-Control", ""), font
    for other in ("/vendor/lato/OFL.txt", "/vendor/lato/..%2F..%2Fapp.py"):  # the font route serves fonts only
        response = client.get(other)
        assert "SIL Open Font" not in response.text and "from __future__" not in response.text, other
    from dashboard.theme import FONT_DIR  # the font's licence travels with it

    assert "SIL Open Font License" in (FONT_DIR / "OFL.txt").read_text(encoding="utf-8")


def test_footer_mentions_synthetic_data_only_with_demo_collections(data_dir, tmp_path, demo_template):
    client = _client(data_dir)
    layout = client.get("/_dash-layout").text
    assert "INcDb maps brain activity" in layout
    assert SYNTHETIC not in layout

    import shutil

    demo = tmp_path / "with-demo"
    shutil.copytree(demo_template, demo)
    client = _client(demo)
    assert SYNTHETIC in client.get("/_dash-layout").text


def test_the_browser_asks_no_other_host_and_draws_lato(demo_dir):
    from playwright.sync_api import sync_playwright

    from app import server

    with serve_wsgi_in_thread(server) as url, sync_playwright() as p:
        browser = launch_browser(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
            foreign: list[str] = []

            def route(r) -> None:
                if urlsplit(r.request.url).netloc != urlsplit(url).netloc:
                    foreign.append(r.request.url)
                    r.abort()
                else:
                    r.continue_()

            context.route("**/*", route)
            page = context.new_page()
            page.goto("/")
            page.wait_for_selector("#footer", timeout=60_000)
            page.wait_for_function("document.fonts.status === 'loaded'", timeout=30_000)
            loaded = page.evaluate(
                """async () => {
                    await document.fonts.load('400 16px Lato'); await document.fonts.load('700 16px Lato');
                    return [...document.fonts].filter(f => f.family.replace(/["']/g, '') === 'Lato'
                        && f.status === 'loaded').map(f => f.weight + ' ' + f.style);
                }"""
            )
            family = page.evaluate("getComputedStyle(document.body).fontFamily")
        finally:
            browser.close()
    assert not foreign, foreign
    assert family.lstrip("\"'").startswith("Lato"), family
    assert "400 normal" in loaded and "700 normal" in loaded, loaded
