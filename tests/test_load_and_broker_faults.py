"""Under load and with the broker failing, with real processes (gunicorn, a Celery worker, PostgreSQL, Redis):

- 50 concurrent clients for 60 s on the browse pages, the API and map files while a collection is being processed:
  no request fails and the job finishes;
- Redis killed and restarted while a job runs: the job ends succeeded or failed with a message, rows and files
  agree, and a retry succeeds.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import select

from bench.browse import API, PAGES, page_payload
from store.db import session_scope
from store.models import Collection, Job
from tests.conftest import need_service, use_environment
from tests.services import (
    Client,
    Service,
    flush_redis_db,
    free_port,
    redis_available,
    running,
    service_env,
    start_celery,
    start_gunicorn,
    wait_until,
)
from tests.test_faults import referenced_keys, stored_keys
from tests.test_processing import _clone_reference_into, _curator, _files, _prepare

LOAD_CLIENTS = 50
LOAD_SECONDS = float(os.environ.get("INCDB_LOAD_SECONDS", "60"))


def _stack(tmp_path: Path, reference_template: Path, database_url: str, broker: str):
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(reference_template, data_dir)
    _clone_reference_into(data_dir, database_url)
    env = service_env(data_dir, database_url, broker)
    return data_dir, env


def _start_job(client: Client, collection_id: int) -> None:
    """Press "Process" and start the background callback, without waiting for it (the Job row is the truth)."""
    nonce = uuid.uuid4().hex
    request = client.start_processing(collection_id, nonce)
    body = client._body(
        "proc-result.children", {"proc-request.data": request, "proc-nonce.data": nonce}, ["proc-request.data"]
    )
    first = client.post(client._url(), json_body=body)
    assert first.status_code == 200, first.text[:1000]


def _job_state(collection_id: int) -> tuple[str, int, str]:
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.collection_id == collection_id).order_by(Job.id.desc()))
        return (job.status, job.progress_done, job.error) if job else ("none", 0, "")


def test_fifty_clients_while_a_collection_is_processed(tmp_path, reference_template, postgres_url):
    need_service(redis_available(), "Redis on 127.0.0.1:6379")
    broker = flush_redis_db(7)
    data_dir, env = _stack(tmp_path, reference_template, postgres_url, broker)
    worker = start_celery(env, tmp_path / "worker.log")
    with running(worker):
        web = start_gunicorn(env, tmp_path / "web.log", workers=2)
        with running(web):
            use_environment(data_dir, postgres_url)
            _curator("busy@example.org")
            client = Client(web.url)
            slug, cid = _prepare(
                client, "busy@example.org", "Under load", "Loaded Movie", _files(tmp_path / "in", n_4d=12, voxel_mm=3)
            )
            _start_job(client, cid)
            files = ["/files/underlay.nii.gz", "/files/terms/visual.nii.gz?display=1"]
            # The browse benchmark's routes, on this test's movie instead of the demo's.
            pages = [p.replace("forrest-gump", "loaded-movie") for p in PAGES]
            api = [p.replace("forrest-gump", "loaded-movie") for p in API]
            stop_at = time.monotonic() + LOAD_SECONDS
            counts = {"ok": 0, "errors": 0}
            failures: list[str] = []
            lock = threading.Lock()

            def one_client(seed: int) -> None:
                rng = random.Random(seed)
                session = requests.Session()
                session.get(web.url + "/", timeout=30)
                while time.monotonic() < stop_at:
                    pick = rng.random()
                    try:
                        if pick < 0.4:
                            r = session.post(
                                web.url + "/_dash-update-component",
                                timeout=60,
                                data=json.dumps(page_payload(rng.choice(pages))),
                                headers={"Content-Type": "application/json"},
                            )
                        elif pick < 0.85:
                            r = session.get(web.url + rng.choice(api), timeout=60)
                        else:
                            r = session.get(web.url + rng.choice(files), timeout=60)
                        ok, what = r.status_code == 200, f"{r.status_code} {r.request.path_url}"
                    except requests.RequestException as exc:
                        ok, what = False, repr(exc)
                    with lock:
                        counts["ok" if ok else "errors"] += 1
                        if not ok and len(failures) < 10:
                            failures.append(what)

            threads = [threading.Thread(target=one_client, args=(i,)) for i in range(LOAD_CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(LOAD_SECONDS + 120)
            assert counts["errors"] == 0, (counts, failures)
            assert counts["ok"] > LOAD_CLIENTS  # every client got answers, not one request each
            wait_until(lambda: _job_state(cid)[0] in ("succeeded", "failed"), 240, "the job to end")
            assert _job_state(cid)[0] == "succeeded", _job_state(cid)
            with session_scope() as session:
                assert session.get(Collection, cid).status == "ready"


def _redis_server(port: int, log: Path) -> Service:
    service = Service(
        "redis-server",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
        log.parent,
        log,
    )

    def up():
        service.check_alive()
        try:
            import redis

            return redis.Redis(port=port, socket_connect_timeout=0.5).ping()
        except Exception:  # noqa: BLE001
            return False

    wait_until(up, 20, "redis-server to answer")
    return service


def test_redis_restarted_during_a_job(tmp_path, reference_template, postgres_url):
    import shutil

    need_service(shutil.which("redis-server") is not None, "redis-server binary")
    port = free_port()
    redis_log = tmp_path / "redis.log"
    broker_service = _redis_server(port, redis_log)
    broker = f"redis://127.0.0.1:{port}/0"
    data_dir, env = _stack(tmp_path, reference_template, postgres_url, broker)
    worker = start_celery(env, tmp_path / "worker.log")
    try:
        web = start_gunicorn(env, tmp_path / "web.log", workers=2)
        with running(web):
            use_environment(data_dir, postgres_url)
            _curator("flaky@example.org")
            client = Client(web.url)
            slug, cid = _prepare(
                client,
                "flaky@example.org",
                "Broker trouble",
                "Flaky Movie",
                _files(tmp_path / "in", n_4d=16, voxel_mm=3),
            )
            _start_job(client, cid)
            wait_until(lambda: _job_state(cid)[1] >= 1, 120, "the job to make progress")
            broker_service.stop()  # Redis dies mid-job (it keeps nothing on disk: queued messages are gone)
            time.sleep(2)
            broker_service = _redis_server(port, tmp_path / "redis2.log")
            wait_until(lambda: _job_state(cid)[0] in ("succeeded", "failed", "cancelled"), 240, "the job to end")
            status, _, error = _job_state(cid)
            assert status == "succeeded" or error, (status, error)
            on_disk = {k for k in stored_keys(data_dir) if not k.startswith("check/")}
            assert referenced_keys() <= on_disk
            if status != "succeeded":  # the retry, through the page as a curator would
                _start_job(client, cid)
                wait_until(lambda: _job_state(cid)[0] in ("succeeded", "failed"), 240, "the retry to end")
                assert _job_state(cid)[0] == "succeeded", _job_state(cid)
            # The worker is still connected: a second collection goes through after the restart.
            _curator("after@example.org")
            client2 = Client(web.url)
            slug2, cid2 = _prepare(
                client2, "after@example.org", "After restart", "Flaky Movie", _files(tmp_path / "in2", n_4d=2, seed=5)
            )
            _start_job(client2, cid2)
            wait_until(lambda: _job_state(cid2)[0] == "succeeded", 240, "a job after the restart")
            on_disk = {k for k in stored_keys(data_dir) if not k.startswith("check/")}
            assert referenced_keys() <= on_disk
    finally:
        worker.stop()
        broker_service.stop()
