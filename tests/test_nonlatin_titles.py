"""Movies whose titles are not in Latin letters (issue 22, item 9): the command line ingests them on local storage
and on S3, and every storage key the pipeline makes from their slugs (merged term maps) is accepted and stored."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from sqlalchemy import select

from store.models import Movie, TermMap, slugify
from store.storage import check_key, get_storage
from tests.conftest import need_service, use_environment
from tests.services import component_maps, write_nifti

TITLES = ("Сталкер", "千と千尋の神隠し", "Amélie Poulain")
PASSWORD = "a long password 1"


@pytest.mark.parametrize("title", ["Сталкер", "千と千尋の神隠し", "Ḱ̶ Ⅻ ᾧ Ωmega 東京 ١٢٣"])
def test_every_slug_of_a_title_makes_valid_keys(title):
    from store.artifacts import term_key, termmap_key

    slug = slugify(title)
    assert check_key(termmap_key(1, slug, slug, "abc123")) and check_key(term_key(1, slug))


def test_the_longest_titles_make_keys_within_file_system_limits():
    from store.artifacts import termmap_key

    long_a, long_b = "Ж" * 250 + " один", "Ж" * 250 + " два"  # titles may have 255 characters
    keys = {termmap_key(1, slugify(t), slugify(t), "abc123") for t in (long_a, long_b)}
    assert len(keys) == 2 and all(check_key(k) for k in keys)
    assert all(len(segment.encode()) <= 255 for k in keys for segment in k.split("/"))


def ingest_titles(data, tmp_path, capsys) -> None:
    """Ingest one small map per title through ``python -m pipeline`` (its ``main``, in this process)."""
    from pipeline.__main__ import main

    os.environ["INCDB_PASSWORD"] = PASSWORD
    try:
        assert main(["user", "create", "owner@example.org", "--admin"]) == 0
    finally:
        os.environ.pop("INCDB_PASSWORD", None)
    path = write_nifti(tmp_path / "map.nii.gz", component_maps(2, seed=4))
    for i, title in enumerate(TITLES):
        capsys.readouterr()
        code = main(["ingest", str(path), "--movie", title, "--collection", f"x{i}", "--owner", "owner@example.org"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert out.out.strip().endswith("2 component(s)") and "error" not in out.err, out.err
    from store.db import session_scope

    storage = get_storage()
    with session_scope() as session:
        for title in TITLES:
            movie = session.scalar(select(Movie).where(Movie.title == title))
            maps = session.scalars(select(TermMap).where(TermMap.movie_id == movie.id)).all()
            assert maps, title
            for tm in maps:
                assert f"/movies/{movie.slug}/" in tm.storage_key and storage.exists(tm.storage_key)


def test_the_command_line_ingests_non_latin_titles_on_local_storage(tmp_path, reference_template, capsys):
    data = tmp_path / "data"
    shutil.copytree(reference_template, data)
    use_environment(data)
    ingest_titles(data, tmp_path, capsys)
    files = {p.relative_to(data / "files").as_posix() for p in (data / "files").rglob("*.nii.gz")}
    assert any("/movies/сталкер/" in f for f in files) and any("/movies/amelie-poulain/" in f for f in files)


@pytest.fixture
def s3():
    need_service(True, "local S3 server")
    from tests.s3server import S3Server

    try:
        server = S3Server().start()
    except (RuntimeError, OSError) as exc:
        need_service(False, f"moto S3 server ({exc})")
    os.environ.update(server.environment())
    server.make_bucket("incdb-test")
    yield server
    server.stop()
    for k in server.environment():
        os.environ.pop(k, None)


def test_the_command_line_ingests_non_latin_titles_on_s3(s3, tmp_path, reference_template, capsys):
    data = tmp_path / "data"
    shutil.copytree(reference_template, data)
    use_environment(data, INCDB_STORAGE_URL="s3://incdb-test/site")
    storage = get_storage()
    local_files = data / "files"
    for path in local_files.rglob("*"):  # the template's term maps, into the bucket
        if path.is_file():
            storage.put_file(path.relative_to(local_files).as_posix(), path)
    shutil.rmtree(local_files)
    shutil.rmtree(data / "cache", ignore_errors=True)
    ingest_titles(data, tmp_path, capsys)
    listed = [key for key, _ in storage.list("termmaps")]
    assert any("/movies/千と千尋の神隠し/" in k for k in listed), listed
    assert not list(data.rglob("*.nii.gz"))  # nothing went to local disk
    assert np.all([storage.exists(k) for k in listed])
