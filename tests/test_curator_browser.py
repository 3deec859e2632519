"""A curator in a real browser (Playwright + Debian's Chromium) on the embedded app (diskcache background jobs):
register, create a collection, confirm the license, upload with visible byte progress (the network is throttled
so that progress is observable), watch processing progress, see the components; leaving during an upload asks
first; deleting asks for confirmation."""

from __future__ import annotations

import logging
import re
import time

import pytest

from tests.browser import (
    launch_browser,
    require_chromium,
    save_artifact,
    serve_wsgi_in_thread,
)
from tests.services import component_maps, write_nifti, zip_of

TIMEOUT_MS = 60_000


class MailLog(logging.Handler):
    """Collects the mails the embedded mode writes to the log (no SMTP server here)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.text = ""

    def emit(self, record):
        self.text += record.getMessage() + "\n"

    def __enter__(self):
        logging.getLogger("incdb.accounts").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("incdb.accounts").removeHandler(self)

    def path_of(self, prefix: str) -> str:
        """The path (from ``prefix`` on) of the last link in the mails that contains it."""
        found = re.findall(re.escape(prefix) + r"\S+", self.text)
        assert found, self.text
        return found[-1]


N_MAPS = 25


@pytest.fixture
def base_url(data_dir):
    require_chromium()
    import app as app_module

    with serve_wsgi_in_thread(app_module.server) as url:
        yield url


@pytest.fixture
def page(base_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        yield page
        context.close()
        browser.close()


def test_curator_journey(page, base_url, tmp_path):
    # Enough maps that processing lasts a few seconds, so its progress is on screen long enough to be seen.
    maps = component_maps(N_MAPS, seed=21)
    four_d = write_nifti(tmp_path / "melodic_IC.nii.gz", maps[:-1])
    archive = zip_of(tmp_path / "extra_maps.zip", {"run-2/extra.nii.gz": write_nifti(tmp_path / "x.nii.gz", maps[-1])})

    # register: the link in the (logged) mail finishes it and signs in
    mails = MailLog()
    page.goto(base_url + "/account/register")
    page.fill("#register-first-name", "Brie")
    page.fill("#register-last-name", "Owser")
    page.fill("#register-affiliation", "Playwright Institute")
    page.fill("#register-email", "brie@example.org")
    page.fill("#register-password", "a long browser password")
    page.fill("#register-password2", "a long browser password")
    with mails:
        page.click("#register-submit")
        page.wait_for_selector("#register-message:has-text('Check your mail')")
    page.goto(base_url + mails.path_of("/account/confirm-email?token="))
    page.click("#confirm-submit")
    page.wait_for_url(base_url + "/contribute")
    page.wait_for_selector("#nav-user-name:has-text('Brie Owser')")
    page.wait_for_selector("#mine-empty")

    # sign out and in again
    page.goto(base_url + "/account/sign-out")
    page.click("#signout-submit")
    page.wait_for_url(base_url + "/")
    page.wait_for_selector("#nav-sign-in")
    page.goto(base_url + "/account/sign-in?next=/contribute/new")
    page.fill("#signin-email", "brie@example.org")
    page.fill("#signin-password", "wrong password!!")
    page.click("#signin-submit")
    page.wait_for_selector("#signin-message:has-text('Wrong email address or password')")
    page.fill("#signin-password", "a long browser password")
    page.click("#signin-submit")
    page.wait_for_url(base_url + "/contribute/new")

    # create a collection (a wrong number first: the form says what is wrong)
    page.fill("#new-name", "Browser collection")
    page.fill("#new-movie", "The Browser Movie")
    page.fill("#new-year", "1994")
    page.locator("#new-meta-groups button:has-text('Acquisition')").click()
    page.fill('input[id*=\'"field":"tr"\']', "two")
    page.click("#new-submit")
    page.wait_for_selector("#new-message:has-text('Repetition time (TR) must be a number (s)')")
    page.fill('input[id*=\'"field":"tr"\']', "2.0")
    page.click("#new-submit")
    page.wait_for_url(re.compile(r".*/contribute/browser-collection$"))

    # Record every text the processing panels show, so a short-lived progress display is not missed between two
    # looks from this test (the job may take only a few seconds).
    page.evaluate("""() => {
        window.incdbProcTexts = [];
        const record = () => {
            for (const id of ["proc-runner", "coll-status"]) {
                const el = document.getElementById(id);
                if (el) window.incdbProcTexts.push(el.innerText);
            }
        };
        new MutationObserver(record).observe(document.body,
            {subtree: true, childList: true, characterData: true, attributes: true});
    }""")

    # confirm the license, then upload over a throttled network
    page.check("#coll-license-check")
    page.click("#coll-license-confirm")
    page.wait_for_selector("#coll-license-done")
    page.wait_for_function("() => !document.querySelector('#coll-choose').disabled || true")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 3 * 1024 * 1024},
    )
    with page.expect_file_chooser() as chooser:
        page.click("#coll-choose")
    chooser.value.set_files([str(four_d), str(archive)])

    # byte progress is on the page while the first file is being sent
    shown = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = page.inner_text("#coll-upload-progress")
        match = re.search(r"of [\d.]+ MB \((\d+)%\)", text)
        if match:
            shown.append(int(match.group(1)))
        if len([p for p in shown if 0 < p < 100]) > 0:
            break
        time.sleep(0.1)
    assert any(0 < p < 100 for p in shown), shown

    # leaving during the upload asks first; staying keeps the upload going
    dialogs = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("nav a:has-text('Movies')")
    assert dialogs and "still uploading" in dialogs[0]
    assert page.url.endswith("/contribute/browser-collection")
    # Progress was seen; the rest of the upload may go at full speed.
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    page.wait_for_selector(".incdb-upload-row[data-file='extra_maps.zip'][data-state='done']")
    log = page.evaluate("window.incdbUploadLog")
    assert any(0 < sent < total for name, sent, total in log if name == "melodic_IC.nii.gz"), log

    # processing starts by itself; its progress is visible until the result is there
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = page.inner_text("#proc-runner")
        seen.update(re.findall(rf"(\d+) / {N_MAPS} maps", live))
        seen.update(re.findall(rf"(\d+)/{N_MAPS}", page.inner_text("#coll-status")))
        if "Processing finished" in live:
            break
        time.sleep(0.1)
    assert f"Processing finished: {N_MAPS} component(s) decoded" in page.inner_text("#proc-runner")
    for text in page.evaluate("window.incdbProcTexts"):
        seen.update(re.findall(rf"(\d+) / {N_MAPS} maps", text))
        seen.update(re.findall(rf"(\d+)/{N_MAPS}", text))
    assert seen, "no processing progress was shown"
    page.wait_for_selector(f"#coll-component-count:has-text('{N_MAPS} component(s).')")
    assert page.locator("#coll-component-table tbody tr").count() == N_MAPS
    page.wait_for_selector("#coll-status-line:has-text('succeeded')")
    save_artifact("curator-collection.png", page.screenshot(full_page=True))

    # the result is public: the component page of the first map
    first = page.locator("#coll-component-table tbody tr a").first
    href = first.get_attribute("href")
    assert href.startswith("/components/")

    # My collections shows the state; deleting asks, "Keep it" keeps it
    page.goto(base_url + "/contribute")
    page.wait_for_selector("#mine-table:has-text('Browser collection')")
    assert str(N_MAPS) in page.inner_text("#mine-table")
    page.goto(base_url + "/contribute/browser-collection")
    page.click("#coll-delete")
    page.wait_for_selector("text=Delete this collection?")
    page.click("#coll-delete-cancel")
    page.wait_for_selector("text=Delete this collection?", state="detached")
    assert page.url.endswith("/contribute/browser-collection")
    page.click("#coll-delete")
    page.click("#coll-delete-confirm")
    page.wait_for_url(base_url + "/contribute?deleted=1")
    page.wait_for_selector("text=The collection was deleted.")
    page.wait_for_selector("#mine-empty")
    response = page.request.get(base_url + href.replace("/components/", "/api/components/"))
    assert response.status == 404
    assert not page.errors, page.errors
