"""Storage sweep: files no row refers to (left by killed jobs) go; referenced, young and foreign files stay."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.__main__ import main
from pipeline.curation.ingest import ingest
from pipeline.jobs.sweep import sweep_storage
from store.db import session_scope
from store.models import Job
from store.storage import get_storage
from tests.test_faults import assert_consistent, new_ingest_job, referenced_keys, stored_keys

DAY = 24 * 3600


def age(data_dir, key: str, seconds: float) -> None:
    path = data_dir / "files" / key
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_sweep_removes_old_unreferenced_files_only(data_dir):
    ingest(new_ingest_job(data_dir))
    referenced = referenced_keys()
    storage = get_storage()
    old_orphans = [
        "components/orphan.nii.gz",
        "decodings/orphan.npy",
        "uploads/999/lost.nii.gz",
        "termmaps/1/movies/gone/visual-0123456789ab.nii.gz",
    ]
    for key in old_orphans + ["components/young.nii.gz", "check/probe-1"]:
        storage.put_bytes(key, b"x")
        age(data_dir, key, 3 * DAY)
    age(data_dir, "components/young.nii.gz", 60)
    temp = data_dir / "files" / "components" / ".tmp-killed"
    temp.write_bytes(b"partial")
    os.utime(temp, (time.time() - 3 * DAY,) * 2)
    for key in referenced:  # old referenced files are what a real store is full of
        age(data_dir, key, 30 * DAY)

    preview = sweep_storage(dry_run=True)
    assert sorted(preview.removed) == sorted(old_orphans + ["components/.tmp-killed (unfinished write)"])
    assert preview.kept_recent == 1
    assert temp.exists() and all(storage.exists(k) for k in old_orphans), "a dry run removed something"

    result = sweep_storage()
    assert sorted(result.removed) == sorted(preview.removed)
    assert not temp.exists() and not any(storage.exists(k) for k in old_orphans)
    assert storage.exists("components/young.nii.gz")  # too young: its row may be about to commit
    assert storage.exists("check/probe-1")  # not a folder the sweep owns
    assert referenced <= stored_keys(data_dir)
    assert sweep_storage().removed == []  # nothing left to do


def test_files_of_a_running_job_are_never_swept(data_dir):
    job_id = new_ingest_job(data_dir)
    now = datetime.now(UTC)
    with session_scope() as s:
        job = s.get(Job, job_id)
        job.status, job.started, job.heartbeat = "running", now - timedelta(hours=3), now
    get_storage().put_bytes("components/being-written.nii.gz", b"x")
    age(data_dir, "components/being-written.nii.gz", 2 * 3600)  # written by the job, after it started
    result = sweep_storage(grace=timedelta(hours=1))
    assert result.removed == [] and result.kept_recent == 1
    with session_scope() as s:
        s.get(Job, job_id).status = "succeeded"
    assert sweep_storage(grace=timedelta(hours=1)).removed == ["components/being-written.nii.gz"]


def test_sweep_cleans_up_after_an_ingest_killed_before_it_stored_its_components(data_dir):
    job_id = new_ingest_job(data_dir)

    def killed(done, total):
        if done == total:  # every map is written, the rows are not: the moment a kill leaves files behind
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(job_id, progress=killed)
    leftovers = stored_keys(data_dir) - referenced_keys()
    # Each of the 3 maps: its map, its thumbnail, its decodings and its exact vector for the similarity search.
    assert {k.split("/")[0] for k in leftovers} == {"components", "decodings", "similar"} and len(leftovers) == 12
    later = datetime.now(UTC) + timedelta(days=2)  # the job's process is long gone by then:
    with session_scope() as s:  # it ran in this test's process, so name another, ended one as its runner
        job = s.get(Job, job_id)
        host, namespace, _pid, _started = job.runner.split("/")
        job.runner = f"{host}/{namespace}/{2**22 + 1}/0.00"
    result = sweep_storage(now=later)
    assert sorted(result.removed) == sorted(leftovers)
    with session_scope() as s:
        assert s.get(Job, job_id).status == "failed"  # settled as stalled first, so it protects nothing
    assert_consistent(data_dir)
    assert ingest(job_id).components == 3  # and the job can still be run again
    assert_consistent(data_dir)


def test_sweep_command(data_dir, capsys):
    get_storage().put_bytes("decodings/orphan.npy", b"x")
    age(data_dir, "decodings/orphan.npy", 3 * DAY)
    assert main(["sweep", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove decodings/orphan.npy" in out and "would remove 1 unreferenced file(s)" in out
    assert get_storage().exists("decodings/orphan.npy")
    assert main(["sweep"]) == 0
    assert "removed 1 unreferenced file(s)" in capsys.readouterr().out
    assert not get_storage().exists("decodings/orphan.npy")
    assert main(["sweep", "--grace-hours", "0"]) == 1
    assert "--grace-hours must be at least 1" in capsys.readouterr().err


def test_a_dry_run_accepts_any_grace(data_dir, capsys):
    """What a killed job left a minute ago is listed by ``--dry-run --grace-hours 0``, and nothing is removed."""
    get_storage().put_bytes("components/just-left.nii.gz", b"x")
    assert main(["sweep", "--dry-run", "--grace-hours", "0"]) == 0
    out = capsys.readouterr().out
    assert "would remove components/just-left.nii.gz" in out and "would remove 1 unreferenced file(s)" in out
    assert get_storage().exists("components/just-left.nii.gz")
    assert main(["sweep", "--dry-run", "--grace-hours", "-1"]) == 1
    assert "--grace-hours must be at least 1" in capsys.readouterr().err
    assert get_storage().exists("components/just-left.nii.gz")


def test_synchrony_files_of_a_live_collection_are_kept_and_orphans_removed(data_dir):
    """ISFC and windowed-ISC files belong to a collection's synchrony row: kept while it exists, swept after."""
    from sqlalchemy import select

    from pipeline.synchrony.jobs import isfc_key, windowed_key
    from store.models import Collection, CollectionSynchrony

    ingest(new_ingest_job(data_dir))
    storage = get_storage()
    with session_scope() as session:
        collection_id = session.scalar(select(Collection.id))
        session.add(
            CollectionSynchrony(
                collection_id=collection_id, isfc_key=isfc_key(collection_id), windowed_key=windowed_key(collection_id)
            )
        )
    live = [isfc_key(collection_id), windowed_key(collection_id)]
    orphans = [isfc_key(collection_id + 1000), windowed_key(collection_id + 1000)]
    for key in live + orphans:
        storage.put_bytes(key, b"x")
        age(data_dir, key, 3 * DAY)
    for key in referenced_keys():
        age(data_dir, key, 30 * DAY)
    assert sorted(sweep_storage().removed) == sorted(orphans)
    assert all(storage.exists(k) for k in live) and not any(storage.exists(k) for k in orphans)
