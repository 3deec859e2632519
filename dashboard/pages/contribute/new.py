"""Create a collection (``/contribute/new``): the form, and the callback that validates it and makes the
collection."""
from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, dcc, html, no_update

from dashboard.components.collection_form import collection_form, form_states, form_values
from dashboard.components.curator import alert, sign_in_prompt
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

# Before "/contribute/<slug>" (order 21): Dash tries templates in registry order and "new" would match <slug>.
dash.register_page(__name__, path="/contribute/new", order=20, title="New collection · INcDb")


def layout(**_query):
    if user() is None:
        return sign_in_prompt("/contribute/new", "the collection form")
    return html.Div([
        dcc.Location(id="new-go", refresh=True),
        html.Nav(html.A("← My collections", href="/contribute"), className="small mb-2"),
        html.H1("New collection", className="h3"),
        html.P("One collection holds the maps of one study of one movie. Describe it here; upload the files on "
               "the next page.", className="text-muted"),
        dbc.Card(dbc.CardBody(collection_form("new", submit_label="Create collection"))),
    ])


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
            contributors=clean["contributors"], metadata_=clean["metadata"], timing=clean["timing"])
        slug = collection.slug
    return alert("Collection created.", "success"), f"/contribute/{slug}"
