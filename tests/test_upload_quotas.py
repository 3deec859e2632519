"""Per-user upload quotas (files per hour, bytes per 24 hours, counted from the Upload rows; administrators exempt)
and the file names an upload may have (no control characters, at most 255 characters), on SQLite and on
PostgreSQL, through the upload endpoint on Flask's test client."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import numpy as np
import pytest
from sqlalchemy import func, select, update

from accounts.users import create_user
from pipeline.curation.catalog import confirm_license, create_collection, get_or_create_movie
from store.config import reset_settings
from store.db import session_scope, upgrade_database
from store.models import Upload, utcnow
from tests.conftest import use_environment
from tests.services import Client, write_nifti

PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, data_dir, tmp_path):
    """A curator and an administrator with a confirmed collection each, on either database; some map files."""
    if request.param == "postgresql":
        use_environment(data_dir, request.getfixturevalue("postgres_url"))
        upgrade_database()
    with session_scope() as session:
        movie = get_or_create_movie(session, "Quota Movie")
        ids = {}
        for email, role in (("cur@example.org", "curator"), ("root@example.org", "admin")):
            user = create_user(session, email, PASSWORD, role=role)
            collection = create_collection(session, user, movie, f"Quota {role}")
            confirm_license(session, collection, user)
            ids[role] = collection.slug
    rng = np.random.default_rng(0)
    files = [write_nifti(tmp_path / f"map{i}.nii", rng.standard_normal((91, 109, 91))) for i in range(4)]
    import app as app_module

    def client(email: str) -> Client:
        c = Client(flask_app=app_module.server)
        c.sign_in(email, PASSWORD)
        return c

    return {"slugs": ids, "files": files, "client": client, "temp": data_dir / "tmp" / "uploads"}


def _limits(monkeypatch, **values: int) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))
    reset_settings()


def _age_uploads(hours: float) -> None:
    with session_scope() as session:
        session.execute(update(Upload).values(created=utcnow() - timedelta(hours=hours)))


def _count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count(Upload.id)))


def test_files_per_hour(site, monkeypatch):
    _limits(monkeypatch, INCDB_UPLOADS_PER_HOUR=2)
    cur, files, slug = site["client"]("cur@example.org"), site["files"], site["slugs"]["curator"]
    assert [cur.upload(slug, f).status_code for f in files[:2]] == [200, 200]
    r = cur.upload(slug, files[2])
    assert r.status_code == 429, r.text
    assert r.json()["error"].startswith("You have uploaded 2 files in the last hour; the limit is 2. Try again later")
    assert 3000 <= int(r.headers["Retry-After"]) <= 3600
    assert _count() == 2 and not any(site["temp"].iterdir())

    # Administrators are exempt.
    root = site["client"]("root@example.org")
    assert [root.upload(site["slugs"]["admin"], f).status_code for f in files[:3]] == [200, 200, 200]

    # Uploads older than an hour no longer count.
    _age_uploads(1.1)
    assert cur.upload(slug, files[2]).status_code == 200


def test_bytes_per_day(site, monkeypatch):
    files, slug = site["files"], site["slugs"]["curator"]
    size = files[0].stat().st_size
    _limits(monkeypatch, INCDB_UPLOAD_BYTES_PER_DAY=size + size // 2)
    cur = site["client"]("cur@example.org")
    assert cur.upload(slug, files[0]).status_code == 200
    r = cur.upload(slug, files[1])  # refused by its declared length, before any of it is stored
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error.startswith(
        "map1.nii (3.4 MiB) would take your uploads of the last 24 hours to 6.9 MiB, over the limit of 5.2 MiB per day"
    ), error
    assert "Try again later" in error
    assert _count() == 1 and not any(site["temp"].iterdir())

    _limits(monkeypatch, INCDB_UPLOAD_BYTES_PER_DAY=size)
    r = cur.upload(slug, files[1])
    assert r.status_code == 429 and r.json()["error"].startswith(
        "You have uploaded 3.4 MiB in the last 24 hours; the limit is 3.4 MiB per day. Try again later."
    )

    root = site["client"]("root@example.org")
    assert [root.upload(site["slugs"]["admin"], f).status_code for f in files[:2]] == [200, 200]

    _age_uploads(25)
    assert cur.upload(slug, files[1]).status_code == 200


@pytest.mark.parametrize(
    "name,code",
    [
        ("map\x00.nii", "U+0000"),
        ("bad\x1b[31mname.nii", "U+001B"),
        ("two\nlines.nii", "U+000A"),
        ("tab\there.nii", "U+0009"),
        ("del\x7f.nii", "U+007F"),
        ("c1\x85.nii", "U+0085"),
        ("evil\u202egpj.nii", "U+202E"),
    ],
)
def test_control_characters_in_file_names_are_refused(site, name, code):
    cur = site["client"]("cur@example.org")
    r = cur.upload(site["slugs"]["curator"], site["files"][0], name=quote(name))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert f"contains the control character {code}" in error and "Rename the file" in error
    assert _count() == 0


def test_file_names_longer_than_255_characters_are_refused(site):
    cur, path, slug = site["client"]("cur@example.org"), site["files"][0], site["slugs"]["curator"]
    r = cur.upload(slug, path, name=quote("m" * 252 + ".nii"))
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("The file name is 256 characters long; the limit is 255.")
    assert _count() == 0
    longest = "é" * 251 + ".nii"  # 255 characters (510 bytes in UTF-8): kept whole
    r = cur.upload(slug, path, name=quote(longest))
    assert r.status_code == 200, r.text
    with session_scope() as session:
        assert session.scalar(select(Upload.filename)) == longest


def test_a_path_in_the_name_keeps_only_the_file_name(site):
    cur = site["client"]("cur@example.org")
    r = cur.upload(site["slugs"]["curator"], site["files"][0], name=quote("C:\\data\\run 1\\ünïcode map.nii"))
    assert r.status_code == 200 and r.json()["upload"]["filename"] == "ünïcode map.nii"
