"""Storage backends: keys, atomic writes, and the S3 backend against a local S3-compatible server."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from store.storage import LocalStorage, S3Storage, check_key, get_storage
from tests.conftest import need_service, use_environment


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "/abs",
        "a/../b",
        "a//b",
        "",
        "a/.hidden/../x",
        "a\\b",
        # keys take the letters and digits of every script (slugs), nothing more:
        "a b",
        "a\u200bb",
        "a\u0301",
        "ｆ／x",
        "\u2024",
        "a\u202eb",
        "сталкер\n",
        "e\u0301",
        "x/" + "ж" * 128,
    ],
)
def test_bad_keys_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_local_put_is_atomic_and_leaves_no_temp_files(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.put_bytes("maps/a.bin", b"old")

    class Boom(Exception):
        pass

    def failing_chunks():
        yield b"partial"
        raise Boom

    # A writer that dies midway must leave the previous object untouched and no temp file behind.
    with pytest.raises(Boom):
        with storage._atomic_writer("maps/a.bin") as fh:
            for chunk in failing_chunks():
                fh.write(chunk)
    assert storage.read_bytes("maps/a.bin") == b"old"
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["a.bin"]


def test_local_concurrent_readers_see_whole_objects(tmp_path):
    storage = LocalStorage(tmp_path)
    big_a, big_b = b"a" * 3_000_000, b"b" * 3_000_000
    storage.put_bytes("x", big_a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            data = storage.read_bytes("x")
            seen.add(data[:1] + data[-1:] + bytes([len(data) == 3_000_000]))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(20):
        storage.put_bytes("x", big_b if i % 2 else big_a)
    stop.set()
    t.join()
    assert seen <= {b"aa\x01", b"bb\x01"}


def check_copy_is_independent(storage) -> None:
    """What the merged maps rely on: a copy keeps its bytes when the source is rewritten or deleted."""
    storage.put_bytes("src/a.bin", b"first")
    storage.copy("src/a.bin", "dest/deep/b.bin")
    assert storage.read_bytes("dest/deep/b.bin") == b"first"
    storage.put_bytes("dest/deep/b.bin", b"old")
    storage.copy("src/a.bin", "dest/deep/b.bin")  # replaces an existing object
    assert storage.read_bytes("dest/deep/b.bin") == b"first"
    storage.put_bytes("src/a.bin", b"second")
    assert storage.read_bytes("dest/deep/b.bin") == b"first"
    storage.delete("src/a.bin")
    assert storage.read_bytes("dest/deep/b.bin") == b"first"
    with pytest.raises(KeyError):
        storage.copy("src/missing.bin", "dest/c.bin")
    assert not storage.exists("dest/c.bin")


def test_local_copy_is_independent_and_leaves_no_temp_files(tmp_path):
    storage = LocalStorage(tmp_path)
    check_copy_is_independent(storage)
    assert sorted(p.name for p in (tmp_path / "dest" / "deep").iterdir()) == ["b.bin"]


def test_local_version_changes_on_rewrite_and_missing_is_keyerror(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.put_bytes("k", b"1")
    v1 = storage.version("k")
    storage.put_bytes("k", b"22")
    assert storage.version("k") != v1
    with pytest.raises(KeyError):
        storage.open("missing")
    with pytest.raises(KeyError):
        storage.version("missing")


@pytest.fixture
def s3(tmp_path):
    need_service(True, "local S3 server")
    from tests.s3server import S3Server

    try:
        server = S3Server().start()
    except (RuntimeError, OSError) as exc:
        need_service(False, f"moto S3 server ({exc})")
    for k, v in server.environment().items():
        os.environ[k] = v
    server.make_bucket("incdb-test")
    yield server
    server.stop()
    for k in server.environment():
        os.environ.pop(k, None)


def test_s3_backend_round_trip(s3, tmp_path):
    storage = S3Storage("incdb-test", "/prefix/", endpoint_url=s3.url)
    storage.check()
    storage.put_bytes("a/b.bin", b"hello")
    assert storage.exists("a/b.bin") and storage.read_bytes("a/b.bin") == b"hello"
    assert storage.size("a/b.bin") == 5
    v1 = storage.version("a/b.bin")
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(300_000))
    storage.put_file("a/b.bin", src)
    assert storage.version("a/b.bin") != v1
    body = storage.open("a/b.bin")
    chunks = list(iter(lambda: body.read(65536), b""))
    assert len(chunks) > 1 and b"".join(chunks) == src.read_bytes()  # streamed, not one read
    check_copy_is_independent(storage)
    storage.put_bytes("a/c.bin", b"x")
    listed = dict(storage.list("a/"))
    assert set(listed) == {"a/b.bin", "a/c.bin"} and all(t.tzinfo is not None for t in listed.values())
    storage.delete_prefix("a")
    assert not storage.exists("a/b.bin") and not storage.exists("a/c.bin")
    with pytest.raises(KeyError):
        storage.open("a/b.bin")
    assert storage.local_path("a/b.bin") is None


def test_ingest_and_file_routes_on_s3(s3, tmp_path, reference_template):
    """The pipeline with maps on object storage: ingest, merged maps, decode, and a file route streaming."""
    import shutil

    import nibabel as nib
    from sqlalchemy import select

    from accounts.users import create_user
    from pipeline.curation.catalog import add_upload, create_collection, get_or_create_movie
    from pipeline.curation.ingest import ingest
    from pipeline.decoding.reference import BUILTIN_PEAKS, builtin_term_map
    from pipeline.jobs.lifecycle import create_job
    from pipeline.maps.grid import GRID_AFFINE, brain_mask
    from store.db import session_scope, upgrade_database
    from store.models import Component, TermMap

    data = tmp_path / "data"
    shutil.copytree(reference_template, data)
    # Term maps of the template live on local disk: copy them into the bucket, as a migration would.
    use_environment(data, INCDB_STORAGE_URL="s3://incdb-test/site")
    storage = get_storage()
    local_files = data / "files"
    for path in local_files.rglob("*"):
        if path.is_file():
            storage.put_file(path.relative_to(local_files).as_posix(), path)
    shutil.rmtree(local_files)
    shutil.rmtree(data / "cache", ignore_errors=True)  # the matrix must be rebuilt from the bucket
    upgrade_database()
    rng = np.random.default_rng(3)
    vols = np.stack(
        [
            builtin_term_map(tuple(BUILTIN_PEAKS[t])) + rng.normal(0, 0.3, (91, 109, 91)) * brain_mask()
            for t in ("visual", "auditory")
        ],
        axis=-1,
    ).astype(np.float32)
    f = tmp_path / "ic.nii.gz"
    nib.save(nib.Nifti1Image(vols, GRID_AFFINE), f)
    with session_scope() as session:
        user = create_user(session, "s3@example.org", "a long password")
        collection = create_collection(session, user, get_or_create_movie(session, "S3 Movie"), "On S3")
        add_upload(session, collection, f, f.name)
        job_id = create_job(session, "ingest", collection.id, user.id).id
    result = ingest(job_id)
    assert result.components == 2, result.errors
    with session_scope() as session:
        comps = session.scalars(select(Component).order_by(Component.volume_index)).all()
        assert [c.best_term.name for c in comps] == ["visual", "auditory"]
        keys = [c.storage_key for c in comps] + [tm.storage_key for tm in session.scalars(select(TermMap))]
        uuid = comps[0].uuid
    assert all(storage.exists(k) for k in keys)
    assert not list((data / "files").rglob("*.nii.gz"))  # nothing went to local disk
    from app import server

    client = server.test_client()
    response = client.get(f"/files/components/{uuid}.nii.gz")
    assert response.status_code == 200
    img = nib.Nifti1Image.from_bytes(__import__("gzip").decompress(response.data))
    assert img.shape == (91, 109, 91)
    assert client.get("/files/movies/s3-movie/visual.nii.gz?display=1").status_code == 200
