"""Callbacks of ``dashboard.pages.contribute.collection``: one of the curator's collections (``/contribute/<slug>``):
details, license, uploads, processing, deletion."""

from __future__ import annotations

import time

import dash
from dash import ALL, Input, Output, State, callback_context, no_update
from dash.exceptions import PreventUpdate

from callbacks.components.job_runner import register_runner
from dashboard.components.collection_form import form_states, form_values, shared_fields
from dashboard.components.curation import components_table, license_panel, status_panel, uploads_table
from dashboard.components.curator import alert
from dashboard.components.data import as_dict, clicked, trigger_id
from dashboard.pages.contribute.collection import POLL_ACTIVE_MS, POLL_IDLE_MS, RUNNER, _editable
from pipeline.curation.catalog import (
    confirm_license,
    delete_collection,
    delete_upload,
    get_or_create_movie,
    update_collection,
    validate_collection_form,
)
from pipeline.jobs.lifecycle import JobRefused, active_job, cancel_job, settle_stalled_jobs, start_ingest_job
from store.curation import collection_components, collection_uploads, latest_job
from store.db import session_scope
from store.models import ACTIVE_JOB_STATUSES, Job, User
from store.storage import get_storage
from web.auth import signed_in_user as user

register_runner(RUNNER)


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
            update_collection(
                session,
                collection,
                name=clean["name"],
                movie=movie,
                metadata=clean["metadata"],
                **shared_fields(clean),
            )
            relicensed = license_before != collection.license
    except (PermissionError, ValueError) as exc:
        return alert(str(exc)), no_update
    note = " The license changed: confirm it again before uploading more files." if relicensed else ""
    return alert("Saved." + note, "success", duration=6000), time.time()


@dash.callback(
    Output("coll-license", "children"),
    Output("coll-upload-wrap", "className"),
    Input("coll-license-confirm", "n_clicks"),
    Input("coll-refresh", "data"),
    State("coll-id", "data"),
    State("coll-license-check", "value"),
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
    Output("coll-status", "children"),
    Output("coll-uploads", "children"),
    Output("coll-components", "children"),
    Output("coll-poll", "interval"),
    Output("coll-process", "disabled"),
    Output("coll-choose", "disabled"),
    Input("coll-poll", "n_intervals"),
    Input("coll-refresh", "data"),
    Input("coll-uploaded", "data"),
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
            return (
                status_panel(collection, job, own, len(uploads)),
                uploads_table(uploads, busy),
                components_table(comps),
                POLL_ACTIVE_MS if busy else POLL_IDLE_MS,
                busy or not uploads or collection.license_confirmed_at is None,
                busy,
            )
    except PermissionError as exc:
        return alert(str(exc)), no_update, no_update, POLL_IDLE_MS, True, True


@dash.callback(
    Output("coll-refresh", "data", allow_duplicate=True),
    Output("coll-action-message", "children"),
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
    return time.time(), alert(
        "File removed. Process the collection again to update its components.", "info", duration=6000
    )


@dash.callback(
    Output("coll-refresh", "data", allow_duplicate=True),
    Output("coll-action-message", "children", allow_duplicate=True),
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
    Output(f"{RUNNER}-request", "data"),
    Output("coll-start-message", "children"),
    Input("coll-process", "n_clicks"),
    Input("coll-uploaded", "data"),
    Input("coll-autostart", "data"),
    State("coll-id", "data"),
    State(f"{RUNNER}-nonce", "data"),
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
    Input("coll-delete", "n_clicks"),
    Input("coll-delete-cancel", "n_clicks"),
    prevent_initial_call=True,
)
def _toggle_delete(_open, _close):
    return callback_context.triggered_id == "coll-delete"


@dash.callback(
    Output("coll-delete-message", "children"),
    Output("coll-go", "href"),
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
