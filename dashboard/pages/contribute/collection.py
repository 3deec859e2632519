"""One of the curator's collections (``/contribute/<slug>``): details, license, uploads, processing, deletion.

The page's callbacks edit the collection, confirm the license, list uploads and components, start processing and
follow it through the Job row (which outlives the browser tab), and delete the collection after confirmation."""
from __future__ import annotations

import time
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate
from sqlalchemy import select

from dashboard.components.collection_form import collection_form, form_states, form_values
from dashboard.components.common import not_found
from dashboard.components.curation import components_table, license_panel, status_panel, uploads_table
from dashboard.components.curator import alert, sign_in_prompt
from dashboard.components.data import as_dict, clicked, row_id, trigger_id
from dashboard.components.job_runner import job_runner, register_runner
from pipeline.curation.archives import ACCEPTED_SUFFIXES
from pipeline.curation.catalog import (
    confirm_license,
    delete_collection,
    delete_upload,
    get_or_create_movie,
    update_collection,
    validate_collection_form,
)
from pipeline.jobs.lifecycle import JobRefused, active_job, cancel_job, settle_stalled_jobs, start_ingest_job
from pipeline.temporal.timecourses import FTMIX_NAMES, MIX_NAMES, TABLE_SUFFIX
from store.access import can_edit
from store.config import get_settings
from store.curation import collection_components, collection_uploads, latest_job
from store.db import session_scope
from store.models import ACTIVE_JOB_STATUSES, Collection, Job, Movie, User
from store.queries import lookup_key
from store.storage import get_storage
from store.units import human_bytes
from web.auth import signed_in_user as user

dash.register_page(__name__, path_template="/contribute/<slug>", order=21, title="Edit collection · INcDb")

RUNNER = "proc"  # the collection page's job runner
POLL_ACTIVE_MS = 1500
POLL_IDLE_MS = 15000
register_runner(RUNNER)


def _upload_widget(slug: str) -> html.Div:
    limit = get_settings().max_upload_bytes
    return html.Div([
        html.Div([
            html.P(["Drop files here or ",
                    html.Button("choose files", id="coll-choose", type="button",
                                className="btn btn-sm btn-outline-primary mx-1")], className="mb-1"),
            html.P(f".nii, .nii.gz, or .zip / .tar.gz archives of them; up to {human_bytes(limit)} per file. "
                   "3D files are one map each; 4D files one map per volume. Time courses: melodic_mix (and "
                   "melodic_FTmix) next to melodic_IC.nii.gz, or <map>_timecourses.tsv next to <map>.nii.gz.",
                   className="small text-muted mb-0"),
        ], className="incdb-dropzone", id="coll-dropzone",
            **{"data-upload-url": f"/upload/{slug}", "data-resumable-url": f"/upload/{slug}/resumable",
               "data-max-bytes": str(limit),
               "data-accept": ",".join(ACCEPTED_SUFFIXES + MIX_NAMES + FTMIX_NAMES + (TABLE_SUFFIX,))}),
        html.Div(id="coll-upload-progress", className="incdb-upload-list"),
        dcc.Store(id="coll-uploaded"),
    ])


def layout(slug: str | None = None, process: str | None = None, delete: str | None = None, **query):
    if slug == "new":  # only if Dash ever tried this template before the page of that path
        return dcc.Location(id="coll-go", href="/contribute/new", refresh=True)
    u = user()
    if u is None:
        return sign_in_prompt(f"/contribute/{slug or ''}", "this collection")
    with session_scope() as session:
        key = lookup_key(slug)  # a query string can replace the path's slug with a list, a NUL or 10,000 characters
        collection = session.scalar(select(Collection).where(Collection.slug == key)) if key else None
        if collection is None or not can_edit(u, collection):
            return not_found("collection", links=(("My collections", "/contribute"), ("Browse movies", "/movies")),
                             hint="It does not exist, or it is not yours to change.")
        movie = session.get(Movie, collection.movie_id)
        values = {"name": collection.name, "movie": movie.title, "year": movie.year,
                  "description": collection.description, "dataset_url": collection.dataset_url,
                  "doi": collection.doi, "contributors": collection.contributors, "license": collection.license,
                  "visibility": collection.visibility, "metadata": collection.metadata_,
                  "timing": collection.timing}
        license_box = license_panel(collection)
        confirmed = collection.license_confirmed_at is not None
        cid, visibility, name = collection.id, collection.visibility, collection.name
        movie_slug, owner = movie.slug, collection.owner.email
    return html.Div([
        dcc.Location(id="coll-go", refresh=True),
        dcc.Store(id="coll-id", data=cid),
        dcc.Store(id="coll-refresh"),
        dcc.Store(id="coll-autostart", data=process == "1"),
        dcc.Interval(id="coll-poll", interval=POLL_IDLE_MS),
        html.Nav(html.A("← My collections", href="/contribute"), className="small mb-2"),
        html.Div([
            html.Div([html.H1(name, className="h3 mb-1", id="coll-name"),
                      html.Div([dbc.Badge(visibility, color="light", text_color="dark", className="border"),
                                html.Span(f" owner {owner}" if owner != u.email else "", className="small"),
                                " · ", html.A("public movie page", href=f"/movies/{movie_slug}", className="small")],
                               className="text-muted")]),
        ], className="mb-3"),
        html.Div(id="coll-action-message"),
        dbc.Row([
            dbc.Col([
                dbc.Card([dbc.CardHeader("Upload maps"), dbc.CardBody([
                    html.Div(license_box, id="coll-license"),
                    html.Div(_upload_widget(slug), id="coll-upload-wrap", className="" if confirmed else "d-none"),
                    html.H2("Uploaded files", className="h6 mt-3"),
                    html.Div(id="coll-uploads"),
                ])], className="mb-4"),
                dbc.Card([dbc.CardHeader("Processing"), dbc.CardBody([
                    html.P("Processing reads every uploaded file, puts each map on the MNI 2 mm grid, checks it, "
                           "decodes it against the term maps and updates the movie's merged maps. It starts by "
                           "itself after an upload; it keeps running if you close this page.",
                           className="small text-muted"),
                    dbc.Button("Process uploaded files", id="coll-process", color="primary", size="sm",
                               disabled=True),
                    html.Div(id="coll-start-message"),
                    job_runner(RUNNER),
                    html.Div(id="coll-status", className="mt-2"),
                ])], className="mb-4"),
            ], lg=6),
            dbc.Col([
                dbc.Card([dbc.CardHeader("Components"), dbc.CardBody(html.Div(id="coll-components"))],
                         className="mb-4"),
            ], lg=6),
        ]),
        dbc.Card([dbc.CardHeader("Details"), dbc.CardBody(collection_form("edit", values, "Save changes"))],
                 className="mb-4"),
        dbc.Card([dbc.CardHeader("Delete"), dbc.CardBody([
            html.P("Deleting removes the collection, its uploaded files, its components and their decodings, and "
                   "takes them out of the merged maps. It cannot be undone.", className="small"),
            dbc.Button("Delete collection…", id="coll-delete", color="danger", outline=True, size="sm"),
        ])], className="mb-4 border-danger-subtle"),
        dbc.Modal([
            dbc.ModalHeader(dbc.ModalTitle("Delete this collection?")),
            dbc.ModalBody([html.P(["“", html.Strong(name), "” and everything in it will be deleted."]),
                           html.Div(id="coll-delete-message")]),
            dbc.ModalFooter([dbc.Button("Keep it", id="coll-delete-cancel", color="secondary"),
                             dbc.Button("Delete for good", id="coll-delete-confirm", color="danger")]),
        ], id="coll-delete-modal", is_open=delete == "1"),
    ])


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
                              doi=clean["doi"], contributors=clean["contributors"], timing=clean["timing"])
            relicensed = license_before != collection.license
    except (PermissionError, ValueError) as exc:
        return alert(str(exc)), no_update
    note = " The license changed: confirm it again before uploading more files." if relicensed else ""
    return alert("Saved." + note, "success", duration=6000), time.time()


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
            job = latest_job(session, collection.id)
            uploads = collection_uploads(session, collection.id)
            busy = job is not None and job.status in ACTIVE_JOB_STATUSES
            own = as_dict(request).get("token")
            comps = collection_components(session, collection.id)
            return (status_panel(collection, job, own, len(uploads)), uploads_table(uploads, busy),
                    components_table(comps), POLL_ACTIVE_MS if busy else POLL_IDLE_MS,
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
