"""Callbacks of the contribute pages: create, edit and delete collections, confirm the license, list uploads and
components, start processing and follow it through the Job row (which outlives the browser tab)."""
from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback_context, html, no_update
from dash.exceptions import PreventUpdate
from sqlalchemy import func, select

from callbacks.forms import as_dict, clicked, form_states, form_values, row_id, trigger_id
from callbacks.processing import register_runner
from dashboard.components.curator import alert, badge
from pipeline.catalog import (
    QuotaExceeded,
    check_collection_quota,
    confirm_license,
    create_collection,
    delete_collection,
    delete_upload,
    get_or_create_movie,
    update_collection,
    validate_collection_form,
)
from pipeline.heartbeat import settle_stalled_jobs
from pipeline.jobs import JobRefused, active_job, cancel_job, job_summary, start_ingest_job
from store.access import can_edit, editable_collections
from store.db import session_scope
from store.models import Collection, Component, Job, Movie, Term, Upload, User
from store.storage import get_storage
from store.units import human_bytes
from web.auth import signed_in_user as user

RUNNER = "proc"  # the collection page's job runner
POLL_ACTIVE_MS = 1500
POLL_IDLE_MS = 15000

register_runner(RUNNER)


# --- queries shared by My collections, the collection page and the admin page ---------------------------------

def latest_jobs(session, collection_ids: list[int]) -> dict[int, Job]:
    if not collection_ids:
        return {}
    newest = (select(Job.collection_id, func.max(Job.id).label("id"))
              .where(Job.collection_id.in_(collection_ids)).group_by(Job.collection_id).subquery())
    return {j.collection_id: j for j in session.scalars(select(Job).join(newest, Job.id == newest.c.id))}


def collection_rows(session, viewer, everyone: bool = False) -> list[dict[str, Any]]:
    """Collections the viewer may edit: their own; with ``everyone``, all that ``editable_collections`` allows
    (every collection, for an admin)."""
    where = editable_collections(viewer)
    if not everyone and viewer is not None:
        where = Collection.owner_id == viewer.id
    uploads = (select(Upload.collection_id, func.count(Upload.id).label("n"), func.max(Upload.created).label("last"))
               .group_by(Upload.collection_id).subquery())
    rows = session.execute(
        select(Collection, Movie.title, Movie.slug, User.email, uploads.c.n, uploads.c.last)
        .join(Movie, Collection.movie_id == Movie.id).join(User, Collection.owner_id == User.id)
        .outerjoin(uploads, uploads.c.collection_id == Collection.id)
        .where(where).order_by(Collection.updated.desc(), Collection.id.desc())).all()
    ids = [r[0].id for r in rows]
    settle_stalled_jobs(session)
    jobs = latest_jobs(session, ids)
    n_comp: dict[int, int] = {}
    warned: dict[int, int] = {}
    if ids:  # QC warnings are a JSON list: counted here rather than in dialect-specific SQL
        for cid, qc in session.execute(select(Component.collection_id, Component.qc_warnings)
                                       .where(Component.collection_id.in_(ids))):
            n_comp[cid] = n_comp.get(cid, 0) + 1
            warned[cid] = warned.get(cid, 0) + (1 if qc else 0)
    out = []
    for c, movie, movie_slug, owner, n_up, last_upload in rows:
        job = jobs.get(c.id)
        out.append({"id": c.id, "slug": c.slug, "name": c.name, "movie": movie, "movie_slug": movie_slug,
                    "owner": owner, "visibility": c.visibility, "status": c.status, "components": n_comp.get(c.id, 0),
                    "uploads": n_up or 0, "warned": warned.get(c.id, 0), "is_demo": c.is_demo,
                    "unprocessed": _unprocessed(last_upload, job),
                    "job": job_summary(job) if job else None})
    return out


def _aware(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def _unprocessed(last_upload: datetime | None, job: Job | None) -> bool:
    """Files uploaded after the start of the latest processing (or never processed)."""
    if last_upload is None:
        return False
    if job is None or job.kind != "ingest" or job.started is None:
        return True
    return _aware(last_upload) > _aware(job.started)


def job_line(job: dict | None) -> Any:
    if not job:
        return html.Span("never processed", className="text-muted")
    parts: list[Any] = [badge(job["status"])]
    if job["status"] in ("queued", "running") and job["total"]:
        parts.append(html.Span(f" {job['done']}/{job['total']} maps", className="small"))
    elif job["message"]:
        parts.append(html.Span(" " + job["message"], className="small"))
    if job["status"] == "failed" and job["error"]:
        parts.append(html.Div(job["error"].splitlines()[0][:200], className="small text-danger"))
    return html.Span(parts)


# --- create ---------------------------------------------------------------------------------------------------

@dash.callback(
    Output("new-message", "children"), Output("new-go", "href"),
    Input("new-form", "n_submit"),
    *form_states("new"),
    prevent_initial_call=True,
)
def _create(_n, *args):
    u = user()
    if u is None:
        return alert("Your session has ended; sign in again."), no_update
    clean, errors = validate_collection_form(form_values(list(args)))
    if errors:
        return alert(errors), no_update
    with session_scope() as session:
        owner = session.get(User, u.id)
        try:
            check_collection_quota(session, owner)
        except QuotaExceeded as exc:
            return alert(str(exc)), no_update
        movie = get_or_create_movie(session, clean["movie"], clean["year"])
        collection = create_collection(
            session, owner, movie, clean["name"], visibility=clean["visibility"], license=clean["license"],
            description=clean["description"], dataset_url=clean["dataset_url"], doi=clean["doi"],
            contributors=clean["contributors"], metadata_=clean["metadata"])
        slug = collection.slug
    return alert("Collection created.", "success"), f"/contribute/{slug}"


# --- edit -----------------------------------------------------------------------------------------------------

def _editable(session, collection_id: Any) -> Collection:
    u = user()
    cid = row_id(collection_id)  # the page's Store: anything but an id is a forged request
    collection = session.get(Collection, cid) if cid is not None else None
    if u is None or not can_edit(u, collection):
        raise PermissionError("You may not change this collection (any more). Reload the page.")
    return collection


@dash.callback(
    Output("edit-message", "children"),
    Output("coll-refresh", "data", allow_duplicate=True),
    Input("edit-form", "n_submit"),
    State("coll-id", "data"),
    *form_states("edit"),
    prevent_initial_call=True,
)
def _save(_n, collection_id, *args):
    clean, errors = validate_collection_form(form_values(list(args)))
    if errors:
        return alert(errors), no_update
    try:
        with session_scope() as session:
            collection = _editable(session, collection_id)
            license_before = collection.license
            movie = get_or_create_movie(session, clean["movie"], clean["year"])
            update_collection(session, collection, name=clean["name"], movie=movie, visibility=clean["visibility"],
                              license=clean["license"], metadata=clean["metadata"],
                              description=clean["description"], dataset_url=clean["dataset_url"],
                              doi=clean["doi"], contributors=clean["contributors"])
            relicensed = license_before != collection.license
    except (PermissionError, ValueError) as exc:
        return alert(str(exc)), no_update
    note = " The license changed: confirm it again before uploading more files." if relicensed else ""
    return alert("Saved." + note, "success", duration=6000), time.time()


def license_panel(collection: Collection) -> Any:
    if collection.license_confirmed_at is not None:
        when = collection.license_confirmed_at.strftime("%Y-%m-%d")
        return html.P([html.Span("✓ ", className="text-success"),
                       (f"{collection.license_confirmed_by or 'The curator'} confirmed on {when} that these data "
                        f"may be shared under {collection.license}.")], className="small text-muted mb-2",
                      id="coll-license-done")
    return dbc.Alert([
        html.P(["Before uploading: confirm that you have the right to share these data publicly under ",
                html.Strong(collection.license),
                (" (participants' consent and your institution's rules allow it, and the maps contain no "
                 "identifying information).")], className="mb-2"),
        dbc.Checkbox(id="coll-license-check", label="I confirm that I may share these data under this license.",
                     value=False),
        dbc.Button("Confirm", id="coll-license-confirm", color="primary", size="sm", className="mt-2"),
    ], color="secondary", id="coll-license-ask")


@dash.callback(
    Output("coll-license", "children"), Output("coll-upload-wrap", "className"),
    Input("coll-license-confirm", "n_clicks"), Input("coll-refresh", "data"),
    State("coll-id", "data"), State("coll-license-check", "value"),
    prevent_initial_call=True,
)
def _license(n_clicks, _refresh, collection_id, checked):
    confirming = callback_context.triggered_id == "coll-license-confirm"
    try:
        with session_scope() as session:
            collection = _editable(session, collection_id)
            if confirming:
                if checked is not True:  # the checkbox sends exactly True when ticked
                    return [license_panel(collection), alert("Tick the box to confirm.", "warning")], no_update
                confirm_license(session, collection, session.get(User, user().id))
            panel = license_panel(collection)
            confirmed = collection.license_confirmed_at is not None
    except PermissionError as exc:
        return alert(str(exc)), no_update
    return panel, "" if confirmed else "d-none"


# --- uploads, status and components (polled from the Job row) -------------------------------------------------

def uploads_table(uploads: list[Upload], busy: bool) -> Any:
    if not uploads:
        return html.P("No files uploaded yet.", className="text-muted small", id="coll-no-uploads")
    rows = [html.Tr([html.Td(u.filename, className="text-break"), html.Td(human_bytes(u.size)),
                     html.Td(u.created.strftime("%Y-%m-%d %H:%M") if u.created else ""),
                     html.Td(dbc.Button("Remove", id={"type": "upload-remove", "upload": u.id}, size="sm",
                                        color="link", className="p-0 text-danger", disabled=busy))])
            for u in uploads]
    return dbc.Table([html.Thead(html.Tr([html.Th("File"), html.Th("Size"), html.Th("Uploaded"), html.Th("")])),
                      html.Tbody(rows)], size="sm", className="mb-0", id="coll-upload-table")


def components_table(session, collection_id: int) -> Any:
    comps = session.execute(
        select(Component.uuid, Component.source_file, Component.volume_index, Term.name, Component.best_r,
               Component.qc_warnings)
        .outerjoin(Term, Component.best_term_id == Term.id)
        .where(Component.collection_id == collection_id)
        .order_by(Component.source_file, Component.volume_index)).all()
    if not comps:
        return html.P("No components yet: upload files and process them.", className="text-muted small")
    rows = [html.Tr([html.Td(html.A(f"{source} #{volume + 1}", href=f"/components/{cuuid}"), className="text-break"),
                     html.Td(term or "—"), html.Td(f"{r:+.3f}" if r is not None else "—"),
                     html.Td([html.Div(w, className="small text-warning-emphasis") for w in (qc or [])])])
            for cuuid, source, volume, term, r, qc in comps]
    return html.Div([
        html.P(f"{len(comps)} component(s).", className="small text-muted", id="coll-component-count"),
        dbc.Table([html.Thead(html.Tr([html.Th("Map"), html.Th("Best term"), html.Th("r"), html.Th("QC")])),
                   html.Tbody(rows)], size="sm", striped=True, responsive=True, id="coll-component-table")])


def status_panel(collection: Collection, job: Job | None, own_token: str | None, n_uploads: int) -> Any:
    parts: list[Any] = [html.Span("Collection: "), badge(collection.status)]
    if job is None:
        parts.append(html.Span(" Not processed yet." if n_uploads else " Upload files, then process them.",
                               className="text-muted"))
        return html.Div(parts, id="coll-status-line")
    summary = job_summary(job)
    parts += [html.Span(" · latest job: "), job_line(summary)]
    children: list[Any] = [html.Div(parts, id="coll-status-line")]
    if job.status in ("queued", "running"):
        value = round(100 * job.progress_done / job.progress_total) if job.progress_total else 0
        children.append(dbc.Progress(value=value, label=f"{job.progress_done}/{job.progress_total}",
                                     className="my-2", id="coll-job-progress", striped=True))
        if job.token != own_token:  # started from another tab or page: this page cannot kill it, it can stop it
            children.append(dbc.Button("Stop processing", id={"type": "job-stop", "job": job.id}, size="sm",
                                       color="warning", outline=True))
    if job.error and job.status != "running":
        children.append(dbc.Alert([html.Strong("Errors"), html.Pre(job.error, className="mb-0 small text-wrap")],
                                  color="danger" if job.status == "failed" else "warning", className="mt-2 mb-0",
                                  id="coll-job-errors"))
    if job.warnings:
        children.append(html.Details([html.Summary(f"{len(job.warnings)} warning(s)"),
                                      html.Ul([html.Li(w, className="small") for w in job.warnings])],
                                     className="mt-2", id="coll-job-warnings"))
    return html.Div(children)


@dash.callback(
    Output("coll-status", "children"), Output("coll-uploads", "children"), Output("coll-components", "children"),
    Output("coll-poll", "interval"), Output("coll-process", "disabled"), Output("coll-choose", "disabled"),
    Input("coll-poll", "n_intervals"), Input("coll-refresh", "data"), Input("coll-uploaded", "data"),
    Input(f"{RUNNER}-request", "data"),
    State("coll-id", "data"),
)
def _poll(_n, _refresh, _uploaded, request, collection_id):
    # Not an Input: the runner's result. Dash holds a callback back while one of its inputs is the output of a
    # running callback, and the background run would freeze this status until it ended.
    try:
        with session_scope() as session:
            collection = _editable(session, collection_id)
            settle_stalled_jobs(session)
            job = session.scalar(select(Job).where(Job.collection_id == collection.id).order_by(Job.id.desc()))
            uploads = list(session.scalars(select(Upload).where(Upload.collection_id == collection.id)
                                           .order_by(Upload.id)))
            busy = job is not None and job.status in ("queued", "running")
            own = as_dict(request).get("token")
            return (status_panel(collection, job, own, len(uploads)), uploads_table(uploads, busy),
                    components_table(session, collection.id), POLL_ACTIVE_MS if busy else POLL_IDLE_MS,
                    busy or not uploads or collection.license_confirmed_at is None, busy)
    except PermissionError as exc:
        return alert(str(exc)), no_update, no_update, POLL_IDLE_MS, True, True


@dash.callback(
    Output("coll-refresh", "data", allow_duplicate=True), Output("coll-action-message", "children"),
    Input({"type": "upload-remove", "upload": ALL}, "n_clicks"),
    State("coll-id", "data"),
    prevent_initial_call=True,
)
def _remove_upload(clicks, collection_id):
    upload_id = trigger_id("upload")
    if upload_id is None or not clicked(clicks):
        raise PreventUpdate
    try:
        with session_scope() as session:
            key = delete_upload(session, _editable(session, collection_id), upload_id)
    except (PermissionError, ValueError) as exc:
        return no_update, alert(str(exc))
    get_storage().delete(key)
    return time.time(), alert("File removed. Process the collection again to update its components.", "info",
                              duration=6000)


@dash.callback(
    Output("coll-refresh", "data", allow_duplicate=True), Output("coll-action-message", "children",
                                                                 allow_duplicate=True),
    Input({"type": "job-stop", "job": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def _stop(clicks):
    job_id = trigger_id("job")
    if job_id is None or not clicked(clicks):
        raise PreventUpdate
    with session_scope() as session:
        job = session.get(Job, job_id)
        try:
            cancel_job(session, user(), job.token if job else "")
        except JobRefused as exc:
            return no_update, alert(str(exc))
    return time.time(), alert("Stopping: the job ends at its next step.", "warning", duration=6000)


# --- start processing -----------------------------------------------------------------------------------------

@dash.callback(
    Output(f"{RUNNER}-request", "data"), Output("coll-start-message", "children"),
    Input("coll-process", "n_clicks"), Input("coll-uploaded", "data"), Input("coll-autostart", "data"),
    State("coll-id", "data"), State(f"{RUNNER}-nonce", "data"),
)
def _start(_clicks, uploaded, autostart, collection_id, nonce):
    trigger = callback_context.triggered_id
    if trigger is None and not autostart:
        raise PreventUpdate  # page load without ?process=1
    if trigger == "coll-uploaded" and not as_dict(uploaded).get("ok"):
        raise PreventUpdate  # nothing of the last batch was accepted
    u = user()
    try:
        with session_scope() as session:
            collection = _editable(session, collection_id)
            job = start_ingest_job(session, u, collection)
            token = job.token
    except (PermissionError, JobRefused) as exc:
        if trigger is None:  # an automatic start that has nothing to do: say why without alarm
            return no_update, alert(str(exc), "secondary", duration=8000)
        return no_update, alert(str(exc), "warning")
    return {"token": token, "nonce": nonce}, None


# --- delete ---------------------------------------------------------------------------------------------------

@dash.callback(
    Output("coll-delete-modal", "is_open"),
    Input("coll-delete", "n_clicks"), Input("coll-delete-cancel", "n_clicks"),
    prevent_initial_call=True,
)
def _toggle_delete(_open, _close):
    return callback_context.triggered_id == "coll-delete"


@dash.callback(
    Output("coll-delete-message", "children"), Output("coll-go", "href"),
    Input("coll-delete-confirm", "n_clicks"),
    State("coll-id", "data"),
    prevent_initial_call=True,
)
def _delete(_n, collection_id):
    try:
        with session_scope() as session:
            collection = _editable(session, collection_id)
            if (job := active_job(session, collection.id)) is not None:
                return alert(f"Processing is {job.status}; stop it before deleting the collection."), no_update
            collection_id = collection.id
        removed = delete_collection(collection_id)
    except (PermissionError, ValueError) as exc:
        return alert(str(exc)), no_update
    return alert(f"Deleted, with {removed} component(s).", "success"), "/contribute?deleted=1"
