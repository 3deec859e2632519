"""A restart of the web process during a large upload (issue 26): the curator's upload panel in Chromium (Playwright,
Debian's /usr/bin/chromium) sends a 40 MB archive in chunks to the real app under gunicorn with the project's
``gunicorn.conf.py``. After a few chunks gunicorn is stopped (SIGTERM, as a deploy does; its graceful timeout cuts
off the request in flight) and started again. The panel notices, waits, asks for the offset the server holds and
goes on from there by itself; the stored file equals the source byte for byte. The server side of resumable
uploads is in ``test_resumable_upload.py``."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from sqlalchemy import select

from accounts.users import create_user
from pipeline.curation.catalog import confirm_license, create_collection, get_or_create_movie
from store.db import session_scope
from store.models import Upload
from store.storage import get_storage
from tests.browser import launch_browser, require_chromium
from tests.services import (
    BIN,
    ROOT,
    Service,
    _wait_http,
    component_maps,
    free_port,
    service_env,
    wait_until,
    write_nifti,
)

PASSWORD = "correct horse battery"
CHUNK = 8 * 1024 * 1024  # web.upload.RESUMABLE_CHUNK_BYTES
TIMEOUT_MS = 60_000
GRACEFUL_S = 2
SENT = "() => Math.max(0, ...window.incdbUploadLog.map((entry) => entry[1]))"
# Every state the file's row goes through, however briefly.
ROW_STATES = """() => {
    window.incdbRowStates = [];
    new MutationObserver((changes) => changes.forEach((change) => {
        const state = change.target.getAttribute && change.target.getAttribute("data-state");
        if (state) window.incdbRowStates.push(state);
    })).observe(document.getElementById("coll-upload-progress"),
                {subtree: true, attributes: true, attributeFilter: ["data-state"]});
}"""


def _gunicorn(env: dict[str, str], log: Path) -> Service:
    """``gunicorn -c gunicorn.conf.py app:server``, started (the caller waits for it with ``_up``)."""
    # A short graceful timeout, as when a deploy's stop timeout passes: requests still running are cut off.
    service = Service(
        "gunicorn",
        [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--graceful-timeout",
            str(GRACEFUL_S),
            "app:server",
        ],
        env,
        ROOT,
        log,
    )
    service.url = f"http://127.0.0.1:{env['PORT']}"
    return service


def _up(service: Service) -> None:
    _wait_http(service, service.url + "/api/stats", 90)


def _archive(path: Path, tmp_path: Path) -> Path:
    """A zip of one small 4D map and 40 MB of incompressible filler (stored: the zip is as large as its data)."""
    maps = write_nifti(tmp_path / "melodic_IC.nii.gz", component_maps(2, seed=8))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(maps, "run-1/melodic_IC.nii.gz")
        zf.writestr("run-1/filler.bin", os.urandom(40 * 1024 * 1024))
    return path


def _held(data_dir: Path) -> int:
    """Bytes the server holds of the upload in flight (0 before it started or after it ended)."""
    found = list((data_dir / "tmp" / "resumable-uploads").glob("*/*/partial"))
    return found[0].stat().st_size if found else 0


def test_a_restart_during_an_upload_does_not_make_the_curator_start_again(data_dir, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    with session_scope() as session:
        user = create_user(session, "rey@example.org", PASSWORD)
        collection = create_collection(session, user, get_or_create_movie(session, "Restart"), "Restarted")
        confirm_license(session, collection, user)
        slug = collection.slug
    env = service_env(data_dir, WEB_CONCURRENCY="1", HOST="127.0.0.1", PORT=str(free_port()))
    for key in ("GUNICORN_THREADS", "GUNICORN_BIND", "GUNICORN_TIMEOUT"):
        env.pop(key, None)
    services = [_gunicorn(env, tmp_path / "gunicorn-1.log")]
    base = services[0].url
    try:
        source = _archive(tmp_path / "big.zip", tmp_path)  # while gunicorn starts
        with sync_playwright() as p:
            browser = launch_browser(p)
            _up(services[0])
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/account/sign-in?next=/contribute/{slug}")
            page.fill("#signin-email", "rey@example.org")
            page.fill("#signin-password", PASSWORD)
            page.click("#signin-submit")
            page.wait_for_url(f"{base}/contribute/{slug}")
            page.wait_for_selector("#coll-choose")
            page.evaluate(ROW_STATES)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send(
                "Network.emulateNetworkConditions",
                {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 4 * 1024 * 1024},
            )
            with page.expect_file_chooser() as chooser:
                page.click("#coll-choose")
            chooser.value.set_files(str(source))

            # Two chunks sent: stop gunicorn as a deploy does (SIGTERM), and start it again. The rest of the file
            # takes longer than the graceful timeout: the request in flight is cut off.
            wait_until(lambda: page.evaluate(SENT) >= 2 * CHUNK + 1, 60, "two chunks sent")
            services[0].stop()
            held = _held(data_dir)
            services.append(_gunicorn(env, tmp_path / "gunicorn-2.log"))
            _up(services[1])
            cdp.send(
                "Network.emulateNetworkConditions",
                {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            )

            row = page.wait_for_selector(
                ".incdb-upload-row[data-file='big.zip'][data-state='done'], "
                ".incdb-upload-row[data-file='big.zip'][data-state='error']",
                timeout=120_000,
            )
            assert row.get_attribute("data-state") == "done", row.inner_text()
            assert "reconnecting" in page.evaluate("window.incdbRowStates")
            resumes = page.evaluate("window.incdbUploadResumes")
            assert 2 * CHUNK <= held < source.stat().st_size
            assert resumes and resumes[0][0] == "big.zip" and resumes[0][1] >= held, resumes
            assert "2 map(s)" in page.inner_text("#coll-upload-progress")
            assert not errors, errors
            browser.close()
    finally:
        for service in reversed(services):
            service.stop()
    with session_scope() as session:
        upload = session.scalar(select(Upload))
        assert upload.filename == "big.zip"
        assert get_storage().read_bytes(upload.storage_key) == source.read_bytes()
    assert _held(data_dir) == 0  # no partial file left behind
