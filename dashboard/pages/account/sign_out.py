"""Sign out (the page's load callback ends the session, then goes home)."""
from __future__ import annotations

import dash
from dash import dcc, html

import callbacks.accounts  # noqa: F401 - registers this page's callbacks

dash.register_page(__name__, path="/account/sign-out", title="Sign out · INcDb")


def layout(**_query):
    return html.Div([dcc.Location(id="signout-go", refresh=True), dcc.Store(id="signout-trigger", data=1),
                     html.P("Signing out…", id="signout-message", className="text-muted")])
