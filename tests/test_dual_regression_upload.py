"""FSL dual_regression stage-1 files uploaded one by one (not in an archive): the upload panel's file filter in
Chromium lets them through, the upload route keeps them, and processing stacks them under the group map."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import func, select

from accounts.users import create_user
from pipeline.curation.catalog import confirm_license, create_collection, get_or_create_movie
from pipeline.jobs.lifecycle import create_job
from pipeline.temporal.timing import Timing
from store.db import session_scope
from store.models import Upload
from tests.browser import REPO_ROOT, launch_browser, require_chromium
from tests.services import Client, component_maps, write_nifti
from tests.test_isc import designed
from tests.test_isc_dual_regression import stored_course, write_matrix

PASSWORD = "correct horse battery"
TIMING = Timing.parse(2.0, "0:60,116:60", 3)


def _uploads() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count(Upload.id)))


def test_stage1_files_uploaded_one_by_one_are_kept_and_stacked_in_subject_order(web, data_dir, tmp_path):
    from pipeline.curation.ingest import ingest

    with session_scope() as session:
        curator = create_user(session, "dr@example.org", PASSWORD)
        collection = create_collection(session, curator, get_or_create_movie(session, "Up"), "Dual regression")
        collection.timing = TIMING.to_dict()
        confirm_license(session, collection, curator)
        slug, collection_id, user_id = collection.slug, collection.id, curator.id
    client = Client(flask_app=web.server)
    client.sign_in("dr@example.org", PASSWORD)
    x = designed(np.array([0.0, 0.4, 0.8]), 3, TIMING.rows_per_subject, seed=3).astype(np.float32)

    r = client.upload(slug, write_nifti(tmp_path / "melodic_IC.nii.gz", component_maps(3, seed=5)))
    assert r.status_code == 200, r.text
    for s in (2, 0, 1):  # any order: the file numbers are the subjects' order
        name = f"dr_stage1_subject{s:05d}.txt"
        r = client.upload(slug, write_matrix(tmp_path / name, x[:, :, s]))
        assert r.status_code == 200, r.text
        assert r.json()["upload"]["filename"] == name
        assert any(
            f"one subject's dual_regression time courses, 3 components x {TIMING.rows_per_subject} volumes" in w
            for w in r.json()["warnings"]
        )

    bad = tmp_path / "bad" / "dr_stage1_subject00003.txt"
    bad.parent.mkdir()
    bad.write_text("  0.1  zero  0.3\n")
    r = client.upload(slug, bad)
    assert r.status_code == 422 and "'zero' is not a number" in r.json()["error"], r.text
    assert _uploads() == 4  # the refused file left nothing behind

    with session_scope() as session:
        job_id = create_job(session, "ingest", collection_id, user_id).id
    result = ingest(job_id)
    assert result.components == 3 and not result.errors, result.errors
    mix_file, stored = stored_course(collection_id)
    assert mix_file == "dr_stage1_subject*.txt (3 files)"
    np.testing.assert_allclose(stored, np.concatenate([x[:, :, s] for s in range(3)], axis=0), rtol=1e-6)


def _dropzone_accept(web) -> str:
    from dashboard.pages.contribute.collection import _upload_widget

    def walk(node):
        if getattr(node, "id", None) == "coll-dropzone":
            return node
        children = getattr(node, "children", None)
        for child in children if isinstance(children, list) else [children] if children is not None else []:
            found = walk(child)
            if found is not None:
                return found
        return None

    return walk(_upload_widget("dr")).to_plotly_json()["props"]["data-accept"]


PAGE = """<!doctype html><html><body>
<div class="incdb-dropzone" id="coll-dropzone" data-upload-url="/upload/dr" data-max-bytes="1000000"
     data-accept="{accept}" data-list="list"><button id="coll-choose">choose files</button></div>
<div id="list"></div><script src="/assets/upload.js"></script></body></html>"""

DROP = """(names) => {
    const data = new DataTransfer();
    names.forEach((name) => data.items.add(new File(["  0.1  0.2  0.3\\n"], name, {type: "text/plain"})));
    const zone = document.getElementById("coll-dropzone");
    zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
}"""


def test_the_upload_panel_lets_stage1_files_through_and_still_refuses_other_text_files(web, data_dir):
    require_chromium()
    from playwright.sync_api import sync_playwright

    accept = _dropzone_accept(web)
    source = (REPO_ROOT / "assets" / "upload.js").read_text()
    sent: list[str] = []

    def answer(route):
        request = route.request
        if request.url.endswith("/page"):
            route.fulfill(status=200, content_type="text/html", body=PAGE.format(accept=accept))
        elif request.url.endswith("/assets/upload.js"):
            route.fulfill(status=200, content_type="application/javascript", body=source)
        elif "/upload/dr" in request.url and request.method == "POST":
            sent.append(request.url)
            body = {"ok": True, "maps": 0, "warnings": [], "notes": [], "upload": {"filename": "x"}}
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        else:
            route.fulfill(status=404, body="")

    names = ["dr_stage1_subject00000.txt", "dr_stage1_subject00001.txt", "notes.txt", "dr_stage1_subject1.txt"]
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page()
            page.route("http://incdb.test/**", answer)
            page.goto("http://incdb.test/page")
            page.evaluate(DROP, names)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.incdb-upload-row')].every("
                "(row) => ['done', 'error'].includes(row.getAttribute('data-state')))",
                timeout=30_000,
            )
            states = page.evaluate(
                "() => Object.fromEntries([...document.querySelectorAll('.incdb-upload-row')].map("
                "(row) => [row.getAttribute('data-file'), row.getAttribute('data-state')]))"
            )
            picker = page.evaluate(
                "() => { document.getElementById('coll-choose').click(); "
                "return [...document.querySelectorAll('input[type=file]')].map((i) => i.accept).pop() || ''; }"
            )
        finally:
            browser.close()
    assert states == {
        "dr_stage1_subject00000.txt": "done",
        "dr_stage1_subject00001.txt": "done",
        "notes.txt": "error",
        "dr_stage1_subject1.txt": "error",  # not dual_regression's five-digit numbering
    }, states
    assert len(sent) == 2
    assert ".txt" in picker.split(","), picker
