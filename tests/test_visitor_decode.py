"""The public decoder (``POST /api/decode``, ``GET``/``DELETE /api/decode/<id>``): the same r as the command line,
the non-zero mask, similar components, the curator upload's messages for hostile files, caps, CSRF, background
jobs for 4D files, privacy and retention."""

from __future__ import annotations

import gzip
import io
import json
import time
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import select

from pipeline.curation.uploads import check_upload
from pipeline.decoding import visitors
from pipeline.decoding.decode import masked
from pipeline.decoding.reference import active_reference, load_matrix
from pipeline.maps.files import load_map
from pipeline.maps.grid import GRID_AFFINE
from pipeline.maps.nifti import NiftiError
from store.config import reset_settings
from store.db import session_scope
from store.models import Collection, Component, DecodeResult, Job, User, utcnow
from store.storage import get_storage
from tests.conftest import CURATOR_PASSWORD
from tests.niftis import mni_affine, smooth_random, thresholded
from tests.services import Client, component_maps, write_nifti


def send(client, path: Path, name: str | None = None, **params) -> tuple[int, dict]:
    """The page's way: the raw body, options in the query string."""
    query = "&".join(f"{k}={v}" for k, v in {"name": name or path.name, **params}.items())
    r = client.post(
        f"/api/decode?{query}", data=path.read_bytes(), headers={"Content-Type": "application/octet-stream"}
    )
    return r.status_code, r.json()


def send_multipart(flask_client, path: Path, **fields):
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **fields}
    r = flask_client.post("/api/decode", data=data, content_type="multipart/form-data")
    return r.status_code, r.get_json()


def delete(client, path: str, csrf: bool = True) -> int:
    return client._flask.delete(path, headers=client.csrf_headers() if csrf else {}).status_code


def wait_done(client, token: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/decode/{token}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"decoding {token} did not finish: {body}")


@pytest.fixture
def visitor(web):
    return Client(flask_app=web.server)


def test_the_decoder_equals_the_command_line(web, visitor, tmp_path, capsys):
    """A 3 mm map, anonymously and without CSRF token: every term's r equals `python -m pipeline decode`."""
    from pipeline.__main__ import main

    rng = np.random.default_rng(5)
    affine, shape = mni_affine(3.0)
    path = tmp_path / "my map.nii.gz"
    nib.save(nib.Nifti1Image(smooth_random(rng, shape, 1.5), affine), str(path))
    status, body = send(visitor, path)
    assert status == 200, body
    assert body["status"] == "done" and body["url"] == f"/decode/{body['id']}" and len(body["id"]) >= 32
    result = visitor.get(f"/api/decode/{body['id']}").json()
    assert main(["decode", str(path), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    ours = result["volumes"][0]["terms"]
    assert [t["term"] for t in ours] == [t["term"] for t in cli]
    np.testing.assert_allclose([t["r"] for t in ours], [t["r"] for t in cli], atol=1e-6)
    # The CSV and the viewer's map are there; nothing joined the catalogue.
    assert visitor.get(f"/decode/{body['id']}/profile.csv").text.count("\n") == len(cli) + 1
    assert visitor.get(f"/decode/{body['id']}/volumes/1.nii.gz?display=1").status_code == 200
    assert visitor.get(f"/decode/{body['id']}/volumes/2.nii.gz").status_code == 404
    with session_scope() as session:
        assert session.scalar(select(Component.id)) is None
        assert session.scalar(select(DecodeResult.owner_id)) is None


def test_a_demo_components_own_file_finds_it_first(web, demo_dir, tmp_path):
    visitor = Client(flask_app=web.server)
    with session_scope() as session:
        comp = session.scalar(
            select(Component).join(Collection).where(Collection.visibility == "public").order_by(Component.id.desc())
        )
        cuuid = comp.uuid
    path = tmp_path / "component.nii.gz"
    path.write_bytes(visitor.get(f"/files/components/{cuuid}.nii.gz").content)
    code, body = send_multipart(web.server.test_client(), path)  # the API's way: multipart, field "file"
    assert code == 200, body
    similar = visitor.get(f"/api/decode/{body['id']}").json()["volumes"][0]["similar"]
    assert similar[0]["uuid"] == cuuid and similar[0]["r"] > 0.999
    assert len(similar) == 20 and {"movie", "collection", "best_term"} <= set(similar[0])
    assert [s["r"] for s in similar] == sorted((s["r"] for s in similar), reverse=True)


def test_nonzero_mask_is_corrcoef_over_the_non_zero_voxels(web, visitor, tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "thresholded.nii.gz"
    data = thresholded(smooth_random(rng), 0.12)
    nib.save(nib.Nifti1Image(data, GRID_AFFINE), str(path))
    status, body = send(visitor, path, mask="nonzero")
    assert status == 200, body
    result = visitor.get(f"/api/decode/{body['id']}").json()
    assert result["mask"] == "nonzero"
    got = {t["term"]: t["r"] for t in result["volumes"][0]["terms"]}
    row = masked(data)[0]
    support = row != 0
    with session_scope() as session:
        matrix, terms = load_matrix(session, active_reference(session))
        for column, term in enumerate(terms):
            expected = np.corrcoef(
                row[support].astype(np.float64), np.asarray(matrix[:, column], dtype=np.float64)[support]
            )[0, 1]
            assert got[term.name] == pytest.approx(expected, abs=2e-6), term.name
    brain = visitor.get(f"/api/decode/{send(visitor, path)[1]['id']}").json()["volumes"][0]["terms"]
    assert max(abs(got[t["term"]] - t["r"]) for t in brain) > 0.05  # the mask matters for this map


def hostile_files(tmp_path: Path) -> dict[str, Path]:
    good = gzip.compress(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), GRID_AFFINE).to_bytes())
    files = {
        "truncated.nii.gz": good[: len(good) // 2],
        "not-gzip.nii.gz": b"\x89PNG\r\n\x1a\n" + b"\0" * 400,
        "plain-junk.nii": b"this is not a NIfTI header" * 20,
        "flat.nii.gz": gzip.compress(nib.Nifti1Image(np.ones((20, 20), np.float32), np.eye(4)).to_bytes()),
    }
    out = {}
    for name, raw in files.items():
        out[name] = tmp_path / name
        out[name].write_bytes(raw)
    return out


def test_hostile_files_get_the_curator_uploads_messages(web, visitor, tmp_path):
    for name, path in hostile_files(tmp_path).items():
        with pytest.raises(NiftiError) as curator_error:
            check_upload(path, name, tmp_path / "work")
        status, body = send(visitor, path)
        assert status == 422 and body["error"] == str(curator_error.value), name
    zipped = tmp_path / "maps.zip"
    zipped.write_bytes(b"PK\x03\x04")
    status, body = send(visitor, zipped)
    assert status == 415 and "one .nii or .nii.gz map" in body["error"]
    with session_scope() as session:
        # Nothing kept of a refused file but a row that counts it toward the sender's hourly cap: no files, no address.
        rows = session.scalars(select(DecodeResult)).all()
        assert rows and all(r.status == "refused" and r.storage_prefix == "" for r in rows)
        assert all(visitors.find(session, r.token) is None for r in rows)
    assert not list(get_storage().list("decode/"))


def test_caps_per_address_and_account(web, visitor, curator, tmp_path, monkeypatch):
    maps = component_maps(3, seed=2)
    four_d = write_nifti(tmp_path / "three.nii.gz", maps)
    monkeypatch.setenv("INCDB_DECODE_MAX_VOLUMES_ANONYMOUS", "2")
    monkeypatch.setenv("INCDB_DECODE_MAX_BYTES_ANONYMOUS", str(four_d.stat().st_size - 1))
    monkeypatch.setenv("INCDB_DECODE_PER_HOUR_ANONYMOUS", "3")  # the two refused files count too
    reset_settings()
    status, body = send(visitor, four_d)
    assert status == 413 and "larger than the decoder takes from this address" in body["error"]
    monkeypatch.setenv("INCDB_DECODE_MAX_BYTES_ANONYMOUS", "0")
    reset_settings()
    status, body = send(visitor, four_d)
    assert status == 422 and "has 3 volumes; the decoder takes up to 2" in body["error"]
    one = write_nifti(tmp_path / "one.nii.gz", maps[0])
    assert send(visitor, one)[0] == 200
    status, body = send(visitor, one)
    assert status == 429 and "sent 3 maps to the decoder in the last hour" in body["error"]
    # A signed-in curator has the account's limits, and with a session cookie the CSRF token is required.
    cora = Client(flask_app=web.server)
    cora.sign_in("cora@example.org", CURATOR_PASSWORD)
    r = cora.post("/api/decode?name=three.nii.gz", data=four_d.read_bytes(), csrf=False)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    monkeypatch.setenv("INCDB_DECODE_INLINE_VOLUMES", "1")  # three volumes: a background job
    reset_settings()
    r = cora.post("/api/decode?name=three.nii.gz", data=four_d.read_bytes())
    assert r.status_code == 202 and r.json()["status"] in ("queued", "running", "done")
    token = r.json()["id"]
    done = wait_done(cora, token)
    assert done["status"] == "done" and [v["volume"] for v in done["volumes"]] == [1, 2, 3]
    assert all(len(v["terms"]) == 22 for v in done["volumes"])
    with session_scope() as session:
        row = session.scalar(select(DecodeResult).where(DecodeResult.token == token))
        job = session.get(Job, row.job_id)
        assert job.kind == "decode" and job.status == "succeeded" and job.progress_done == 3
        assert row.owner_id == session.scalar(select(User.id).where(User.email == "cora@example.org"))
    # Its page: the heatmap of terms x volumes, and stepping to volume 3 changes the viewer's map and the lists.
    from callbacks import decode_result as decode_result_callbacks
    from dashboard.pages import decode_result

    with web.server.test_request_context("/"):
        page = str(decode_result.layout(token=token))
        assert "decres-heatmap" in page and "decres-volume" in page and "volumes/1.nii.gz" in page
        layers, figure, _similar, terms = decode_result_callbacks._show_volume(3, token)
        assert layers[-1]["url"] == f"/decode/{token}/volumes/3.nii.gz?display=1"
    heat = decode_result.heatmap(done["volumes"]).data[0]
    assert list(heat.x) == [1, 2, 3] and len(heat.y) == 22 and len(heat.z) == 22
    # Only its owner deletes it, at once.
    assert delete(visitor, f"/api/decode/{token}") == 403
    assert delete(cora, f"/api/decode/{token}", csrf=False) == 403
    assert delete(cora, f"/api/decode/{token}") == 200
    assert cora.get(f"/api/decode/{token}").status_code == 404
    assert not list(get_storage().list(f"decode/{token}/"))


def test_an_expired_result_is_gone_after_the_sweep(web, visitor, tmp_path):
    from pipeline.__main__ import main

    path = write_nifti(tmp_path / "one.nii.gz", component_maps(1, seed=4)[0])
    old = send(visitor, path)[1]["id"]
    kept = send(visitor, path)[1]["id"]
    with session_scope() as session:
        row = session.scalar(select(DecodeResult).where(DecodeResult.token == old))
        row.expires = utcnow() - timedelta(minutes=1)
    assert visitor.get(f"/api/decode/{old}").status_code == 404  # expired: not shown even before the sweep
    assert list(get_storage().list(f"decode/{old}/"))
    assert main(["sweep"]) == 0
    with session_scope() as session:
        assert [r.token for r in session.scalars(select(DecodeResult))] == [kept]
    assert not list(get_storage().list(f"decode/{old}/"))
    assert list(get_storage().list(f"decode/{kept}/"))  # a result still kept keeps its files
    assert visitor.get(f"/api/decode/{kept}").json()["status"] == "done"


def test_a_visitors_map_never_shows_private_components_to_others(web, demo_dir, tmp_path):
    """A map equal to a private demo component: decoded by an anonymous visitor, its similar list never holds
    the private components; decoded by their owner, the component comes first, but whoever else opens that
    result's address does not see it."""
    from pipeline.curation.demo import DEMO_PRIVATE_OWNER

    with session_scope() as session:
        comp = session.scalar(select(Component).join(Collection).where(Collection.visibility == "private"))
        private_uuid, key = comp.uuid, comp.storage_key
        private_ids = {
            c.uuid
            for c in session.scalars(select(Component).join(Collection).where(Collection.visibility == "private"))
        }
        owner = session.scalar(select(User).where(User.email == DEMO_PRIVATE_OWNER))
        session.expunge(owner)
    path = tmp_path / "private.nii.gz"
    nib.save(nib.Nifti1Image(load_map(key), GRID_AFFINE), str(path))
    anonymous = Client(flask_app=web.server)
    token = send(anonymous, path)[1]["id"]
    found = [s["uuid"] for s in anonymous.get(f"/api/decode/{token}").json()["volumes"][0]["similar"]]
    assert len(found) == 20 and not set(found) & private_ids
    accepted = visitors.accept(path, path.name, path.stat().st_size, owner, "0" * 64)
    visitors.run_decode(accepted.result_id)
    with session_scope() as session:
        payload = visitors.load_payload(visitors.find(session, accepted.token))
        mine = visitors.shown_volumes(session, owner, payload)[0]["similar"]
        assert mine[0]["uuid"] == private_uuid and mine[0]["r"] > 0.999
    theirs = anonymous.get(f"/api/decode/{accepted.token}").json()["volumes"][0]["similar"]
    assert theirs and not {s["uuid"] for s in theirs} & private_ids
