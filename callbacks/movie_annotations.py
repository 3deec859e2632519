"""Callbacks of ``dashboard.pages.movie_annotations``: a movie's annotation sets: their labels and counts, downloads,
adding one (signed in; a file with bad lines may be added again with them skipped), deleting one's own, the state
of the movie's recomputes, and starting a waiting recompute now."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, html, no_update
from sqlalchemy import func, select

from callbacks.components.job_runner import register_runner
from dashboard.components.common import plural
from dashboard.components.curator import alert
from dashboard.components.data import as_dict, row_id, text_value
from dashboard.components.job_runner import job_token
from dashboard.pages.movie_annotations import (
    RUNNER,
    _decode_upload,
    _start_job,
    _start_now,
    bad_lines_alert,
    recompute_note,
    recompute_status,
    set_cards,
    skip_button,
    skipped_note,
)
from pipeline.temporal.annotations import (
    AnnotationError,
    add_annotation_set,
    delete_annotation_set,
)
from store import queries
from store.db import session_scope
from store.models import AnnotationEvent
from web.auth import signed_in_user

register_runner(RUNNER)


@dash.callback(Output("annot-file-name", "children"), Input("annot-file", "filename"), prevent_initial_call=True)
def _show_name(filename):
    return f"Chosen: {filename}" if isinstance(filename, str) else ""


@dash.callback(
    Output("annot-message", "children"),
    Output("annot-sets", "children"),
    Output(f"{RUNNER}-request", "data"),
    Output("annot-skip", "children"),
    Output("annot-skip", "style"),
    Output("annot-recompute", "children"),
    Output("annot-recompute-poll", "disabled"),
    Input("annot-submit", "n_clicks"),
    Input("annot-skip", "n_clicks"),
    State("annot-movie", "data"),
    State("annot-name", "value"),
    State("annot-description", "value"),
    State("annot-url", "value"),
    State("annot-file", "contents"),
    State("annot-file", "filename"),
    State(f"{RUNNER}-nonce", "data"),
    State(f"{RUNNER}-request", "data"),
    prevent_initial_call=True,
)
def _add(_n, _skip, slug, name, description, url, contents, filename, nonce, last_request):
    skip = ctx.triggered_id == "annot-skip"
    unchanged = (no_update,) * 6
    user = signed_in_user()
    if user is None:
        return alert("Your session has ended; sign in again."), *unchanged
    data = _decode_upload(contents)
    if data is None:
        return alert("Choose the events file (a .tsv) first."), *unchanged
    with session_scope() as session:
        movie = queries.get_visible_movie(session, user, text_value(slug))
        if movie is None:
            return alert("This movie does not exist (any more)."), *unchanged
        try:
            annotation = add_annotation_set(
                session,
                user,
                movie,
                text_value(name),
                data,
                text_value(filename),
                description=text_value(description),
                source_url=text_value(url),
                skip_bad_lines=skip,
            )
        except AnnotationError as exc:
            message = bad_lines_alert(exc) if exc.n_valid else alert(exc.problems)
            return message, no_update, no_update, *skip_button(exc), no_update, no_update
        n_events = session.scalar(select(func.count(AnnotationEvent.id)).where(AnnotationEvent.set_id == annotation.id))
        skipped = skipped_note(annotation, text_value(filename))
        request, found = _start_job(session, user, movie, job_token(as_dict(last_request).get("token")))
        message = f"Added “{annotation.name}” with {plural(n_events, 'event')}." + recompute_note(found)
    if isinstance(request, dict):
        request["nonce"] = nonce
    panel, active = recompute_status(text_value(slug))
    body = html.Div([html.Div(message), *skipped])
    return (
        alert([body], "warning" if skipped else "success"),
        set_cards(text_value(slug)),
        request,
        *skip_button(None),
        panel,
        not active,
    )


@dash.callback(
    Output("annot-confirm", "displayed"),
    Output("annot-confirm", "message"),
    Output("annot-pending", "data"),
    Input({"type": "annot-delete", "set": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def _ask(clicks):
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not isinstance(trigger.get("set"), int) or not any(clicks or []):
        return no_update, no_update, no_update
    return True, "Delete this annotation set and its temporal decodings? This cannot be undone.", trigger["set"]


@dash.callback(
    Output("annot-message", "children", allow_duplicate=True),
    Output("annot-sets", "children", allow_duplicate=True),
    Output(f"{RUNNER}-request", "data", allow_duplicate=True),
    Output("annot-recompute", "children", allow_duplicate=True),
    Output("annot-recompute-poll", "disabled", allow_duplicate=True),
    Input("annot-confirm", "submit_n_clicks"),
    State("annot-pending", "data"),
    State("annot-movie", "data"),
    State(f"{RUNNER}-nonce", "data"),
    State(f"{RUNNER}-request", "data"),
    prevent_initial_call=True,
)
def _delete(_n, set_id, slug, nonce, last_request):
    unchanged = (no_update,) * 4
    user = signed_in_user()
    if user is None:
        return alert("Your session has ended; sign in again."), *unchanged
    with session_scope() as session:
        try:
            movie = delete_annotation_set(session, user, row_id(set_id) or -1)
        except AnnotationError as exc:
            return alert(str(exc)), *unchanged
        request, found = _start_job(session, user, movie, job_token(as_dict(last_request).get("token")))
    if isinstance(request, dict):
        request["nonce"] = nonce
    panel, active = recompute_status(text_value(slug))
    message = "The annotation set is deleted." + recompute_note(found)
    return alert(message, "success"), set_cards(text_value(slug)), request, panel, not active


@dash.callback(
    Output("annot-recompute", "children", allow_duplicate=True),
    Output("annot-recompute-poll", "disabled", allow_duplicate=True),
    Input("annot-recompute-poll", "n_intervals"),
    State("annot-movie", "data"),
    prevent_initial_call=True,
)
def _recompute_state(_n, slug):
    panel, active = recompute_status(text_value(slug))
    return panel, not active


@dash.callback(
    Output("annot-message", "children", allow_duplicate=True),
    Output("annot-recompute", "children", allow_duplicate=True),
    Output("annot-recompute-poll", "disabled", allow_duplicate=True),
    Input("annot-recompute-start", "n_clicks"),
    State("annot-movie", "data"),
    prevent_initial_call=True,
)
def _start(n_clicks, slug):
    if not n_clicks:
        return no_update, no_update, no_update
    user = signed_in_user()
    if user is None:
        return alert("Your session has ended; sign in again."), no_update, no_update
    with session_scope() as session:
        message = _start_now(session, user, text_value(slug))
    panel, active = recompute_status(text_value(slug))
    return alert(message, "info"), panel, not active
