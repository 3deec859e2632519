"""Authorization matrix: anonymous, curator A (the owner), curator B and an admin, against every page, callback,
file and API route that reads private data or changes data. Only what is allowed succeeds; everything else is
refused (or, for private data, does not exist)."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest
from sqlalchemy import select

from accounts.users import create_user
from pipeline.curation.catalog import add_upload, confirm_license, create_collection, get_or_create_movie
from pipeline.jobs.lifecycle import JobRefused, create_job
from pipeline.jobs.tasks import run_authorized_job, run_job
from store.db import dispose_engine, session_scope
from store.models import Collection, Component, Job, ReferenceSet, Upload, User
from tests.conftest import use_environment
from tests.services import Client, component_maps, write_nifti

PASSWORD = "correct horse battery"
ROLES = ("anonymous", "a", "b", "admin")
EMAILS = {"a": "a@example.org", "b": "b@example.org", "admin": "admin@example.org"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, reference_template):
    base = tmp_path_factory.mktemp("authz")
    data_dir = base / "data"
    shutil.copytree(reference_template, data_dir)
    use_environment(data_dir)
    maps = component_maps(12, seed=11)
    files = [write_nifti(base / f"map{i}.nii.gz", maps[i]) for i in range(12)]
    with session_scope() as session:
        users = {
            role: create_user(session, email, PASSWORD, role="admin" if role == "admin" else "curator")
            for role, email in EMAILS.items()
        }
        create_user(session, "target@example.org", PASSWORD)
        movie = get_or_create_movie(session, "Secret Movie")
        private = create_collection(session, users["a"], movie, "A private", visibility="private")
        public = create_collection(session, users["a"], get_or_create_movie(session, "Open Movie"), "A public")
        jobs = []
        for collection, path in ((private, files[0]), (public, files[1])):
            confirm_license(session, collection, users["a"])
            add_upload(session, collection, path, "map.nii.gz")
            jobs.append(create_job(session, "ingest", collection.id, users["a"].id).id)
        ids = {"private": private.slug, "public": public.slug, "users": {r: u.id for r, u in users.items()}}
    for job in jobs:
        run_job(job)
    with session_scope() as session:
        ids["private_uuid"] = session.scalar(
            select(Component.uuid).join(Collection).where(Collection.slug == ids["private"])
        )
        ids["public_uuid"] = session.scalar(
            select(Component.uuid).join(Collection).where(Collection.slug == ids["public"])
        )
    import app as app_module

    clients = {"anonymous": Client(flask_app=app_module.server)}
    for role, email in EMAILS.items():
        clients[role] = Client(flask_app=app_module.server)
        clients[role].sign_in(email, PASSWORD)
    dispose_engine()
    return {"data_dir": data_dir, "files": files, "clients": clients, "next_file": [2], **ids}


@pytest.fixture(autouse=True)
def _environment(world):
    use_environment(world["data_dir"])


def _file(world):
    world["next_file"][0] += 1
    return world["files"][world["next_file"][0] % len(world["files"])]


def _throwaway(world, visibility="public", confirmed=True, upload=True, job_status=None) -> dict:
    """A fresh collection of A, so that changing cases do not depend on each other."""
    with session_scope() as session:
        a = session.get(User, world["users"]["a"])
        c = create_collection(
            session, a, get_or_create_movie(session, "Scratch"), f"t {uuid.uuid4().hex[:8]}", visibility=visibility
        )
        if confirmed:
            confirm_license(session, c, a)
        upload_id = add_upload(session, c, _file(world), "m.nii.gz").id if upload else None
        job = create_job(session, "ingest", c.id, a.id) if job_status else None
        if job:
            job.status = job_status
        return {
            "id": c.id,
            "slug": c.slug,
            "upload": upload_id,
            "job": job.id if job else None,
            "token": job.token if job else None,
        }


# --- reads ----------------------------------------------------------------------------------------------------


def _status(client, path):
    return client.get(path).status_code


READS = {
    "api collection": (lambda w, c: _status(c, f"/api/collections/{w['private']}") == 200, {"a", "admin"}),
    "api component": (lambda w, c: _status(c, f"/api/components/{w['private_uuid']}") == 200, {"a", "admin"}),
    "api components list": (
        lambda w, c: c.get(f"/api/components?collection={w['private']}").json()["total"] == 1,
        {"a", "admin"},
    ),
    "api movie": (lambda w, c: _status(c, "/api/movies/secret-movie") == 200, {"a", "admin"}),
    "component file": (lambda w, c: _status(c, f"/files/components/{w['private_uuid']}.nii.gz") == 200, {"a", "admin"}),
    "collection zip": (lambda w, c: _status(c, f"/collections/{w['private']}/maps.zip") == 200, {"a", "admin"}),
    "raw uploads private": (lambda w, c: _status(c, f"/upload/{w['private']}/raw.zip") == 200, {"a", "admin"}),
    "raw uploads public": (lambda w, c: _status(c, f"/upload/{w['public']}/raw.zip") == 200, {"a", "admin"}),
    "component page": (lambda w, c: "A private" in c.page_layout(f"/components/{w['private_uuid']}"), {"a", "admin"}),
    "edit page private": (lambda w, c: "edit-form" in c.page_layout(f"/contribute/{w['private']}"), {"a", "admin"}),
    "edit page public": (lambda w, c: "edit-form" in c.page_layout(f"/contribute/{w['public']}"), {"a", "admin"}),
    "my collections": (lambda w, c: "A private" in c.page_layout("/contribute"), {"a"}),
    "admin page": (lambda w, c: "admin-users" in c.page_layout("/admin"), {"admin"}),
    "system page": (lambda w, c: "system-workers" in c.page_layout("/admin/system"), {"admin"}),
    "api system": (lambda w, c: _status(c, "/api/system") == 200, {"admin"}),
    "public component stays public": (
        lambda w, c: _status(c, f"/api/components/{w['public_uuid']}") == 200,
        set(ROLES),
    ),
}


@pytest.mark.parametrize("case", list(READS))
@pytest.mark.parametrize("role", ROLES)
def test_reads(world, role, case):
    check, allowed = READS[case]
    assert check(world, world["clients"][role]) == (role in allowed)


# --- changes --------------------------------------------------------------------------------------------------


def _upload(world, client, visibility):
    t = _throwaway(world, visibility, upload=False)
    client.open_page(f"/contribute/{t['slug']}")
    r = client.upload(t["slug"], _file(world), name=f"{uuid.uuid4().hex}.nii.gz")
    with session_scope() as session:
        stored = session.scalar(select(Upload.id).where(Upload.collection_id == t["id"])) is not None
    assert stored == (r.status_code == 200)
    return stored


def _edit(world, client):
    t = _throwaway(world)
    client.open_page(f"/contribute/{t['slug']}")
    client.callback(
        "..edit-message.children...coll-refresh.data..",
        {
            "edit-form.n_submit": 1,
            "coll-id.data": t["id"],
            "edit-name.value": "Renamed",
            "edit-movie.value": "Scratch",
            "edit-license.value": "CC0-1.0",
            "edit-visibility.value": "private",
        },
        ["edit-form.n_submit"],
    )
    with session_scope() as session:
        c = session.get(Collection, t["id"])
        return c.name == "Renamed" and c.visibility == "private"


def _confirm(world, client):
    t = _throwaway(world, confirmed=False, upload=False)
    client.open_page(f"/contribute/{t['slug']}")
    client.confirm_license(t["id"])
    with session_scope() as session:
        return session.get(Collection, t["id"]).license_confirmed_at is not None


def _start(world, client):
    t = _throwaway(world)
    client.open_page(f"/contribute/{t['slug']}")
    client.callback(
        "..proc-request.data...coll-start-message.children..",
        {"coll-process.n_clicks": 1, "coll-id.data": t["id"], "proc-nonce.data": "n"},
        ["coll-process.n_clicks"],
    )
    with session_scope() as session:
        return session.scalar(select(Job.id).where(Job.collection_id == t["id"])) is not None


def _remove_upload(world, client):
    t = _throwaway(world)
    client.open_page(f"/contribute/{t['slug']}")
    ident = {"type": "upload-remove", "upload": t["upload"]}
    client.callback(
        "..coll-refresh.data...coll-action-message.children..",
        {"coll-id.data": t["id"]},
        [Client.pattern_prop(ident)],
        patterns={"upload-remove": [(ident, 1)]},
    )
    with session_scope() as session:
        return session.get(Upload, t["upload"]) is None


def _delete(world, client):
    t = _throwaway(world)
    client.open_page(f"/contribute/{t['slug']}")
    client.callback(
        "..coll-delete-message.children...coll-go.href..",
        {"coll-delete-confirm.n_clicks": 1, "coll-id.data": t["id"]},
        ["coll-delete-confirm.n_clicks"],
    )
    with session_scope() as session:
        return session.get(Collection, t["id"]) is None


def _stop(world, client):
    t = _throwaway(world, job_status="running")
    client.open_page(f"/contribute/{t['slug']}")
    ident = {"type": "job-stop", "job": t["job"]}
    client.callback(
        "..coll-refresh.data...coll-action-message.children..",
        {},
        [Client.pattern_prop(ident)],
        patterns={"job-stop": [(ident, 1)]},
    )
    with session_scope() as session:
        return session.get(Job, t["job"]).status == "cancelled"


def _runner_cancel(world, client):
    t = _throwaway(world, job_status="running")
    client.open_page(f"/contribute/{t['slug']}")
    client.callback(
        "proc-cancel-message.children",
        {"proc-cancel.n_clicks": 1, "proc-request.data": {"token": t["token"], "nonce": "n"}},
        ["proc-cancel.n_clicks"],
    )
    with session_scope() as session:
        return session.get(Job, t["job"]).status == "cancelled"


def _background_run(world, client):
    """The background callback with A's (leaked) job token: the job checks who asks, in the database."""
    t = _throwaway(world, job_status="queued")
    client.open_page(f"/contribute/{t['slug']}")
    request = {"token": t["token"], "nonce": "n1"}
    client.run_processing(request, "n1", timeout=120)
    with session_scope() as session:
        return session.get(Job, t["job"]).status == "succeeded"


def _promote(world, client):
    with session_scope() as session:
        target = session.scalar(select(User).where(User.email == "target@example.org"))
        target.role, uid = "curator", target.id
    client.open_page("/admin")
    ident = {"type": "admin-user", "uid": uid, "action": "admin"}
    client.callback(
        "..admin-users-message.children...admin-refresh.data..",
        {},
        [Client.pattern_prop(ident)],
        patterns={"admin-user": [(ident, 1)]},
    )
    with session_scope() as session:
        return session.get(User, uid).role == "admin"


def _activate_reference(world, client):
    from pipeline.decoding.reference import create_reference_set, set_active
    from tests.services import term_maps

    with session_scope() as session:
        builtin = session.scalar(select(ReferenceSet).where(ReferenceSet.active.is_(True)))
        other = session.scalar(select(ReferenceSet).where(ReferenceSet.name == "two terms"))
        if other is None:
            other = create_reference_set(session, "two terms", "nifti-folder", list(term_maps().items())[:2])
        builtin_id, other_id = builtin.id, other.id
    client.open_page("/admin")
    ident = {"type": "admin-ref", "rid": other_id}
    client.callback(
        "..adminjob-request.data...admin-ref-message.children...admin-refresh.data..",
        {"adminjob-nonce.data": "n"},
        [Client.pattern_prop(ident)],
        patterns={"admin-ref": [(ident, 1)]},
    )
    with session_scope() as session:
        switched = session.get(ReferenceSet, other_id).active
        set_active(session, session.get(ReferenceSet, builtin_id))  # leave the module's world as it was
        for job in session.scalars(select(Job).where(Job.kind == "redecode", Job.status == "queued")):
            job.status = "cancelled"
    return switched


CHANGES = {
    "upload to public collection": (lambda w, c: _upload(w, c, "public"), {"a", "admin"}),
    "upload to private collection": (lambda w, c: _upload(w, c, "private"), {"a", "admin"}),
    "edit collection": (_edit, {"a", "admin"}),
    "confirm license": (_confirm, {"a", "admin"}),
    "start processing": (_start, {"a", "admin"}),
    "remove upload": (_remove_upload, {"a", "admin"}),
    "delete collection": (_delete, {"a", "admin"}),
    "stop job": (_stop, {"a", "admin"}),
    "cancel job from the runner": (_runner_cancel, {"a", "admin"}),
    "run a job in the background": (_background_run, {"a", "admin"}),
    "change a user's role": (_promote, {"admin"}),
    "switch the reference set": (_activate_reference, {"admin"}),
}


@pytest.mark.parametrize("case", list(CHANGES))
@pytest.mark.parametrize("role", ROLES)
def test_changes(world, role, case):
    change, allowed = CHANGES[case]
    assert change(world, world["clients"][role]) == (role in allowed)


def test_the_system_page_and_report_refuse_everyone_but_administrators(world):
    clients = world["clients"]
    assert clients["anonymous"].get("/api/system").status_code == 401
    assert "Sign in" in clients["anonymous"].page_layout("/admin/system")
    for role in ("a", "b"):
        assert clients[role].get("/api/system").status_code == 403
        assert "system-refused" in clients[role].page_layout("/admin/system")
    assert "embedded: jobs run in the web process" in clients["admin"].get("/api/system").text


def test_the_job_checks_the_user_again_where_it_runs(world):
    """What a worker does with a token and a user id from custom_data: nothing unless that user may."""
    t = _throwaway(world, job_status="queued")
    for role in ("b",):
        with pytest.raises(JobRefused, match="may not process"):
            run_authorized_job(t["token"], world["users"][role])
    with pytest.raises(JobRefused, match="Sign in"):
        run_authorized_job(t["token"], None)
    with pytest.raises(JobRefused, match="does not exist"):
        run_authorized_job("not-a-token", world["users"]["a"])
    with session_scope() as session:
        session.get(User, world["users"]["a"]).active = False
    try:
        with pytest.raises(JobRefused, match="Sign in"):
            run_authorized_job(t["token"], world["users"]["a"])
    finally:
        with session_scope() as session:
            session.get(User, world["users"]["a"]).active = True
    assert run_authorized_job(t["token"], world["users"]["admin"])["status"] == "succeeded"


def test_admin_sees_every_collection_and_curators_only_their_own(world):
    admin_page = world["clients"]["admin"].page_layout("/admin")
    assert "A private" in admin_page and "A public" in admin_page and "target@example.org" in admin_page
    b_page = world["clients"]["b"].page_layout("/contribute")
    assert "A private" not in b_page and "A public" not in b_page
    refreshed = world["clients"]["b"].callback(
        "..mine-list.children...mine-poll.interval..", {"mine-poll.n_intervals": 1}, ["mine-poll.n_intervals"]
    )
    assert "A private" not in json.dumps(refreshed)
    time.sleep(0)
