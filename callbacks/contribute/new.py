"""Callbacks of ``dashboard.pages.contribute.new``: create a collection (``/contribute/new``): the form, and the
callback that validates it and makes the."""

from __future__ import annotations

import dash
from dash import Input, Output, no_update

from dashboard.components.collection_form import form_states, form_values, shared_fields
from dashboard.components.curator import alert
from pipeline.curation.catalog import (
    QuotaExceeded,
    check_collection_quota,
    create_collection,
    get_or_create_movie,
    validate_collection_form,
)
from store.db import session_scope
from store.models import User
from web.auth import signed_in_user as user


@dash.callback(
    Output("new-message", "children"),
    Output("new-go", "href"),
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
            session,
            owner,
            movie,
            clean["name"],
            metadata_=clean["metadata"],
            **shared_fields(clean),
        )
        slug = collection.slug
    return alert("Collection created.", "success"), f"/contribute/{slug}"
