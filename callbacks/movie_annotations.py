"""Callbacks of ``dashboard.pages.movie_annotations``: a movie's annotation sets: their labels and counts, downloads,
adding one (signed in) and deleting one's own."""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, ctx, no_update
from sqlalchemy import func, select

from callbacks.components.job_runner import register_runner
from dashboard.components.common import plural
from dashboard.components.curator import alert
from dashboard.components.data import row_id, text_value
from dashboard.pages.movie_annotations import RUNNER, _decode_upload, _start_job, set_cards
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
    Input("annot-submit", "n_clicks"),
    State("annot-movie", "data"),
    State("annot-name", "value"),
    State("annot-description", "value"),
    State("annot-url", "value"),
    State("annot-file", "contents"),
    State("annot-file", "filename"),
    State(f"{RUNNER}-nonce", "data"),
    prevent_initial_call=True,
)
def _add(_n, slug, name, description, url, contents, filename, nonce):
    user = signed_in_user()
    if user is None:
        return alert("Your session has ended; sign in again."), no_update, no_update
    data = _decode_upload(contents)
    if data is None:
        return alert("Choose the events file (a .tsv) first."), no_update, no_update
    with session_scope() as session:
        movie = queries.get_visible_movie(session, user, text_value(slug))
        if movie is None:
            return alert("This movie does not exist (any more)."), no_update, no_update
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
            )
        except AnnotationError as exc:
            return alert(str(exc).split("; ")), no_update, no_update
        n_events = session.scalar(select(func.count(AnnotationEvent.id)).where(AnnotationEvent.set_id == annotation.id))
        request = _start_job(session, user, movie)
        message = f"Added “{annotation.name}” with {plural(n_events, 'event')}."
    if isinstance(request, dict):
        request["nonce"] = nonce
        message += " Decoding the movie's components against it…"
    return alert(message, "success"), set_cards(text_value(slug)), request


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
    Input("annot-confirm", "submit_n_clicks"),
    State("annot-pending", "data"),
    State("annot-movie", "data"),
    State(f"{RUNNER}-nonce", "data"),
    prevent_initial_call=True,
)
def _delete(_n, set_id, slug, nonce):
    user = signed_in_user()
    if user is None:
        return alert("Your session has ended; sign in again."), no_update, no_update
    with session_scope() as session:
        try:
            movie = delete_annotation_set(session, user, row_id(set_id) or -1)
        except AnnotationError as exc:
            return alert(str(exc)), no_update, no_update
        request = _start_job(session, user, movie)
    if isinstance(request, dict):
        request["nonce"] = nonce
    return alert("The annotation set is deleted.", "success"), set_cards(text_value(slug)), request
