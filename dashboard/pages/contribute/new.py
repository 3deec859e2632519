"""Create a collection (``/contribute/new``): the form, and the callback that validates it and makes the
collection."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.components.collection_form import collection_form
from dashboard.components.curator import sign_in_prompt
from web.auth import signed_in_user as user

# Before "/contribute/<slug>" (order 21): Dash tries templates in registry order and "new" would match <slug>.
dash.register_page(__name__, path="/contribute/new", order=20, title="New collection · INcDb")


def layout(**_query):
    if user() is None:
        return sign_in_prompt("/contribute/new", "the collection form")
    return html.Div(
        [
            dcc.Location(id="new-go", refresh=True),
            html.Nav(html.A("← My collections", href="/contribute"), className="small mb-2"),
            html.H1("New collection", className="h3"),
            html.P(
                "One collection holds the maps of one study of one movie. Describe it here; upload the files on "
                "the next page.",
                className="text-muted",
            ),
            dbc.Card(dbc.CardBody(collection_form("new", submit_label="Create collection"))),
        ]
    )
